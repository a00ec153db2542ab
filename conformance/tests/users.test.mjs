// Users (docs/users.md, docs/protocol.md §5, §3.6, §6.10): pusher-js signin(),
// server-to-user events, watchlists, terminate_connections, presence through
// the signed-in user, subscription counts and authorized connections.
//
// The user-authentication endpoint of the app (Laravel: /broadcasting/user-auth)
// is played by pusher-js's `userAuthentication.customHandler`, which signs the
// socket id locally with the Node SDK's authenticateUser (or the Python SDK's
// authenticate_user), exactly what such an endpoint would answer.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import {
  APP,
  useServer,
  PusherSdk,
  makePusher,
  nodeSdk,
  pythonSdk,
  sdkJson,
  scenario,
  sleep,
  uniq,
} from '../lib/harness.mjs';

// The app's own signer (what its auth endpoints use) and one with a wrong secret.
const signer = new PusherSdk({ appId: APP.id, key: APP.key, secret: APP.secret });
const wrongSigner = new PusherSdk({ appId: APP.id, key: APP.key, secret: 'not-the-app-secret-00' });

/**
 * A pusher-js client that signs in as `id` through `userAuthentication.customHandler`.
 * `events`: names bound with `pusher.user.bind(name, …)`; watchlist `online` and
 * `offline` are always bound on `pusher.user.watchlist`. Everything lands in the
 * client's recorder (kind 'user', 'watchlist', 'user-auth').
 */
function makeUser(name, server, { id, info, watchlist, via = 'node', bad = false, events = [], options = {} } = {}) {
  const userData = { id };
  if (info !== undefined) userData.user_info = info;
  if (watchlist !== undefined) userData.watchlist = watchlist;
  let client;
  const customHandler = ({ socketId }, callback) => {
    const done = (auth) => {
      client.push({ kind: 'user-auth', socketId, auth });
      callback(null, auth);
    };
    const fail = (e) => {
      client.push({ kind: 'user-auth-error', socketId, error: e.message });
      callback(e, null);
    };
    if (via === 'python') {
      pythonSdk(server, 'authenticate_user', { socket_id: socketId, user_data: userData }).then(done, fail);
    } else {
      try {
        done((bad ? wrongSigner : signer).authenticateUser(socketId, userData));
      } catch (e) {
        fail(e);
      }
    }
  };
  client = makePusher(name, server, { options: { userAuthentication: { customHandler }, ...options } });
  for (const event of events) {
    client.pusher.user.bind(event, (data) => client.push({ kind: 'user', event, data }));
  }
  for (const status of ['online', 'offline']) {
    client.pusher.user.watchlist.bind(status, (e) => client.push({ kind: 'watchlist', name: status, user_ids: e.user_ids }));
  }
  client.userId = id;
  client.pusher.signin();
  return client;
}

/** Wait for pusher:signin_success and the subscription of #server-to-user-{id} that pusher-js makes after it. */
async function signedIn(client, { timeout = 5000 } = {}) {
  const ok = await client.waitFor((e) => e.kind === 'message' && e.event === 'pusher:signin_success', {
    timeout,
    what: 'pusher:signin_success',
  });
  await client.subscribed(`#server-to-user-${client.userId}`, { timeout });
  return ok;
}

const isPusherError = (code) => (e) => e.kind === 'error' && e.error?.type === 'PusherError' && e.error.data?.code === code;

const userEvent = (event) => (e) => e.kind === 'user' && e.event === event;

const watch = (status, ids) => (e) =>
  e.kind === 'watchlist' && e.name === status && JSON.stringify(e.user_ids) === JSON.stringify(ids);

/** Wait until `client` reaches a state in `states`. */
function reaches(client, states, { timeout = 5000, since = 0 } = {}) {
  return client.waitFor((e) => e.kind === 'state' && states.includes(e.current), {
    timeout,
    since,
    what: `connection state ${states.join('/')}`,
  });
}

/** Fail if `client` leaves "connected" (or changes state at all) within `within` ms. */
async function staysConnected(client, { within = 1000, since = client.mark() } = {}) {
  await client.expectNone((e) => e.kind === 'state' || e.kind === 'closed', {
    since,
    within,
    what: 'no state change and no close (still connected)',
  });
  assert.equal(client.state, 'connected', `client "${client.name}" expected to stay connected`);
}

/** After a termination: close 4009, state disconnected, and no reconnect attempt. */
async function terminated(client, { message = 'You got disconnected by the app.' } = {}) {
  const err = await client.waitFor(isPusherError(4009), { what: 'pusher:error 4009' });
  assert.equal(err.error.data.message, message, `client "${client.name}": pusher:error message`);
  const closed = await client.waitFor((e) => e.kind === 'closed', { what: 'the socket to be closed' });
  assert.equal(closed.code, 4009, `client "${client.name}" expected close code 4009, saw ${closed.code} "${closed.reason}"`);
  // (pusher-js changes state before the harness's own transport listener records the close.)
  const down = await reaches(client, ['disconnected', 'unavailable', 'failed'], { since: err.index });
  // pusher-js treats 4000-4099 as "refused": it must not come back by itself.
  await client.expectNone((e) => e.kind === 'state' && ['connecting', 'connected'].includes(e.current), {
    since: down.index,
    within: 1500,
    what: 'no reconnect after close 4009',
  });
  assert.equal(client.state, 'disconnected', `client "${client.name}" expected to stay disconnected`);
}

/** Wait until the server has no connections left (earlier tests' sockets are closed asynchronously). */
async function noConnections(sdk) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const { connections } = await sdkJson(sdk.get({ path: '/connections' }), 'GET /connections');
    if (connections === 0) return;
    if (Date.now() > deadline) throw new Error(`${connections} connection(s) from earlier tests still open after 5 s`);
    await sleep(100);
  }
}

describe('users (default settings)', () => {
  let sdk;
  const server = useServer({}, (s) => {
    sdk = nodeSdk(s);
  });
  const test = (name, fn) =>
    scenario(server, name, async (t) => {
      await noConnections(sdk);
      await fn(t);
    });

  test('signin() then sendToUser reaches pusher.user on every connection of the user, and no one else', async () => {
    const a1 = makeUser('42 (tab 1)', server, { id: '42', info: { name: 'Ada' }, watchlist: ['7'], events: ['notice'] });
    const a2 = makeUser('42 (tab 2)', server, { id: '42', info: { name: 'Ada' }, events: ['notice'] });
    const other = makeUser('7', server, { id: '7', events: ['notice'] });
    for (const c of [a1, a2, other]) await signedIn(c);

    const ok = await a1.waitFor((e) => e.kind === 'message' && e.event === 'pusher:signin_success');
    const sent = a1.find((e) => e.kind === 'user-auth')[0].auth;
    assert.equal(ok.data.user_data, sent.user_data, 'signin_success echoes the signed user_data verbatim');
    assert.deepEqual(a1.pusher.user.user_data, { id: '42', user_info: { name: 'Ada' }, watchlist: ['7'] });

    const res = await sdkJson(sdk.sendToUser('42', 'notice', { text: 'hello Ada' }), "sendToUser('42')");
    assert.deepEqual(res, {});
    for (const c of [a1, a2]) {
      const got = await c.waitFor(userEvent('notice'), { what: 'pusher.user "notice"' });
      assert.deepEqual(got.data, { text: 'hello Ada' }, `client "${c.name}" payload`);
    }
    await other.expectNone(userEvent('notice'), { within: 500, what: 'no "notice" for user 7' });
    assert.equal(a1.find(userEvent('notice')).length, 1, 'exactly one delivery per connection');
  });

  test('the Python SDK: authenticate_user signs, send_to_user delivers', async () => {
    // Python's json.dumps puts spaces after ":" and ",": the signature covers that exact string.
    const c = makeUser('42 (signed by Python)', server, { id: '42', info: { name: 'Ada' }, via: 'python', events: ['notice'] });
    await signedIn(c, { timeout: 10000 });
    const sent = c.find((e) => e.kind === 'user-auth')[0].auth;
    assert.match(sent.user_data, /": "/, 'Python user_data is serialized with spaces');
    await pythonSdk(server, 'send_to_user', { user_id: '42', event: 'notice', data: { from: 'python' } });
    const got = await c.waitFor(userEvent('notice'), { what: 'pusher.user "notice"' });
    assert.deepEqual(got.data, { from: 'python' });
  });

  test('a bad user signature gets pusher:error 4009; no user events; the connection stays open', async () => {
    const bad = makeUser('42 (bad signature)', server, { id: '42', bad: true, events: ['notice'] });
    const good = makeUser('42 (good signature)', server, { id: '42', events: ['notice'] });
    const err = await bad.waitFor(isPusherError(4009), { what: 'pusher:error 4009' });
    assert.equal(err.error.data.message, 'Connection is unauthorized');
    await signedIn(good);
    const since = bad.mark();

    await sdkJson(sdk.sendToUser('42', 'notice', { secret: true }), "sendToUser('42')");
    await good.waitFor(userEvent('notice'), { what: 'pusher.user "notice" (control: the event was sent)' });
    await bad.expectNone(userEvent('notice'), { within: 700, since, what: 'no user event for a refused sign-in' });
    assert.equal(bad.find((e) => e.kind === 'message' && e.event === 'pusher:signin_success').length, 0, 'no signin_success');
    assert.equal(bad.pusher.user.user_data, null, 'pusher-js has no user data');
    await staysConnected(bad, { since: err.index, within: 300 });

    // Still usable: a public channel works on that connection.
    const name = uniq('after-bad-signin.');
    bad.subscribe(name);
    await bad.subscribed(name);
  });

  test('watchlist: initial online/offline, then online and offline as 9 comes and goes', async () => {
    const seven = makeUser('7', server, { id: '7' });
    await signedIn(seven);
    const a = makeUser('42 (watching 7, 9)', server, { id: '42', watchlist: ['7', '9'] });
    await signedIn(a);
    await a.waitFor(watch('online', ['7']), { what: "watchlist online ['7']" });
    await a.waitFor(watch('offline', ['9']), { what: "watchlist offline ['9']" });

    let since = a.mark();
    const nine = makeUser('9', server, { id: '9' });
    await signedIn(nine);
    await a.waitFor(watch('online', ['9']), { since, what: "watchlist online ['9'] when 9 signs in" });

    since = a.mark();
    nine.disconnect();
    await a.waitFor(watch('offline', ['9']), { since, what: "watchlist offline ['9'] when 9 disconnects" });
    await a.expectNone((e) => e.kind === 'watchlist' && e.user_ids.includes('7'), {
      since,
      within: 300,
      what: 'nothing about 7, who stayed online',
    });
  });

  test('Node SDK terminateUserConnections: every connection of 42 is closed with 4009 and stays closed; 7 is untouched', async () => {
    const tabs = [makeUser('42 (tab 1)', server, { id: '42' }), makeUser('42 (tab 2)', server, { id: '42' })];
    const seven = makeUser('7', server, { id: '7', events: ['notice'] });
    for (const c of [...tabs, seven]) await signedIn(c);
    // A connection that is user 42 only through presence channel_data (no signin): terminated as well (docs/users.md).
    const room = `presence-${uniq('room.')}`;
    const member = makePusher('42 (presence member only)', server, { user: { id: '42', info: {} } });
    member.subscribe(room);
    await member.subscribed(room);
    const since = seven.mark();

    const res = await sdkJson(sdk.terminateUserConnections('42'), "terminateUserConnections('42')");
    assert.deepEqual(res, {});
    await Promise.all([...tabs, member].map((c) => terminated(c)));
    await staysConnected(seven, { since, within: 100 });
    await sdkJson(sdk.sendToUser('7', 'notice', { still: 'here' }), "sendToUser('7')");
    await seven.waitFor(userEvent('notice'), { what: 'pusher.user "notice" after 42 was terminated' });
  });

  test('Python SDK terminate_user_connections (path without /apps/{id}) does the same', async () => {
    const tabs = [makeUser('42 (tab 1)', server, { id: '42' }), makeUser('42 (tab 2)', server, { id: '42' })];
    const seven = makeUser('7', server, { id: '7' });
    for (const c of [...tabs, seven]) await signedIn(c);
    const since = seven.mark();
    const res = await pythonSdk(server, 'terminate_user_connections', { user_id: '42' });
    assert.deepEqual(res, {});
    await Promise.all(tabs.map((c) => terminated(c)));
    await staysConnected(seven, { since, within: 100 });
  });

  test('presence without channel_data: the signed-in user joins as {id, user_info} from signin', async () => {
    const room = `presence-${uniq('lobby.')}`;
    const seven = makePusher('7 (channel_data member)', server, { user: { id: '7', info: { name: 'Grace' } } });
    seven.subscribe(room);
    await seven.subscribed(room);
    const since = seven.mark();

    // The channel authorizer answers {auth} only: authorizeChannel(socketId, channel) without presence data.
    let ada;
    const channelAuthorization = {
      customHandler: ({ socketId, channelName }, callback) => {
        const auth = signer.authorizeChannel(socketId, channelName);
        ada.push({ kind: 'channel-auth', channel: channelName, auth });
        callback(null, auth);
      },
    };
    ada = makeUser('42 (signed in)', server, { id: '42', info: { name: 'Ada' }, options: { channelAuthorization } });
    ada.subscribe(room);
    await signedIn(ada);
    await ada.subscribed(room);
    const [{ auth }] = ada.find((e) => e.kind === 'channel-auth');
    assert.deepEqual(Object.keys(auth), ['auth'], 'the auth response has no channel_data');

    const added = await seven.channelEvent(room, 'pusher:member_added', { since });
    assert.deepEqual(added.data, { id: '42', info: { name: 'Ada' } }, 'member_added carries the signed-in user');
    const members = ada.pusher.channel(room).members;
    assert.deepEqual(members.me, { id: '42', info: { name: 'Ada' } }, 'members.me');
    assert.equal(members.count, 2);
    assert.deepEqual(members.get('7'), { id: '7', info: { name: 'Grace' } });

    const users = await sdkJson(sdk.get({ path: `/channels/${room}/users` }), `GET /channels/${room}/users`);
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['42', '7']);

    ada.disconnect();
    const removed = await seven.channelEvent(room, 'pusher:member_removed', { since });
    assert.equal(removed.data.id, '42');
  });

  test('subscription_count is not sent unless enabled; the HTTP API reports it anyway', async () => {
    const name = uniq('counted.');
    const a = makePusher('a', server);
    const b = makePusher('b', server);
    a.subscribe(name);
    await a.subscribed(name);
    b.subscribe(name);
    await b.subscribed(name);
    const info = await sdkJson(
      sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }),
      `GET /channels/${name}?info=subscription_count`,
    );
    assert.deepEqual(info, { occupied: true, subscription_count: 2 });
    for (const c of [a, b]) {
      await c.expectNone((e) => e.kind === 'raw' && e.frame?.event === 'pusher_internal:subscription_count', {
        within: 300,
        what: 'no pusher_internal:subscription_count (option off)',
      });
    }
  });
});

describe('RESOUND_APP_SUBSCRIPTION_COUNT=true', () => {
  let sdk;
  const server = useServer({ env: { RESOUND_APP_SUBSCRIPTION_COUNT: 'true' } }, (s) => {
    sdk = nodeSdk(s);
  });

  /** A pusher-js client on `name` whose channel.bind('pusher:subscription_count') is recorded. */
  function counted(label, name) {
    const c = makePusher(label, server);
    const channel = c.subscribe(name);
    channel.bind('pusher:subscription_count', (d) => c.push({ kind: 'count', count: d.subscription_count }));
    return c;
  }
  const count = (n) => (e) => e.kind === 'count' && e.count === n;

  scenario(server, 'pusher:subscription_count follows subscribers: 1, 2, then 1; the API answers 2', async () => {
    const name = uniq('counted.');
    const a = counted('a', name);
    await a.subscribed(name);
    await a.waitFor(count(1), { what: 'subscription_count 1' });
    const b = counted('b', name);
    await b.subscribed(name);
    await a.waitFor(count(2), { what: 'subscription_count 2' });
    await b.waitFor(count(2), { what: 'subscription_count 2' });
    assert.equal(a.pusher.channel(name).subscriptionCount, 2, 'pusher-js channel.subscriptionCount');

    const info = await sdkJson(
      sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }),
      `GET /channels/${name}?info=subscription_count`,
    );
    assert.deepEqual(info, { occupied: true, subscription_count: 2 });

    const since = a.mark();
    b.disconnect();
    await a.waitFor(count(1), { since, what: 'subscription_count 1 after b left' });
    const seen = a.find((e) => e.kind === 'count').map((e) => e.count);
    assert.deepEqual(seen, [1, 2, 1], 'counts seen by a, in order');
  });
});

describe('RESOUND_APP_AUTHORIZED_TIMEOUT=1', () => {
  const server = useServer({ env: { RESOUND_APP_AUTHORIZED_TIMEOUT: '1' } });

  scenario(server, 'a public-only client is closed with 4009 after ~1 s and stays closed; signed-in and private ones stay', async () => {
    const name = uniq('public.');
    const anon = makePusher('anonymous (public only)', server);
    anon.subscribe(name);
    const signed = makeUser('42 (signed in)', server, { id: '42' });
    const priv = makePusher('private subscriber', server);
    const privName = `private-${uniq('room.')}`;
    priv.subscribe(privName);

    const up = await anon.waitFor((e) => e.kind === 'state' && e.current === 'connected', { what: 'connected' });
    await anon.subscribed(name);
    await signedIn(signed);
    await priv.subscribed(privName);
    const marks = [signed.mark(), priv.mark()];

    await terminated(anon, { message: 'Connection not authorized within timeout' });
    const closed = anon.find((e) => e.kind === 'closed')[0];
    const after = closed.at - up.at;
    assert.ok(after >= 700 && after <= 3000, `closed ${after} ms after connecting, expected about 1000`);

    await staysConnected(signed, { since: marks[0], within: 200 });
    await staysConnected(priv, { since: marks[1], within: 0 });
  });
});
