// Malformed input from one raw client must not disturb anybody else.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { useServer, RawClient, makeEcho, nodeSdk, sdkJson, scenario, uniq } from '../lib/harness.mjs';

const server = useServer();

const MALFORMED = [
  ['wrong type for event', '{"event":123,"data":{}}'],
  ['missing event', '{"data":{"channel":"x"}}'],
  ['JSON array', '[1,2,3]'],
  ['JSON null', 'null'],
  ['JSON string', '"pusher:ping"'],
  ['subscribe with numeric channel', '{"event":"pusher:subscribe","data":{"channel":42}}'],
  ['subscribe with non-JSON string data', '{"event":"pusher:subscribe","data":"not json"}'],
  ['subscribe without data', '{"event":"pusher:subscribe"}'],
  ['presence subscribe with object channel_data', '{"event":"pusher:subscribe","data":{"channel":"presence-x","auth":"a:b","channel_data":{"user_id":"1"}}}'],
  ['unsubscribe from a channel never joined', '{"event":"pusher:unsubscribe","data":{"channel":"never-joined"}}'],
  ['unknown pusher: event', '{"event":"pusher:bogus","data":{}}'],
  ['unknown pusher_internal: event', '{"event":"pusher_internal:member_added","channel":"presence-x","data":"{}"}'],
  ['client event with array channel', '{"event":"client-x","channel":["a"],"data":{}}'],
  ['client event without channel', '{"event":"client-x","data":{}}'],
  ['non-client event name', '{"event":"App\\\\Events\\\\Forged","channel":"x","data":{}}'],
  ['empty object', '{}'],
];

describe('robustness', () => {
  scenario(server, 'malformed frames get errors, the raw client stays open, an Echo client beside it is undisturbed', async () => {
    const slug = uniq('room-');
    const alice = makeEcho('alice (Echo)', server, { user: { id: '1', info: { name: 'Alice' } } });
    alice.echo.private(`Rooms.${slug}`).listen('RoomMessageEvent', (e) => alice.push({ kind: 'echo', what: 'message', data: e }));
    await alice.subscribed(`private-Rooms.${slug}`);
    const aliceMark = alice.mark();

    const raw = RawClient.connect('raw (malformed)', server);
    await raw.established();

    // Invalid JSON: pusher:error 4200, connection kept.
    let since = raw.mark();
    raw.send('{"event":"pusher:subscribe",');
    const err = await raw.event('pusher:error', { since });
    assert.equal(err.data.code, 4200, `raw client expected pusher:error 4200 for invalid JSON, saw ${err.text}`);
    assert.equal(typeof err.frame.data, 'string', 'pusher:error data expected as a JSON string');
    assert.ok(raw.isOpen, 'raw client expected to stay open after invalid JSON');

    for (const [label, text] of MALFORMED) {
      since = raw.mark();
      raw.send(text);
      // Every frame must still be answered sanely: ping afterwards, expect pong.
      raw.send({ event: 'pusher:ping', data: {} });
      await raw.event('pusher:pong', { since, what: `pusher:pong after "${label}"` }).catch((e) => {
        e.message = `after sending ${label} (${text}): ${e.message}`;
        throw e;
      });
      assert.ok(raw.isOpen, `raw client expected to stay open after ${label}`);
      for (const f of raw.find((e) => e.kind === 'frame', since)) {
        assert.equal(typeof f.event, 'string', `every server frame needs a string event; after ${label} saw ${f.text}`);
        assert.ok(!f.event.startsWith('App'), `a forged event must not come back; after ${label} saw ${f.text}`);
      }
    }

    // A huge frame (> 10 000 bytes) on another raw socket: closed with 1009, nobody else affected.
    const big = RawClient.connect('raw (huge frame)', server);
    await big.established();
    big.send({ event: 'client-big', channel: `private-Rooms.${slug}`, data: { blob: 'x'.repeat(20000) } });
    const closed = await big.closeEvent();
    assert.equal(closed.code, 1009, `huge-frame client expected close code 1009, saw ${closed.code} "${closed.reason}"`);

    // The raw client is still usable.
    since = raw.mark();
    raw.send({ event: 'pusher:subscribe', data: { channel: `public-${slug}` } });
    await raw.event('pusher_internal:subscription_succeeded', { since });

    // Alice never noticed anything and still receives events.
    const sdk = nodeSdk(server);
    await sdkJson(sdk.trigger(`private-Rooms.${slug}`, 'App\\Events\\RoomMessageEvent', { still: 'here' }), 'trigger');
    const got = await alice.waitFor((e) => e.kind === 'echo' && e.what === 'message', {
      since: aliceMark,
      what: 'RoomMessageEvent after the malformed traffic',
    });
    assert.deepEqual(got.data, { still: 'here' });
    assert.equal(alice.echo.connector.pusher.connection.state, 'connected');
    const changes = alice.find((e) => e.kind === 'state' || e.kind === 'error' || e.event === 'pusher:error', aliceMark);
    assert.equal(changes.length, 0, `alice expected no state change or error, saw:\n${alice.describe(aliceMark)}`);
    const leaked = alice.find((e) => e.kind === 'raw' && e.frame?.event !== 'App\\Events\\RoomMessageEvent', aliceMark);
    assert.equal(leaked.length, 0, `alice expected nothing from the malformed traffic, saw:\n${alice.describe(aliceMark)}`);
  });

  scenario(server, 'an oversized whisper from Echo: closed with 1009, pusher-js reconnects and resubscribes', async () => {
    const slug = uniq('room-');
    const channel = `private-Rooms.${slug}`;
    const alice = makeEcho('alice (Echo, huge whisper)', server, { user: { id: '1', info: {} } });
    const bob = makeEcho('bob (Echo)', server, { user: { id: '2', info: {} } });
    for (const c of [alice, bob]) {
      c.echo.private(`Rooms.${slug}`).listen('RoomMessageEvent', (e) => c.push({ kind: 'echo', what: 'message', data: e }));
      c.echo.private(`Rooms.${slug}`).listenForWhisper('typing', (e) => c.push({ kind: 'echo', what: 'typing', data: e }));
      await c.subscribed(channel);
    }
    const since = alice.mark();
    const bobMark = bob.mark();
    alice.echo.private(`Rooms.${slug}`).whisper('typing', { text: 'x'.repeat(20000) });
    const closed = await alice.waitFor((e) => e.kind === 'closed', { since, what: 'the socket to be closed' });
    assert.equal(closed.code, 1009, `alice expected close code 1009, saw ${closed.code} "${closed.reason}"`);
    await alice.connected({ since, timeout: 10000 });
    await alice.subscribed(channel, { since, timeout: 10000 });
    await bob.expectNone((e) => e.kind === 'echo' && e.what === 'typing', { since: bobMark, within: 200 });

    const sdk = nodeSdk(server);
    await sdkJson(sdk.trigger(channel, 'App\\Events\\RoomMessageEvent', { n: 1 }), 'trigger after reconnect');
    for (const c of [alice, bob]) {
      const got = await c.waitFor((e) => e.kind === 'echo' && e.what === 'message', { what: 'RoomMessageEvent' });
      assert.deepEqual(got.data, { n: 1 });
    }
    assert.equal(bob.find((e) => e.kind === 'state', bobMark).length, 0, 'bob was not disturbed');
  });

  scenario(server, 'a binary frame does not kill the server', async () => {
    const raw = RawClient.connect('raw (binary)', server);
    await raw.established();
    raw.ws.send(Buffer.from([0, 1, 2, 3]), { binary: true });
    const again = RawClient.connect('raw (after binary)', server);
    await again.established();
    const res = await fetch(`${server.httpBase}/up`);
    assert.equal(res.status, 200);
  });
});
