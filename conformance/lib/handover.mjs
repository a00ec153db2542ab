// A restart without refused connections (SO_REUSEPORT): `clients` WebSocket clients on an
// old resound; a new resound starts on the same port; the old one gets SIGTERM and drains.
// Each client behaves as pusher-js does: on close 4200 it reconnects at once, and on a failed
// attempt it tries again shortly. Returns what happened; ends only the processes it started.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import WebSocket from 'ws';

import { APP, freePort, resoundBin, sleep, withTimeout } from './harness.mjs';

/** Starts resound on `port`; resolves once it printed its banner (it is then listening). */
async function startResound(name, port, { drainSeconds, env = {} }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `resound-handover-${name}-`));
  const proc = spawn(resoundBin(), [], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      REVERB_SERVER_HOST: '127.0.0.1',
      REVERB_SERVER_PORT: String(port),
      REVERB_APP_ID: APP.id,
      REVERB_APP_KEY: APP.key,
      REVERB_APP_SECRET: APP.secret,
      RESOUND_DRAIN_SECONDS: String(drainSeconds),
      RESOUND_SHUTDOWN_TIMEOUT: String(Math.ceil(drainSeconds) + 5),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = [];
  readline.createInterface({ input: proc.stderr }).on('line', (l) => stderr.push(l));
  const exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = readline.createInterface({ input: proc.stdout });
  const banner = new Promise((resolve, reject) => {
    lines.on('line', (l) => l.includes('listening on') && resolve());
    exit.then((r) => reject(new Error(`${name} resound exited at start: ${JSON.stringify(r)} ${stderr.join('\n')}`)));
  });
  await withTimeout(banner, 15000, `${name} resound to listen`);
  return {
    proc,
    exit,
    stderr,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const r = await withTimeout(exit, 30000, `${name} resound to exit`).catch(() => {
        proc.kill('SIGKILL');
        return { code: null, signal: 'SIGKILL' };
      });
      fs.rmSync(dir, { recursive: true, force: true });
      return r;
    },
  };
}

/** A client that reconnects as pusher-js does. */
class Client {
  constructor(url, stats) {
    this.url = url;
    this.stats = stats;
    this.established = 0; // connections established so far
    this.ws = null;
    this.stopped = false;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    let opened = false;
    ws.on('open', () => (opened = true));
    ws.on('message', (buf) => {
      const frame = JSON.parse(buf.toString('utf8'));
      if (frame.event === 'pusher:connection_established') {
        this.established += 1;
        this.stats.onEstablished(this);
      }
    });
    ws.on('error', (e) => {
      if (!opened) this.stats.onFailedAttempt(e.code ?? e.message);
    });
    ws.on('close', (code) => {
      if (this.stopped) return;
      if (!opened) {
        // pusher-js waits before trying again after a failed attempt.
        setTimeout(() => this.connect(), 100);
        return;
      }
      this.stats.onClosed(code);
      // 4200: reconnect at once; anything else here is unexpected, but reconnect too.
      this.connect();
    });
  }

  stop() {
    this.stopped = true;
    this.ws?.terminate();
  }
}

/**
 * Runs the handover. Returns counts: clients, reconnected (clients that got a connection
 * after SIGTERM), failedAttempts by error code, closes by code, the largest number of
 * reconnects in any 100 ms bucket, the old process's exit, and how long it took.
 */
export async function runHandover({ clients = 2000, drainSeconds = 5, env = {} } = {}) {
  const port = await freePort();
  const stats = {
    failedAttempts: {},
    closes: {},
    reconnectTimes: [],
    termAt: null,
    established: 0,
    onEstablished: (c) => {
      stats.established += 1;
      if (stats.termAt !== null && c.established >= 2) stats.reconnectTimes.push(Date.now() - stats.termAt);
    },
    onFailedAttempt: (code) => (stats.failedAttempts[code] = (stats.failedAttempts[code] ?? 0) + 1),
    onClosed: (code) => (stats.closes[code] = (stats.closes[code] ?? 0) + 1),
  };
  const old = await startResound('old', port, { drainSeconds, env });
  let fresh = null;
  const all = [];
  try {
    const url = `ws://127.0.0.1:${port}/app/${APP.key}?protocol=7&client=js&version=8.4.0&flash=false`;
    for (let i = 0; i < clients; i++) {
      all.push(new Client(url, stats));
      if (i % 100 === 99) await sleep(20); // do not overrun the accept queue at start
    }
    const up = async () => {
      while (all.some((c) => c.established < 1)) await sleep(50);
    };
    await withTimeout(up(), 60000, `${clients} clients to connect to the old process`);
    const failedBefore = structuredClone(stats.failedAttempts);

    fresh = await startResound('new', port, { drainSeconds, env });
    stats.termAt = Date.now();
    old.proc.kill('SIGTERM');
    const moved = async () => {
      while (all.some((c) => c.established < 2)) await sleep(50);
    };
    await withTimeout(moved(), (drainSeconds + 20) * 1000, 'every client to reconnect');
    const oldExit = await withTimeout(old.exit, (drainSeconds + 10) * 1000, 'the old process to exit');
    const tookMs = Date.now() - stats.termAt;
    // Every connection now lives on the new process (the old one has exited): let it settle
    // and check nobody was closed again.
    await sleep(300);
    const buckets = new Map();
    for (const t of stats.reconnectTimes) buckets.set(Math.floor(t / 100), (buckets.get(Math.floor(t / 100)) ?? 0) + 1);
    return {
      clients,
      drainSeconds,
      reconnected: all.filter((c) => c.established >= 2).length,
      stillConnected: all.filter((c) => c.ws.readyState === WebSocket.OPEN).length,
      extraReconnects: all.filter((c) => c.established > 2).length,
      failedAttemptsBeforeHandover: failedBefore,
      failedAttempts: Object.fromEntries(
        Object.entries(stats.failedAttempts).map(([k, v]) => [k, v - (failedBefore[k] ?? 0)]).filter(([, v]) => v > 0),
      ),
      closes: stats.closes,
      maxReconnectsPer100ms: Math.max(0, ...buckets.values()),
      busyBuckets: buckets.size,
      oldExit,
      tookMs,
    };
  } finally {
    for (const c of all) c.stop();
    await old.stop();
    if (fresh) await fresh.stop();
  }
}

/**
 * How often a connection attempt fails while a listener closes: `workers` loops each open a
 * new TCP connection and ask `GET /up` back to back, across the handover. Attempts that
 * were queued in the old listener's accept queue when it closed are reset by the kernel
 * unless net.ipv4.tcp_migrate_req=1 moves them to the new listener. Returns counts.
 */
export async function measureResets({ workers = 64, drainSeconds = 1 } = {}) {
  const net = await import('node:net');
  const port = await freePort();
  const old = await startResound('old', port, { drainSeconds });
  const fresh = await startResound('new', port, { drainSeconds });
  const counts = { ok: 0, failed: {} };
  let running = true;
  const once1 = () =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      let answer = '';
      s.on('connect', () => s.write('GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      s.on('data', (d) => (answer += d));
      s.on('error', (e) => {
        counts.failed[e.code ?? e.message] = (counts.failed[e.code ?? e.message] ?? 0) + 1;
        resolve();
      });
      s.on('close', () => {
        if (answer.startsWith('HTTP/1.1 200')) counts.ok += 1;
        else if (!s.errored) counts.failed.noAnswer = (counts.failed.noAnswer ?? 0) + 1;
        resolve();
      });
    });
  const loops = Array.from({ length: workers }, async () => {
    while (running) await once1();
  });
  await sleep(500);
  old.proc.kill('SIGTERM');
  await withTimeout(old.exit, (drainSeconds + 10) * 1000, 'the old process to exit');
  await sleep(500);
  running = false;
  await Promise.all(loops);
  await old.stop();
  await fresh.stop();
  return counts;
}

// Run directly: node lib/handover.mjs [clients] [drainSeconds]
//           or: node lib/handover.mjs resets [rounds]
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  if (process.argv[2] === 'resets') {
    const rounds = Number(process.argv[3] ?? 20);
    const total = { rounds, ok: 0, failed: {} };
    for (let i = 0; i < rounds; i++) {
      const r = await measureResets();
      total.ok += r.ok;
      for (const [k, v] of Object.entries(r.failed)) total.failed[k] = (total.failed[k] ?? 0) + v;
    }
    console.log(JSON.stringify(total, null, 2));
  } else {
    const clients = Number(process.argv[2] ?? 2000);
    const drainSeconds = Number(process.argv[3] ?? 5);
    const result = await runHandover({ clients, drainSeconds });
    console.log(JSON.stringify(result, null, 2));
  }
}
