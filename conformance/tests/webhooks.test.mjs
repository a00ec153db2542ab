// Webhooks (docs/webhooks.md) as the Pusher server SDKs' own validators see them: a real
// HTTP receiver gets what resound sends while pusher-js clients come and go, and every
// request must pass the Node SDK's `pusher.webhook({headers, rawBody}).isValid()` and the
// Python SDK's `validate_webhook(key, signature, body)`; the same request with one byte of
// its body changed must fail both.
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { APP, PusherSdk, useServer, makePusher, pythonSdk, scenario, uniq } from '../lib/harness.mjs';

/** A receiver on 127.0.0.1: records every request (headers and raw body), answers 200. */
async function startReceiver() {
  const hooks = [];
  const waiting = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      hooks.push({ path: req.url, headers: req.headers, rawBody: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      for (const w of waiting.splice(0)) w();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  return {
    url: `http://127.0.0.1:${server.address().port}/pusher/webhooks`,
    hooks,
    /** Resolves with the first request (from `since`) holding an event matching `pred`. */
    async waitFor(pred, { since = 0, timeout = 8000, what = 'a webhook' } = {}) {
      const deadline = Date.now() + timeout;
      for (;;) {
        const hook = hooks.slice(since).find((h) => JSON.parse(h.rawBody).events.some(pred));
        if (hook) return hook;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no ${what} within ${timeout} ms; got ${JSON.stringify(hooks.map((h) => h.rawBody))}`);
        await new Promise((resolve) => {
          const t = setTimeout(resolve, left);
          waiting.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
  };
}

const receiver = await startReceiver();
const sdk = new PusherSdk({ appId: APP.id, key: APP.key, secret: APP.secret });

/** Node SDK: is `hook` valid? */
function nodeValid(hook) {
  return sdk.webhook({ headers: hook.headers, rawBody: hook.rawBody }).isValid();
}

/** Python SDK: the body it accepts, or null. */
function pythonValidated(server, hook) {
  return pythonSdk(server, 'validate_webhook', {
    key: hook.headers['x-pusher-key'],
    signature: hook.headers['x-pusher-signature'],
    body: hook.rawBody,
  });
}

/** `hook` with one character of its body changed (still valid JSON). */
function tampered(hook) {
  const rawBody = hook.rawBody.replace('"name":"', '"name":"x');
  assert.notEqual(rawBody, hook.rawBody);
  return { ...hook, rawBody };
}

/** Both SDKs accept `hook` and both reject it tampered with; returns its events. */
async function bothAccept(server, hook) {
  assert.equal(hook.path, '/pusher/webhooks');
  assert.equal(hook.headers['content-type'], 'application/json');
  assert.equal(hook.headers['x-pusher-key'], APP.key);
  assert.equal(nodeValid(hook), true, `Node SDK rejected ${hook.rawBody}`);
  const webhook = sdk.webhook({ headers: hook.headers, rawBody: hook.rawBody });
  const events = webhook.getEvents();
  assert.ok(Math.abs(webhook.getTime().getTime() - Date.now()) < 60000);
  const py = await pythonValidated(server, hook);
  assert.deepEqual(py, JSON.parse(hook.rawBody), 'Python SDK validate_webhook');
  const bad = tampered(hook);
  assert.equal(nodeValid(bad), false, 'Node SDK accepted a tampered body');
  assert.equal(await pythonValidated(server, bad), null, 'Python SDK accepted a tampered body');
  return events;
}

describe('webhooks', () => {
  const server = useServer({
    env: {
      RESOUND_APP_WEBHOOK_URL: receiver.url,
      RESOUND_WEBHOOK_LEAVE_DELAY: '0.3',
      RESOUND_WEBHOOK_BATCH_DELAY: '0',
    },
  });

  scenario(server, 'channel_occupied and channel_vacated pass both SDK validators', async () => {
    const channel = uniq('private-orders');
    const since = receiver.hooks.length;
    const alice = makePusher('alice', server);
    alice.subscribe(channel);
    await alice.subscribed(channel);
    const occupied = await receiver.waitFor((e) => e.name === 'channel_occupied' && e.channel === channel, { since });
    assert.deepEqual(
      (await bothAccept(server, occupied)).filter((e) => e.channel === channel && e.name !== 'subscription_count'),
      [{ name: 'channel_occupied', channel }],
    );
    alice.disconnect();
    const vacated = await receiver.waitFor((e) => e.name === 'channel_vacated' && e.channel === channel, { since });
    await bothAccept(server, vacated);
  });

  scenario(server, 'presence members and client events from pusher-js', async () => {
    const channel = uniq('presence-room');
    const since = receiver.hooks.length;
    const alice = makePusher('alice', server, { user: { id: 'u1', info: { name: 'Alice' } } });
    const bob = makePusher('bob', server, { user: { id: 'u2', info: { name: 'Bob' } } });
    const ch = alice.subscribe(channel);
    bob.subscribe(channel);
    await alice.subscribed(channel);
    await bob.subscribed(channel);
    const added = await receiver.waitFor((e) => e.name === 'member_added' && e.user_id === 'u2', { since });
    await bothAccept(server, added);
    assert.equal(ch.trigger('client-typing', { typing: true }), true);
    const sent = await receiver.waitFor((e) => e.name === 'client_event' && e.channel === channel, { since });
    const events = await bothAccept(server, sent);
    const ev = events.find((e) => e.name === 'client_event');
    assert.deepEqual(ev, {
      name: 'client_event',
      channel,
      event: 'client-typing',
      data: JSON.stringify({ typing: true }),
      socket_id: alice.pusher.connection.socket_id,
      user_id: 'u1',
    });
    bob.disconnect();
    const removed = await receiver.waitFor((e) => e.name === 'member_removed' && e.user_id === 'u2', { since });
    await bothAccept(server, removed);
  });
});
