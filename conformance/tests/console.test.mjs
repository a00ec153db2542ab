// The live debug console (RESOUND_CONSOLE_ENABLED), driven in a real headless browser:
// Debian's chromium through playwright-core. The page logs in with the app's id and secret,
// shows an event the Node `pusher` SDK triggers, lists the channel a pusher-js client is
// subscribed to with its count, and sends a test event that the pusher-js client receives;
// an error sent to a client (a refused subscription) shows in the stream under its channel.
//
// CHROMIUM_BIN names the browser (run.sh installs Debian's chromium when it is missing);
// CONSOLE_SCREENSHOT=path saves a screenshot of the page (docs/console.png is one).
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';

import { useServer, makePusher, nodeSdk, sdkJson, scenario, uniq, APP } from '../lib/harness.mjs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const WAIT = 10000;

// With --debug, so the check at the end covers the most verbose log.
const server = useServer({ env: { RESOUND_CONSOLE_ENABLED: 'true', RESOUND_DEBUG: 'true' } });

let browser;
before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (conformance/run.sh installs it)`);
  // Chromium's sandbox refuses to start as root; a root run (CI, containers) goes without it.
  const args = process.getuid?.() === 0 ? ['--no-sandbox'] : [];
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
});
after(async () => {
  await browser?.close();
});

/** A fresh browser page (its own cookies) on the console, its errors recorded. */
async function openConsole() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.httpBase}/console`);
  return { context, page, errors };
}

async function logIn(page, secret) {
  await page.fill('#app-id', APP.id);
  await page.fill('#secret', secret);
  await page.click('#login-form button[type=submit]');
}

describe('debug console in a browser', () => {
  scenario(server, 'a wrong secret is refused and shows no console', async () => {
    const { context, page, errors } = await openConsole();
    try {
      await page.waitForSelector('#login-form', { state: 'visible', timeout: WAIT });
      await logIn(page, 'not-the-secret');
      await page.waitForFunction(() => document.querySelector('#login-error').textContent !== '', null, { timeout: WAIT });
      assert.match(await page.textContent('#login-error'), /Wrong app id or secret/);
      assert.equal(await page.isVisible('#console'), false, 'the console stays hidden');
      const overview = await page.evaluate(async () => (await fetch('/console/overview')).status);
      assert.equal(overview, 401, 'no session was opened');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  scenario(server, 'logged in: channels, an API event in the stream, and a test event sent from the page', async () => {
    const { context, page, errors } = await openConsole();
    try {
      await logIn(page, APP.secret);
      await page.waitForSelector('#console', { state: 'visible', timeout: WAIT });
      assert.equal(await page.textContent('#who-app'), APP.id);
      await page.waitForFunction(() => document.querySelector('#stream-status').textContent === 'live', null, { timeout: WAIT });

      // A pusher-js client subscribes: the channel list shows the channel with its count.
      const channel = uniq('orders-');
      const client = makePusher('alice', server);
      client.subscribe(channel);
      await client.subscribed(channel);
      const count = `#channels tr[data-channel="${channel}"] td.subscribers`;
      await page.waitForSelector(count, { timeout: WAIT });
      await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === '1', count, { timeout: WAIT });
      await page.waitForSelector(`#stream tr[data-type="subscribed"][data-channels="${channel}"]`, { timeout: WAIT });

      // An event triggered through the HTTP API (Node SDK) appears in the stream, data and all.
      await sdkJson(nodeSdk(server).trigger(channel, 'order-shipped', { order: 1234 }), 'trigger');
      const row = `#stream tr[data-type="api_event"][data-channels="${channel}"]`;
      await page.waitForSelector(row, { timeout: WAIT });
      const text = await page.textContent(row);
      assert.match(text, /order-shipped/);
      assert.match(text, /"order":1234/);
      await client.channelEvent(channel, 'order-shipped');

      // The channel filter hides other channels' rows and keeps this one's.
      await page.fill('#filter', 'no-such-channel');
      assert.equal(await page.isVisible(row), false, 'filtered out');
      await page.fill('#filter', channel);
      assert.equal(await page.isVisible(row), true, 'shown again');

      // The page's form sends a test event; the pusher-js client receives it.
      await page.fill('#send-channel', channel);
      await page.fill('#send-event', 'from-console');
      await page.fill('#send-data', '{"hello":"browser"}');
      await page.click('#send-form button[type=submit]');
      const got = await client.channelEvent(channel, 'from-console', { timeout: WAIT });
      assert.deepEqual(got.data, { hello: 'browser' });
      await page.waitForFunction(() => document.querySelector('#send-result').textContent === 'sent', null, { timeout: WAIT });
      await page.waitForSelector(`#stream tr[data-type="api_event"]:has-text("from-console")`, { timeout: WAIT });

      // Presence members are listed under their channel; client events reach the stream.
      await page.fill('#filter', '');
      const room = `presence-${uniq('room-')}`;
      const bob = makePusher('bob', server, { user: { id: '42', info: { name: 'Bob' } } });
      const carol = makePusher('carol', server, { user: { id: '43', info: { name: 'Carol' } } });
      const bobRoom = bob.subscribe(room);
      carol.subscribe(room);
      await bob.subscribed(room);
      await carol.subscribed(room);
      const members = `#channels tr[data-channel="${room}"] .members`;
      await page.waitForFunction(
        (sel) => /2 members/.test(document.querySelector(sel)?.textContent ?? ''),
        members,
        { timeout: WAIT },
      );
      const listed = await page.textContent(members);
      assert.match(listed, /42 \{"name":"Bob"\}/);
      assert.match(listed, /43 \{"name":"Carol"\}/);
      bobRoom.trigger('client-typing', { typing: true });
      await carol.channelEvent(room, 'client-typing');
      const whisper = `#stream tr[data-type="client_event"][data-channels="${room}"]`;
      await page.waitForSelector(whisper, { timeout: WAIT });
      assert.match(await page.textContent(whisper), /client-typing\s+\{"typing":true\}\s+user 42/);

      if (process.env.CONSOLE_SCREENSHOT) {
        await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT });
      }

      // An error sent to a client shows in the stream as an error row, under its channel:
      // a pusher-js client whose authorizer signs with the wrong secret is refused (4009).
      const refusedChannel = `private-${uniq('vault-')}`;
      const mallory = makePusher('mallory', server, { secret: 'not-the-secret' });
      mallory.subscribe(refusedChannel);
      const refused = `#stream tr.error[data-type="error"][data-channels="${refusedChannel}"]`;
      await page.waitForSelector(refused, { timeout: WAIT });
      assert.match(await page.textContent(refused), /Connection is unauthorized\s+socket \d+\.\d+\s+code 4009/);
      await page.fill('#filter', refusedChannel);
      assert.equal(await page.isVisible(refused), true, 'the channel filter keeps the error');
      assert.equal(await page.isVisible(whisper), false, 'and hides other channels');
      await page.fill('#filter', '');

      // The form goes through the API's validation: a bad channel name is refused, shown.
      await page.fill('#send-channel', 'bad channel!');
      await page.click('#send-form button[type=submit]');
      await page.waitForFunction(() => /channel name/.test(document.querySelector('#send-result').textContent), null, { timeout: WAIT });
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  scenario(server, 'the log holds no secret, session or event data', async () => {
    const log = fs.readFileSync(server.logPath, 'utf8');
    assert.match(log, /console login/, 'the login was logged (by app id)');
    for (const secret of [APP.secret, 'not-the-secret', '"order":1234', 'hello', 'browser', 'Carol', 'resound_console=']) {
      assert.ok(!log.includes(secret), `the log contains ${secret}`);
    }
  });
});
