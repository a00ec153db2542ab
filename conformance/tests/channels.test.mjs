// Channel kinds through pusher-js: public, private, presence,
// private-encrypted, cache; failed authorization; client events.
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import {
  APP,
  useServer,
  RawClient,
  makePusher,
  pusherPair,
  nodeSdk,
  pythonSdk,
  sdkJson,
  scenario,
  uniq,
} from '../lib/harness.mjs';

let sdk;
const server = useServer({}, (s) => {
  sdk = nodeSdk(s);
});

const trigger = (channels, event, data, params) =>
  sdkJson(sdk.trigger(channels, event, data, params), `trigger ${event} on ${channels}`);

const isPusherError = (code) => (e) =>
  (e.kind === 'message' && e.event === 'pusher:error' && (code === undefined || e.data?.code === code));

describe('public channel', () => {
  scenario(server, 'subscribe, receive an SDK event with the data intact', async () => {
    const name = uniq('news.');
    const alice = makePusher('alice', server);
    alice.subscribe(name);
    const ok = await alice.subscribed(name);
    assert.deepEqual(ok.data, {}, `subscription_succeeded data expected {} (from "{}"), saw ${JSON.stringify(ok.data)}`);

    const payload = { headline: 'Hello', n: 1, nested: { ok: true }, text: 'äöü / \\ "q"' };
    assert.deepEqual(await trigger(name, 'article', payload), {});
    const got = await alice.channelEvent(name, 'article');
    assert.deepEqual(got.data, payload, 'alice expected the triggered payload unchanged');
    const raw = await alice.rawFrame(name, 'article');
    assert.equal(raw.frame.data, JSON.stringify(payload), 'raw frame data expected to be the exact string sent by the SDK');
  });

  scenario(server, 'unsubscribe stops delivery', async () => {
    const name = uniq('news.');
    const alice = makePusher('alice', server);
    alice.subscribe(name);
    await alice.subscribed(name);
    alice.pusher.unsubscribe(name);
    // Frames are handled in order: once the pong is back, the unsubscribe was processed.
    const since = alice.mark();
    alice.pusher.send_event('pusher:ping', {});
    await alice.waitFor((e) => e.kind === 'message' && e.event === 'pusher:pong', { since, what: 'pusher:pong' });
    await trigger(name, 'late', { n: 2 });
    await alice.expectNone((e) => e.kind === 'raw' && e.frame?.event === 'late', {
      since,
      within: 800,
      what: 'no event after unsubscribe',
    });
  });
});

describe('private channel', () => {
  scenario(server, 'authorized subscribe receives events; a second subscriber too', async () => {
    const name = `private-${uniq('Rooms.')}`;
    const alice = makePusher('alice', server);
    const bob = makePusher('bob', server);
    alice.subscribe(name);
    bob.subscribe(name);
    await alice.subscribed(name);
    await bob.subscribed(name);
    await trigger(name, 'App\\Events\\Ping', { ping: 1 });
    assert.deepEqual((await alice.channelEvent(name, 'App\\Events\\Ping')).data, { ping: 1 });
    assert.deepEqual((await bob.channelEvent(name, 'App\\Events\\Ping')).data, { ping: 1 });
  });

  scenario(server, 'bad signature: pusher:error 4009, no subscription, no events, connection kept', async () => {
    const name = `private-${uniq('Rooms.')}`;
    const eve = makePusher('eve (wrong secret)', server, { secret: 'not-the-app-secret-00' });
    const ch = eve.subscribe(name);
    const err = await eve.waitFor(isPusherError(), { what: 'pusher:error after a badly signed subscribe' });
    assert.equal(err.data.code, 4009, `eve expected code 4009, saw ${JSON.stringify(err.data)}`);
    assert.equal(err.data.message, 'Connection is unauthorized');
    // pusher-js surfaces it as a connection "error" event of type PusherError.
    const surfaced = await eve.waitFor((e) => e.kind === 'error' && e.error?.type === 'PusherError', {
      what: 'a connection "error" event of type PusherError',
    });
    assert.equal(surfaced.error.data.code, 4009);

    await trigger(name, 'secret', { s: 1 });
    await eve.expectNone((e) => (e.kind === 'channel' || e.kind === 'message') && e.event === 'secret', {
      within: 800,
      what: 'no event on a channel it failed to join',
    });
    assert.equal(ch.subscribed, false, 'eve\'s channel must not be marked subscribed');
    assert.equal(
      eve.find((e) => e.event === 'pusher_internal:subscription_succeeded').length,
      0,
      'eve must not get subscription_succeeded',
    );
    assert.equal(eve.state, 'connected', `eve expected to stay connected, saw state ${eve.state}`);

    // The connection is still usable.
    const pub = uniq('after-failure.');
    eve.subscribe(pub);
    await eve.subscribed(pub);
  });

  scenario(server, 'presence with a bad signature is refused the same way', async () => {
    const name = `presence-${uniq('Rooms.')}`;
    const eve = makePusher('eve (wrong secret)', server, {
      secret: 'not-the-app-secret-00',
      user: { id: '666', info: { name: 'Eve' } },
    });
    const watcher = makePusher('watcher', server, { user: { id: '1', info: { name: 'W' } } });
    watcher.subscribe(name);
    await watcher.subscribed(name);
    eve.subscribe(name);
    const err = await eve.waitFor(isPusherError(), { what: 'pusher:error' });
    assert.equal(err.data.code, 4009, `eve expected code 4009, saw ${JSON.stringify(err.data)}`);
    await watcher.expectNone((e) => e.kind === 'channel' && e.event === 'pusher:member_added', {
      within: 500,
      what: 'no member_added for a refused member',
    });
  });
});

describe('presence channel', () => {
  scenario(server, 'members list, member_added and member_removed', async () => {
    const name = `presence-${uniq('Rooms.')}`;
    const alice = makePusher('alice', server, { user: { id: '1', info: { id: 1, name: 'Alice' } } });
    const chA = alice.subscribe(name);
    await alice.subscribed(name);
    assert.equal(chA.members.count, 1, 'alice alone: count 1');
    assert.deepEqual(chA.members.me, { id: '1', info: { id: 1, name: 'Alice' } });

    const bob = makePusher('bob', server, { user: { id: '2', info: { id: 2, name: 'Bob' } } });
    const chB = bob.subscribe(name);
    await bob.subscribed(name);
    assert.equal(chB.members.count, 2, 'bob expected count 2');
    const seen = {};
    chB.members.each((m) => (seen[m.id] = m.info));
    assert.deepEqual(seen, { 1: { id: 1, name: 'Alice' }, 2: { id: 2, name: 'Bob' } });

    const added = await alice.channelEvent(name, 'pusher:member_added');
    assert.deepEqual(added.data, { id: '2', info: { id: 2, name: 'Bob' } });
    assert.equal(bob.find((e) => e.event === 'pusher:member_added').length, 0, 'bob must not see his own member_added');

    const since = alice.mark();
    bob.disconnect();
    const removed = await alice.channelEvent(name, 'pusher:member_removed', { since });
    assert.equal(removed.data.id, '2');
    assert.equal(chA.members.count, 1);
  });

  scenario(server, 'user_id 5 and "5" are one member; re-subscribing adds no duplicate', async () => {
    const name = `presence-${uniq('Rooms.')}`;
    const watcher = makePusher('watcher', server, { user: { id: '1', info: { name: 'W' } } });
    const chW = watcher.subscribe(name);
    await watcher.subscribed(name);
    const since = watcher.mark();
    // Raw sockets with the Node SDK's signatures; the data is sent as a JSON string [S] here.
    const join = async (label, userId) => {
      const raw = RawClient.connect(label, server);
      const { socket_id: socketId } = await raw.established();
      const { auth, channel_data: channelData } = sdk.authorizeChannel(socketId, name, { user_id: userId, user_info: { n: label } });
      const subscribe = () =>
        raw.send({ event: 'pusher:subscribe', data: JSON.stringify({ channel: name, auth, channel_data: channelData }) });
      subscribe();
      await raw.event('pusher_internal:subscription_succeeded');
      return { raw, subscribe };
    };
    const numeric = await join('raw (user_id 5)', 5);
    await watcher.channelEvent(name, 'pusher:member_added', { since });
    const second = await join('raw (user_id "5")', '5');
    assert.equal(second.raw.find((e) => e.event === 'pusher_internal:subscription_succeeded')[0].data.presence.count, 2);
    const mark = numeric.raw.mark();
    numeric.subscribe();
    await numeric.raw.event('pusher_internal:subscription_succeeded', { since: mark });
    await watcher.expectNone((e) => e.kind === 'channel' && e.event === 'pusher:member_added', {
      since: watcher.find((e) => e.event === 'pusher:member_added', since)[0].index + 1,
      within: 400,
      what: 'exactly one member_added for user 5',
    });
    assert.equal(chW.members.count, 2, `watcher expected 2 members (1 and 5), saw ${chW.members.count}`);
    const users = await sdkJson(sdk.get({ path: `/channels/${name}/users` }), 'GET users');
    assert.deepEqual(users.users.map((u) => String(u.id)).sort(), ['1', '5']);
    numeric.raw.disconnect();
    await watcher.expectNone((e) => e.kind === 'channel' && e.event === 'pusher:member_removed', {
      since,
      within: 500,
      what: 'no member_removed while user 5 still has a connection',
    });
    second.raw.disconnect();
    const removed = await watcher.channelEvent(name, 'pusher:member_removed', { since });
    assert.equal(String(removed.data.id), '5');
  });

  scenario(server, 'client events on presence carry the sender user_id and skip the sender', async () => {
    const name = `presence-${uniq('Rooms.')}`;
    const alice = makePusher('alice', server, { user: { id: '1', info: { name: 'Alice' } } });
    const bob = makePusher('bob', server, { user: { id: '2', info: { name: 'Bob' } } });
    const chA = alice.subscribe(name);
    const chB = bob.subscribe(name);
    // pusher-js passes the sender's user_id as metadata to channel.bind callbacks.
    chB.bind('client-typing', (data, metadata) => bob.push({ kind: 'bound', data, metadata }));
    await alice.subscribed(name);
    await bob.subscribed(name);
    chA.trigger('client-typing', { name: 'Alice' });
    const got = await bob.waitFor((e) => e.kind === 'bound', { what: 'client-typing via channel.bind' });
    assert.deepEqual(got.data, { name: 'Alice' });
    assert.equal(got.metadata?.user_id, '1', `bob expected metadata.user_id "1", saw ${JSON.stringify(got.metadata)}`);
    const raw = await bob.rawFrame(name, 'client-typing');
    assert.equal(raw.frame.user_id, '1', `raw frame expected user_id "1", saw ${raw.text}`);
    await alice.expectNone((e) => e.kind === 'channel' && e.event === 'client-typing', {
      within: 500,
      what: 'no echo of its own client event',
    });
  });
});

describe('private-encrypted channel', () => {
  scenario(server, 'Node SDK encrypts, pusher-js decrypts; the server only sees ciphertext', async () => {
    const name = `private-encrypted-${uniq('vault.')}`;
    const alice = makePusher('alice', server);
    alice.subscribe(name);
    await alice.subscribed(name);
    const secret = { message: 'secret', n: 42 };
    await trigger(name, 'sealed', secret);
    const got = await alice.channelEvent(name, 'sealed');
    assert.deepEqual(got.data, secret, 'alice expected the decrypted payload');
    const raw = await alice.rawFrame(name, 'sealed');
    const wire = JSON.parse(raw.frame.data);
    assert.deepEqual(Object.keys(wire).sort(), ['ciphertext', 'nonce'], `wire data expected nonce+ciphertext, saw ${raw.text}`);
    assert.ok(!raw.text.includes('secret'), 'plaintext must not be on the wire');
  });

  scenario(server, 'Python SDK encrypts too, pusher-js decrypts', async () => {
    const name = `private-encrypted-${uniq('vault.')}`;
    const alice = makePusher('alice', server);
    alice.subscribe(name);
    await alice.subscribed(name);
    const result = await pythonSdk(server, 'trigger', { channels: [name], event: 'sealed', data: { from: 'python' } });
    assert.deepEqual(result, {});
    const got = await alice.channelEvent(name, 'sealed');
    assert.deepEqual(got.data, { from: 'python' });
  });

  scenario(server, 'client events on an encrypted channel are refused by the server', async () => {
    const name = `private-encrypted-${uniq('vault.')}`;
    // pusher-js refuses to send these itself, so use raw sockets with SDK signatures.
    const a = RawClient.connect('raw-a', server);
    const b = RawClient.connect('raw-b', server);
    const idA = (await a.established()).socket_id;
    const idB = (await b.established()).socket_id;
    for (const [c, id] of [[a, idA], [b, idB]]) {
      c.send({ event: 'pusher:subscribe', data: { channel: name, auth: sdk.authorizeChannel(id, name).auth } });
      await c.event('pusher_internal:subscription_succeeded', { where: (e) => e.channel === name });
    }
    const since = a.mark();
    a.send({ event: 'client-leak', channel: name, data: { x: 1 } });
    const err = await a.event('pusher:error', { since });
    assert.ok(err.data && typeof err.data.code === 'number', `raw-a expected a pusher:error with a code, saw ${err.text}`);
    await b.expectNone((e) => e.kind === 'frame' && e.event === 'client-leak', {
      within: 500,
      what: 'no relayed client event on an encrypted channel',
    });
    assert.ok(a.isOpen, 'raw-a expected to stay connected');
  });
});

describe('cache channels', () => {
  for (const prefix of ['cache-', 'private-cache-', 'presence-cache-']) {
    scenario(server, `${prefix}: cache_miss on an empty cache, then the last event is replayed to late joiners`, async () => {
      const name = `${prefix}${uniq('ticker.')}`;
      let uid = 0;
      const user = () => ({ id: String(++uid), info: { n: uid } });
      const first = makePusher('first', server, { user: user() });
      first.subscribe(name);
      await first.subscribed(name);
      await first.channelEvent(name, 'pusher:cache_miss');

      await trigger(name, 'tick', { v: 1 });
      await first.channelEvent(name, 'tick');
      await trigger(name, 'tick', { v: 2 });
      await first.channelEvent(name, 'tick', { where: (e) => e.data.v === 2 });

      const late = makePusher('late joiner', server, { user: user() });
      late.subscribe(name);
      await late.subscribed(name);
      const replay = await late.channelEvent(name, 'tick');
      assert.deepEqual(replay.data, { v: 2 }, 'late joiner expected the last cached event');
      assert.equal(late.find((e) => e.event === 'pusher:cache_miss').length, 0, 'no cache_miss when the cache is filled');
      const ok = late.find((e) => e.kind === 'raw' && e.frame?.event === 'pusher_internal:subscription_succeeded')[0];
      assert.ok(ok && ok.index < replay.index, 'replay must come after subscription_succeeded');
      await late.expectNone((e) => e.kind === 'channel' && e.event === 'tick' && e.index !== replay.index, {
        within: 300,
        what: 'exactly one replayed event',
      });
    });
  }

  scenario(server, 'cache- without any event: raw frame is {"event":"pusher:cache_miss","channel":...}', async () => {
    const name = uniq('cache-empty.');
    const raw = RawClient.connect('raw', server);
    await raw.established();
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: '' } });
    await raw.event('pusher_internal:subscription_succeeded');
    const miss = await raw.event('pusher:cache_miss');
    assert.equal(miss.frame.channel, name);
  });
});

describe('client events', () => {
  scenario(server, 'private channel: relayed to the others, not to the sender', async () => {
    const name = `private-${uniq('Rooms.')}`;
    const alice = makePusher('alice', server);
    const bob = makePusher('bob', server);
    const carol = makePusher('carol', server);
    const chA = alice.subscribe(name);
    for (const c of [alice, bob, carol]) {
      if (c !== alice) c.subscribe(name);
      await c.subscribed(name);
    }
    chA.trigger('client-typing', { name: 'Alice' });
    for (const c of [bob, carol]) {
      const got = await c.channelEvent(name, 'client-typing');
      assert.deepEqual(got.data, { name: 'Alice' }, `${c.name} expected alice's whisper data`);
    }
    await alice.expectNone((e) => e.kind === 'channel' && e.event === 'client-typing', {
      within: 500,
      what: 'no echo of its own client event',
    });
  });

  scenario(server, 'public channel: client event relayed to the other subscribers, as Reverb does', async () => {
    const name = uniq('public-room.');
    const { a: alice, b: bob, channelA: chA } = await pusherPair(server, name);
    chA.trigger('client-typing', { name: 'Alice' });
    const got = await bob.channelEvent(name, 'client-typing');
    assert.deepEqual(got.data, { name: 'Alice' });
    await alice.expectNone((e) => e.kind === 'channel' && e.event === 'client-typing', {
      within: 400,
      what: 'no echo of its own client event',
    });
    assert.equal(alice.state, 'connected');
  });

  scenario(server, 'client event on a channel the sender has not joined: pusher:error 4009, not relayed', async () => {
    const name = `private-${uniq('Rooms.')}`;
    const bob = makePusher('bob', server);
    bob.subscribe(name);
    await bob.subscribed(name);
    const raw = RawClient.connect('raw outsider', server);
    await raw.established();
    raw.send({ event: 'client-typing', channel: name, data: { x: 1 } });
    const err = await raw.event('pusher:error');
    assert.equal(err.data.code, 4009, `outsider expected 4009, saw ${err.text}`);
    await bob.expectNone((e) => e.kind === 'channel' && e.event === 'client-typing', { within: 300 });
    assert.ok(raw.isOpen);
  });
});

describe('authorization strings from other SDKs', () => {
  scenario(server, 'presence auth produced by the Python SDK (spaces in channel_data) is accepted', async () => {
    const name = `presence-${uniq('Rooms.')}`;
    const raw = RawClient.connect('raw (python-signed)', server);
    const { socket_id: socketId } = await raw.established();
    const auth = await pythonSdk(server, 'authorize', {
      channel: name,
      socket_id: socketId,
      custom_data: { user_id: '7', user_info: { name: 'Py' } },
    });
    assert.match(auth.channel_data, /": "/, 'Python SDK channel_data expected with spaces');
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: auth.auth, channel_data: auth.channel_data } });
    const ok = await raw.event('pusher_internal:subscription_succeeded');
    assert.deepEqual(ok.data.presence.ids.map(String), ['7']);
    assert.deepEqual(ok.data.presence.hash['7'], { name: 'Py' });
  });

  scenario(server, 'a PHP-style channel_data with escaped slashes is verified byte-for-byte', async () => {
    const name = `presence-${uniq('Rooms.')}`;
    const raw = RawClient.connect('raw (php-style)', server);
    const { socket_id: socketId } = await raw.established();
    const channelData = '{"user_id":"7","user_info":{"avatar":"https:\\/\\/example.com\\/a.png"}}';
    // The Node SDK's authorizeChannel would re-serialize; sign the exact string as the PHP SDK does.
    const sig = createHmac('sha256', APP.secret).update(`${socketId}:${name}:${channelData}`).digest('hex');
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: `${APP.key}:${sig}`, channel_data: channelData } });
    const ok = await raw.event('pusher_internal:subscription_succeeded');
    assert.deepEqual(ok.data.presence.hash['7'], { avatar: 'https://example.com/a.png' });
  });
});
