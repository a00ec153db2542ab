// The end of a soak run: the gap check against the fault timeline, gaps.csv with one line
// per missing event, and the summary (printed and saved as summary.txt).

import fs from 'node:fs';
import path from 'node:path';

import { CONFIG, counters } from './common.mjs';
import { halfOpenTimes, slowCloseTimes } from './abuse.mjs';
import { readerCloses } from './load.mjs';

const REDIS_GRACE = 15000; // ms after Redis is back during which a crossing event counts as "redis"
const plain = (v) => (v === '' ? '-' : String(v));
/** "12.3-45.6" (min-max, seconds) of a list of ms. */
const range = (ms) => (ms.length ? `${(Math.min(...ms) / 1000).toFixed(1)}-${(Math.max(...ms) / 1000).toFixed(1)}` : '-');
const mb = (kb) => (kb === '' ? '-' : `${(kb / 1024).toFixed(1)} MB`);

function writeGaps(gaps, start) {
  const rel = (t) => (t ? ((t - start) / 1000).toFixed(1) : '');
  const lines = ['category,reader,segment,reader_node,channel,seq,published_s,origin_node,publish_ok,segment_open_s,segment_close_s,segment_end'];
  for (const g of gaps) {
    lines.push(
      [g.category, g.seg.reader, g.seg.id, g.seg.node + 1, g.channel, g.seq, rel(g.t), g.origin + 1, g.ok,
        rel(g.seg.opened), rel(g.seg.closed), JSON.stringify(g.seg.why)].join(','),
    );
  }
  fs.writeFileSync(path.join(CONFIG.dir, 'gaps.csv'), lines.join('\n') + '\n');
}

/** "soak-pub-3 #120 (sent 61.2 s via node2): 40 readers on node1" */
function groupGaps(gaps, start) {
  const groups = new Map();
  for (const g of gaps) {
    const key = `${g.category} ${g.channel} #${g.seq}`;
    let e = groups.get(key);
    if (!e) groups.set(key, (e = { g, nodes: new Map() }));
    e.nodes.set(g.seg.node, (e.nodes.get(g.seg.node) ?? 0) + 1);
  }
  return [...groups.values()].map(({ g, nodes }) => {
    const who = [...nodes].map(([n, c]) => `${c} on node${n + 1}`).join(', ');
    const ok = g.ok === true ? 'HTTP 200' : g.ok === false ? 'trigger failed' : 'trigger unanswered';
    return `${g.category}: ${g.channel} #${g.seq} (sent at ${((g.t - start) / 1000).toFixed(1)} s via node${g.origin + 1}, ${ok}): missed by ${who}`;
  });
}

function spans(sampler, field, fmt) {
  const out = [];
  for (const { name, runs } of sampler.spans(field)) {
    for (const r of runs) {
      out.push(`  ${name} (pid ${r.pid}): start ${fmt(r.start)}, peak ${fmt(r.peak)} at ${r.peakAt} s, end of load ${fmt(r.endLoad)}, idle ${fmt(r.idle)}`);
    }
  }
  return out;
}

/** When each node's link came back after Redis did (from its log): "node1 +0.702 s, ...".
 * Events queued during the outage are published as soon as a node is back; a node that
 * comes back later has not subscribed yet. */
function relinked(up) {
  const back = [];
  for (let i = 0; i < CONFIG.ports.length; i++) {
    let text = '';
    try {
      text = fs.readFileSync(path.join(CONFIG.dir, `node${i + 1}.log`), 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
    } catch {
      continue;
    }
    const times = [...text.matchAll(/^(\S+Z)\s+INFO scaling: connected to Redis/gm)].map((m) => Date.parse(m[1]));
    const t = times.find((x) => x >= up);
    back.push(`node${i + 1} ${t === undefined ? 'not' : `+${((t - up) / 1000).toFixed(3)} s`}`);
  }
  return `links back: ${back.join(', ')}`;
}

/** Each node process's CPU seconds over the run (from its first sample to its last). */
function cpuUsed(sampler) {
  return sampler
    .spans('cpu')
    .flatMap(({ name, runs }) => runs.map((r) => `${name} (pid ${r.pid}) ${(r.last - r.start).toFixed(0)} s`))
    .join(', ');
}

const driverCpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** Prints the summary; returns true when the run failed the check. */
export function report({ ledger, sampler, timeline, start, readers }) {
  const gaps = ledger.gaps(timeline, REDIS_GRACE);
  writeGaps(gaps, start);
  const by = (c) => gaps.filter((g) => g.category === c).length;
  const dups = ledger.duplicates();
  const totals = ledger.totals();
  const rel = (t) => `${((t - start) / 1000).toFixed(0)} s`;
  const faults = [
    ...timeline.redisOutages.map(
      (o) => `Redis down at ${rel(o.down)} for ${((o.up - o.down) / 1000).toFixed(1)} s (${relinked(o.up)})`,
    ),
    ...timeline.kills.map((k) => `node${k.node + 1} SIGKILLed at ${rel(k.t)}`),
  ];
  const c = counters;
  const failed = by('redis') + by('other') + dups.length > 0;
  const lines = [
    `soak: ${CONFIG.seconds} s, ${CONFIG.ports.length} nodes, ${readers} reading clients on ${CONFIG.channels} channels + bulk; results in ${CONFIG.dir}`,
    `faults: ${faults.join('; ') || 'none'}`,
    `published ${c.published} (failed ${c.publishFailed}, skipped ${c.publishSkipped}); delivered ${c.delivered} to ${totals.segments} reader connections (reconnects ${c.readerReconnects}, churned ${c.churned}); reordered ${totals.reordered}`,
    `reading clients' closes not asked for (lost connections, refused reconnects), by code: ${Object.entries(readerCloses).map(([k, n]) => `${k} x${n}`).join(', ') || 'none'}`,
    `gaps for connected readers: ${by('other')} outside faults, ${by('redis')} around Redis restarts, ${by('kill')} at the kill (exempt); duplicates ${dups.reduce((n, d) => n + d.dups, 0)}`,
    `slow consumers: ${c.slowStarted} started; closed by the server during their stall ${c.slowClosed} (after ${range(slowCloseTimes)} s), not closed ${c.slowNotClosed}; reading again they found a 4100 close frame ${c.slow4100}, their backlog and no close frame ${c.slowEof}`,
    `abuse: ${c.abusive} abusive connections, ${c.abuseUnexpected} unexpected answers; half-open handshakes closed after ${range(halfOpenTimes)} s; flood ${c.floodSent} client events, ${c.floodRefused} refused (4301); ${c.whispersSeen} relayed whispers seen by readers; reader pusher:errors ${c.readerErrors}`,
    'RSS:',
    ...spans(sampler, 'rss', mb),
    'open fds:',
    ...spans(sampler, 'fds', plain),
    'connections (established, server side):',
    ...spans(sampler, 'conns', plain),
    `CPU seconds used: ${cpuUsed(sampler)}; the driver ${(driverCpu() / 1e6).toFixed(0)} s`,
  ];
  const details = groupGaps(gaps, start);
  if (details.length) lines.push(`missing events (${details.length}; every one in gaps.csv):`, ...details.slice(0, 30).map((d) => `  ${d}`));
  for (const d of dups.slice(0, 10)) lines.push(`  duplicate: reader ${d.seg.reader} on node${d.seg.node + 1}, ${d.channel}: ${d.dups}`);
  if (c.delivered === 0) lines.push('FAILED: nothing was delivered');
  lines.push(failed || c.delivered === 0 ? 'RESULT: FAILED' : 'RESULT: ok');
  const text = lines.join('\n') + '\n';
  fs.writeFileSync(path.join(CONFIG.dir, 'summary.txt'), text);
  process.stdout.write(text);
  return failed || c.delivered === 0;
}
