// REVERB_SERVER_PATH: every route moves under the prefix (Echo's wsPath).
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { useServer, RawClient, makeEcho, scenario, uniq } from '../lib/harness.mjs';

const server = useServer({ path: '/reverb' });

describe('path prefix', () => {
  scenario(server, '/reverb/up answers, /up and /app/{key} without the prefix are 404', async () => {
    const up = await fetch(`${server.httpBase}/reverb/up`);
    assert.equal(up.status, 200);
    assert.deepEqual(await up.json(), { health: 'OK' });
    const bare = await fetch(`${server.httpBase}/up`);
    assert.equal(bare.status, 404, `GET /up without the prefix expected 404, saw ${bare.status}`);
    const raw = RawClient.connect('raw (no prefix)', server, { prefix: '' });
    await assert.rejects(raw.opened, /404/, 'a WebSocket upgrade without the prefix expected to be refused with 404');
  });

  scenario(server, "Echo with wsPath '/reverb' connects, subscribes and whispers", async () => {
    const slug = uniq('room-');
    const alice = makeEcho('alice (Echo, wsPath)', server, { user: { id: '1', info: {} } });
    const bob = makeEcho('bob (Echo, wsPath)', server, { user: { id: '2', info: {} } });
    for (const c of [alice, bob]) {
      c.echo.private(`Rooms.${slug}`).listenForWhisper('typing', (e) => c.push({ kind: 'echo', what: 'typing', data: e }));
      await c.subscribed(`private-Rooms.${slug}`);
    }
    alice.echo.private(`Rooms.${slug}`).whisper('typing', { who: 'alice' });
    const got = await bob.waitFor((e) => e.kind === 'echo' && e.what === 'typing', { what: 'the whisper' });
    assert.deepEqual(got.data, { who: 'alice' });
  });
});
