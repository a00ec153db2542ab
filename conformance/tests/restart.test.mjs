// resound is stopped (SIGTERM) and started again on the same port:
// pusher-js and Echo clients reconnect and resubscribe on their own.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { useServer, RawClient, makePusher, makeEcho, nodeSdk, sdkJson, scenario, uniq } from '../lib/harness.mjs';

// pusher-js retries at once after close code 4200, but that first attempt
// usually hits the closed port; its ws strategy then waits out its 15 s
// per-attempt timeout before trying again. Allow for that.
const RECONNECT_MS = 25000;

const server = useServer();

describe('restart', () => {
  scenario(
    server,
    'clients reconnect, resubscribe and receive the next event after a restart on the same port',
    async () => {
      const tag = uniq('restart');
      const pub = `${tag}.news`;
      const priv = `private-${tag}.room`;
      const pres = `presence-${tag}.lobby`;

      const alice = makePusher('alice (pusher-js)', server, { user: { id: '1', info: { name: 'Alice' } } });
      for (const n of [pub, priv, pres]) alice.subscribe(n);
      const bob = makeEcho('bob (Echo)', server, { user: { id: '2', info: { name: 'Bob' } } });
      bob.echo.private(`${tag}.room`).listen('RoomMessageEvent', (e) => bob.push({ kind: 'echo', what: 'message', data: e }));
      bob.echo.join(`${tag}.lobby`).here((u) => bob.push({ kind: 'echo', what: 'here', data: u }));
      for (const n of [pub, priv, pres]) await alice.subscribed(n);
      await bob.subscribed(priv);
      await bob.subscribed(pres);
      const raw = RawClient.connect('raw', server);
      await raw.established();

      const oldIds = [alice.socketId, bob.socketId];
      const marks = [alice.mark(), bob.mark()];
      const port = server.port;
      const stopped = await server.stop();
      assert.equal(stopped.code, 0, `resound expected to exit 0 on SIGTERM, saw ${JSON.stringify(stopped)}`);
      const closed = await raw.closeEvent();
      assert.equal(closed.code, 4200, `raw client expected close code 4200 on shutdown, saw ${closed.code} "${closed.reason}"`);
      for (const [i, c] of [alice, bob].entries()) {
        const seen = await c.waitFor((e) => e.kind === 'closed', { since: marks[i], what: 'the socket to be closed' });
        assert.equal(seen.code, 4200, `${c.name} expected close code 4200 (reconnect at once), saw ${seen.code}`);
      }

      await server.start({ port });
      assert.equal(server.port, port);

      for (const [i, c] of [alice, bob].entries()) {
        await c.connected({ since: marks[i], timeout: RECONNECT_MS });
      }
      assert.notDeepEqual([alice.socketId, bob.socketId], oldIds, 'new socket ids after reconnect');
      for (const n of [pub, priv, pres]) await alice.subscribed(n, { since: marks[0], timeout: RECONNECT_MS });
      await bob.subscribed(priv, { since: marks[1], timeout: RECONNECT_MS });
      await bob.subscribed(pres, { since: marks[1], timeout: RECONNECT_MS });

      const sdk = nodeSdk(server);
      await sdkJson(sdk.trigger([pub, priv], 'App\\Events\\RoomMessageEvent', { after: 'restart' }), 'trigger after restart');
      for (const n of [pub, priv]) {
        const got = await alice.channelEvent(n, 'App\\Events\\RoomMessageEvent', { since: marks[0] });
        assert.deepEqual(got.data, { after: 'restart' });
      }
      const echoGot = await bob.waitFor((e) => e.kind === 'echo' && e.what === 'message', {
        since: marks[1],
        what: 'RoomMessageEvent via Echo after restart',
      });
      assert.deepEqual(echoGot.data, { after: 'restart' });

      const users = await sdkJson(sdk.get({ path: `/channels/${pres}/users` }), 'GET users after restart');
      assert.deepEqual(users.users.map((u) => String(u.id)).sort(), ['1', '2'], 'both presence members are back');
    },
    { timeout: 90000 },
  );
});
