// TLS in process (RESOUND_TLS_CERT / RESOUND_TLS_KEY): pusher-js connects over wss:// and the
// `pusher` Node SDK calls the HTTP API over https://, both on the one port, trusting a CA
// made here with the openssl command line.
import { describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import { APP, PusherSdk, ROOT, useServer, scenario, sdkJson, uniq, withTimeout } from '../lib/harness.mjs';

/** A CA, and a certificate for localhost and 127.0.0.1 it signed (P-256 keys, PEM). */
function makePki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resound-tls-'));
  const at = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '2',
    '-subj', '/CN=resound conformance CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', ...ec, '-keyout', at('server.key'), '-out', at('server.csr'), '-subj', '/CN=localhost');
  fs.writeFileSync(at('ext.cnf'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', at('server.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'),
    '-CAcreateserial', '-out', at('server.pem'), '-days', '2', '-extfile', at('ext.cnf'));
  // The chain file as a CA's bundle comes: the server's certificate, then its issuer's.
  fs.writeFileSync(at('chain.pem'), fs.readFileSync(at('server.pem'), 'utf8') + fs.readFileSync(at('ca.pem'), 'utf8'));
  return { dir, ca: at('ca.pem'), chain: at('chain.pem'), key: at('server.key') };
}

const pki = makePki();
const ca = fs.readFileSync(pki.ca);
after(() => fs.rmSync(pki.dir, { recursive: true, force: true }));

/** GET /up over https, trusting only the test CA. */
function upOverTls(server) {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', servername: 'localhost', port: server.port, path: `${server.prefix}/up`, ca, timeout: 1000 },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, text: async () => body }));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

const server = useServer({
  env: { RESOUND_TLS_CERT: pki.chain, RESOUND_TLS_KEY: pki.key },
  upCheck: upOverTls,
});

function tlsSdk() {
  return new PusherSdk({
    appId: APP.id,
    key: APP.key,
    secret: APP.secret,
    host: 'localhost',
    port: String(server.port),
    useTLS: true,
    agent: new https.Agent({ ca }),
    timeout: 5000,
  });
}

/** pusher-js (forceTLS) in a child process that trusts the CA; `next(pred)` awaits a line. */
function wssClient(channel) {
  const child = spawn(process.execPath, [path.join(ROOT, 'lib', 'tls-pusher-client.mjs'), String(server.port), APP.key, channel], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: pki.ca },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const seen = [];
  const waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const entry = JSON.parse(line);
    seen.push(entry);
    for (const w of [...waiters]) {
      if (w.pred(entry)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  });
  return {
    seen,
    next(pred, what) {
      const found = seen.find(pred);
      if (found) return Promise.resolve(found);
      return withTimeout(new Promise((resolve) => waiters.push({ pred, resolve })), 10000, `${what}; saw ${JSON.stringify(seen)}`);
    },
    async close() {
      child.stdin.end();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

describe('tls', () => {
  scenario(server, 'pusher-js over wss:// receives an event the Node SDK triggers over https://', async () => {
    const channel = uniq('tls-news');
    const client = wssClient(channel);
    try {
      const sub = await client.next((e) => e.kind === 'subscribed', 'pusher-js subscribed over wss://');
      assert.match(sub.socketId, /^\d+\.\d+$/);
      const sdk = tlsSdk();
      await sdkJson(sdk.trigger(channel, 'App\\Events\\Secure', { over: 'https' }), 'trigger over https');
      const got = await client.next((e) => e.kind === 'event', 'the event over wss://');
      assert.deepEqual(got, { kind: 'event', event: 'App\\Events\\Secure', data: { over: 'https' } });
      const channels = await sdkJson(sdk.get({ path: '/channels' }), 'GET /channels over https');
      assert.ok(channel in channels.channels, `channel listed over https: ${JSON.stringify(channels)}`);
      assert.ok(!client.seen.some((e) => e.kind === 'error'), `no error: ${JSON.stringify(client.seen)}`);
    } finally {
      await client.close();
    }
  });

  scenario(server, 'a client that does not trust the CA is refused by its own certificate check', async () => {
    const sdk = new PusherSdk({
      appId: APP.id,
      key: APP.key,
      secret: APP.secret,
      host: 'localhost',
      port: String(server.port),
      useTLS: true,
      timeout: 5000,
    });
    await assert.rejects(sdk.get({ path: '/channels' }), (e) => {
      const text = `${e.message} ${e.error?.code ?? ''} ${e.error?.message ?? ''}`;
      assert.match(text, /certificate|CERT|self.signed|issuer/i, text);
      return true;
    });
  });
});
