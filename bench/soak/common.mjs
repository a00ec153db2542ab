// What every part of the soak driver shares: the settings bench/soak.sh passes in the
// environment, the two npm packages (borrowed from conformance/node_modules, so the bench
// has no package.json of its own), the counters the sampler writes out, and small helpers.

import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// Resolve packages as conformance/ does: its package-lock.json pins them.
const require = createRequire(path.resolve(here, '../../conformance/package.json'));
export const WebSocket = require('ws');
export const Pusher = require('pusher');

const num = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v}: expected a non-negative number`);
  return n;
};
const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run bench/soak.sh, not this file)`);
  return v;
};

export const SECONDS = num('SOAK_SECONDS', 3600);
// Everything periodic is scaled to the run, so a 3-minute run shows every kind of event.
const scaled = (full, min) => Math.max(min, Math.min(full, SECONDS / 12));

export const CONFIG = Object.freeze({
  dir: need('SOAK_DIR'),
  ports: need('SOAK_PORTS').split(',').map(Number),
  app: { id: need('SOAK_APP_ID'), key: need('SOAK_APP_KEY'), secret: need('SOAK_APP_SECRET') },
  seconds: SECONDS,
  readers: num('SOAK_READERS', 300),
  channels: num('SOAK_CHANNELS', 24), // half public, half private
  perReader: num('SOAK_CHANNELS_PER_READER', 3),
  rate: num('SOAK_RATE', 20), // triggers per second over all channels
  bulkRate: num('SOAK_BULK_RATE', 4), // large triggers per second on the bulk channel
  bulkSize: num('SOAK_BULK_SIZE', 6000), // bytes of padding in each bulk event
  // While slow consumers are stalled: 8 KB events on a channel only they read, so each fills
  // the ~4 MB the kernel buffers on loopback plus the server's 1 MiB bound in ~30 s.
  firehoseRate: num('SOAK_FIREHOSE_RATE', 25),
  churnEvery: num('SOAK_CHURN_EVERY', 5) * 1000,
  churnCount: num('SOAK_CHURN_COUNT', 6),
  slowEvery: num('SOAK_SLOW_EVERY', scaled(60, 20)) * 1000,
  slowCount: num('SOAK_SLOW_COUNT', 3),
  abuseEvery: num('SOAK_ABUSE_EVERY', scaled(30, 15)) * 1000,
  sampleEvery: num('SOAK_SAMPLE_EVERY', 10) * 1000,
  drain: num('SOAK_DRAIN', 10) * 1000,
});

/** Counters the sampler writes to the CSV; cumulative from the start of the load. */
export const counters = {
  published: 0, // triggers the server accepted (HTTP 200)
  publishFailed: 0, // triggers that failed or timed out (their delivery is uncertain)
  publishSkipped: 0, // ticks skipped because the channel's previous trigger was still in flight
  delivered: 0, // sequenced events received by reading clients
  readerReconnects: 0, // reading clients that reconnected after losing their connection
  readerErrors: 0, // pusher:error frames received by reading clients (should stay 0)
  churned: 0, // reading clients closed on purpose by the churn
  whispersSeen: 0, // client events relayed to reading clients (from the flooders)
  slowStarted: 0,
  slowClosed: 0, // slow consumers the server closed during their stall (seen in /proc/net/tcp)
  slowNotClosed: 0, // slow consumers still established at the end of their stall (a failed bound)
  slow4100: 0, // slow consumers that, reading again, received a 4100 close frame
  slowEof: 0, // slow consumers that, reading again, found their backlog and then no close frame
  floodSent: 0,
  floodRefused: 0, // client events refused with pusher:error 4301 (rate limit)
  abusive: 0, // abusive connections made (flood, bad frames, garbage, half-open)
  abuseUnexpected: 0, // abusive clients that got an answer other than the expected one
};

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Channel auth as Laravel's broadcasting/auth signs it: HMAC-SHA256 of `socket_id:channel`. */
export function channelAuth(socketId, channel) {
  const sig = createHmac('sha256', CONFIG.app.secret).update(`${socketId}:${channel}`).digest('hex');
  return `${CONFIG.app.key}:${sig}`;
}

export function wsUrl(node) {
  return `ws://127.0.0.1:${CONFIG.ports[node]}/app/${CONFIG.app.key}?protocol=7&client=soak&version=1`;
}

/** PIDs of the processes bench/soak.sh runs now (it rewrites the file after each restart). */
export function readPids() {
  const pids = {};
  try {
    for (const line of fs.readFileSync(path.join(CONFIG.dir, 'pids'), 'utf8').split('\n')) {
      const [name, pid] = line.trim().split(/\s+/);
      if (name && pid) pids[name] = Number(pid);
    }
  } catch {
    // Not written yet: no process to sample.
  }
  return pids;
}

/** The fault timeline bench/soak.sh wrote: `{t, what, arg}` with t in epoch ms. */
export function readEvents() {
  try {
    return fs
      .readFileSync(path.join(CONFIG.dir, 'events.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [t, what, arg] = line.split(/\s+/);
        return { t: Number(t), what, arg };
      });
  } catch {
    return [];
  }
}

/** Whether bench/soak.sh SIGKILLed node index `node` at or after epoch ms `since`. */
export function killedSince(node, since) {
  return readEvents().some((e) => e.what === 'kill' && e.arg === `node${node + 1}` && e.t >= since);
}

export function log(...args) {
  console.log(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...args);
}
