// A Laravel chat room in real browsers: the browser builds of pusher-js (dist/web) and
// laravel-echo (its IIFE build) in Debian's headless chromium, against a small Node HTTP
// server that plays the Laravel app. That app does what Laravel does for the front end:
//
// - a session cookie and a `<meta name="csrf-token">` in the page (Echo reads it and sends
//   it as X-CSRF-TOKEN with every authorization request);
// - POST /broadcasting/auth: socket_id and channel_name from the form body pusher-js posts,
//   the channel route `Rooms.{slug}` allowing room members only (403 for anyone else, 419
//   for a bad CSRF token), signed with the Node SDK's authorizeChannel; for presence, the
//   channel_data has the user's numeric id (getAuthIdentifier) and user_info;
// - POST /rooms/{slug}/messages: `broadcast(new RoomMessageEvent(...))->toOthers()`, that is
//   a trigger of App\Events\RoomMessageEvent on private-Rooms.{slug} with the socket id the
//   page sent in its X-Socket-ID header.
//
// Four users (a browser context each: own cookies, own WebSocket) check listen() with the
// payload byte for byte, toOthers, whispers, here/joining/leaving, a non-member refused
// through Echo's .error(), a reloaded tab and a closed one. A second resound, with
// REVERB_APP_ALLOWED_ORIGINS, checks the Origin the browser itself sends.
//
// Everything the pages see is recorded in `window.__log` and read back with page.evaluate;
// every wait is bounded. "Nothing arrived" is checked after a fence: an event on the public
// `Lobby` channel every page listens to, triggered after the event under test, so that when
// a page has the fence it would already have anything sent to it before.
//
// CHROMIUM_BIN names the browser (run.sh installs Debian's chromium when it is missing).
import { after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';

import {
  useServer,
  nodeSdk,
  sdkJson,
  scenario,
  uniq,
  encryptedMessage,
  withTimeout,
  sleep,
  APP,
  PusherSdk,
  ROOT,
  SOCKET_ID_RE,
} from '../lib/harness.mjs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const WAIT = 8000;
const EVENT = 'App\\Events\\RoomMessageEvent';
const APP_HOST = 'laravel.test';

// The browser builds, served by the app as a Laravel app serves its compiled assets.
const ASSETS = {
  '/js/pusher.js': path.join(ROOT, 'node_modules', 'pusher-js', 'dist', 'web', 'pusher.js'),
  '/js/echo.js': path.join(ROOT, 'node_modules', 'laravel-echo', 'dist', 'echo.iife.js'),
};

// Users as the app's `users` table has them: numeric ids.
const USERS = new Map([
  [1, { id: 1, name: 'Ada' }],
  [2, { id: 2, name: 'Ben' }],
  [3, { id: 3, name: 'Cem' }],
  [4, { id: 4, name: 'Mallory' }],
]);

/**
 * The front end (resources/js/app.js and bootstrap.js in a Laravel app), run in each page.
 * Kept as a real function so that Node parses it; it is sent to the browser as source.
 */
function roomPage(config) {
  const log = [];
  window.__log = log;
  const record = (what, fields = {}) => log.push({ what, ...fields });
  window.addEventListener('error', (e) => record('page-error', { data: String(e.message) }));

  // The IIFE build of laravel-echo defines `Echo` as its module namespace; the class is its
  // default export. pusher-js's web build defines `window.Pusher`, which Echo picks up.
  const EchoClass = window.Echo.default;
  window.Echo = new EchoClass({
    broadcaster: 'reverb',
    key: config.key,
    wsHost: config.wsHost,
    wsPort: config.wsPort,
    wssPort: config.wsPort,
    forceTLS: false,
    enabledTransports: ['ws', 'wss'],
  });

  // Every frame the page's WebSocket receives, as text, to compare payloads byte for byte.
  const pusher = window.Echo.connector.pusher;
  // A refusal at connection time (pusher:error 4009, say): pusher-js's connection 'error'.
  pusher.connection.bind('error', (e) => {
    const data = (e.error && e.error.data) || {};
    record('connection-error', { data: { type: e.type, code: data.code, message: data.message } });
  });
  pusher.connection.bind('state_change', (s) => {
    record('state', { data: s.current });
    const transport = pusher.connection.connection && pusher.connection.connection.transport;
    if (s.current === 'connected' && transport && !transport.__recorded) {
      transport.__recorded = true;
      // The web build's own WebSocket transport: the browser's native window.WebSocket.
      const socket = transport.socket;
      record('socket', { data: { url: socket && socket.url, native: socket instanceof window.WebSocket } });
      transport.bind('message', (m) => {
        let frame = {};
        try {
          frame = JSON.parse(m.data);
        } catch (e) {
          frame = {};
        }
        record('frame', { event: frame.event, channel: frame.channel, text: m.data });
      });
    }
  });

  const room = 'Rooms.' + config.slug;
  window.Echo.private(room)
    .subscribed(() => record('subscribed', { channel: 'private' }))
    .error((e) => record('error', { channel: 'private', data: { type: e.type, status: e.status } }))
    .listen('RoomMessageEvent', (e) => record('message', { data: e }))
    .listenForWhisper('typing', (e) => record('typing', { data: e }));
  window.Echo.join(room)
    .here((users) => record('here', { data: users }))
    .joining((user) => record('joining', { data: user }))
    .leaving((user) => record('leaving', { data: user }))
    .error((e) => record('error', { channel: 'presence', data: { type: e.type, status: e.status } }));
  window.Echo.channel('Lobby').listen('LobbyEvent', (e) => record('lobby', { data: e }));

  // What the chat's "send" button does: an ordinary request to the app, with the socket id
  // in X-Socket-ID so that the app's broadcast()->toOthers() leaves this tab out.
  window.sendMessage = async (payload) => {
    const res = await fetch('/rooms/' + config.slug + '/messages', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json',
        'X-CSRF-TOKEN': document.querySelector('meta[name="csrf-token"]').getAttribute('content'),
        'X-Socket-ID': window.Echo.socketId(),
      },
      body: payload,
    });
    return res.status;
  };
  window.typing = (data) => {
    window.Echo.private(room).whisper('typing', data);
  };
}

function cookies(req) {
  const out = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The Laravel app: sessions, the room page, /broadcasting/auth and the message endpoint. */
class LaravelApp {
  constructor(resound) {
    this.resound = resound;
    this.sdk = nodeSdk(resound);
    this.signer = new PusherSdk({ appId: APP.id, key: APP.key, secret: APP.secret });
    this.sessions = new Map(); // session id -> { user, csrf }
    this.rooms = new Map(); // slug -> Set of user ids
    this.requests = []; // what reached the app's endpoints, with the answer given
  }

  /** The app's address under a host name (which the browser resolves to loopback). */
  base(host = '127.0.0.1') {
    return `http://${host}:${this.port}`;
  }

  async start() {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        this.requests.push({ path: req.url, status: 500, error: e.message });
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(String(e.message));
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
  }

  async stop() {
    this.server?.closeAllConnections?.();
    await new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve()));
  }

  session(req) {
    return this.sessions.get(cookies(req).laravel_session) ?? null;
  }

  json(res, status, body) {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  async handle(req, res) {
    const url = new URL(req.url, `http://${req.headers.host ?? '127.0.0.1'}`);
    const asset = ASSETS[url.pathname];
    if (req.method === 'GET' && asset) {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      res.end(fs.readFileSync(asset));
      return;
    }
    let m;
    if (req.method === 'GET' && (m = url.pathname.match(/^\/login\/(\d+)$/))) {
      // Stands in for the login form: a new session for that user, then the room.
      const user = USERS.get(Number(m[1]));
      if (!user) return this.json(res, 404, { message: 'Not Found' });
      const id = randomBytes(16).toString('hex');
      this.sessions.set(id, { user, csrf: randomBytes(20).toString('hex') });
      res.writeHead(302, {
        'Set-Cookie': `laravel_session=${id}; Path=/; HttpOnly; SameSite=Lax`,
        Location: `/rooms/${encodeURIComponent(url.searchParams.get('room') ?? '')}`,
      });
      res.end();
      return;
    }
    if (req.method === 'GET' && (m = url.pathname.match(/^\/rooms\/([\w-]+)$/))) {
      const session = this.session(req);
      if (!session) return this.json(res, 401, { message: 'Unauthenticated.' });
      // VITE_REVERB_HOST: the app's own host name, which resolves to resound here.
      const config = { key: APP.key, wsHost: url.hostname, wsPort: this.resound.port, slug: m[1] };
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html>
<html><head><meta charset="utf-8">
<meta name="csrf-token" content="${session.csrf}">
<title>Room ${m[1]}</title>
<script src="/js/pusher.js"></script>
<script src="/js/echo.js"></script>
<script>(${roomPage.toString()})(${JSON.stringify(config)});</script>
</head><body><h1>Room ${m[1]}</h1><p>Signed in as ${session.user.name}</p></body></html>`);
      return;
    }
    if (req.method === 'POST' && url.pathname === '/broadcasting/auth') return this.broadcastingAuth(req, res);
    if (req.method === 'POST' && (m = url.pathname.match(/^\/rooms\/([\w-]+)\/messages$/))) {
      return this.postMessage(req, res, m[1]);
    }
    this.json(res, 404, { message: 'Not Found' });
  }

  /** Laravel's Broadcast::routes() with a channel route `Rooms.{slug}` for room members. */
  async broadcastingAuth(req, res) {
    const form = new URLSearchParams(await readBody(req));
    const socketId = form.get('socket_id');
    const channel = form.get('channel_name') ?? '';
    const session = this.session(req);
    const entry = {
      path: '/broadcasting/auth',
      user: session?.user.id,
      channel,
      socketId,
      contentType: req.headers['content-type'],
      csrfHeader: req.headers['x-csrf-token'],
    };
    this.requests.push(entry);
    const answer = (status, body) => {
      entry.status = status;
      this.json(res, status, body);
    };
    // The `web` middleware: a guest is refused, then the CSRF token is checked (419).
    if (!session) return answer(403, { message: 'This action is unauthorized.' });
    if (req.headers['x-csrf-token'] !== session.csrf) return answer(419, { message: 'CSRF token mismatch.' });
    const m = channel.match(/^(private|presence)-Rooms\.([\w-]+)$/);
    const members = m && this.rooms.get(m[2]);
    if (!members || !members.has(session.user.id)) return answer(403, { message: 'This action is unauthorized.' });
    if (!SOCKET_ID_RE.test(socketId ?? '')) return answer(400, { message: 'Invalid socket id.' });
    if (m[1] === 'presence') {
      const { user } = session;
      return answer(200, this.signer.authorizeChannel(socketId, channel, { user_id: user.id, user_info: { ...user } }));
    }
    return answer(200, this.signer.authorizeChannel(socketId, channel));
  }

  /** A room message: stored (not here), then broadcast to the room's other tabs. */
  async postMessage(req, res, slug) {
    const body = await readBody(req);
    const session = this.session(req);
    const entry = { path: `/rooms/${slug}/messages`, user: session?.user.id, socketIdHeader: req.headers['x-socket-id'] };
    this.requests.push(entry);
    const answer = (status, json) => {
      entry.status = status;
      this.json(res, status, json);
    };
    if (!session) return answer(401, { message: 'Unauthenticated.' });
    if (req.headers['x-csrf-token'] !== session.csrf) return answer(419, { message: 'CSRF token mismatch.' });
    if (!this.rooms.get(slug)?.has(session.user.id)) return answer(403, { message: 'This action is unauthorized.' });
    const params = {};
    // Broadcast::socket(): the X-Socket-ID header, when it is a socket id.
    if (SOCKET_ID_RE.test(req.headers['x-socket-id'] ?? '')) params.socket_id = req.headers['x-socket-id'];
    entry.trigger = await sdkJson(this.sdk.trigger(`private-Rooms.${slug}`, EVENT, body, params), 'trigger RoomMessageEvent');
    answer(201, { status: 'sent' });
  }
}

let browser;
let app;
let strictApp;
// The browser and the app start once resound is up (and only then: a failed start leaves
// nothing running that would keep the test process alive).
const server = useServer({}, async (s) => {
  assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (conformance/run.sh installs it)`);
  for (const file of Object.values(ASSETS)) assert.ok(fs.existsSync(file), `missing browser build ${file}`);
  // Chromium's sandbox refuses to start as root; a root run (CI, containers) goes without it.
  // The app's domain, laravel.test, resolves to loopback inside this browser only.
  const args = [`--host-resolver-rules=MAP ${APP_HOST} 127.0.0.1`];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  app = new LaravelApp(s);
  await app.start();
});
// A second resound that accepts WebSocket connections from pages of the app's domain only.
const strict = useServer({ env: { REVERB_APP_ALLOWED_ORIGINS: APP_HOST } }, async (s) => {
  strictApp = new LaravelApp(s);
  await strictApp.start();
});
after(async () => {
  await browser?.close();
  await app?.stop();
  await strictApp?.stop();
});

/** One user's tab: a browser context of its own, signed in, on the room's page. */
async function openRoom(userId, slug, { on = app, host = '127.0.0.1' } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${on.base(host)}/login/${userId}?room=${slug}`);
  return { name: USERS.get(userId).name, user: USERS.get(userId), context, page, errors };
}

const logOf = (tab) => tab.page.evaluate(() => window.__log);
const mark = (tab) => tab.page.evaluate(() => window.__log.length);

/**
 * Wait (bounded) for the first entry since `since` whose fields equal those of `match`;
 * resolves to it. On timeout the error lists what the page did record.
 */
async function entry(tab, match, { since = 0, timeout = WAIT } = {}) {
  try {
    const handle = await tab.page.waitForFunction(
      ({ match, since }) =>
        window.__log.slice(since).find((e) => Object.entries(match).every(([k, v]) => e[k] === v)) ?? false,
      { match, since },
      { timeout },
    );
    return await handle.jsonValue();
  } catch (e) {
    const seen = await logOf(tab).catch(() => []);
    const lines = seen
      .slice(since)
      .filter((x) => x.what !== 'frame' || !x.event?.startsWith('pusher:p'))
      .map((x) => `  ${JSON.stringify(x).slice(0, 300)}`);
    const why = e.message.split('\n')[0];
    throw new Error(
      `${tab.name}'s page: expected ${JSON.stringify(match)} within ${timeout} ms (${why}); it recorded:\n${lines.join('\n')}`,
    );
  }
}

/** The members a page's here()/joining()/leaving() calls add up to, by name. */
function roster(log) {
  const names = new Set();
  for (const e of log) {
    if (e.what === 'here') for (const u of e.data) names.add(u.name);
    if (e.what === 'joining') names.add(e.data.name);
    if (e.what === 'leaving') names.delete(e.data.name);
  }
  return [...names].sort();
}

/** Poll `probe` (bounded) until it returns { ok: true, ... }; resolves to that result. */
async function until(what, probe, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last.ok) return last;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
}

/** The HTTP API's channel info with the subscription count. */
function subscriptions(sdk, channel) {
  return sdkJson(sdk.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } }), `info of ${channel}`);
}

let fences = 0;
/** Trigger a Lobby event and wait until every tab has it; resolves when all are fenced. */
async function fence(sdk, tabs) {
  const n = ++fences;
  const since = await Promise.all(tabs.map(mark));
  await sdkJson(sdk.trigger('Lobby', 'App\\Events\\LobbyEvent', { fence: n }), `trigger fence ${n}`);
  await Promise.all(tabs.map(async (t, i) => {
    const got = await entry(t, { what: 'lobby' }, { since: since[i] });
    assert.deepEqual(got.data, { fence: n }, `${t.name}: the fence`);
  }));
}

describe('Laravel Echo in a browser', () => {
  scenario(server, 'a chat room: private and presence channels, toOthers, whispers, a refused user, a reload, a tab closed', async () => {
    const sdk = nodeSdk(server);
    const slug = uniq('room-');
    const privateName = `private-Rooms.${slug}`;
    const presenceName = `presence-Rooms.${slug}`;
    app.rooms.set(slug, new Set([1, 2, 3]));
    const tabs = [];
    try {
      // Ada opens the room first: here() with herself only.
      const ada = await openRoom(1, slug);
      tabs.push(ada);
      await entry(ada, { what: 'subscribed', channel: 'private' });
      const socket = await entry(ada, { what: 'socket' });
      assert.equal(socket.data.native, true, 'a window.WebSocket');
      // (The web build of pusher-js 8.4.2 reports version 8.4.0 here.)
      const wsUrl = new URL(socket.data.url);
      assert.equal(`${wsUrl.origin}${wsUrl.pathname}`, `ws://127.0.0.1:${server.port}/app/${APP.key}`);
      assert.equal(wsUrl.searchParams.get('protocol'), '7');
      assert.equal(wsUrl.searchParams.get('client'), 'js');
      const adaHere = await entry(ada, { what: 'here' });
      assert.deepEqual(adaHere.data, [{ id: 1, name: 'Ada' }]);

      // Ben and Cem join: Ada sees joining() for each, and every member ends with all three.
      const ben = await openRoom(2, slug);
      const cem = await openRoom(3, slug);
      tabs.push(ben, cem);
      const members = [ada, ben, cem];
      for (const t of members) {
        await entry(t, { what: 'subscribed', channel: 'private' });
        await entry(t, { what: 'here' });
      }
      await entry(ada, { what: 'joining' });
      for (const t of members) {
        await t.page.waitForFunction(() => {
          const names = new Set();
          for (const e of window.__log) {
            if (e.what === 'here') for (const u of e.data) names.add(u.name);
            if (e.what === 'joining') names.add(e.data.name);
            if (e.what === 'leaving') names.delete(e.data.name);
          }
          return names.size === 3;
        }, null, { timeout: WAIT }).catch(async (e) => {
          throw new Error(`${t.name}'s roster: ${roster(await logOf(t))} (${e.message.split('\n')[0]})`);
        });
        assert.deepEqual(roster(await logOf(t)), ['Ada', 'Ben', 'Cem'], `${t.name}'s roster`);
        // pusher-js's own record of "me" comes from the channel_data the app signed.
        const me = await t.page.evaluate((name) => window.Echo.connector.pusher.channel(name).members.me, presenceName);
        assert.deepEqual(me, { id: t.user.id, info: t.user }, `${t.name}: members.me`);
      }

      // Mallory is signed in but not a member: both authorizations are refused with 403, which
      // Echo hands to .error(); she never subscribes, so resound counts three.
      const mallory = await openRoom(4, slug);
      tabs.push(mallory);
      for (const channel of ['private', 'presence']) {
        const refused = await entry(mallory, { what: 'error', channel });
        assert.deepEqual(refused.data, { type: 'AuthError', status: 403 }, `Mallory's ${channel} refusal`);
      }
      await entry(mallory, { what: 'state', data: 'connected' });
      assert.deepEqual(await subscriptions(sdk, privateName), { occupied: true, subscription_count: 3 });
      const users = await sdkJson(sdk.get({ path: `/channels/${presenceName}/users` }), 'presence users');
      assert.deepEqual(users.users.map((u) => String(u.id)).sort(), ['1', '2', '3']);

      // What the app's /broadcasting/auth saw: pusher-js's form post, Echo's CSRF header
      // (from the page's meta tag), the page's session cookie, each tab's own socket id.
      const auths = app.requests.filter((r) => r.path === '/broadcasting/auth');
      assert.equal(auths.length, 8, `two authorizations per tab: ${JSON.stringify(auths)}`);
      for (const t of tabs) {
        const socketId = await t.page.evaluate(() => window.Echo.socketId());
        assert.match(socketId, SOCKET_ID_RE);
        const mine = auths.filter((r) => r.user === t.user.id);
        assert.deepEqual(mine.map((r) => r.channel).sort(), [presenceName, privateName], `${t.name}'s authorizations`);
        for (const r of mine) {
          assert.equal(r.socketId, socketId, `${t.name}: socket_id in the form body`);
          assert.match(r.contentType, /^application\/x-www-form-urlencoded/);
          assert.ok(r.csrfHeader, `${t.name}: X-CSRF-TOKEN sent`);
          assert.equal(r.status, t === mallory ? 403 : 200, `${t.name}: answer to ${r.channel}`);
        }
      }

      // 1. Ben sends a message through the app; it broadcasts toOthers with his X-Socket-ID.
      // Ada and Cem get the payload byte for byte; Ben and Mallory get nothing.
      const payload = encryptedMessage(slug, 'ben');
      let since = await Promise.all(tabs.map(mark));
      assert.equal(await ben.page.evaluate((p) => window.sendMessage(p), payload), 201);
      const posted = app.requests.find((r) => r.path === `/rooms/${slug}/messages`);
      assert.equal(posted.socketIdHeader, await ben.page.evaluate(() => window.Echo.socketId()));
      assert.deepEqual(posted.trigger, {});
      for (const t of [ada, cem]) {
        const i = tabs.indexOf(t);
        const frame = await entry(t, { what: 'frame', channel: privateName, event: EVENT }, { since: since[i] });
        assert.equal(JSON.parse(frame.text).data, payload, `${t.name}: the data string as sent`);
        const got = await entry(t, { what: 'message' }, { since: since[i] });
        assert.deepEqual(got.data, JSON.parse(payload), `${t.name}: Echo's listen()`);
      }
      await fence(sdk, tabs);
      for (const t of [ben, mallory]) {
        const log = (await logOf(t)).slice(since[tabs.indexOf(t)]);
        assert.deepEqual(log.filter((e) => e.what === 'message' || e.channel === privateName), [], `${t.name} got no copy`);
      }

      // 2. A reply broadcast without a socket id (the AI's answer) reaches all three members.
      const reply = encryptedMessage(slug, 'HAWKI', 'assistant');
      since = await Promise.all(tabs.map(mark));
      assert.deepEqual(await sdkJson(sdk.trigger(privateName, EVENT, reply), 'trigger reply'), {});
      for (const t of members) {
        const frame = await entry(t, { what: 'frame', channel: privateName, event: EVENT }, { since: since[tabs.indexOf(t)] });
        assert.equal(JSON.parse(frame.text).data, reply, `${t.name}: the reply as sent`);
      }

      // 3. Cem types: a whisper reaches Ada and Ben, not Cem himself, not Mallory.
      since = await Promise.all(tabs.map(mark));
      await cem.page.evaluate(() => window.typing({ username: 'cem', typing: true }));
      for (const t of [ada, ben]) {
        const got = await entry(t, { what: 'typing' }, { since: since[tabs.indexOf(t)] });
        assert.deepEqual(got.data, { username: 'cem', typing: true }, `${t.name}: the whisper`);
      }
      await fence(sdk, tabs);
      for (const t of [cem, mallory]) {
        const log = (await logOf(t)).slice(since[tabs.indexOf(t)]);
        assert.deepEqual(log.filter((e) => e.what === 'typing'), [], `${t.name} got no whisper`);
      }

      // 4. Cem reloads his tab: the old page's socket goes, the new page connects with a new
      // socket id, is authorized again and is in the room as before, for everyone.
      const oldSocketId = await cem.page.evaluate(() => window.Echo.socketId());
      await withTimeout(cem.page.reload(), WAIT, "reloading Cem's tab");
      await entry(cem, { what: 'subscribed', channel: 'private' });
      const cemHere = await entry(cem, { what: 'here' });
      assert.deepEqual(cemHere.data.map((u) => u.name).sort(), ['Ada', 'Ben', 'Cem'], "Cem's here() after the reload");
      const newSocketId = await cem.page.evaluate(() => window.Echo.socketId());
      assert.notEqual(newSocketId, oldSocketId);
      const reauth = app.requests.filter((r) => r.path === '/broadcasting/auth' && r.socketId === newSocketId);
      assert.deepEqual(reauth.map((r) => `${r.channel} ${r.status}`).sort(), [`${presenceName} 200`, `${privateName} 200`]);
      // Once resound has let the old socket go (bounded poll of the HTTP API), a fence makes
      // sure every presence event about it has been delivered: Ada and Ben still list Cem.
      await until('the old socket of Cem to leave the private channel', async () => {
        const now = await subscriptions(sdk, privateName);
        return { ok: now.subscription_count === 3, now };
      });
      await fence(sdk, tabs);
      for (const t of [ada, ben]) {
        assert.deepEqual(roster(await logOf(t)), ['Ada', 'Ben', 'Cem'], `${t.name}'s roster after Cem's reload`);
      }
      // A message from Ada reaches the reloaded page once.
      const again = encryptedMessage(slug, 'ada');
      since = await Promise.all(tabs.map(mark));
      assert.equal(await ada.page.evaluate((p) => window.sendMessage(p), again), 201);
      await entry(cem, { what: 'message' }, { since: since[tabs.indexOf(cem)] });
      await entry(ben, { what: 'message' }, { since: since[tabs.indexOf(ben)] });
      await fence(sdk, tabs);
      const copies = (await logOf(cem)).filter(
        (e) => e.what === 'frame' && e.channel === privateName && JSON.parse(e.text).data === again,
      );
      assert.equal(copies.length, 1, 'one copy of the message on the reloaded page');

      // 5. Ada closes her tab: Ben and Cem see leaving() with her, and the presence list shrinks.
      since = await Promise.all(tabs.map(mark));
      await withTimeout(ada.context.close(), WAIT, "closing Ada's tab");
      tabs.splice(tabs.indexOf(ada), 1);
      since.shift();
      for (const t of [ben, cem]) {
        const left = await entry(t, { what: 'leaving' }, { since: since[tabs.indexOf(t)] });
        assert.deepEqual(left.data, { id: 1, name: 'Ada' }, `${t.name}: leaving()`);
        assert.deepEqual(roster(await logOf(t)), ['Ben', 'Cem'], `${t.name}'s roster after Ada left`);
      }
      const after = await sdkJson(sdk.get({ path: `/channels/${presenceName}/users` }), 'presence users after');
      assert.deepEqual(after.users.map((u) => String(u.id)).sort(), ['2', '3']);

      // Mallory saw nothing of the room from start to end; no page had a script error.
      const malloryLog = await logOf(mallory);
      const leaked = malloryLog.filter(
        (e) => ['message', 'typing', 'here', 'joining', 'leaving', 'subscribed'].includes(e.what) ||
          e.channel === privateName || e.channel === presenceName,
      );
      assert.deepEqual(leaked, [], 'nothing of the room reached Mallory');
      for (const t of [ada, ...tabs]) {
        assert.deepEqual(t.errors, [], `${t.name}: page errors`);
      }
      for (const t of tabs) {
        assert.deepEqual((await logOf(t)).filter((e) => e.what === 'page-error'), [], `${t.name}: page errors`);
      }
    } finally {
      for (const t of tabs) await t.context.close().catch(() => {});
    }
  });

  scenario(strict, `REVERB_APP_ALLOWED_ORIGINS: the page's Origin is checked by host, port aside`, async () => {
    const slug = uniq('room-');
    strictApp.rooms.set(slug, new Set([1, 2]));
    const tabs = [];
    try {
      // A page of the app's domain (Origin: http://laravel.test:<port>) connects and joins.
      const ada = await openRoom(1, slug, { on: strictApp, host: APP_HOST });
      tabs.push(ada);
      await entry(ada, { what: 'subscribed', channel: 'private' });
      const here = await entry(ada, { what: 'here' });
      assert.deepEqual(here.data, [{ id: 1, name: 'Ada' }]);
      const socket = await entry(ada, { what: 'socket' });
      assert.equal(new URL(socket.data.url).host, `${APP_HOST}:${strict.port}`);

      // The same app opened as http://127.0.0.1:<port> is another origin: resound answers the
      // handshake with pusher:error 4009, pusher-js reports it and stays disconnected.
      const ben = await openRoom(2, slug, { on: strictApp, host: '127.0.0.1' });
      tabs.push(ben);
      const refused = await entry(ben, { what: 'connection-error' });
      assert.equal(refused.data.code, 4009, `Ben's refusal: ${JSON.stringify(refused.data)}`);
      assert.match(refused.data.message, /origin/i);
      await entry(ben, { what: 'state', data: 'disconnected' });
      const log = await logOf(ben);
      assert.deepEqual(log.filter((e) => e.what === 'state' && e.data === 'connected'), [], 'Ben never connected');
      assert.deepEqual(
        strictApp.requests.filter((r) => r.path === '/broadcasting/auth' && r.user === 2),
        [],
        'a page that is not connected asks for no authorization',
      );
      const info = await subscriptions(nodeSdk(strict), `private-Rooms.${slug}`);
      assert.deepEqual(info, { occupied: true, subscription_count: 1 });
      for (const t of tabs) assert.deepEqual(t.errors, [], `${t.name}: page errors`);
    } finally {
      for (const t of tabs) await t.context.close().catch(() => {});
    }
  });
});
