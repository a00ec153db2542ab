// Laravel Echo 2 (broadcaster "reverb") against resound.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { useServer, makeEcho, nodeSdk, sdkJson, scenario, uniq } from '../lib/harness.mjs';

let sdk;
const server = useServer({}, (s) => {
  sdk = nodeSdk(s);
});

const user = (id, name) => ({ id: String(id), info: { id, name } });

/** Record an Echo callback into the client's log. */
const into = (client, what) => (payload) => client.push({ kind: 'echo', what, data: payload });
const echoSaw = (client, what, opts = {}) =>
  client.waitFor((e) => e.kind === 'echo' && e.what === what && (opts.where ?? (() => true))(e), {
    what: `Echo callback ${what}`,
    ...opts,
  });

describe('Echo private channels', () => {
  scenario(server, "private('Rooms.x').listen('RoomMessageEvent') receives App\\Events\\RoomMessageEvent", async () => {
    const slug = uniq('room-');
    const alice = makeEcho('alice (Echo)', server, { user: user(1, 'Alice') });
    alice.echo.private(`Rooms.${slug}`).listen('RoomMessageEvent', into(alice, 'RoomMessageEvent'));
    await alice.subscribed(`private-Rooms.${slug}`);

    const body = await sdkJson(
      sdk.trigger(`private-Rooms.${slug}`, 'App\\Events\\RoomMessageEvent', { message: 'Hello', slug }),
      'trigger RoomMessageEvent',
    );
    assert.deepEqual(body, {}, 'events endpoint expected to answer {}');
    const got = await echoSaw(alice, 'RoomMessageEvent');
    assert.deepEqual(got.data, { message: 'Hello', slug });
  });

  scenario(server, "listen('.room.message') binds the name verbatim", async () => {
    const slug = uniq('room-');
    const alice = makeEcho('alice (Echo)', server, { user: user(1, 'Alice') });
    alice.echo.private(`Rooms.${slug}`).listen('.room.message', into(alice, 'room.message'));
    await alice.subscribed(`private-Rooms.${slug}`);
    await sdkJson(sdk.trigger(`private-Rooms.${slug}`, 'room.message', { text: 'hi' }), 'trigger room.message');
    assert.deepEqual((await echoSaw(alice, 'room.message')).data, { text: 'hi' });
  });

  scenario(server, 'public channel via Echo.channel() and toOthers with Echo.socketId()', async () => {
    const name = uniq('Rooms.public.');
    const alice = makeEcho('alice (Echo)', server);
    const bob = makeEcho('bob (Echo)', server);
    alice.echo.channel(name).listen('Announcement', into(alice, 'Announcement'));
    bob.echo.channel(name).listen('Announcement', into(bob, 'Announcement'));
    await alice.subscribed(name);
    await bob.subscribed(name);
    const socketId = alice.echo.socketId();
    await sdkJson(sdk.trigger(name, 'App\\Events\\Announcement', { a: 1 }, { socket_id: socketId }), 'trigger toOthers');
    assert.deepEqual((await echoSaw(bob, 'Announcement')).data, { a: 1 });
    await alice.expectNone((e) => e.kind === 'echo', { within: 500, what: 'nothing for the excluded socket' });
  });

  scenario(server, 'whisper / listenForWhisper: the others get it, the sender does not', async () => {
    const slug = uniq('room-');
    const [alice, bob, carol] = ['alice', 'bob', 'carol'].map((n, i) => makeEcho(`${n} (Echo)`, server, { user: user(i + 1, n) }));
    for (const c of [alice, bob, carol]) {
      c.echo.private(`Rooms.${slug}`).listenForWhisper('typing', into(c, 'typing'));
      await c.subscribed(`private-Rooms.${slug}`);
    }
    alice.echo.private(`Rooms.${slug}`).whisper('typing', { name: 'alice', typing: true });
    for (const c of [bob, carol]) {
      const got = await echoSaw(c, 'typing');
      assert.deepEqual(got.data, { name: 'alice', typing: true }, `${c.name} expected alice's whisper`);
    }
    await alice.expectNone((e) => e.kind === 'echo' && e.what === 'typing', {
      within: 600,
      what: 'its own whisper not echoed back',
    });
  });
});

describe('Echo notifications and encrypted channels', () => {
  scenario(server, "private('App.Models.User.{id}').notification() receives a BroadcastNotificationCreated", async () => {
    const id = Math.floor(Math.random() * 1e6);
    const alice = makeEcho('alice (Echo)', server, { user: user(id, 'Alice') });
    alice.echo.private(`App.Models.User.${id}`).notification(into(alice, 'notification'));
    await alice.subscribed(`private-App.Models.User.${id}`);
    const payload = { id: 'b3c1', type: 'App\\Notifications\\InvoicePaid', amount: 42 };
    await sdkJson(
      sdk.trigger(`private-App.Models.User.${id}`, 'Illuminate\\Notifications\\Events\\BroadcastNotificationCreated', payload),
      'trigger notification',
    );
    assert.deepEqual((await echoSaw(alice, 'notification')).data, payload);
  });

  scenario(server, 'encryptedPrivate() decrypts what the Node SDK encrypted', async () => {
    const room = uniq('vault.');
    const alice = makeEcho('alice (Echo)', server, { user: user(1, 'Alice') });
    alice.echo.encryptedPrivate(room).listen('SecretShared', into(alice, 'SecretShared'));
    await alice.subscribed(`private-encrypted-${room}`);
    await sdkJson(sdk.trigger(`private-encrypted-${room}`, 'App\\Events\\SecretShared', { code: 'x-42' }), 'trigger encrypted');
    assert.deepEqual((await echoSaw(alice, 'SecretShared')).data, { code: 'x-42' });
  });
});

describe('Echo presence channels', () => {
  scenario(server, 'join(): here, joining, leaving', async () => {
    const room = uniq('chat.');
    const alice = makeEcho('alice (Echo)', server, { user: user(1, 'Alice') });
    alice.echo
      .join(room)
      .here(into(alice, 'here'))
      .joining(into(alice, 'joining'))
      .leaving(into(alice, 'leaving'));
    const hereA = await echoSaw(alice, 'here');
    assert.deepEqual(hereA.data, [{ id: 1, name: 'Alice' }], 'alice alone: here() lists only herself');

    const bob = makeEcho('bob (Echo)', server, { user: user(2, 'Bob') });
    bob.echo.join(room).here(into(bob, 'here')).joining(into(bob, 'joining')).leaving(into(bob, 'leaving'));
    const hereB = await echoSaw(bob, 'here');
    assert.deepEqual(
      [...hereB.data].sort((a, b) => a.id - b.id),
      [
        { id: 1, name: 'Alice' },
        { id: 2, name: 'Bob' },
      ],
      'bob: here() lists both users',
    );
    const joined = await echoSaw(alice, 'joining');
    assert.deepEqual(joined.data, { id: 2, name: 'Bob' });
    assert.equal(bob.find((e) => e.what === 'joining').length, 0, 'bob must not see himself joining');

    bob.echo.leave(room);
    const left = await echoSaw(alice, 'leaving');
    assert.deepEqual(left.data, { id: 2, name: 'Bob' });
  });

  scenario(server, 'one user in two tabs counts once and leaves only when both tabs are gone', async () => {
    const room = uniq('chat.');
    const channel = `presence-${room}`;
    const observer = makeEcho('observer (user 2)', server, { user: user(2, 'Observer') });
    observer.echo.join(room).here(into(observer, 'here')).joining(into(observer, 'joining')).leaving(into(observer, 'leaving'));
    await echoSaw(observer, 'here');

    const tabA = makeEcho('tab A (user 1)', server, { user: user(1, 'Ada') });
    tabA.echo.join(room).here(into(tabA, 'here'));
    await echoSaw(tabA, 'here');
    await echoSaw(observer, 'joining', { where: (e) => e.data.id === 1 });
    const afterFirstJoin = observer.mark();

    const tabB = makeEcho('tab B (user 1)', server, { user: user(1, 'Ada') });
    tabB.echo.join(room).here(into(tabB, 'here'));
    const hereB = await echoSaw(tabB, 'here');
    assert.equal(hereB.data.length, 2, `tab B expected 2 unique users in here(), saw ${JSON.stringify(hereB.data)}`);
    await observer.expectNone((e) => e.what === 'joining', {
      since: afterFirstJoin,
      within: 500,
      what: 'no second joining for the same user',
    });

    const users = await sdkJson(sdk.get({ path: `/channels/${channel}/users` }), 'GET users');
    assert.deepEqual(
      users.users.map((u) => String(u.id)).sort(),
      ['1', '2'],
      `users endpoint expected ids 1 and 2 once each, saw ${JSON.stringify(users)}`,
    );
    const info = await sdkJson(sdk.get({ path: `/channels/${channel}`, params: { info: 'user_count' } }), 'GET channel');
    assert.equal(info.user_count, 2, `user_count expected 2, saw ${JSON.stringify(info)}`);

    const since = observer.mark();
    tabA.disconnect();
    await observer.expectNone((e) => e.what === 'leaving', { since, within: 1000, what: 'no leaving while tab B is open' });
    tabB.disconnect();
    const left = await echoSaw(observer, 'leaving', { since });
    assert.deepEqual(left.data, { id: 1, name: 'Ada' });
  });
});
