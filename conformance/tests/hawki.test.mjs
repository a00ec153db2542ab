// The HAWKI group-chat room, end to end: five Echo members in
// presence-Rooms.<slug> and private-Rooms.<slug>, end-to-end-encrypted
// messages relayed untouched, AI replies to everyone, typing whispers.
import { describe } from 'node:test';
import assert from 'node:assert/strict';

import { useServer, makeEcho, nodeSdk, pythonSdk, encryptedMessage, sdkJson, scenario, uniq } from '../lib/harness.mjs';

let sdk;
const server = useServer({}, (s) => {
  sdk = nodeSdk(s);
});

const EVENT = 'App\\Events\\RoomMessageEvent';
const NAMES = ['Ada', 'Ben', 'Cem', 'Dora', 'Eli'];

describe('HAWKI room', () => {
  scenario(server, 'five members: messages, AI reply, typing whispers, a member leaves', async () => {
    const slug = uniq('hawki-');
    const room = `Rooms.${slug}`;
    const privateName = `private-${room}`;
    const presenceName = `presence-${room}`;

    const members = NAMES.map((name, i) => {
      const c = makeEcho(`${name} (Echo, user ${i + 1})`, server, {
        user: { id: String(i + 1), info: { id: i + 1, username: name.toLowerCase(), name } },
      });
      c.echo
        .join(room)
        .here((users) => c.push({ kind: 'echo', what: 'here', data: users }))
        .joining((u) => c.push({ kind: 'echo', what: 'joining', data: u }))
        .leaving((u) => c.push({ kind: 'echo', what: 'leaving', data: u }));
      c.echo
        .private(room)
        .listen('RoomMessageEvent', (e) => c.push({ kind: 'echo', what: 'message', data: e }))
        .listenForWhisper('typing', (e) => c.push({ kind: 'echo', what: 'typing', data: e }));
      return c;
    });
    for (const c of members) {
      await c.subscribed(presenceName, { timeout: 8000 });
      await c.subscribed(privateName, { timeout: 8000 });
    }
    // Everyone joined at once, so each member's roster is here() plus later joining() calls.
    const roster = (c) => {
      const names = new Set();
      for (const e of c.entries) {
        if (e.kind !== 'echo') continue;
        if (e.what === 'here') for (const u of e.data) names.add(u.name);
        if (e.what === 'joining') names.add(e.data.name);
        if (e.what === 'leaving') names.delete(e.data.name);
      }
      return [...names].sort();
    };
    for (const c of members) {
      await c.waitFor(() => roster(c).length === NAMES.length, { what: `a roster of all 5 members (has ${roster(c)})` }).catch(
        (e) => {
          e.message += `\nroster of ${c.name}: ${roster(c)}`;
          throw e;
        },
      );
      assert.deepEqual(roster(c), [...NAMES].sort(), `${c.name} expected all 5 members`);
      assert.equal(c.find((e) => e.kind === 'echo' && e.what === 'here').length, 1, `${c.name}: here() exactly once`);
    }
    const presenceInfo = await sdkJson(
      sdk.get({ path: `/channels/${presenceName}`, params: { info: 'user_count' } }),
      'GET presence channel info',
    );
    assert.deepEqual(presenceInfo, { occupied: true, user_count: 5 });

    // 1. A member's message, sent with toOthers (socket_id of the sender).
    const sender = members[1];
    const payload = encryptedMessage(slug, 'ben');
    const marks = members.map((c) => c.mark());
    const res = await sdkJson(
      sdk.trigger(privateName, EVENT, payload, { socket_id: sender.echo.socketId() }),
      'trigger RoomMessageEvent (toOthers)',
    );
    assert.deepEqual(res, {});
    for (const [i, c] of members.entries()) {
      if (c === sender) continue;
      const raw = await c.rawFrame(privateName, EVENT, { since: marks[i] });
      assert.equal(raw.frame.data, payload, `${c.name} expected the message data byte-identical`);
      const seen = await c.waitFor((e) => e.kind === 'echo' && e.what === 'message', {
        since: marks[i],
        what: 'the RoomMessageEvent via Echo listen()',
      });
      assert.deepEqual(seen.data, JSON.parse(payload));
    }
    await sender.expectNone((e) => e.kind === 'echo' && e.what === 'message', {
      since: marks[1],
      within: 500,
      what: 'no copy of its own message (toOthers)',
    });

    // 2. The AI reply is broadcast without socket_id (here through the Python SDK): all five get it.
    const aiPayload = encryptedMessage(slug, 'HAWKI', 'assistant');
    const aiMarks = members.map((c) => c.mark());
    assert.deepEqual(await pythonSdk(server, 'trigger', { channels: [privateName], event: EVENT, data: aiPayload }), {});
    for (const [i, c] of members.entries()) {
      const raw = await c.rawFrame(privateName, EVENT, { since: aiMarks[i] });
      assert.equal(raw.frame.data, aiPayload, `${c.name} expected the AI reply byte-identical`);
    }

    // 3. Typing whispers: everyone but the typist.
    const typist = members[3];
    const typingMarks = members.map((c) => c.mark());
    typist.echo.private(room).whisper('typing', { username: 'dora', typing: true });
    for (const [i, c] of members.entries()) {
      if (c === typist) continue;
      const got = await c.waitFor((e) => e.kind === 'echo' && e.what === 'typing', {
        since: typingMarks[i],
        what: "Dora's typing whisper",
      });
      assert.deepEqual(got.data, { username: 'dora', typing: true });
    }
    await typist.expectNone((e) => e.kind === 'echo' && e.what === 'typing', {
      since: typingMarks[3],
      within: 500,
      what: 'no copy of its own whisper',
    });

    // 4. Eli leaves the room (Echo.leave); the other four see leaving().
    const leaver = members[4];
    const leaveMarks = members.map((c) => c.mark());
    leaver.echo.leave(room);
    for (const [i, c] of members.entries()) {
      if (c === leaver) continue;
      const left = await c.waitFor((e) => e.kind === 'echo' && e.what === 'leaving', {
        since: leaveMarks[i],
        what: "Eli's leaving()",
      });
      assert.equal(left.data.name, 'Eli');
    }
    // After leaving, Eli no longer gets room messages.
    const afterLeave = leaver.mark();
    await sdkJson(sdk.trigger(privateName, EVENT, encryptedMessage(slug, 'ada')), 'trigger after leave');
    await members[0].rawFrame(privateName, EVENT, { since: leaveMarks[0] });
    await leaver.expectNone((e) => e.kind === 'raw' && e.frame?.event === EVENT, {
      since: afterLeave,
      within: 500,
      what: 'no messages after leaving the room',
    });
    const users = await sdkJson(sdk.get({ path: `/channels/${presenceName}/users` }), 'GET users');
    assert.deepEqual(users.users.map((u) => String(u.id)).sort(), ['1', '2', '3', '4']);
  });
});
