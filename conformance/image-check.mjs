// Checks a resound running in a container built from the Dockerfile (scripts/test-image.sh
// starts it): the HAWKI room flow with unmodified laravel-echo/pusher-js clients and the Node
// Pusher SDK, over the container's port. Exits 0 when every step worked, 1 otherwise.
//
//   RESOUND_IMAGE_PORT=8080 node conformance/image-check.mjs
//
// The container must run with the suite's app (harness APP: REVERB_APP_ID/KEY/SECRET).
import assert from 'node:assert/strict';

import { disconnectAll, encryptedMessage, makeEcho, nodeSdk, sdkJson, uniq } from './lib/harness.mjs';

const port = Number(process.env.RESOUND_IMAGE_PORT);
if (!port) {
  console.error('image-check: set RESOUND_IMAGE_PORT to the container port');
  process.exit(2);
}
// What the harness' clients and SDK need of a server: its port (no path prefix).
const server = { port, prefix: '', httpBase: `http://127.0.0.1:${port}` };
const EVENT = 'App\\Events\\RoomMessageEvent';

async function main() {
  const up = await fetch(`${server.httpBase}/up`);
  assert.equal(up.status, 200, 'GET /up');

  const slug = uniq('image-');
  const room = `Rooms.${slug}`;
  const channel = `private-${room}`;
  const [ada, ben] = ['Ada', 'Ben'].map((name, i) => {
    const c = makeEcho(`${name} (Echo)`, server, { user: { id: String(i + 1), info: { name } } });
    c.echo
      .private(room)
      .listen('RoomMessageEvent', (e) => c.push({ kind: 'echo', what: 'message', data: e }))
      .listenForWhisper('typing', (e) => c.push({ kind: 'echo', what: 'typing', data: e }));
    return c;
  });
  await ada.subscribed(channel, { timeout: 8000 });
  await ben.subscribed(channel, { timeout: 8000 });

  // The backend's broadcast with toOthers: the sender's socket is left out.
  const payload = encryptedMessage(slug, 'ada');
  const since = ben.mark();
  await sdkJson(nodeSdk(server).trigger(channel, EVENT, payload, { socket_id: ada.echo.socketId() }), 'trigger');
  const got = await ben.waitFor((e) => e.kind === 'echo' && e.what === 'message', { since, what: 'the room message' });
  assert.deepEqual(got.data, JSON.parse(payload), 'the message arrives unaltered');
  await ada.expectNone((e) => e.kind === 'echo' && e.what === 'message', { within: 500, what: 'no copy to the sender' });

  // A typing whisper reaches the other member only.
  ada.echo.private(room).whisper('typing', { name: 'Ada', typing: true });
  const typing = await ben.waitFor((e) => e.kind === 'echo' && e.what === 'typing', { what: 'the whisper' });
  assert.deepEqual(typing.data, { name: 'Ada', typing: true });
  await ada.expectNone((e) => e.kind === 'echo' && e.what === 'typing', { within: 500, what: 'no echo of a whisper' });

  // The HTTP API answers about the channel.
  const info = await sdkJson(nodeSdk(server).get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } }), 'channel info');
  assert.equal(info.occupied, true);
  assert.equal(info.subscription_count, 2);
}

try {
  await main();
  console.log('image-check: ok (Echo private channel, toOthers, whisper, channel info)');
  disconnectAll();
  process.exit(0);
} catch (e) {
  console.error(`image-check: FAILED: ${e.stack ?? e}`);
  disconnectAll();
  process.exit(1);
}
