// The well-behaved load: reading clients (each subscribed to a few public and private
// channels, answering pings, reconnecting when they lose their connection) and the
// publisher (triggers through the `pusher` SDK, a sequence number per channel in the data).

import http from 'node:http';

import { CONFIG, Pusher, WebSocket, channelAuth, counters, wsUrl } from './common.mjs';
import { Received } from './ledger.mjs';

/** The channels: half public, half private, plus one bulk channel of large events. */
export function channelPlan() {
  const half = Math.ceil(CONFIG.channels / 2);
  const channels = [];
  for (let i = 0; i < CONFIG.channels; i++) {
    // Each channel is published through one "home" node, so its events reach the readers
    // of that node directly and those of the other node through Redis, in one order.
    channels.push({ name: i < half ? `soak-pub-${i}` : `private-soak-${i}`, home: i % 2, pad: 150 });
  }
  const bulk = { name: 'soak-bulk', home: 1, pad: CONFIG.bulkSize };
  // Read only by slow consumers; 8,000 bytes keeps a trigger under the default 10,000-byte
  // max_request_size.
  const firehose = { name: 'soak-firehose', home: 1, pad: 8000 };
  return { channels, bulk, firehose, public: channels.filter((c) => !c.name.startsWith('private-')).map((c) => c.name) };
}

/** Close code -> how many reading clients lost their connection with it (not by the churn). */
export const readerCloses = {};

export class Reader {
  constructor(id, node, channels, ledger) {
    Object.assign(this, { id, node, channels, ledger });
    this.ws = null;
    this.seg = null; // the current segment: set on connection_established
    this.connections = 0;
    this.stopping = false;
  }

  get isOpen() {
    return this.seg !== null && this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    const ws = new WebSocket(wsUrl(this.node), { perMessageDeflate: false, handshakeTimeout: 5000 });
    this.ws = ws;
    ws.on('message', (buf) => this.onMessage(ws, buf));
    ws.on('error', () => {}); // 'close' follows and decides
    ws.on('close', (code) => this.onClose(ws, code));
  }

  onMessage(ws, buf) {
    const msg = JSON.parse(buf);
    switch (msg.event) {
      case 'seq': {
        const { s } = JSON.parse(msg.data);
        let r = this.seg.chans.get(msg.channel);
        if (!r) this.seg.chans.set(msg.channel, (r = new Received()));
        r.add(s);
        counters.delivered++;
        break;
      }
      case 'pusher:connection_established': {
        const { socket_id: socketId } = JSON.parse(msg.data);
        this.seg = this.ledger.openSegment(this.id, this.node);
        if (this.connections++ > 0) counters.readerReconnects++;
        for (const channel of this.channels) {
          const data = { channel };
          if (channel.startsWith('private-')) data.auth = channelAuth(socketId, channel);
          ws.send(JSON.stringify({ event: 'pusher:subscribe', data }));
        }
        break;
      }
      case 'pusher:ping':
        ws.send('{"event":"pusher:pong","data":{}}');
        break;
      case 'pusher:error':
        counters.readerErrors++;
        console.error(`reader ${this.id}: ${buf}`);
        break;
      case 'pusher_internal:subscription_succeeded':
        break;
      default:
        if (msg.event?.startsWith('client-')) counters.whispersSeen++;
    }
  }

  onClose(ws, code) {
    if (ws !== this.ws) return;
    if (this.seg) {
      this.seg.closed = Date.now();
      this.seg.why = this.stopping ? 'closed by the driver' : `closed ${code}`;
      this.seg = null;
    }
    // Lost (the node was killed, or closed us): come back after a second, as pusher-js does.
    if (!this.stopping) readerCloses[code] = (readerCloses[code] ?? 0) + 1;
    if (!this.stopping) setTimeout(() => this.stopping || this.connect(), 1000 + Math.random() * 500);
  }

  close() {
    this.stopping = true;
    this.ws?.close(1000);
  }
}

export class Publisher {
  /** `firehose()`: whether to feed the firehose channel now (slow consumers are stalled). */
  constructor(ledger, plan, firehose) {
    this.ledger = ledger;
    this.plan = plan;
    this.firehose = firehose;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    this.sdks = CONFIG.ports.map(
      (port) =>
        new Pusher({
          appId: CONFIG.app.id,
          key: CONFIG.app.key,
          secret: CONFIG.app.secret,
          host: '127.0.0.1',
          port: String(port),
          useTLS: false,
          timeout: 3000,
          agent,
        }),
    );
    this.downUntil = CONFIG.ports.map(() => 0);
    this.inFlight = new Set();
    this.timers = [];
  }

  start() {
    let next = 0;
    const { channels, bulk, firehose } = this.plan;
    const every = (rate, f) => rate > 0 && this.timers.push(setInterval(f, 1000 / rate));
    every(CONFIG.rate, () => this.trigger(channels[next++ % channels.length]));
    every(CONFIG.bulkRate, () => this.trigger(bulk));
    every(CONFIG.firehoseRate, () => this.firehose() && this.trigger(firehose));
  }

  /** Stops the timers; resolves when no trigger is in flight (at most a few seconds). */
  async stop() {
    for (const t of this.timers) clearInterval(t);
    for (let i = 0; i < 50 && this.inFlight.size; i++) await new Promise((r) => setTimeout(r, 100));
  }

  trigger(channel) {
    // One trigger per channel at a time, so a channel's events leave in sequence order.
    if (this.inFlight.has(channel.name)) {
      counters.publishSkipped++;
      return;
    }
    const now = Date.now();
    // The home node, unless it failed recently (the kill): then the other one.
    const node = this.downUntil[channel.home] > now ? 1 - channel.home : channel.home;
    const seq = this.ledger.send(channel.name, node, now);
    this.inFlight.add(channel.name);
    this.sdks[node]
      .trigger(channel.name, 'seq', { s: seq, p: 'x'.repeat(channel.pad) })
      .then(
        () => {
          this.ledger.settle(channel.name, seq, true);
          counters.published++;
        },
        () => {
          this.ledger.settle(channel.name, seq, false);
          counters.publishFailed++;
          this.downUntil[node] = Date.now() + 2000;
        },
      )
      .finally(() => this.inFlight.delete(channel.name));
  }
}
