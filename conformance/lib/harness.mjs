// Shared helpers for the resound conformance suite.
//
// Everything here drives the server through unmodified third-party code:
// pusher-js (its Node build, which bundles tweetnacl for encrypted channels),
// laravel-echo with the `reverb` broadcaster, the `pusher` Node server SDK,
// the `pusher` Python SDK (through python/sdk.py) and the `ws` package for
// raw protocol frames.

import { spawn, execFile } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import Echo from 'laravel-echo';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
// `require('pusher-js')` resolves to dist/node/pusher.js: the Node runtime
// with encryption support (nacl is set by the PusherWithEncryption class).
export const PusherJs = require('pusher-js');
export const PusherSdk = require('pusher');

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const APP = Object.freeze({
  id: '558412',
  key: 'q7h2x9v4m1n8b3c6z5k0',
  secret: 'w3e8r1t6y9u4i2o7p5a0',
});

// 32-byte master key (bytes 0x00..0x1f), known only to the "backend" SDKs.
export const MASTER_KEY_BASE64 = Buffer.from([...Array(32).keys()]).toString('base64');

export const SOCKET_ID_RE = /^\d+\.\d+$/;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const short = (value, max = 240) => {
  let text;
  try {
    text = typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text;
};

/** Bound any promise with a timeout; the message says what was awaited. */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Pick a free loopback port by binding port 0 and releasing it. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

export function resoundBin() {
  return path.resolve(ROOT, process.env.RESOUND_BIN || '../target/debug/resound');
}

export class Server {
  /** `env`: extra environment for resound (e.g. a short REVERB_APP_PING_INTERVAL). */
  /** `upCheck(server)`: how readiness is asked (over TLS, say); resolves to { status, text() }. */
  constructor({ env = {}, path: prefix = '', upCheck = null } = {}) {
    this.extraEnv = env;
    this.upCheck = upCheck;
    this.prefix = prefix; // REVERB_SERVER_PATH, e.g. "/reverb"
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resound-conformance-'));
    this.logPath = path.join(this.dir, 'resound.log');
    this.port = null;
    this.proc = null;
    this.exit = null;
  }

  get httpBase() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start({ port } = {}) {
    const bin = resoundBin();
    if (!fs.existsSync(bin)) {
      throw new Error(`resound binary not found at ${bin} (set RESOUND_BIN or build it first)`);
    }
    this.port = port ?? this.port ?? (await freePort());
    const log = fs.openSync(this.logPath, 'a');
    fs.writeSync(log, `\n=== starting ${bin} on port ${this.port} at ${new Date().toISOString()} ===\n`);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      REVERB_SERVER_HOST: '127.0.0.1',
      REVERB_SERVER_PORT: String(this.port),
      REVERB_APP_ID: APP.id,
      REVERB_APP_KEY: APP.key,
      REVERB_APP_SECRET: APP.secret,
      REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM: 'members',
      // Shutdown spreads its closes over this window (10 s by default); short here, so that
      // stop() sees the exit well within its own timeout.
      RESOUND_DRAIN_SECONDS: '1',
    };
    if (process.env.RUST_LOG) env.RUST_LOG = process.env.RUST_LOG;
    if (this.prefix) env.REVERB_SERVER_PATH = this.prefix;
    Object.assign(env, this.extraEnv);
    // Clean working directory: no stray .env or config file is picked up.
    const proc = spawn(bin, [], { cwd: this.dir, env, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.proc = proc;
    this.exit = new Promise((resolve) => {
      proc.once('exit', (code, signal) => resolve({ code, signal }));
      proc.once('error', (error) => resolve({ code: null, signal: null, error }));
    });
    let exited = null;
    this.exit.then((r) => (exited = r));

    const deadline = Date.now() + 15000;
    let last = 'no attempt';
    while (Date.now() < deadline) {
      if (exited) {
        throw new Error(`resound exited during start-up (${short(exited)})\n${this.logTail()}`);
      }
      try {
        const res = this.upCheck
          ? await this.upCheck(this)
          : await fetch(`${this.httpBase}${this.prefix}/up`, { signal: AbortSignal.timeout(1000) });
        const body = await res.text();
        if (res.status === 200 && body.includes('"health"')) {
          const parsed = JSON.parse(body);
          if (parsed.health !== 'OK') throw new Error(`/up answered ${body}`);
          return this;
        }
        last = `HTTP ${res.status} ${short(body)}`;
      } catch (e) {
        last = e.message;
      }
      await sleep(100);
    }
    await this.stop().catch(() => {});
    throw new Error(`resound did not become ready on port ${this.port} within 15 s (last: ${last})\n${this.logTail()}`);
  }

  /** SIGTERM, wait for exit; returns { code, signal }. */
  async stop({ timeout = 10000 } = {}) {
    const proc = this.proc;
    if (!proc) return null;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    let timer;
    const killed = new Promise((resolve) => {
      timer = setTimeout(() => {
        proc.kill('SIGKILL');
        resolve({ code: null, signal: 'SIGKILL', timedOut: true });
      }, timeout);
    });
    const result = await Promise.race([this.exit, killed]);
    clearTimeout(timer);
    if (result.timedOut) await this.exit;
    return result;
  }

  logTail(lines = 40) {
    try {
      const text = fs.readFileSync(this.logPath, 'utf8').trimEnd().split('\n');
      return `--- resound log (last ${Math.min(lines, text.length)} lines of ${this.logPath}) ---\n${text.slice(-lines).join('\n')}`;
    } catch {
      return '--- resound log: none ---';
    }
  }

  cleanup() {
    if (process.env.KEEP_LOGS) return;
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * One resound per test file (or describe block): started before its tests,
 * stopped with SIGTERM after them; a non-zero exit status fails the file.
 * `onReady(server)` runs once it is up. (Use it instead of another root-level
 * before(): Node 20 does not wait for one root hook before the next.)
 */
export function useServer(options, onReady) {
  const server = new Server(options);
  before(async () => {
    await server.start();
    await onReady?.(server);
  });
  after(async () => {
    const result = await server.stop();
    const tail = server.logTail(25);
    server.cleanup();
    if (result && result.code !== 0) {
      throw new Error(`resound expected to exit 0 on SIGTERM, saw ${short(result)}\n${tail}`);
    }
  });
  return server;
}

// ---------------------------------------------------------------------------
// Recorded clients
// ---------------------------------------------------------------------------

const liveClients = new Set();

/**
 * Something that receives things: every observation is appended to
 * `entries`; `waitFor` resolves on the first entry (old or new) matching a
 * predicate, or rejects with a message naming the client, what it expected
 * and what it saw.
 */
export class Recorder {
  constructor(name) {
    this.name = name;
    this.entries = [];
    this.emitter = new EventEmitter();
    this.emitter.setMaxListeners(100);
  }

  push(entry) {
    const stamped = { ...entry, index: this.entries.length, at: Date.now() };
    this.entries.push(stamped);
    this.emitter.emit('entry', stamped);
    return stamped;
  }

  /** Index to pass as `since` so only later entries count. */
  mark() {
    return this.entries.length;
  }

  find(pred, since = 0) {
    return this.entries.slice(since).filter(pred);
  }

  describe(since = 0, count = 15) {
    const seen = this.entries.slice(since);
    if (seen.length === 0) return '  (nothing)';
    return seen
      .slice(-count)
      .map((e) => `  #${e.index} ${short(Object.fromEntries(Object.entries(e).filter(([k]) => k !== 'index' && k !== 'at')))}`)
      .join('\n');
  }

  waitFor(pred, { timeout = 5000, what = 'a matching event', since = 0 } = {}) {
    const existing = this.entries.slice(since).find(pred);
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const onEntry = (entry) => {
        if (entry.index < since) return;
        let ok = false;
        try {
          ok = pred(entry);
        } catch {
          ok = false;
        }
        if (ok) {
          clearTimeout(timer);
          this.emitter.off('entry', onEntry);
          resolve(entry);
        }
      };
      const timer = setTimeout(() => {
        this.emitter.off('entry', onEntry);
        reject(
          new Error(
            `client "${this.name}" expected ${what} within ${timeout} ms, but saw:\n${this.describe(since)}`,
          ),
        );
      }, timeout);
      this.emitter.on('entry', onEntry);
    });
  }

  /** Wait `within` ms and fail if anything matching `pred` arrived since `since`. */
  async expectNone(pred, { within = 1000, what = 'no matching event', since = 0 } = {}) {
    await sleep(within);
    const found = this.entries.slice(since).filter(pred);
    if (found.length) {
      throw new Error(
        `client "${this.name}" expected ${what} (over ${within} ms), but saw:\n${found
          .map((e) => `  #${e.index} ${short(e)}`)
          .join('\n')}`,
      );
    }
  }
}

/** Wraps one pusher-js instance and records what it observes. */
export class PusherClient extends Recorder {
  constructor(name, pusher) {
    super(name);
    this.pusher = pusher;
    this.boundChannels = new Set();
    liveClients.add(this);
    pusher.connection.bind('state_change', (s) => {
      this.push({ kind: 'state', previous: s.previous, current: s.current });
      if (s.current === 'connected') this.hookRawFrames();
    });
    pusher.connection.bind('message', (m) => {
      const entry = { kind: 'message', event: m.event, channel: m.channel, data: m.data };
      if (m.user_id !== undefined) entry.user_id = m.user_id;
      this.push(entry);
    });
    pusher.connection.bind('error', (e) => this.push({ kind: 'error', error: e }));
  }

  // The raw text of every frame, to check that payloads arrive byte-identical.
  hookRawFrames() {
    const transport = this.pusher.connection?.connection?.transport;
    if (!transport || transport.__conformanceHooked) return;
    transport.__conformanceHooked = true;
    transport.bind('message', (m) => {
      let parsed = null;
      try {
        parsed = JSON.parse(m.data);
      } catch {
        parsed = null;
      }
      this.push({ kind: 'raw', text: m.data, frame: parsed });
    });
    // The WebSocket close code and reason, as pusher-js's transport saw them.
    const socket = transport.socket;
    transport.bind('closed', (c) => {
      this.push({ kind: 'closed', code: c?.code, reason: c?.reason });
      // On a server close with 4000-4099 ("refused") pusher-js calls close() on
      // the already closed socket of its bundled faye-websocket, which then
      // arms a 30 s close timer that does nothing but keeps Node alive. Unref
      // it so the test process can exit (no effect on what the client does).
      socket?._closeTimer?.unref?.();
    });
  }

  get socketId() {
    return this.pusher.connection.socket_id;
  }

  get state() {
    return this.pusher.connection.state;
  }

  async connected({ timeout = 5000, since = 0 } = {}) {
    await this.waitFor((e) => e.kind === 'state' && e.current === 'connected', {
      timeout,
      since,
      what: 'connection state "connected"',
    });
    return this.socketId;
  }

  /** pusher-js subscribe + record every channel-level event (decrypted ones too). */
  subscribe(name) {
    const channel = this.pusher.subscribe(name);
    this.recordChannel(name);
    return channel;
  }

  recordChannel(name) {
    if (this.boundChannels.has(name)) return;
    const channel = this.pusher.channel(name);
    if (!channel) return;
    this.boundChannels.add(name);
    channel.bind_global((event, data, metadata) => {
      if (event.startsWith('pusher_internal:')) return;
      const entry = { kind: 'channel', channel: name, event, data };
      if (metadata && metadata.user_id !== undefined) entry.user_id = metadata.user_id;
      this.push(entry);
    });
  }

  subscribed(name, { timeout = 5000, since = 0 } = {}) {
    return this.waitFor(
      (e) => e.kind === 'message' && e.event === 'pusher_internal:subscription_succeeded' && e.channel === name,
      { timeout, since, what: `pusher_internal:subscription_succeeded on "${name}"` },
    );
  }

  /** Wait for an event on a channel as delivered to pusher-js channel listeners. */
  channelEvent(channel, event, { timeout = 5000, since = 0, where = () => true } = {}) {
    return this.waitFor((e) => e.kind === 'channel' && e.channel === channel && e.event === event && where(e), {
      timeout,
      since,
      what: `event "${event}" on channel "${channel}"`,
    });
  }

  /** Wait for the raw frame of an event on a channel. */
  rawFrame(channel, event, { timeout = 5000, since = 0 } = {}) {
    return this.waitFor(
      (e) => e.kind === 'raw' && e.frame && e.frame.channel === channel && e.frame.event === event,
      { timeout, since, what: `a frame "${event}" on channel "${channel}"` },
    );
  }

  disconnect() {
    liveClients.delete(this);
    try {
      this.pusher.disconnect();
    } catch {
      // already gone
    }
  }
}

/**
 * An authorizer with the same result as Laravel's POST /broadcasting/auth:
 * the Node SDK's authorizeChannel, run locally. `user` = { id, info } for
 * presence channels. `secret` overrides the signing secret (bad signature).
 */
export function makeAuthorizer({ user, secret = APP.secret, log } = {}) {
  const signer = new PusherSdk({
    appId: APP.id,
    key: APP.key,
    secret,
    encryptionMasterKeyBase64: MASTER_KEY_BASE64,
  });
  return (channel) => ({
    authorize(socketId, callback) {
      setImmediate(() => {
        let result;
        try {
          if (channel.name.startsWith('presence-')) {
            if (!user) throw new Error(`no user for presence channel ${channel.name}`);
            result = signer.authorizeChannel(socketId, channel.name, { user_id: user.id, user_info: user.info });
          } else {
            result = signer.authorizeChannel(socketId, channel.name);
          }
        } catch (e) {
          log?.push({ kind: 'auth-error', channel: channel.name, error: e.message });
          callback(e, null);
          return;
        }
        log?.push({ kind: 'auth', channel: channel.name, socketId });
        callback(null, result);
      });
    },
  });
}

function clientOptions(server, extra = {}) {
  return {
    cluster: '',
    wsHost: '127.0.0.1',
    wsPort: server.port,
    wssPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    ...(server.prefix ? { wsPath: server.prefix } : {}),
    ...extra,
  };
}

/** A plain pusher-js client. */
export function makePusher(name, server, { user, secret, options = {} } = {}) {
  let client;
  const log = { push: (entry) => client?.push(entry) };
  const pusher = new PusherJs(options.key ?? APP.key, {
    ...clientOptions(server),
    authorizer: makeAuthorizer({ user, secret, log }),
    ...options,
  });
  client = new PusherClient(name, pusher);
  return client;
}

/**
 * Two pusher-js clients named `names`, both subscribed to `channel`; returns them and the
 * first one's channel object (for `trigger`).
 */
export async function pusherPair(server, channel, names = ['alice', 'bob']) {
  const [a, b] = names.map((n) => makePusher(n, server));
  const channelA = a.subscribe(channel);
  b.subscribe(channel);
  await a.subscribed(channel);
  await b.subscribed(channel);
  return { a, b, channelA };
}

/** A laravel-echo client (broadcaster "reverb") on top of pusher-js. */
export function makeEcho(name, server, { user, secret, options = {} } = {}) {
  let client;
  const log = { push: (entry) => client?.push(entry) };
  const echo = new Echo({
    broadcaster: 'reverb',
    key: APP.key,
    ...clientOptions(server),
    Pusher: PusherJs,
    authorizer: makeAuthorizer({ user, secret, log }),
    ...options,
  });
  client = new PusherClient(name, echo.connector.pusher);
  client.echo = echo;
  return client;
}

// ---------------------------------------------------------------------------
// Raw WebSocket client (ws package)
// ---------------------------------------------------------------------------

export class RawClient extends Recorder {
  constructor(name, url) {
    super(name);
    this.url = url;
    this.ws = new WebSocket(url);
    this.closed = null;
    liveClients.add(this);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.ws.on('message', (buf, isBinary) => {
      const text = buf.toString('utf8');
      let frame = null;
      try {
        frame = JSON.parse(text);
      } catch {
        frame = null;
      }
      let data = frame?.data;
      if (typeof data === 'string') {
        try {
          data = JSON.parse(data);
        } catch {
          // leave as string
        }
      }
      this.push({ kind: 'frame', text, frame, event: frame?.event, channel: frame?.channel, data, isBinary });
    });
    this.ws.on('error', (e) => this.push({ kind: 'socket-error', message: e.message }));
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      this.push({ kind: 'close', code, reason: this.closed.reason });
    });
  }

  static connect(name, server, { key = APP.key, query = 'protocol=7&client=js&version=8.4.2&flash=false', prefix = server.prefix } = {}) {
    return new RawClient(name, `ws://127.0.0.1:${server.port}${prefix}/app/${key}?${query}`);
  }

  async established({ timeout = 5000 } = {}) {
    const e = await this.waitFor((x) => x.kind === 'frame' && x.event === 'pusher:connection_established', {
      timeout,
      what: 'pusher:connection_established',
    });
    return e.data;
  }

  send(value) {
    this.ws.send(typeof value === 'string' ? value : JSON.stringify(value));
  }

  event(event, { timeout = 5000, since = 0, where = () => true } = {}) {
    return this.waitFor((e) => e.kind === 'frame' && e.event === event && where(e), {
      timeout,
      since,
      what: `frame "${event}"`,
    });
  }

  closeEvent({ timeout = 5000 } = {}) {
    return this.waitFor((e) => e.kind === 'close', { timeout, what: 'the socket to close' });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  disconnect() {
    liveClients.delete(this);
    try {
      if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
      else this.ws.close();
    } catch {
      // ignore
    }
  }
}

export function disconnectAll() {
  for (const c of [...liveClients]) c.disconnect();
}

// ---------------------------------------------------------------------------
// Backend SDKs
// ---------------------------------------------------------------------------

export function nodeSdk(server) {
  return new PusherSdk({
    appId: APP.id,
    key: APP.key,
    secret: APP.secret,
    host: '127.0.0.1',
    port: String(server.port),
    useTLS: false,
    encryptionMasterKeyBase64: MASTER_KEY_BASE64,
    timeout: 5000,
  });
}

/** Read a Node SDK response; throws with the body on non-2xx. */
export async function sdkJson(promise, what) {
  let res;
  try {
    res = await withTimeout(promise, 8000, what);
  } catch (e) {
    const body = e.body !== undefined ? ` body=${short(e.body)}` : '';
    const status = e.status !== undefined ? ` status=${e.status}` : '';
    const cause = e.error ? ` (${e.error.code ?? ''} ${e.error.message ?? e.error})` : '';
    throw new Error(`Node SDK ${what} failed: ${e.message}${cause}${status}${body}`);
  }
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`Node SDK ${what}: response is not JSON (HTTP ${res.status}): ${short(text)}`);
  }
}

export function pythonBin() {
  return process.env.CONFORMANCE_PYTHON || path.join(ROOT, '.venv', 'bin', 'python');
}

/** Run python/sdk.py in the venv; resolves to its JSON output. */
export function pythonSdk(server, command, args = {}) {
  const script = path.join(ROOT, 'python', 'sdk.py');
  return new Promise((resolve, reject) => {
    execFile(
      pythonBin(),
      [script, command, JSON.stringify(args)],
      {
        timeout: 15000,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          RESOUND_HOST: '127.0.0.1',
          RESOUND_PORT: String(server.port),
          RESOUND_APP_ID: APP.id,
          RESOUND_APP_KEY: APP.key,
          RESOUND_APP_SECRET: APP.secret,
          RESOUND_MASTER_KEY_BASE64: MASTER_KEY_BASE64,
        },
      },
      (error, stdout, stderr) => {
        let out = null;
        try {
          out = JSON.parse(stdout);
        } catch {
          out = null;
        }
        if (error || !out || out.error) {
          reject(
            new Error(
              `Python SDK ${command} ${short(args)} failed: ${out?.error ? short(out.error, 600) : error?.message}\n${stderr}`,
            ),
          );
        } else {
          resolve(out.result);
        }
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Test wiring
// ---------------------------------------------------------------------------

/**
 * A test that disconnects every client it made and, on failure, appends the
 * server's log tail to the error.
 */
export function scenario(server, name, fn, options = {}) {
  return test(name, { timeout: 60000, ...options }, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      const tail = server.logTail(25);
      err.message = `${err.message}\n${tail}`;
      // Reporters print the stack, which was captured with the old message.
      if (typeof err.stack === 'string') err.stack = `${err.stack}\n${tail}`;
      throw err;
    } finally {
      disconnectAll();
    }
  });
}

export function uniq(prefix) {
  return `${prefix}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;
}

export function randomBase64(bytes) {
  return randomBytes(bytes).toString('base64');
}

/** A HAWKI-like message payload: the content is encrypted client-side (AES-GCM). */
export function encryptedMessage(slug, author, role = 'user') {
  return JSON.stringify({
    type: 'message',
    slug,
    messageData: {
      message_role: role,
      message_id: `${Math.floor(Math.random() * 1000)}.000`,
      author: { username: author, name: author },
      content: { ciphertext: randomBase64(96), iv: randomBase64(12), tag: randomBase64(16) },
      created_at: new Date().toISOString(),
    },
  });
}
