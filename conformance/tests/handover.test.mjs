// A deploy without refused connections: a new resound binds the port of a running one
// (SO_REUSEPORT), the old one gets SIGTERM and drains. Every client ends up on the new
// process, no connection attempt fails, and the reconnects spread over the drain window.
// 300 clients here; bench/handover.sh runs 2,000 (docs/deployment.md has the results).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { runHandover } from '../lib/handover.mjs';

const CLIENTS = 300;
const DRAIN_SECONDS = 2;

describe('handover', () => {
  test(`${CLIENTS} clients move to a new process on the same port with no attempt refused`, { timeout: 90000 }, async () => {
    const r = await runHandover({ clients: CLIENTS, drainSeconds: DRAIN_SECONDS });
    const report = JSON.stringify(r);
    assert.deepEqual(r.oldExit, { code: 0, signal: null }, report);
    assert.equal(r.reconnected, CLIENTS, `every client reconnected: ${report}`);
    // The old process has exited, so every open connection is on the new one.
    assert.equal(r.stillConnected, CLIENTS, `every client connected to the new process: ${report}`);
    assert.equal(r.extraReconnects, 0, `nobody was moved twice: ${report}`);
    assert.deepEqual(r.failedAttempts, {}, `no connection attempt refused or reset: ${report}`);
    assert.deepEqual(r.closes, { 4200: CLIENTS }, `every client closed with 4200: ${report}`);
    // Spread: 300 reconnects at once would fill one bucket; over 2 s they fill about 20.
    assert.ok(r.busyBuckets >= 10, `reconnects spread over the window: ${report}`);
    assert.ok(r.maxReconnectsPer100ms < CLIENTS / 4, `no reconnect storm: ${report}`);
  });
});
