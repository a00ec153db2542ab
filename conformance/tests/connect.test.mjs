// Connection handshake as seen by pusher-js and by a raw WebSocket client.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { APP, useServer, RawClient, makePusher, scenario, sleep, SOCKET_ID_RE } from '../lib/harness.mjs';

const server = useServer();

describe('connect', () => {
  scenario(server, 'pusher-js connects and gets a socket id of the form \\d+.\\d+', async () => {
    const alice = makePusher('alice (pusher-js)', server);
    const socketId = await alice.connected();
    assert.match(socketId ?? '', SOCKET_ID_RE, `alice expected a socket id matching ${SOCKET_ID_RE}, saw ${socketId}`);
    const bob = makePusher('bob (pusher-js)', server);
    const other = await bob.connected();
    assert.notEqual(other, socketId, 'two connections expected distinct socket ids');
  });

  scenario(server, 'connection_established is the first frame: data is a JSON string with socket_id and activity_timeout 30', async () => {
    const raw = RawClient.connect('raw', server);
    const first = await raw.waitFor((e) => e.kind === 'frame', { what: 'a first frame' });
    assert.equal(first.event, 'pusher:connection_established', `raw client expected connection_established first, saw ${first.text}`);
    assert.equal(typeof first.frame.data, 'string', `raw client expected data as a JSON string [S], saw ${first.text}`);
    assert.match(first.data.socket_id, SOCKET_ID_RE);
    assert.equal(first.data.activity_timeout, 30, `raw client expected activity_timeout 30, saw ${first.text}`);
  });

  scenario(server, 'pusher:ping is answered with pusher:pong', async () => {
    const raw = RawClient.connect('raw', server);
    await raw.established();
    const since = raw.mark();
    raw.send({ event: 'pusher:ping', data: {} });
    const pong = await raw.event('pusher:pong', { since });
    assert.equal(pong.frame.channel, undefined, `pong should carry no channel, saw ${pong.text}`);
  });

  scenario(server, 'pusher-js with a short activityTimeout pings and stays connected', async () => {
    const c = makePusher('pinger (pusher-js)', server, { options: { activityTimeout: 1000, pongTimeout: 2000 } });
    await c.connected();
    const since = c.mark();
    // pusher-js sends pusher:ping after 1 s of silence and expects any frame back within 2 s.
    await c.waitFor((e) => e.kind === 'message' && e.event === 'pusher:pong', {
      since,
      timeout: 5000,
      what: 'pusher:pong after its own pusher:ping',
    });
    await sleep(2500);
    assert.equal(c.state, 'connected', 'pusher-js expected to stay connected across ping/pong');
    assert.equal(c.find((e) => e.kind === 'state' && e.current !== 'connected', since).length, 0,
      `pusher-js expected no state change, saw:\n${c.describe(since)}`);
  });

  scenario(server, 'golden frames match Reverb byte for byte', async () => {
    const raw = RawClient.connect('raw (golden)', server);
    await raw.established();
    const exchange = async (send, expected, label) => {
      const since = raw.mark();
      raw.send(send);
      const got = await raw.waitFor((e) => e.kind === 'frame', { since, what: `a reply to ${label}` });
      assert.equal(got.text, expected, `raw client: reply to ${label}`);
    };
    await exchange({ event: 'pusher:ping', data: {} }, '{"event":"pusher:pong"}', 'pusher:ping');
    await exchange(
      { event: 'pusher:subscribe', data: { auth: '', channel: 'my-channel' } },
      '{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"my-channel"}',
      'a public subscribe',
    );
    await exchange(
      { event: 'pusher:subscribe', data: { auth: `${APP.key}:${'0'.repeat(64)}`, channel: 'private-my-channel' } },
      '{"event":"pusher:error","data":"{\\"code\\":4009,\\"message\\":\\"Connection is unauthorized\\"}"}',
      'a badly signed private subscribe',
    );
    await exchange(
      '{"event":',
      '{"event":"pusher:error","data":"{\\"code\\":4200,\\"message\\":\\"Invalid message format\\"}"}',
      'invalid JSON',
    );
    const unknown = RawClient.connect('raw (golden, unknown key)', server, { key: 'unknown-key' });
    const first = await unknown.waitFor((e) => e.kind === 'frame', { what: 'a first frame' });
    assert.equal(first.text, '{"event":"pusher:error","data":"{\\"code\\":4001,\\"message\\":\\"Application does not exist\\"}"}');
  });

  scenario(server, 'unknown app key: raw client gets pusher:error 4001 and close code 4001', async () => {
    const raw = RawClient.connect('raw (unknown key)', server, { key: 'no-such-key' });
    const err = await raw.event('pusher:error');
    assert.equal(err.data.code, 4001, `expected code 4001, saw ${err.text}`);
    assert.equal(err.data.message, 'Application does not exist');
    const closed = await raw.closeEvent();
    assert.equal(closed.code, 4001, `expected close code 4001, saw ${closed.code} (${closed.reason})`);
  });

  scenario(server, 'unknown app key: pusher-js gives up and does not reconnect', async () => {
    const c = makePusher('pusher-js (unknown key)', server, { options: { key: 'no-such-key' } });
    await c.waitFor((e) => e.kind === 'state' && (e.current === 'failed' || e.current === 'disconnected'), {
      timeout: 5000,
      what: 'state "failed" or "disconnected"',
    });
    const since = c.mark();
    await sleep(3000);
    const again = c.find((e) => e.kind === 'state' && (e.current === 'connecting' || e.current === 'connected'), since);
    assert.equal(again.length, 0, `pusher-js expected to stay offline, but saw:\n${c.describe(since)}`);
    assert.ok(['failed', 'disconnected'].includes(c.state), `final state expected failed/disconnected, saw ${c.state}`);
    assert.equal(c.find((e) => e.kind === 'state' && e.current === 'connected').length, 0, 'must never be connected');
  });
});
