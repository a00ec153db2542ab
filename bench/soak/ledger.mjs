// The ledger: what the publisher sent (per channel, seq -> when, through which node, whether
// the server said 200) and what each reading connection received. The check the soak exists
// for is here: for every connection ("segment": one WebSocket of one reading client, from
// its first sequenced event to its last), per channel, the sequence numbers between the first
// and the last it received must all be there, once. A reconnect starts a new segment, so
// nothing is expected across a client's own reconnect.

/** What the publisher sent on one channel. Index = sequence number (from 1). */
class Sent {
  constructor() {
    this.t = [0]; // epoch ms the trigger was sent
    this.node = [0]; // node index it was sent through
    this.ok = [true]; // true: HTTP 200; false: failed (may or may not have been delivered); null: in flight
  }
}

/** What one segment received on one channel. */
export class Received {
  constructor() {
    this.first = 0;
    this.last = 0;
    this.count = 0;
    this.dups = 0;
    this.reordered = 0; // arrived after a later one (not a loss; reported)
    this.missing = new Set(); // skipped so far; removed when a late one arrives
  }

  add(seq) {
    this.count++;
    if (this.first === 0) {
      this.first = this.last = seq;
    } else if (seq === this.last + 1) {
      this.last = seq;
    } else if (seq > this.last) {
      for (let k = this.last + 1; k < seq; k++) this.missing.add(k);
      this.last = seq;
    } else if (this.missing.delete(seq)) {
      this.reordered++;
    } else if (seq < this.first) {
      for (let k = seq + 1; k < this.first; k++) this.missing.add(k);
      this.first = seq;
      this.reordered++;
    } else {
      this.dups++;
    }
  }

  has(seq) {
    return this.first !== 0 && seq >= this.first && seq <= this.last && !this.missing.has(seq);
  }
}

export class Ledger {
  constructor() {
    this.sent = new Map(); // channel -> Sent
    this.segments = []; // every segment ever opened
  }

  /** Records a trigger about to be sent; returns its sequence number. */
  send(channel, node, t) {
    let s = this.sent.get(channel);
    if (!s) this.sent.set(channel, (s = new Sent()));
    s.t.push(t);
    s.node.push(node);
    s.ok.push(null);
    return s.t.length - 1;
  }

  settle(channel, seq, ok) {
    this.sent.get(channel).ok[seq] = ok;
  }

  /** A new segment: one WebSocket of reading client `reader`, on node `node`. */
  openSegment(reader, node) {
    const seg = { id: this.segments.length, reader, node, opened: Date.now(), closed: 0, why: '', chans: new Map() };
    this.segments.push(seg);
    return seg;
  }

  /** Seqs missing right now, sent (and not failed) more than `olderThan` ms ago: a live estimate. */
  missingNow(olderThan) {
    const cutoff = Date.now() - olderThan;
    let n = 0;
    for (const seg of this.segments) {
      for (const [channel, r] of seg.chans) {
        const sent = this.sent.get(channel);
        for (const seq of r.missing) if (sent.t[seq] < cutoff && sent.ok[seq] !== false) n++;
      }
    }
    return n;
  }

  /**
   * Every missing event, classified against the fault timeline:
   * - `unpublished`: the trigger failed and no segment received it (it never went out: not a gap);
   * - `kill`: sent through the node that was SIGKILLed, in the 3 s before the kill (it may have
   *   died before relaying it): exempt, reported;
   * - `redis`: crossing nodes, sent while Redis was down or within `redisGrace` ms of its
   *   return: counted separately (the outbox should still bring it);
   * - `other`: anything else.
   */
  gaps(timeline, redisGrace) {
    const out = [];
    const seenAnywhere = (channel, seq) => this.segments.some((s) => s.chans.get(channel)?.has(seq));
    for (const seg of this.segments) {
      for (const [channel, r] of seg.chans) {
        const sent = this.sent.get(channel);
        for (const seq of [...r.missing].sort((a, b) => a - b)) {
          const g = { seg, channel, seq, t: sent.t[seq], origin: sent.node[seq], ok: sent.ok[seq] };
          g.category = classify(g, timeline, redisGrace, () => seenAnywhere(channel, seq));
          if (g.category !== 'unpublished') out.push(g);
        }
      }
    }
    return out;
  }

  totals() {
    const t = { segments: this.segments.length, received: 0, dups: 0, reordered: 0 };
    for (const seg of this.segments) {
      for (const r of seg.chans.values()) {
        t.received += r.count;
        t.dups += r.dups;
        t.reordered += r.reordered;
      }
    }
    return t;
  }

  /** Duplicates, listed like gaps (they fail the run too). */
  duplicates() {
    const out = [];
    for (const seg of this.segments) {
      for (const [channel, r] of seg.chans) if (r.dups) out.push({ seg, channel, dups: r.dups });
    }
    return out;
  }
}

function classify(g, timeline, redisGrace, seenAnywhere) {
  if (g.ok === false && !seenAnywhere()) return 'unpublished';
  for (const k of timeline.kills) {
    if (g.origin === k.node && g.t >= k.t - 3000 && g.t <= k.t + 500) return 'kill';
  }
  if (g.origin !== g.seg.node) {
    for (const o of timeline.redisOutages) {
      // From a second before the stop: a batch in flight when Redis went away is sent again.
      if (g.t >= o.down - 1000 && g.t <= (o.up || Infinity) + redisGrace) return 'redis';
    }
  }
  return 'other';
}

/** The fault timeline from bench/soak.sh's events.log. */
export function timelineOf(events) {
  const kills = [];
  const redisOutages = [];
  for (const e of events) {
    if (e.what === 'kill') kills.push({ t: e.t, node: Number(e.arg.replace('node', '')) - 1 });
    if (e.what === 'redis-down') redisOutages.push({ down: e.t, up: 0 });
    if (e.what === 'redis-up' && redisOutages.length) redisOutages[redisOutages.length - 1].up = e.t;
  }
  return { kills, redisOutages };
}
