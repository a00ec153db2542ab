// Every SOAK_SAMPLE_EVERY seconds: per node, its RSS (VmRSS), its open file descriptors and
// its established connections on its port (read from /proc: what the server holds, not what
// the driver thinks), plus the driver's counters. One CSV row per sample.

import fs from 'node:fs';
import path from 'node:path';

import { CONFIG, counters, readPids } from './common.mjs';

const NODES = CONFIG.ports.map((_, i) => `node${i + 1}`);
const COUNTERS = Object.keys(counters);
const snake = (s) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export const CSV_HEADER = [
  't_s',
  'phase',
  'redis_up',
  ...NODES.flatMap((n) => [`${n}_pid`, `${n}_rss_kb`, `${n}_fds`, `${n}_conns`, `${n}_readers`, `${n}_cpu_s`]),
  'missing_now',
  ...COUNTERS.map(snake),
].join(',');

function rssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : '';
  } catch {
    return '';
  }
}

/** CPU seconds (user + system) the process has used; assumes the usual 100 ticks a second. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime: fields 14 and 15
  } catch {
    return '';
  }
}

function fdTargets(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return ''; // closed while we listed it
      }
    });
  } catch {
    return null;
  }
}

/** inode -> local port, for established TCP sockets (state 01) on this host. */
function establishedByInode() {
  const map = new Map();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '01') continue;
      map.set(f[9], parseInt(f[1].split(':')[1], 16));
    }
  }
  return map;
}

/** The TCP state (hex, '01' established) of the socket `local` -> `remote` on 127.0.0.1, or
 * null when it is gone. For the server's side of a client's connection: local = the node's
 * port, remote = the client's port. */
export function tcpState(local, remote) {
  // A socket that never connected, or is already gone, has no port.
  if (local == null || remote == null) return null;
  const hex = (p) => `:${p.toString(16).toUpperCase().padStart(4, '0')}`;
  const [l, r] = [hex(local), hex(remote)];
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(l) && f[2]?.endsWith(r)) return f[3];
  }
  return null;
}

/** One node's figures; empty fields when it is not running. */
function nodeFigures(pid, port, sockets) {
  const fds = pid ? fdTargets(pid) : null;
  if (!fds) return { pid: '', rss: '', fds: '', conns: '', cpu: '' };
  let conns = 0;
  for (const target of fds) {
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && sockets.get(m[1]) === port) conns++;
  }
  return { pid, rss: rssKb(pid), fds: fds.length, conns, cpu: cpuSeconds(pid) };
}

export class Sampler {
  constructor(start, readersOpen, missingNow) {
    this.start = start;
    this.readersOpen = readersOpen; // () => [open reading clients per node]
    this.missingNow = missingNow; // () => seqs missing for more than a few seconds
    this.file = path.join(CONFIG.dir, 'soak.csv');
    fs.writeFileSync(this.file, CSV_HEADER + '\n');
    this.rows = [];
  }

  sample(phase) {
    const pids = readPids();
    const sockets = establishedByInode();
    const readers = this.readersOpen();
    const row = {
      t: Math.round((Date.now() - this.start) / 1000),
      phase,
      redisUp: pids.redis && fs.existsSync(`/proc/${pids.redis}`) ? 1 : 0,
      nodes: NODES.map((n, i) => ({ ...nodeFigures(pids[n], CONFIG.ports[i], sockets), readers: readers[i] })),
      missing: this.missingNow(),
      counters: { ...counters },
    };
    this.rows.push(row);
    const cells = [
      row.t,
      phase,
      row.redisUp,
      ...row.nodes.flatMap((n) => [n.pid, n.rss, n.fds, n.conns, n.readers, n.cpu]),
      row.missing,
      ...COUNTERS.map((c) => row.counters[c]),
    ];
    fs.appendFileSync(this.file, cells.join(',') + '\n');
    return row;
  }

  /** Per node and per process (a restart makes a new one): the first sample, the peak, the
   * sample after the load stopped (clients still connected) and the last (clients gone). */
  spans(field) {
    return NODES.map((name, i) => {
      const runs = [];
      for (const row of this.rows) {
        const v = row.nodes[i][field];
        if (v === '') continue;
        let run = runs[runs.length - 1];
        if (!run || run.pid !== row.nodes[i].pid) {
          runs.push((run = { pid: row.nodes[i].pid, start: v, peak: v, peakAt: row.t, endLoad: '', idle: '', last: v }));
        }
        if (v > run.peak) [run.peak, run.peakAt] = [v, row.t];
        run.last = v;
        if (row.phase === 'end') run.endLoad = v;
        if (row.phase === 'idle') run.idle = v;
      }
      return { name, runs };
    });
  }
}
