// The clients that misbehave: slow consumers (subscribe, then stop reading) and abusive
// clients (client-event floods, bad and huge frames, garbage bytes, half-open handshakes).
// Each is bounded in time and closes itself; the counters say what the server answered.

import net from 'node:net';
import { randomBytes } from 'node:crypto';

import { CONFIG, WebSocket, counters, killedSince, log, sleep, wsUrl } from './common.mjs';
import { tcpState } from './sampler.mjs';

const live = new Set(); // every socket opened here, so stop() can close the stragglers

function track(sock) {
  live.add(sock);
  sock.once('close', () => live.delete(sock));
  return sock;
}

export function stopAbuse() {
  for (const s of live) (s.terminate ?? s.destroy).call(s);
}

/** Resolves with the close code, or null after `ms`. */
function closeWithin(ws, ms) {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(ws._closeCode ?? 1006);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    ws.once('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Opens a WebSocket and resolves once `pusher:connection_established` arrives. */
function open(node) {
  return new Promise((resolve, reject) => {
    const ws = track(new WebSocket(wsUrl(node), { perMessageDeflate: false, handshakeTimeout: 5000 }));
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('no connection_established within 5 s'));
    }, 5000);
    ws.on('error', () => {});
    ws.once('close', () => reject(new Error('closed before connection_established')));
    ws.once('message', (buf) => {
      clearTimeout(timer);
      const msg = JSON.parse(buf);
      if (msg.event !== 'pusher:connection_established') return reject(new Error(`first frame ${buf}`));
      resolve(ws);
    });
  });
}

const errorCode = (msg) => (typeof msg.data === 'string' ? JSON.parse(msg.data) : msg.data)?.code;

const subscribe = (ws, channel) => ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));

let stalled = 0;
/** How many slow consumers are not reading now (the publisher feeds the firehose meanwhile). */
export const slowStalled = () => stalled;

/**
 * A slow consumer: subscribes to the public channels, the bulk channel and the firehose, then
 * stops reading for `stallMs` (while still sending a ping every 20 s, so that only its
 * reading stops and it is not closed as idle, 4201). The server should close it (4100) once
 * its queue is full. Whether it did is read from /proc/net/tcp: the server's side of the
 * connection leaves ESTABLISHED. A client that never reads cannot receive that close frame
 * (the server gives it 2 s, then drops the TCP connection), so after the stall it reads
 * again and counts what it finds: a 4100 close frame, or its backlog and then the end.
 */
export async function slowConsumer(node, channels, stallMs) {
  counters.slowStarted++;
  const started = Date.now();
  let ws;
  try {
    ws = await open(node);
  } catch {
    return; // its node is down (the kill): nothing to measure
  }
  for (const ch of channels) subscribe(ws, ch);
  await sleep(1000);
  ws.pause();
  stalled++;
  const clientPort = ws._socket.localPort;
  const stallStart = Date.now();
  let closedAfter = null;
  let ticks = 0;
  while (Date.now() - stallStart < stallMs) {
    await sleep(1000);
    if (++ticks % 20 === 0 && closedAfter === null) ws.send('{"event":"pusher:ping","data":{}}');
    if (closedAfter === null && tcpState(CONFIG.ports[node], clientPort) !== '01') {
      closedAfter = Date.now() - stallStart;
    }
  }
  stalled--;
  ws.resume();
  // The backlog in the kernel buffers is read first; the end comes after it.
  const code = await closeWithin(ws, 10000);
  if (killedSince(node, started)) return; // the SIGKILL ended it, not the bound
  if (closedAfter === null) {
    counters.slowNotClosed++;
    log(`slow consumer on node${node + 1}: still established after a ${stallMs / 1000} s stall (close ${code})`);
  } else {
    counters.slowClosed++;
    slowCloseTimes.push(closedAfter);
  }
  if (code === 4100) counters.slow4100++;
  else if (code !== null) counters.slowEof++;
  ws.terminate();
}

/** Ms from the start of each slow consumer's stall to the server closing it. */
export const slowCloseTimes = [];

/** A client-event flood: 100 whispers at once on a public channel (10/s are allowed). */
async function flood(node, channel) {
  const started = Date.now();
  const ws = await open(node);
  subscribe(ws, channel);
  let refused = 0;
  ws.on('message', (buf) => {
    const msg = JSON.parse(buf);
    if (msg.event === 'pusher_internal:subscription_succeeded') {
      for (let i = 0; i < 100; i++) {
        ws.send(JSON.stringify({ event: 'client-flood', channel, data: { i } }));
        counters.floodSent++;
      }
    } else if (msg.event === 'pusher:error' && errorCode(msg) === 4301) {
      refused++;
      counters.floodRefused++;
    }
  });
  const code = await closeWithin(ws, 3000);
  // The rate limit answers 4301 and keeps the connection: a close here is unexpected.
  if ((code !== null || refused < 50) && !killedSince(node, started)) {
    counters.abuseUnexpected++;
    log(`flooder on node${node + 1}: ${refused} refusals, close ${code}`);
  }
  ws.close();
}

/** Bad frames, then one over max_message_size: errors for each, then close 1009. */
async function badFrames(node) {
  const started = Date.now();
  const ws = await open(node);
  let errors = 0;
  ws.on('message', (buf) => {
    if (JSON.parse(buf).event === 'pusher:error') errors++;
  });
  const sub = (data) => JSON.stringify({ event: 'pusher:subscribe', data });
  ws.send('not json at all');
  ws.send('{"event":"pusher:subscribe","data":');
  ws.send(sub({ channel: 'x'.repeat(300) }));
  ws.send(sub({ channel: 'private-soak-0', auth: `${CONFIG.app.key}:${'0'.repeat(64)}` }));
  ws.send(sub('a string'));
  ws.send(sub({}));
  ws.send('{"event":"pusher:no-such-event","data":{}}');
  ws.send(randomBytes(256), { binary: true });
  await sleep(500);
  ws.send(sub({ channel: 'y'.repeat(20000) })); // over REVERB_APP_MAX_MESSAGE_SIZE (10000)
  const code = await closeWithin(ws, 3000);
  if ((code !== 1009 || errors < 5) && !killedSince(node, started)) {
    counters.abuseUnexpected++;
    log(`bad frames on node${node + 1}: ${errors} errors, close ${code}`);
  }
  ws.terminate();
}

/** Raw TCP: resolves with how long the server took to close it after we connected, null if
 * it was still open after `ms`, or -1 if the connection was refused (its node is down). */
function rawSocket(node, bytes, ms) {
  return new Promise((resolve) => {
    let t0 = 0;
    const sock = track(net.connect(CONFIG.ports[node], '127.0.0.1'));
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(null);
    }, ms);
    sock.on('error', () => {});
    sock.on('data', () => {});
    sock.once('connect', () => {
      t0 = Date.now();
      sock.write(bytes);
    });
    sock.once('close', () => {
      clearTimeout(timer);
      resolve(t0 ? Date.now() - t0 : -1);
    });
  });
}

/** Garbage instead of an HTTP request: the server answers 400 and closes. */
async function garbage(node) {
  const took = await rawSocket(node, randomBytes(512), 5000);
  if (took === null) {
    counters.abuseUnexpected++;
    log(`garbage on node${node + 1}: still open after 5 s`);
  }
}

/** Ms the server took to close each half-open handshake. */
export const halfOpenTimes = [];

/** A handshake that never finishes its headers: the server's 30 s header timeout ends it. */
async function halfOpen(node) {
  const head = `GET /app/${CONFIG.app.key}?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n`;
  const started = Date.now();
  const took = await rawSocket(node, head, 45000);
  if (took === null) {
    counters.abuseUnexpected++;
    log(`half-open handshake on node${node + 1}: still open after 45 s`);
  } else if (took >= 0 && !killedSince(node, started)) {
    halfOpenTimes.push(took);
  }
}

/** One wave of abuse on every node; failures to connect (a node down) are skipped. */
export async function abuseWave(publicChannels) {
  const jobs = [];
  for (let node = 0; node < CONFIG.ports.length; node++) {
    const channel = publicChannels[Math.floor(Math.random() * publicChannels.length)];
    jobs.push(flood(node, channel), badFrames(node), garbage(node), halfOpen(node), halfOpen(node));
    counters.abusive += 5;
  }
  await Promise.allSettled(jobs);
}
