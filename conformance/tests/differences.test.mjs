// Places where resound deliberately differs from Reverb (see docs/compatibility.md),
// checked where a client can observe them quickly.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { APP, useServer, RawClient, PusherSdk, makePusher, pusherPair, nodeSdk, sdkJson, scenario, uniq } from '../lib/harness.mjs';

let sdk;
const server = useServer({}, (s) => {
  sdk = nodeSdk(s);
});

async function statusOf(promise) {
  try {
    const res = await promise;
    return res.status;
  } catch (e) {
    if (e.status === undefined) throw e;
    return e.status;
  }
}

describe('deliberate differences from Reverb', () => {
  scenario(server, 'cache channels keep an event published while nobody is subscribed', async () => {
    const name = uniq('cache-quiet.');
    await sdkJson(sdk.trigger(name, 'tick', { v: 'early' }), 'trigger to an empty cache channel');
    const late = makePusher('late joiner', server);
    late.subscribe(name);
    await late.subscribed(name);
    const replay = await late.channelEvent(name, 'tick');
    assert.deepEqual(replay.data, { v: 'early' }, 'late joiner expected the event cached before anyone subscribed');
    assert.equal(late.find((e) => e.event === 'pusher:cache_miss').length, 0);
  });

  scenario(server, 'client events are not cached on cache channels', async () => {
    const name = `private-cache-${uniq('typing.')}`;
    const a = makePusher('a', server);
    const b = makePusher('b', server);
    const chA = a.subscribe(name);
    b.subscribe(name);
    await a.subscribed(name);
    await b.subscribed(name);
    chA.trigger('client-typing', { t: 1 });
    await b.channelEvent(name, 'client-typing');
    const c = makePusher('c', server);
    c.subscribe(name);
    await c.subscribed(name);
    await c.channelEvent(name, 'pusher:cache_miss');
    assert.equal(c.find((e) => e.event === 'client-typing').length, 0, 'a whisper must not be replayed');
  });

  scenario(server, 'a client event on a public cache- channel is relayed (Reverb rule) but not cached', async () => {
    const name = uniq('cache-public.');
    const { b, channelA: chA } = await pusherPair(server, name, ['a', 'b']);
    chA.trigger('client-typing', { t: 1 });
    const got = await b.channelEvent(name, 'client-typing');
    assert.deepEqual(got.data, { t: 1 });
    const c = makePusher('c', server);
    c.subscribe(name);
    await c.subscribed(name);
    await c.channelEvent(name, 'pusher:cache_miss');
    assert.equal(c.find((e) => e.event === 'client-typing').length, 0, 'a client event must not be replayed');
  });

  scenario(server, 'invalid channel names: pusher:error on subscribe (connection kept), 400 from the HTTP API', async () => {
    const raw = RawClient.connect('raw', server);
    await raw.established();
    for (const bad of ['has space', 'bad/slash', 'x'.repeat(201)]) {
      const since = raw.mark();
      raw.send({ event: 'pusher:subscribe', data: { channel: bad, auth: '' } });
      const err = await raw.event('pusher:error', { since });
      assert.ok(err.data, `expected a pusher:error for channel "${bad.slice(0, 20)}", saw ${err.text}`);
      assert.equal(raw.find((e) => e.event === 'pusher_internal:subscription_succeeded', since).length, 0);
      assert.ok(raw.isOpen, 'connection expected to stay open');
    }
    // 200 characters is still fine (the SDK limit).
    const ok = `c${'x'.repeat(199)}`;
    raw.send({ event: 'pusher:subscribe', data: { channel: ok, auth: '' } });
    await raw.event('pusher_internal:subscription_succeeded', { where: (e) => e.channel === ok });

    // The Node SDK's generic post() does not validate names, so it can send a bad one.
    const status = await statusOf(sdk.post({ path: '/events', body: { name: 'x', channels: ['bad name'], data: '{}' } }));
    assert.equal(status, 400, `HTTP API expected 400 for an invalid channel name, saw ${status}`);
  });

  scenario(server, 'HTTP API: wrong auth_key is refused (401) even with the right secret', async () => {
    const wrongKey = new PusherSdk({
      appId: APP.id,
      key: 'aaaaaaaaaaaaaaaaaaaa',
      secret: APP.secret,
      host: '127.0.0.1',
      port: String(server.port),
      useTLS: false,
    });
    const status = await statusOf(wrongKey.trigger('anything', 'x', {}));
    assert.equal(status, 401, `expected 401 for a foreign auth_key, saw ${status}`);
  });

  scenario(server, 'HTTP API: a timestamp more than 600 s off is refused (401)', async () => {
    const realNow = Date.now;
    let promise;
    Date.now = () => realNow() - 3600 * 1000; // the SDK signs synchronously with this clock
    try {
      promise = sdk.trigger('anything', 'x', {});
    } finally {
      Date.now = realNow;
    }
    const status = await statusOf(promise);
    assert.equal(status, 401, `expected 401 for an auth_timestamp one hour old, saw ${status}`);
    const fresh = await statusOf(sdk.trigger('anything', 'x', {}));
    assert.equal(fresh, 200);
  });
});
