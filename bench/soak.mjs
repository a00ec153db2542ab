// The soak driver that bench/soak.sh runs once the servers are up (see the Soak test section
// of docs/operations.md). It runs the mixed load for SOAK_SECONDS: reading clients with
// churn, a publisher, slow consumers and abusive clients; samples the nodes; then checks that
// no reading client lost or got twice an event while it was connected. bench/soak.sh does
// the faults (Redis restarts, the SIGKILL) and writes them to events.log for the check.
// Exit status: 0 clean, 1 a gap or duplicate for a connected reading client, 2 the run
// itself failed.

import fs from 'node:fs';
import path from 'node:path';

import { CONFIG, counters, log, readEvents, sleep } from './soak/common.mjs';
import { Ledger, timelineOf } from './soak/ledger.mjs';
import { Publisher, Reader, channelPlan } from './soak/load.mjs';
import { abuseWave, slowConsumer, slowStalled, stopAbuse } from './soak/abuse.mjs';
import { Sampler } from './soak/sampler.mjs';
import { report } from './soak/report.mjs';

const plan = channelPlan();
const ledger = new Ledger();
let readers = [];
let nextReader = 0;

function newReader(node) {
  const names = plan.channels.map((c) => c.name);
  const chosen = new Set();
  while (chosen.size < Math.min(CONFIG.perReader, names.length)) {
    chosen.add(names[Math.floor(Math.random() * names.length)]);
  }
  // One in ten also reads the bulk channel (large events, through Redis for node1's readers).
  if (Math.random() < 0.1) chosen.add(plan.bulk.name);
  const r = new Reader(nextReader++, node, [...chosen], ledger);
  r.connect();
  return r;
}

const openPerNode = () => CONFIG.ports.map((_, i) => readers.filter((r) => r.node === i && r.isOpen).length);

async function connectReaders() {
  for (let i = 0; i < CONFIG.readers; i++) {
    readers.push(newReader(i % CONFIG.ports.length));
    if (i % 50 === 49) await sleep(200); // no thundering herd at start-up
  }
  for (let i = 0; i < 150; i++) {
    if (readers.filter((r) => r.isOpen).length >= CONFIG.readers) return;
    await sleep(200);
  }
  throw new Error(`only ${readers.filter((r) => r.isOpen).length} of ${CONFIG.readers} reading clients connected`);
}

/** Closes some open reading clients and opens as many new ones, on random nodes. */
function churn() {
  const open = readers.filter((r) => r.isOpen);
  for (let i = 0; i < CONFIG.churnCount && open.length; i++) {
    const [r] = open.splice(Math.floor(Math.random() * open.length), 1);
    r.close();
    counters.churned++;
    readers[readers.indexOf(r)] = newReader(Math.floor(Math.random() * CONFIG.ports.length));
  }
}

async function main() {
  await connectReaders();
  const start = Date.now();
  fs.writeFileSync(path.join(CONFIG.dir, 'ready'), `${start}\n`);
  const sampler = new Sampler(start, openPerNode, () => ledger.missingNow(5000));
  const show = (row) =>
    log(
      `t=${row.t}s ${row.nodes.map((n, i) => `node${i + 1} rss=${n.rss}kB fds=${n.fds} conns=${n.conns}`).join(' ')}` +
        ` published=${counters.published} delivered=${counters.delivered} missing=${row.missing}`,
    );
  show(sampler.sample('start'));

  const end = start + CONFIG.seconds * 1000;
  const stallMs = Math.min(90, Math.max(30, CONFIG.seconds / 4)) * 1000;
  const running = new Set();
  const background = (p) => {
    running.add(p);
    p.finally(() => running.delete(p));
  };
  const publisher = new Publisher(ledger, plan, () => slowStalled() > 0);
  publisher.start();
  const slowChannels = [...plan.public, plan.bulk.name, plan.firehose.name];
  let slowNode = 0;
  const timers = [
    setInterval(churn, CONFIG.churnEvery),
    setInterval(() => {
      if (Date.now() + stallMs + 15000 > end) return; // would outlive the run
      for (let i = 0; i < CONFIG.slowCount; i++) {
        background(slowConsumer(slowNode++ % CONFIG.ports.length, slowChannels, stallMs));
      }
    }, CONFIG.slowEvery),
    setInterval(() => {
      if (Date.now() + 50000 > end) return;
      background(abuseWave(plan.public));
    }, CONFIG.abuseEvery),
    setInterval(() => {
      const row = sampler.sample('load');
      if (row.t % 60 < CONFIG.sampleEvery / 1000) show(row);
    }, CONFIG.sampleEvery),
  ];

  await sleep(end - Date.now());
  for (const t of timers) clearInterval(t);
  await publisher.stop();
  log(`load stopped; ${CONFIG.drain / 1000} s for the last events to arrive`);
  await sleep(CONFIG.drain);
  show(sampler.sample('end'));
  await Promise.race([Promise.allSettled([...running]), sleep(15000)]);
  for (const r of readers) r.close();
  stopAbuse();
  await sleep(3000);
  show(sampler.sample('idle'));

  const timeline = timelineOf(readEvents());
  const failed = report({ ledger, sampler, timeline, start, plan, readers: CONFIG.readers });
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`soak: ${err.stack ?? err}`);
    process.exit(2);
  },
);
