// Server-side liveness: pings after silence, and a 4201 close frame (not a
// bare TCP drop as in Reverb) for connections that stop answering. Runs a
// server with a 1 s ping interval and a 1 s pong timeout.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { useServer, RawClient, makePusher, nodeSdk, scenario, sleep, uniq } from '../lib/harness.mjs';

const server = useServer({ env: { REVERB_APP_PING_INTERVAL: '1', RESOUND_APP_PONG_TIMEOUT: '1' } });

describe('liveness', () => {
  scenario(server, 'a silent connection (even one without subscriptions) is pinged, then closed with 4201', async () => {
    const raw = RawClient.connect('raw (never answers)', server);
    await raw.established();
    const ping = await raw.event('pusher:ping', { timeout: 5000 });
    assert.ok(ping.text.startsWith('{"event":"pusher:ping"'), `expected a pusher:ping frame, saw ${ping.text}`);
    const err = await raw.event('pusher:error', { timeout: 5000 });
    assert.equal(
      err.text,
      '{"event":"pusher:error","data":"{\\"code\\":4201,\\"message\\":\\"Pong reply not received in time\\"}"}',
    );
    const closed = await raw.closeEvent({ timeout: 5000 });
    assert.equal(closed.code, 4201, `expected close code 4201, saw ${closed.code} "${closed.reason}"`);
  });

  scenario(server, 'a connection that answers pings stays open', async () => {
    const raw = RawClient.connect('raw (answers pings)', server);
    await raw.established();
    raw.emitter.on('entry', (e) => {
      if (e.kind === 'frame' && e.event === 'pusher:ping') raw.send({ event: 'pusher:pong', data: {} });
    });
    await sleep(4500);
    assert.ok(raw.find((e) => e.event === 'pusher:ping').length >= 1, 'expected at least one server ping');
    assert.equal(raw.find((e) => e.kind === 'close' || e.event === 'pusher:error').length, 0, `saw:\n${raw.describe()}`);
    assert.ok(raw.isOpen);
  });

  scenario(server, 'a stale presence member is removed; pusher-js members beside it stay', async () => {
    const name = `presence-${uniq('Rooms.')}`;
    const sdk = nodeSdk(server);
    const watcher = makePusher('watcher (pusher-js)', server, { user: { id: '1', info: { name: 'W' } } });
    watcher.subscribe(name);
    await watcher.subscribed(name);
    const raw = RawClient.connect('raw (stale member)', server);
    const { socket_id: socketId } = await raw.established();
    const { auth, channel_data: channelData } = sdk.authorizeChannel(socketId, name, { user_id: '9', user_info: {} });
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth, channel_data: channelData } });
    await watcher.channelEvent(name, 'pusher:member_added');
    const removed = await watcher.channelEvent(name, 'pusher:member_removed', { timeout: 6000 });
    assert.equal(removed.data.id, '9');
    await raw.closeEvent();
    assert.equal(watcher.state, 'connected', 'pusher-js answers server pings and must stay connected');
    assert.equal(
      watcher.find((e) => e.kind === 'state' && e.current !== 'connected' && e.index > 0 && e.previous === 'connected').length,
      0,
      `watcher expected no reconnect, saw:\n${watcher.describe()}`,
    );
  });
});
