// Reverb's per-app environment settings, each with its own resound instance.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';

import { APP, useServer, RawClient, makePusher, makeEcho, pusherPair, scenario, sleep, uniq } from '../lib/harness.mjs';

/** A describe() block with its own server started with `env`. */
function withServer(title, env, body) {
  describe(title, () => {
    const server = useServer({ env });
    body(server);
  });
}

withServer('REVERB_APP_ACTIVITY_TIMEOUT=45', { REVERB_APP_ACTIVITY_TIMEOUT: '45' }, (server) => {
  scenario(server, 'connection_established carries activity_timeout 45', async () => {
    const raw = RawClient.connect('raw', server);
    const data = await raw.established();
    assert.equal(data.activity_timeout, 45);
  });
});

withServer('REVERB_APP_MAX_CONNECTIONS=2', { REVERB_APP_MAX_CONNECTIONS: '2' }, (server) => {
  scenario(server, 'the third connection is refused with 4004 even though the others never subscribed', async () => {
    const a = RawClient.connect('raw a (idle)', server);
    const b = RawClient.connect('raw b (idle)', server);
    await a.established();
    await b.established();
    const c = RawClient.connect('raw c (over quota)', server);
    const err = await c.event('pusher:error');
    assert.equal(
      err.text,
      '{"event":"pusher:error","data":"{\\"code\\":4004,\\"message\\":\\"Application is over connection quota\\"}"}',
    );
    const closed = await c.closeEvent();
    assert.equal(closed.code, 4004, `expected close code 4004, saw ${closed.code}`);

    // pusher-js treats 4004 as "refused" and stays offline.
    const p = makePusher('pusher-js (over quota)', server);
    await p.waitFor((e) => e.kind === 'state' && ['failed', 'disconnected'].includes(e.current), {
      what: 'state failed/disconnected',
    });
    const since = p.mark();
    await sleep(1500);
    assert.equal(p.find((e) => e.kind === 'state' && e.current === 'connecting', since).length, 0, 'no reconnect');

    // A freed slot can be used again.
    a.disconnect();
    await a.closeEvent().catch(() => {});
    let ok = null;
    for (let i = 0; i < 20 && !ok; i++) {
      const d = RawClient.connect(`raw d${i} (after a slot was freed)`, server);
      const first = await d.waitFor((e) => e.kind === 'frame', { what: 'a first frame' });
      if (first.event === 'pusher:connection_established') ok = d;
      else await sleep(100);
    }
    assert.ok(ok, 'a new connection expected to be accepted once a slot is free');
  });
});

withServer('REVERB_APP_MAX_MESSAGE_SIZE=1000', { REVERB_APP_MAX_MESSAGE_SIZE: '1000' }, (server) => {
  scenario(server, 'a message under the limit is fine, one over it closes with 1009', async () => {
    const raw = RawClient.connect('raw', server);
    await raw.established();
    const since = raw.mark();
    raw.send({ event: 'pusher:ping', data: { pad: 'x'.repeat(800) } });
    await raw.event('pusher:pong', { since });
    raw.send({ event: 'pusher:ping', data: { pad: 'x'.repeat(1200) } });
    const closed = await raw.closeEvent();
    assert.equal(closed.code, 1009, `expected close code 1009, saw ${closed.code} "${closed.reason}"`);
    assert.equal(closed.reason, 'Maximum message size exceeded');
  });
});

// Reverb turns client events off for any value but `all` and `members`; an empty one (`X=` in a
// Laravel .env, which env() reads as '') included.
for (const value of ['none', '']) {
  withServer(`REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=${value}`, { REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM: value }, (server) => {
    scenario(server, 'whispers are refused with 4301 and not relayed', async () => {
      const slug = uniq('room-');
      const alice = makeEcho('alice (Echo)', server);
      const bob = makeEcho('bob (Echo)', server);
      for (const c of [alice, bob]) {
        c.echo.private(`Rooms.${slug}`).listenForWhisper('typing', (e) => c.push({ kind: 'echo', what: 'typing', data: e }));
        await c.subscribed(`private-Rooms.${slug}`);
      }
      const since = alice.mark();
      alice.echo.private(`Rooms.${slug}`).whisper('typing', { t: 1 });
      const err = await alice.waitFor((e) => e.kind === 'message' && e.event === 'pusher:error', { since, what: 'pusher:error' });
      assert.deepEqual(err.data, { code: 4301, message: 'The app does not have client messaging enabled.' });
      await bob.expectNone((e) => e.kind === 'echo', { within: 400, what: 'no whisper relayed' });
      assert.equal(alice.state, 'connected');
    });
  });
}

withServer('RESOUND_APP_PUBLIC_CLIENT_EVENTS=false', { RESOUND_APP_PUBLIC_CLIENT_EVENTS: 'false' }, (server) => {
  scenario(server, "Pusher's rule: a client event on a public channel gets pusher:error 4301 and is not relayed", async () => {
    const { a: alice, b: bob, channelA: chA } = await pusherPair(server, uniq('public-room.'));
    const since = alice.mark();
    chA.trigger('client-typing', { name: 'Alice' });
    const err = await alice.waitFor((e) => e.kind === 'message' && e.event === 'pusher:error', { since, what: 'pusher:error' });
    assert.equal(err.data.code, 4301);
    await bob.expectNone((e) => e.kind === 'channel' && e.event === 'client-typing', { within: 400, what: 'no client event relayed' });
    assert.equal(alice.state, 'connected');
  });
});

withServer('REVERB_APP_ALLOWED_ORIGINS=example.com,*.example.org', { REVERB_APP_ALLOWED_ORIGINS: 'example.com,*.example.org' }, (server) => {
  const url = () => `ws://127.0.0.1:${server.port}/app/${APP.key}?protocol=7&client=js&version=8.4.2&flash=false`;
  scenario(server, 'allowed origins connect; others get pusher:error 4009 "Origin not allowed"', async () => {
    const open = (origin) =>
      new Promise((resolve) => {
        const frames = [];
        const ws = new WebSocket(url(), origin ? { origin } : {});
        const done = (result) => {
          ws.terminate();
          resolve(result);
        };
        const timer = setTimeout(() => done({ frames, timeout: true }), 3000);
        ws.on('message', (m) => {
          frames.push(JSON.parse(m.toString()));
          const ev = frames[0].event;
          if (ev === 'pusher:connection_established') {
            clearTimeout(timer);
            done({ frames });
          }
        });
        ws.on('close', (code) => {
          clearTimeout(timer);
          resolve({ frames, code });
        });
        ws.on('error', () => {});
      });
    for (const origin of ['https://example.com', 'http://example.com:8080', 'https://app.example.org']) {
      const r = await open(origin);
      assert.equal(r.frames[0]?.event, 'pusher:connection_established', `origin ${origin} expected to be accepted, saw ${JSON.stringify(r)}`);
    }
    for (const origin of ['https://evil.com', 'https://example.com.evil.com', 'https://example.org.evil.net', undefined]) {
      const r = await open(origin);
      assert.equal(r.frames[0]?.event, 'pusher:error', `origin ${origin} expected to be refused, saw ${JSON.stringify(r)}`);
      assert.deepEqual(JSON.parse(r.frames[0].data), { code: 4009, message: 'Origin not allowed' });
    }
  });
});

withServer(
  'rate limiting (5 messages per 60 s)',
  {
    REVERB_APP_RATE_LIMITING_ENABLED: 'true',
    REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS: '5',
    REVERB_APP_RATE_LIMIT_DECAY_SECONDS: '60',
  },
  (server) => {
    scenario(server, 'the sixth message gets pusher:error 4301 and the connection stays open', async () => {
      const raw = RawClient.connect('raw', server);
      await raw.established();
      for (let i = 0; i < 5; i++) raw.send({ event: 'pusher:ping', data: {} });
      await raw.waitFor(() => raw.find((e) => e.event === 'pusher:pong').length === 5, { what: '5 pongs' });
      const since = raw.mark();
      raw.send({ event: 'pusher:ping', data: {} });
      const err = await raw.event('pusher:error', { since });
      assert.equal(err.data.code, 4301, `expected 4301, saw ${err.text}`);
      assert.equal(raw.find((e) => e.event === 'pusher:pong', since).length, 0, 'the limited ping must not be answered');
      await sleep(200);
      assert.ok(raw.isOpen, 'terminate_on_limit is off: the connection stays open');
    });
  },
);
