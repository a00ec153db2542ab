// Multi-node scaling (REVERB_SCALING_ENABLED): two resound nodes, A and B,
// share a real redis-server (started here on a free loopback port; the file
// fails, never skips, when redis-server is missing). Clients on either node
// see one cluster: HTTP API events and batches (socket_id exclusion across
// nodes), whispers, cluster-wide presence through Echo.join, HTTP API counts
// that add up every node (Node and Python SDKs), user termination, cache
// channels replayed on every node, and a third node leaving (SIGTERM) taking
// its presence members with it.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';

import {
  APP,
  PusherSdk,
  Server,
  freePort,
  makeEcho,
  makePusher,
  nodeSdk,
  pythonSdk,
  encryptedMessage,
  sdkJson,
  scenario,
  sleep,
  uniq,
  withTimeout,
} from '../lib/harness.mjs';

const EVENT = 'App\\Events\\RoomMessageEvent';
const SCALING_CHANNEL = uniq('resound-scaling-');

// ---------------------------------------------------------------------------
// redis-server and the cluster
// ---------------------------------------------------------------------------

const redis = { port: null, proc: null, exit: null };

async function startRedis() {
  redis.port = await freePort();
  const proc = spawn(
    'redis-server',
    ['--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  redis.proc = proc;
  redis.exit = new Promise((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
    proc.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
  let exited = null;
  redis.exit.then((r) => (exited = r));
  const deadline = Date.now() + 10000;
  let last = 'no attempt';
  while (Date.now() < deadline) {
    if (exited) {
      redis.proc = null;
      if (exited.error?.code === 'ENOENT') {
        throw new Error(
          'redis-server is not installed (not found on PATH): the scaling conformance tests need a real Redis (Debian: apt-get install redis-server)',
        );
      }
      throw new Error(`redis-server exited during start-up: ${exited.error?.message ?? JSON.stringify(exited)}`);
    }
    try {
      const socket = net.connect(redis.port, '127.0.0.1');
      await withTimeout(once(socket, 'connect'), 1000, `a TCP connection to redis-server on ${redis.port}`);
      socket.destroy();
      return;
    } catch (e) {
      last = e.message;
    }
    await sleep(50);
  }
  throw new Error(`redis-server did not accept connections on 127.0.0.1:${redis.port} within 10 s (last: ${last})`);
}

async function stopRedis() {
  const proc = redis.proc;
  if (!proc) return;
  redis.proc = null;
  proc.kill('SIGTERM');
  try {
    await withTimeout(redis.exit, 5000, 'redis-server to exit on SIGTERM');
  } catch {
    proc.kill('SIGKILL');
    await redis.exit;
  }
}

/** Environment of every node: one Redis, one pub/sub channel for this file. */
function scalingEnv() {
  return {
    REVERB_SCALING_ENABLED: 'true',
    REVERB_SCALING_CHANNEL: SCALING_CHANNEL,
    REDIS_HOST: '127.0.0.1',
    REDIS_PORT: String(redis.port),
  };
}

// Filled in by the before hook; `nodes` also holds nodes a test starts itself.
let A;
let B;
let sdkA;
let sdkB;
const nodes = [];

/** What `scenario` appends on failure: every node's log tail. */
const cluster = {
  logTail(lines = 25) {
    if (nodes.length === 0) return '--- no resound node started ---';
    return nodes.map(({ label, server }) => `[node ${label}]\n${server.logTail(lines)}`).join('\n');
  },
};

async function startNode(label) {
  const server = new Server({ env: scalingEnv() });
  nodes.push({ label, server });
  await server.start();
  return server;
}

/** `GET /connections` through one node: the whole cluster's count. */
async function connections(sdk, label) {
  const body = await sdkJson(sdk.get({ path: '/connections' }), `GET /connections through node ${label}`);
  return body.connections;
}

/** Poll `read()` every 100 ms until `ok(value)`, at most `timeout` ms. */
async function pollUntil(read, ok, { timeout = 10000, what }) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`${what}: still ${JSON.stringify(value)} after ${timeout} ms`);
    }
    await sleep(100);
  }
}

/** Wait until no connection (from earlier tests) is open anywhere in the cluster. */
async function noConnections() {
  for (const [sdk, label] of [
    [sdkA, 'A'],
    [sdkB, 'B'],
  ]) {
    await pollUntil(() => connections(sdk, label), (n) => n === 0, {
      timeout: 5000,
      what: `connections from earlier tests, counted through node ${label}`,
    });
  }
}

// ---------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------

const user = (id, name) => ({ id: String(id), info: { id, name } });
const byId = (list) => [...list].sort((x, y) => x.id - y.id);
const userIds = (body) => body.users.map((u) => String(u.id)).sort();

/** Record an Echo callback into the client's log. */
const into = (client, what) => (payload) => client.push({ kind: 'echo', what, data: payload });
const echoSaw = (client, what, opts = {}) =>
  client.waitFor((e) => e.kind === 'echo' && e.what === what && (opts.where ?? (() => true))(e), {
    what: `Echo callback ${what}`,
    ...opts,
  });
const isEcho = (what, where = () => true) => (e) => e.kind === 'echo' && e.what === what && where(e);

/** An Echo client that joins presence room `room` and records here/joining/leaving. */
function joinRoom(label, server, room, member) {
  const c = makeEcho(label, server, { user: member });
  c.echo.join(room).here(into(c, 'here')).joining(into(c, 'joining')).leaving(into(c, 'leaving'));
  return c;
}

// The app's user-authentication endpoint (Laravel: /broadcasting/user-auth), run locally.
const signer = new PusherSdk({ appId: APP.id, key: APP.key, secret: APP.secret });

/** A pusher-js client that signs in as `id`; `events` are bound on pusher.user. */
function signedInUser(name, server, id, { events = [] } = {}) {
  let client;
  const customHandler = ({ socketId }, callback) => {
    try {
      callback(null, signer.authenticateUser(socketId, { id }));
    } catch (e) {
      callback(e, null);
    }
  };
  client = makePusher(name, server, { options: { userAuthentication: { customHandler } } });
  for (const event of events) {
    client.pusher.user.bind(event, (data) => client.push({ kind: 'user', event, data }));
  }
  client.userId = id;
  client.pusher.signin();
  return client;
}

/** pusher:signin_success and the #server-to-user-{id} subscription pusher-js makes after it. */
async function signedIn(client) {
  await client.waitFor((e) => e.kind === 'message' && e.event === 'pusher:signin_success', {
    what: 'pusher:signin_success',
  });
  await client.subscribed(`#server-to-user-${client.userId}`);
}

/** After a termination: pusher:error 4009, close 4009, disconnected, and no reconnect. */
async function terminated(client) {
  const err = await client.waitFor(
    (e) => e.kind === 'error' && e.error?.type === 'PusherError' && e.error.data?.code === 4009,
    { what: 'pusher:error 4009' },
  );
  assert.equal(err.error.data.message, 'You got disconnected by the app.', `client "${client.name}": pusher:error message`);
  const closed = await client.waitFor((e) => e.kind === 'closed', { what: 'the socket to be closed' });
  assert.equal(closed.code, 4009, `client "${client.name}" expected close code 4009, saw ${closed.code} "${closed.reason}"`);
  await client.expectNone((e) => e.kind === 'state' && ['connecting', 'connected'].includes(e.current), {
    since: err.index,
    within: 1000,
    what: 'no reconnect after close 4009',
  });
  assert.equal(client.state, 'disconnected', `client "${client.name}" expected to stay disconnected`);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe('scaling: two nodes on one Redis', () => {
  // One hook does everything in order (Node 20 does not wait for one before() before the next).
  before(async () => {
    await startRedis();
    A = await startNode('A');
    B = await startNode('B');
    sdkA = nodeSdk(A);
    sdkB = nodeSdk(B);
    // The cluster is formed when each node counts the other's connection.
    const onA = makePusher('cluster probe (node A)', A);
    const onB = makePusher('cluster probe (node B)', B);
    try {
      await onA.connected();
      await onB.connected();
      await pollUntil(() => connections(sdkA, 'A'), (n) => n === 2, {
        what: 'node A counting its own and node B\'s connection (cluster formed)',
      });
      await pollUntil(() => connections(sdkB, 'B'), (n) => n === 2, {
        what: 'node B counting its own and node A\'s connection (cluster formed)',
      });
    } catch (e) {
      e.message += `\n${cluster.logTail()}`;
      throw e;
    } finally {
      onA.disconnect();
      onB.disconnect();
    }
  });

  after(async () => {
    const problems = [];
    for (const { label, server } of [...nodes].reverse()) {
      const result = await server.stop();
      if (result && result.code !== 0) {
        problems.push(`node ${label}: resound expected to exit 0 on SIGTERM, saw ${JSON.stringify(result)}\n${server.logTail(25)}`);
      }
      server.cleanup();
    }
    await stopRedis();
    if (problems.length) throw new Error(problems.join('\n'));
  });

  scenario(cluster, 'HAWKI room: toOthers through node A skips the sender on node B; batch and Python triggers reach both nodes', async () => {
    const slug = uniq('hawki-');
    const room = `Rooms.${slug}`;
    const privateName = `private-${room}`;
    const layout = [
      ['Ada', A, 'A'],
      ['Ben', A, 'A'],
      ['Cem', B, 'B'],
      ['Dora', B, 'B'],
    ];
    const members = layout.map(([name, server, label], i) => {
      const c = makeEcho(`${name} (Echo, node ${label})`, server, { user: user(i + 1, name) });
      c.echo.private(room).listen('RoomMessageEvent', into(c, 'message'));
      return c;
    });
    for (const c of members) await c.subscribed(privateName);
    const [ada, , cem] = members;

    /** Every member but `skip` gets `payload` byte-identical (raw frame) and through Echo listen(). */
    async function deliveredTo(payload, marks, skip, what) {
      for (const [i, c] of members.entries()) {
        if (c === skip) continue;
        const raw = await c.rawFrame(privateName, EVENT, { since: marks[i] });
        assert.equal(raw.frame.data, payload, `${c.name} expected the ${what} byte-identical`);
        const seen = await echoSaw(c, 'message', { since: marks[i], what: `the ${what} via Echo listen()` });
        assert.deepEqual(seen.data, JSON.parse(payload));
      }
      if (skip) {
        const i = members.indexOf(skip);
        await skip.expectNone((e) => e.kind === 'raw' && e.frame?.event === EVENT, {
          since: marks[i],
          within: 400,
          what: `no copy of the ${what} (its socket_id was excluded)`,
        });
      }
    }

    // 1. Cem (node B) sends; the backend triggers through node A with his socket_id (toOthers).
    let payload = encryptedMessage(slug, 'cem');
    let marks = members.map((c) => c.mark());
    const res = await sdkJson(
      sdkA.trigger(privateName, EVENT, payload, { socket_id: cem.echo.socketId() }),
      'trigger RoomMessageEvent through node A (toOthers, sender on node B)',
    );
    assert.deepEqual(res, {});
    await deliveredTo(payload, marks, cem, 'message of Cem');

    // 2. A batch through node B, excluding Ada on node A.
    payload = encryptedMessage(slug, 'ada');
    marks = members.map((c) => c.mark());
    const batch = await sdkJson(
      sdkB.triggerBatch([{ channel: privateName, name: EVENT, data: payload, socket_id: ada.echo.socketId() }]),
      'triggerBatch through node B (socket_id of a node A connection)',
    );
    assert.deepEqual(batch, { batch: {} }, "batch endpoint answers {\"batch\":{}} without info");
    await deliveredTo(payload, marks, ada, 'batched message of Ada');

    // 3. The AI reply through the Python SDK on node B, no socket_id: all four, on both nodes.
    payload = encryptedMessage(slug, 'HAWKI', 'assistant');
    marks = members.map((c) => c.mark());
    assert.deepEqual(await pythonSdk(B, 'trigger', { channels: [privateName], event: EVENT, data: payload }), {});
    await deliveredTo(payload, marks, null, 'AI reply');
    for (const [i, c] of members.entries()) {
      assert.equal(c.find(isEcho('message'), marks[i]).length, 1, `${c.name}: the AI reply exactly once`);
    }
  });

  scenario(cluster, 'whispers cross nodes, never back to the whisperer; presence whispers carry the sender user_id', async () => {
    const room = `Rooms.${uniq('whisper-')}`;
    const layout = [
      ['Ada', A, 'A'],
      ['Ben', B, 'B'],
      ['Cem', B, 'B'],
      ['Dora', A, 'A'],
    ];
    const members = layout.map(([name, server, label], i) => {
      const c = makeEcho(`${name} (Echo, node ${label})`, server, { user: user(i + 1, name) });
      c.echo.private(room).listenForWhisper('typing', into(c, 'typing'));
      c.echo.join(room).listenForWhisper('typing', into(c, 'presence-typing'));
      return c;
    });
    for (const c of members) {
      await c.subscribed(`private-${room}`);
      await c.subscribed(`presence-${room}`);
    }

    // Ada (node A) types in the private room.
    const [ada, , cem] = members;
    let marks = members.map((c) => c.mark());
    ada.echo.private(room).whisper('typing', { username: 'ada', typing: true });
    for (const [i, c] of members.entries()) {
      if (c === ada) continue;
      const got = await echoSaw(c, 'typing', { since: marks[i], what: "Ada's typing whisper" });
      assert.deepEqual(got.data, { username: 'ada', typing: true }, `${c.name} expected Ada's whisper`);
    }
    await ada.expectNone(isEcho('typing'), { since: marks[0], within: 400, what: 'its own whisper not echoed back' });
    for (const [i, c] of members.entries()) {
      assert.ok(c.find(isEcho('typing'), marks[i]).length <= 1, `${c.name}: the whisper at most once`);
    }

    // Cem (node B) types in the presence room: node A's members see user_id "3".
    marks = members.map((c) => c.mark());
    cem.echo.join(room).whisper('typing', { username: 'cem', typing: true });
    for (const [i, c] of members.entries()) {
      if (c === cem) continue;
      const got = await echoSaw(c, 'presence-typing', { since: marks[i], what: "Cem's presence whisper" });
      assert.deepEqual(got.data, { username: 'cem', typing: true });
      const raw = await c.rawFrame(`presence-${room}`, 'client-typing', { since: marks[i] });
      assert.equal(raw.frame.user_id, '3', `${c.name}: the frame names the sender, saw ${raw.text}`);
    }
    await cem.expectNone(isEcho('presence-typing'), { since: marks[2], within: 400, what: 'its own whisper not echoed back' });
  });

  scenario(cluster, 'Echo.join across nodes: here() lists both, joining()/leaving() once per user, not per connection', async () => {
    const room = `Rooms.${uniq('presence-')}`;
    const channel = `presence-${room}`;
    const users = async (sdk, label) =>
      userIds(await sdkJson(sdk.get({ path: `/channels/${channel}/users` }), `GET users through node ${label}`));

    const alice = joinRoom('alice (user 1, node A)', A, room, user(1, 'Alice'));
    const hereAlice = await echoSaw(alice, 'here');
    assert.deepEqual(hereAlice.data, [{ id: 1, name: 'Alice' }], 'alice alone: here() lists only herself');
    // Presence news travel through Redis: bob subscribes once node B has heard of alice.
    await pollUntil(() => users(sdkB, 'B'), (ids) => ids.includes('1'), {
      timeout: 5000,
      what: 'users of the room through node B (alice joined on node A)',
    });

    const bob = joinRoom('bob (user 2, node B)', B, room, user(2, 'Bob'));
    const hereBob = await echoSaw(bob, 'here');
    assert.deepEqual(
      byId(hereBob.data),
      [
        { id: 1, name: 'Alice' },
        { id: 2, name: 'Bob' },
      ],
      'bob on node B: here() lists alice from node A too',
    );
    const joined = await echoSaw(alice, 'joining', { what: "alice (node A): joining() for bob (node B)" });
    assert.deepEqual(joined.data, { id: 2, name: 'Bob' });

    // Dora's first tab on node A: a joining() on both nodes.
    let marks = [alice.mark(), bob.mark()];
    const tab1 = joinRoom('dora tab 1 (user 4, node A)', A, room, user(4, 'Dora'));
    const hereTab1 = await echoSaw(tab1, 'here');
    assert.deepEqual(hereTab1.data.map((u) => u.id).sort(), [1, 2, 4]);
    for (const [i, c] of [alice, bob].entries()) {
      const got = await echoSaw(c, 'joining', { since: marks[i], what: "joining() for dora's first tab" });
      assert.deepEqual(got.data, { id: 4, name: 'Dora' });
    }

    // Her second tab on node B: the same user, so no joining() anywhere.
    marks = [alice.mark(), bob.mark(), tab1.mark()];
    const tab2 = joinRoom('dora tab 2 (user 4, node B)', B, room, user(4, 'Dora'));
    const hereTab2 = await echoSaw(tab2, 'here');
    assert.deepEqual(
      hereTab2.data.map((u) => u.id).sort(),
      [1, 2, 4],
      `dora tab 2 expected 3 unique users in here(), saw ${JSON.stringify(hereTab2.data)}`,
    );
    for (const [i, c] of [alice, bob, tab1].entries()) {
      await c.expectNone(isEcho('joining'), {
        since: marks[i],
        within: i === 0 ? 500 : 0,
        what: "no joining() for dora's second connection",
      });
    }
    assert.deepEqual(await users(sdkA, 'A'), ['1', '2', '4'], 'users through node A');
    assert.deepEqual(await users(sdkB, 'B'), ['1', '2', '4'], 'users through node B');
    const info = await sdkJson(sdkA.get({ path: `/channels/${channel}`, params: { info: 'user_count' } }), 'GET channel');
    assert.deepEqual(info, { occupied: true, user_count: 3 });

    // Tab 1 (node A) closes: she is still on node B, so no leaving() anywhere.
    marks = [alice.mark(), bob.mark(), tab2.mark()];
    tab1.disconnect();
    for (const [i, c] of [alice, bob, tab2].entries()) {
      await c.expectNone(isEcho('leaving'), {
        since: marks[i],
        within: i === 0 ? 800 : 0,
        what: "no leaving() while dora's tab on node B is open",
      });
    }
    assert.deepEqual(await users(sdkA, 'A'), ['1', '2', '4'], 'users through node A after tab 1 closed');

    // Tab 2 (node B) closes: her last connection anywhere, so leaving() on both nodes.
    tab2.disconnect();
    for (const [i, c] of [alice, bob].entries()) {
      const left = await echoSaw(c, 'leaving', { since: marks[i], what: "leaving() for dora's last connection" });
      assert.deepEqual(left.data, { id: 4, name: 'Dora' });
    }
    assert.deepEqual(await users(sdkA, 'A'), ['1', '2'], 'users through node A after dora left');
    assert.deepEqual(await users(sdkB, 'B'), ['1', '2'], 'users through node B after dora left');
    for (const [i, c] of [alice, bob].entries()) {
      assert.equal(c.find(isEcho('leaving'), marks[i]).length, 1, `${c.name}: leaving() exactly once`);
    }
  });

  scenario(cluster, 'HTTP API counts add up both nodes (Python SDK through node A, Node SDK through node B)', async () => {
    await noConnections();
    const tag = uniq('counted-');
    const pub = `${tag}.news`;
    const onlyB = `private-${tag}.only-b`;
    const pres = `presence-${tag}.lobby`;

    // pub: 1 subscriber on A, 2 on B. onlyB: 1 on B. pres: user 1 on A, user 2 on B and on A.
    const clients = [];
    const add = (label, server, channel, member) => {
      const c = makePusher(label, server, member ? { user: member } : {});
      c.subscribe(channel);
      clients.push([c, channel]);
      return c;
    };
    add('pub 1 (node A)', A, pub);
    add('pub 2 (node B)', B, pub);
    add('pub 3 (node B)', B, pub);
    add('only-b (node B)', B, onlyB, user(9, 'Nine'));
    add('presence user 1 (node A)', A, pres, user(1, 'One'));
    add('presence user 2 (node B)', B, pres, user(2, 'Two'));
    add('presence user 2 again (node A)', A, pres, user(2, 'Two'));
    for (const [c, channel] of clients) await c.subscribed(channel);

    // Python SDK through node A.
    assert.deepEqual(
      await pythonSdk(A, 'channel_info', { channel: pub, attributes: ['subscription_count'] }),
      { occupied: true, subscription_count: 3 },
      'public channel: 1 subscriber on node A + 2 on node B',
    );
    assert.deepEqual(
      await pythonSdk(A, 'channel_info', { channel: onlyB, attributes: ['subscription_count'] }),
      { occupied: true, subscription_count: 1 },
      'a channel with subscribers on node B only is occupied when asked through node A',
    );
    assert.deepEqual(
      await pythonSdk(A, 'channel_info', { channel: pres, attributes: ['user_count'] }),
      { occupied: true, user_count: 2 },
      'presence: users 1 and 2, user 2 counted once across nodes',
    );
    assert.deepEqual(userIds(await pythonSdk(A, 'users_info', { channel: pres })), ['1', '2']);
    assert.deepEqual(
      await pythonSdk(A, 'channels_info', { prefix_filter: 'presence-', attributes: ['user_count'] }).then((r) => ({
        channels: Object.fromEntries(Object.entries(r.channels).filter(([name]) => name.includes(tag))),
      })),
      { channels: { [pres]: { user_count: 2 } } },
    );

    // Node SDK through node B.
    const list = await sdkJson(
      sdkB.get({ path: '/channels', params: { filter_by_prefix: tag, info: 'subscription_count' } }),
      `GET /channels?filter_by_prefix=${tag} through node B`,
    );
    assert.deepEqual(list, { channels: { [pub]: { subscription_count: 3 } } });
    const privList = await sdkJson(
      sdkB.get({ path: '/channels', params: { filter_by_prefix: 'private-', info: 'subscription_count' } }),
      'GET /channels?filter_by_prefix=private- through node B',
    );
    assert.deepEqual(privList.channels[onlyB], { subscription_count: 1 });
    const presList = await sdkJson(
      sdkB.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }),
      'GET /channels?filter_by_prefix=presence- through node B',
    );
    assert.deepEqual(presList.channels[pres], { user_count: 2 });
    assert.deepEqual(
      userIds(await sdkJson(sdkB.get({ path: `/channels/${pres}/users` }), 'GET users through node B')),
      ['1', '2'],
    );
    assert.equal(await connections(sdkA, 'A'), clients.length, 'GET /connections through node A: both nodes');
    assert.equal(await connections(sdkB, 'B'), clients.length, 'GET /connections through node B: both nodes');

    // The subscribers on node B leave: node A's answers follow.
    for (const [c] of clients.filter(([c]) => c.name.includes('(node B)'))) c.disconnect();
    const drained = await pollUntil(
      () => pythonSdk(A, 'channel_info', { channel: pub, attributes: ['subscription_count'] }),
      (r) => r.subscription_count === 1,
      { timeout: 5000, what: 'subscription_count through node A after node B subscribers left' },
    );
    assert.deepEqual(drained, { occupied: true, subscription_count: 1 });
    await pollUntil(
      () => pythonSdk(A, 'channel_info', { channel: onlyB, attributes: ['subscription_count'] }),
      (r) => r.occupied === false,
      { timeout: 5000, what: 'node-B-only channel through node A after its subscriber left' },
    );
  });

  scenario(cluster, 'terminate_connections through node A closes the user on node B (and on A); others stay', async () => {
    const room = `presence-${uniq('terminate.')}`;
    const observer = makePusher('observer (user 1, node A)', A, { user: { id: '1', info: { name: 'Obs' } } });
    observer.subscribe(room);
    await observer.subscribed(room);

    const onB = signedInUser('42 signed in (node B)', B, '42');
    const onA = signedInUser('42 signed in (node A)', A, '42');
    const member = makePusher('42 presence member only (node B)', B, { user: { id: '42', info: { name: 'Ada' } } });
    member.subscribe(room);
    const seven = signedInUser('7 signed in (node B)', B, '7', { events: ['notice'] });
    for (const c of [onB, onA, seven]) await signedIn(c);
    await member.subscribed(room);
    await observer.channelEvent(room, 'pusher:member_added', { where: (e) => e.data.id === '42' });
    const since = [observer.mark(), seven.mark()];

    const res = await sdkJson(sdkA.terminateUserConnections('42'), "terminateUserConnections('42') through node A");
    assert.deepEqual(res, {});
    await Promise.all([onB, onA, member].map((c) => terminated(c)));
    const removed = await observer.channelEvent(room, 'pusher:member_removed', { since: since[0] });
    assert.equal(removed.data.id, '42');

    await seven.expectNone((e) => e.kind === 'state' || e.kind === 'closed', {
      since: since[1],
      within: 0,
      what: 'user 7 untouched',
    });
    assert.equal(seven.state, 'connected');
    // User 7 on node B still gets a server-to-user event sent through node A.
    await sdkJson(sdkA.sendToUser('7', 'notice', { still: 'here' }), "sendToUser('7') through node A");
    const got = await seven.waitFor((e) => e.kind === 'user' && e.event === 'notice', { what: 'pusher.user "notice"' });
    assert.deepEqual(got.data, { still: 'here' });
  });

  scenario(cluster, 'cache channel: the last event, triggered through node A, is replayed to a later subscriber on node B', async () => {
    const name = `cache-${uniq('ticker.')}`;
    const first = makePusher('first subscriber (node B)', B);
    first.subscribe(name);
    await first.subscribed(name);
    await first.waitFor((e) => e.kind === 'raw' && e.frame?.event === 'pusher:cache_miss', { what: 'pusher:cache_miss' });

    await sdkJson(sdkA.trigger(name, 'App\\Events\\PriceChanged', { price: 42 }), 'trigger on a cache channel through node A');
    const live = await first.channelEvent(name, 'App\\Events\\PriceChanged');
    assert.deepEqual(live.data, { price: 42 });

    for (const [label, server] of [
      ['B', B],
      ['A', A],
    ]) {
      const late = makePusher(`late subscriber (node ${label})`, server);
      late.subscribe(name);
      await late.subscribed(name);
      const replayed = await late.channelEvent(name, 'App\\Events\\PriceChanged');
      assert.deepEqual(replayed.data, { price: 42 }, `node ${label} replays the cached event`);
      assert.equal(late.find((e) => e.kind === 'raw' && e.frame?.event === 'pusher:cache_miss').length, 0, 'no cache miss');
    }
  });

  // Last: the cluster gains and loses a node.
  scenario(cluster, 'a third node stopped with SIGTERM: its presence members leave node A within seconds', async () => {
    const C = await startNode('C');
    const room = `Rooms.${uniq('node-stop-')}`;
    const channel = `presence-${room}`;

    const alice = joinRoom('alice (user 1, node A)', A, room, user(1, 'Alice'));
    await echoSaw(alice, 'here');
    // Carol only on node C; Dave on node A and node C.
    const carol = joinRoom('carol (user 3, node C)', C, room, user(3, 'Carol'));
    await echoSaw(carol, 'here');
    await echoSaw(alice, 'joining', { where: (e) => e.data.id === 3, what: 'joining() for carol (node C)', timeout: 10000 });
    const daveA = joinRoom('dave (user 4, node A)', A, room, user(4, 'Dave'));
    await echoSaw(daveA, 'here');
    const daveC = joinRoom('dave (user 4, node C)', C, room, user(4, 'Dave'));
    const hereDaveC = await echoSaw(daveC, 'here');
    assert.deepEqual(hereDaveC.data.map((u) => u.id).sort(), [1, 3, 4], 'node C sees node A members');
    assert.deepEqual(
      userIds(await sdkJson(sdkA.get({ path: `/channels/${channel}/users` }), 'GET users through node A')),
      ['1', '3', '4'],
    );

    const since = alice.mark();
    const stopping = Date.now();
    const result = await C.stop();
    assert.equal(result.code, 0, `node C expected to exit 0 on SIGTERM, saw ${JSON.stringify(result)}`);
    const left = await echoSaw(alice, 'leaving', { since, what: 'leaving() for carol after node C stopped' });
    assert.deepEqual(left.data, { id: 3, name: 'Carol' });
    const took = left.at - stopping;
    assert.ok(took < 3000, `leaving() came ${took} ms after SIGTERM to node C, expected well under the 15 s node timeout`);
    // Dave still has a connection on node A: no leaving() for him.
    await alice.expectNone(isEcho('leaving', (e) => e.data.id === 4), {
      since,
      within: 800,
      what: 'no leaving() for dave, still connected to node A',
    });
    assert.equal(alice.find(isEcho('leaving'), since).length, 1, 'exactly one leaving()');
    assert.deepEqual(
      userIds(await sdkJson(sdkA.get({ path: `/channels/${channel}/users` }), 'GET users through node A')),
      ['1', '4'],
    );
  });
});
