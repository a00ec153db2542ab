// Backend side: the Pusher HTTP API through the Node SDK 5 and the Python SDK 3.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import {
  APP,
  useServer,
  RawClient,
  PusherSdk,
  makePusher,
  nodeSdk,
  pythonSdk,
  sdkJson,
  scenario,
  sleep,
  uniq,
} from '../lib/harness.mjs';

let sdk;
const server = useServer({}, (s) => {
  sdk = nodeSdk(s);
});

// Both SDKs behind one interface, so every case runs through each of them.
const SDKS = {
  node: {
    trigger: (channels, event, data, socketId) =>
      sdkJson(sdk.trigger(channels, event, data, socketId ? { socket_id: socketId } : undefined), `trigger ${event}`),
    batch: (batch) => sdkJson(sdk.triggerBatch(batch), 'triggerBatch'),
    channels: (prefix, attributes = []) =>
      sdkJson(
        sdk.get({
          path: '/channels',
          params: { filter_by_prefix: prefix, ...(attributes.length ? { info: attributes.join(',') } : {}) },
        }),
        `GET /channels?filter_by_prefix=${prefix}`,
      ),
    channel: (name, attributes = []) =>
      sdkJson(
        sdk.get({ path: `/channels/${name}`, params: attributes.length ? { info: attributes.join(',') } : {} }),
        `GET /channels/${name}`,
      ),
    users: (name) => sdkJson(sdk.get({ path: `/channels/${name}/users` }), `GET /channels/${name}/users`),
  },
  python: {
    trigger: (channels, event, data, socketId) =>
      pythonSdk(server, 'trigger', { channels, event, data, socket_id: socketId }),
    batch: (batch) => pythonSdk(server, 'trigger_batch', { batch }),
    channels: (prefix, attributes = []) => pythonSdk(server, 'channels_info', { prefix_filter: prefix, attributes }),
    channel: (name, attributes = []) => pythonSdk(server, 'channel_info', { channel: name, attributes }),
    users: (name) => pythonSdk(server, 'users_info', { channel: name }),
  },
};

/** Connect `n` pusher-js clients to `channel` (presence users get ids 1..n). */
async function members(channel, n, label) {
  const clients = [];
  for (let i = 1; i <= n; i++) {
    const c = makePusher(`${label}${i}`, server, { user: { id: String(i), info: { name: `U${i}` } } });
    c.subscribe(channel);
    clients.push(c);
  }
  for (const c of clients) await c.subscribed(channel);
  return clients;
}

/** Poll an API call until `check` passes (server state settles asynchronously after disconnects). */
async function eventually(call, check, { timeout = 3000, what }) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await call();
    try {
      check(last);
      return last;
    } catch (e) {
      if (Date.now() > deadline) {
        e.message = `${what}: ${e.message} (last response ${JSON.stringify(last)})`;
        throw e;
      }
    }
    await sleep(100);
  }
}

for (const [sdkName, api] of Object.entries(SDKS)) {
  describe(`${sdkName} SDK`, () => {
    scenario(server, 'trigger to several channels at once reaches each channel', async () => {
      const tag = uniq('multi');
      const names = [`${tag}.public`, `private-${tag}.room`, `presence-${tag}.lobby`];
      const alice = makePusher('alice', server, { user: { id: '1', info: {} } });
      for (const n of names) alice.subscribe(n);
      for (const n of names) await alice.subscribed(n);
      const res = await api.trigger(names, 'fanout', JSON.stringify({ via: sdkName }));
      assert.deepEqual(res, {}, `${sdkName}: events endpoint expected {}, saw ${JSON.stringify(res)}`);
      for (const n of names) {
        const got = await alice.channelEvent(n, 'fanout');
        assert.deepEqual(got.data, { via: sdkName }, `alice expected the event on ${n}`);
      }
    });

    scenario(server, 'data is forwarded verbatim, even when it is not JSON', async () => {
      const name = uniq('verbatim.');
      const alice = makePusher('alice', server);
      alice.subscribe(name);
      await alice.subscribed(name);
      const payloads = ['plain text, not JSON', '{"url":"https:\\/\\/example.com\\/x","u":"\\u00e9"}'];
      for (const p of payloads) {
        const since = alice.mark();
        await api.trigger([name], 'verbatim', p);
        const raw = await alice.rawFrame(name, 'verbatim', { since });
        assert.equal(raw.frame.data, p, `alice expected data byte-identical to what ${sdkName} sent`);
      }
    });

    scenario(server, 'batch trigger delivers every item and answers {"batch":{}}', async () => {
      const tag = uniq('batch');
      const a = `${tag}.a`;
      const b = `private-${tag}.b`;
      const alice = makePusher('alice', server);
      alice.subscribe(a);
      alice.subscribe(b);
      await alice.subscribed(a);
      await alice.subscribed(b);
      const res = await api.batch([
        { channel: a, name: 'first', data: JSON.stringify({ i: 1 }) },
        { channel: b, name: 'second', data: JSON.stringify({ i: 2 }) },
        { channel: a, name: 'third', data: JSON.stringify({ i: 3 }) },
      ]);
      assert.deepEqual(res, { batch: {} }, `${sdkName}: batch endpoint expected {"batch":{}}, saw ${JSON.stringify(res)}`);
      assert.deepEqual((await alice.channelEvent(a, 'first')).data, { i: 1 });
      assert.deepEqual((await alice.channelEvent(b, 'second')).data, { i: 2 });
      assert.deepEqual((await alice.channelEvent(a, 'third')).data, { i: 3 });
      const order = alice.find((e) => e.kind === 'channel' && ['first', 'second', 'third'].includes(e.event)).map((e) => e.event);
      assert.deepEqual(order, ['first', 'second', 'third'], 'batch items expected in request order');
    });

    scenario(server, 'socket_id excludes the sender (toOthers)', async () => {
      const name = `private-${uniq('others.')}`;
      const [sender, other] = await members(name, 2, 'client');
      const res = await api.trigger([name], 'App\\Events\\Said', JSON.stringify({ text: 'hi' }), sender.socketId);
      assert.deepEqual(res, {});
      assert.deepEqual((await other.channelEvent(name, 'App\\Events\\Said')).data, { text: 'hi' });
      await sender.expectNone((e) => e.kind === 'channel' && e.event === 'App\\Events\\Said', {
        within: 500,
        what: 'no event for the excluded socket',
      });
    });

    scenario(server, 'channel list with prefix filter and user_count', async () => {
      const tag = uniq('list');
      const lobby = `presence-${tag}.lobby`;
      const hall = `presence-${tag}.hall`;
      await members(lobby, 3, 'lobby');
      await members(hall, 1, 'hall');
      const priv = `private-${tag}.room`;
      await members(priv, 2, 'priv');

      const presence = await api.channels(`presence-${tag}`, ['user_count']);
      assert.deepEqual(
        presence,
        { channels: { [lobby]: { user_count: 3 }, [hall]: { user_count: 1 } } },
        `${sdkName}: presence list`,
      );
      const privates = await api.channels(`private-${tag}`);
      assert.deepEqual(privates, { channels: { [priv]: {} } }, `${sdkName}: private list without info`);
      const none = await api.channels(`presence-${tag}-nothing-here`);
      assert.deepEqual(none, { channels: {} }, `${sdkName}: empty list must be {"channels":{}} (an object, not [])`);
    });

    scenario(server, 'channel info: occupied, subscription_count, user_count', async () => {
      const tag = uniq('info');
      const pub = `${tag}.pub`;
      const pres = `presence-${tag}.pres`;
      await members(pub, 2, 'pub');
      await members(pres, 2, 'pres');
      const a = await api.channel(pub, ['subscription_count']);
      assert.deepEqual(a, { occupied: true, subscription_count: 2 }, `${sdkName}: public channel info`);
      const b = await api.channel(pres, ['user_count']);
      assert.deepEqual(b, { occupied: true, user_count: 2 }, `${sdkName}: presence channel info`);
      const c = await api.channel(`${tag}.nobody`);
      assert.deepEqual(c, { occupied: false }, `${sdkName}: empty channel`);
    });

    scenario(server, 'presence users', async () => {
      const name = `presence-${uniq('users.')}`;
      const clients = await members(name, 3, 'member');
      const res = await api.users(name);
      assert.deepEqual(
        res.users.map((u) => String(u.id)).sort(),
        ['1', '2', '3'],
        `${sdkName}: users expected ids 1,2,3, saw ${JSON.stringify(res)}`,
      );
      for (const u of res.users) assert.deepEqual(Object.keys(u), ['id'], 'each user is {"id":...}');
      clients[1].disconnect();
      await eventually(
        () => api.users(name),
        (r) => assert.deepEqual(r.users.map((u) => String(u.id)).sort(), ['1', '3']),
        { what: `${sdkName}: users after member 2 left` },
      );
    });
  });
}

describe('HTTP API details', () => {
  scenario(server, '/connections counts every open connection, subscribed or not', async () => {
    const count = async () => (await sdkJson(sdk.get({ path: '/connections' }), 'GET /connections')).connections;
    await eventually(count, (n) => assert.equal(n, 0), { what: 'no connections left from earlier tests', timeout: 5000 });
    const raws = [RawClient.connect('raw1', server), RawClient.connect('raw2', server)];
    for (const r of raws) await r.established();
    const p = makePusher('subscribed', server);
    const name = uniq('counted.');
    p.subscribe(name);
    await p.subscribed(name);
    await eventually(count, (n) => assert.equal(n, 3), { what: 'GET /connections with 2 idle + 1 subscribed' });
  });

  scenario(server, 'trigger and batch with info report user_count / subscription_count (Node SDK)', async () => {
    const tag = uniq('info');
    const pres = `presence-${tag}.lobby`;
    const pub = `${tag}.news`;
    await members(pres, 2, 'pres');
    await members(pub, 3, 'pub');
    const res = await sdkJson(
      sdk.trigger([pres, pub], 'counted', { x: 1 }, { info: 'user_count,subscription_count' }),
      'trigger with info',
    );
    assert.deepEqual(res, { channels: { [pres]: { user_count: 2 }, [pub]: { subscription_count: 3 } } });
    const batch = await sdkJson(
      sdk.triggerBatch([
        { channel: pres, name: 'a', data: '{}', info: 'user_count' },
        { channel: pub, name: 'b', data: '{}' },
      ]),
      'triggerBatch with info',
    );
    assert.deepEqual(batch, { batch: [{ user_count: 2 }, {}] });
  });

  scenario(server, "Laravel's request shape (single `channel`, socket_id, PHP-escaped data) via the Node SDK's post()", async () => {
    // pusher-php-server sends `channel` (not `channels`) for one channel; the
    // Node SDK's generic post() signs any body, so it can send that shape.
    const slug = uniq('room-');
    const name = `private-Rooms.${slug}`;
    const [sender, other] = await members(name, 2, 'member');
    const data = `{"message":"Hello","url":"https:\\/\\/example.com\\/a.png","name":"J\\u00fcrgen","slug":"${slug}"}`;
    const res = await sdkJson(
      sdk.post({
        path: '/events',
        body: { name: 'App\\Events\\RoomMessageEvent', data, channel: name, socket_id: sender.socketId },
      }),
      'POST /events (PHP shape)',
    );
    assert.deepEqual(res, {});
    const raw = await other.rawFrame(name, 'App\\Events\\RoomMessageEvent');
    assert.equal(raw.frame.data, data, 'data expected verbatim, PHP escapes included');
    await sender.expectNone((e) => e.kind === 'raw' && e.frame?.event === 'App\\Events\\RoomMessageEvent', {
      within: 400,
      what: 'nothing for the socket_id of the sender',
    });
  });

  scenario(server, 'invalid requests: 413 for a body over 10 000 bytes, 400 for bad fields', async () => {
    const status = async (promise) => {
      try {
        return (await promise).status;
      } catch (e) {
        if (e.status === undefined) throw e;
        return e.status;
      }
    };
    const post = (body) => status(sdk.post({ path: '/events', body }));
    assert.equal(await post({ name: 'x', data: 'x'.repeat(12000), channels: ['a'] }), 413, 'oversized request');
    const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
    assert.equal(await post({ name: 'x', data: '{}', channels: many }), 400, '101 channels');
    assert.equal(await post({ name: 'x'.repeat(201), data: '{}', channels: ['a'] }), 400, 'event name over 200 chars');
    assert.equal(await post({ name: 'x', channels: ['a'] }), 400, 'missing data');
    assert.equal(await post({ name: 'x', data: '{}', channels: ['a'], socket_id: 'abc' }), 400, 'malformed socket_id');
    assert.equal(await status(sdk.get({ path: `/channels/private-${uniq('x')}/users` })), 400, 'users of a non-presence channel');
  });

  scenario(server, 'a request signed with the wrong secret is refused with 401', async () => {
    const bad = new PusherSdk({
      appId: APP.id,
      key: APP.key,
      secret: 'not-the-app-secret-00',
      host: '127.0.0.1',
      port: String(server.port),
      useTLS: false,
    });
    let status;
    try {
      await bad.trigger('anything', 'x', {});
    } catch (e) {
      status = e.status;
    }
    assert.equal(status, 401, `Node SDK with a wrong secret expected HTTP 401, saw ${status}`);
  });

  scenario(server, 'unknown app id answers 404', async () => {
    const other = new PusherSdk({
      appId: '999999',
      key: APP.key,
      secret: APP.secret,
      host: '127.0.0.1',
      port: String(server.port),
      useTLS: false,
    });
    let status;
    try {
      await other.trigger('anything', 'x', {});
    } catch (e) {
      status = e.status;
    }
    assert.equal(status, 404, `expected HTTP 404 for an unknown app id, saw ${status}`);
  });
});
