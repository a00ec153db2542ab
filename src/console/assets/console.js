// The resound debug console. Plain script, no build step: talks to the server under `base`
// (login, overview, events) and reads the live stream from a WebSocket. Every value from the
// server is shown with textContent, never parsed as HTML.
'use strict';

const base = document.querySelector('meta[name="console-base"]').content;
const $ = (id) => document.getElementById(id);
const MAX_ROWS = 1000;
let stream = null;
let polling = null;
let loggedIn = false;
let lost = 0;

async function api(path, options = {}) {
  const res = await fetch(base + path, {
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    ...options,
  });
  let body = {};
  try { body = await res.json(); } catch (_) { /* an empty or non-JSON answer */ }
  return { status: res.status, body };
}

function showLogin() {
  loggedIn = false;
  if (stream) stream.close();
  clearInterval(polling);
  $('console').hidden = true;
  $('who').hidden = true;
  $('login').hidden = false;
}

function showConsole(appId) {
  loggedIn = true;
  $('login').hidden = true;
  $('console').hidden = false;
  $('who').hidden = false;
  $('who-app').textContent = appId;
  if (!$('send-channel').value) $('send-channel').value = 'my-channel';
  if (!$('send-event').value) $('send-event').value = 'test-event';
  refresh();
  clearInterval(polling);
  polling = setInterval(refresh, 1000);
  connect();
}

async function refresh() {
  const { status, body } = await api('/overview');
  if (status === 401) return showLogin();
  if (status !== 200) return;
  $('connection-count').textContent = body.connections.count;
  const ids = $('connections');
  ids.replaceChildren(...body.connections.listed.map((id) => el('li', id)));
  $('channel-count').textContent = body.channel_count;
  $('channels').replaceChildren(...body.channels.map(channelRow));
  $('dropped').title = `all viewers of this app: ${body.stream.dropped} dropped`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function channelRow(c) {
  const tr = el('tr');
  tr.dataset.channel = c.name;
  const name = el('td', c.name);
  if (c.members) {
    const list = el('ul', undefined, 'members');
    list.append(el('li', `${c.user_count} members`));
    for (const m of c.members) list.append(el('li', m.id + (m.info ? ' ' + JSON.stringify(m.info) : '')));
    name.append(list);
  }
  const count = el('td', String(c.subscribers), 'subscribers');
  tr.append(name, count);
  return tr;
}

function connect() {
  if (stream) stream.close();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}${base}/stream`);
  stream = ws;
  $('stream-status').textContent = 'connecting';
  ws.onmessage = (m) => {
    const entry = JSON.parse(m.data);
    if (entry.type === 'hello') {
      $('stream-status').textContent = 'live';
      return;
    }
    if (entry.type === 'dropped') {
      lost += entry.count;
      $('dropped').textContent = lost;
    }
    addRow(entry);
  };
  ws.onclose = () => {
    if (stream !== ws) return;
    $('stream-status').textContent = 'disconnected';
    if (loggedIn) setTimeout(() => { if (loggedIn && stream === ws) connect(); }, 1000);
  };
}

function channelsOf(e) {
  return e.channels || (e.channel ? [e.channel] : []);
}

function details(e) {
  const parts = [];
  if (e.event) parts.push(e.event);
  if (e.message) parts.push(e.message);
  if (e.data !== undefined && e.data !== null) {
    parts.push(typeof e.data === 'string' ? e.data : JSON.stringify(e.data));
  }
  if (e.user_id !== undefined && e.user_id !== null) parts.push(`user ${e.user_id}`);
  if (e.socket_id) parts.push(`socket ${e.socket_id}`);
  if (e.except) parts.push(`except ${e.except}`);
  if (e.code !== undefined && e.code !== null) parts.push(`code ${e.code}`);
  if (e.count !== undefined) parts.push(e.type === 'dropped' ? `${e.count} entries lost (viewer too slow)` : `count ${e.count}`);
  return parts.join('  ');
}

function isError(e) {
  if (e.type === 'dropped' || e.type === 'error') return true;
  return e.type === 'connection_closed' && e.code >= 4000 && e.code < 4200;
}

function addRow(e) {
  const tr = el('tr', undefined, e.type + (isError(e) ? ' error' : ''));
  const chans = channelsOf(e);
  tr.dataset.channels = chans.join(' ');
  tr.dataset.type = e.type;
  const time = new Date(e.at).toISOString().slice(11, 23);
  tr.append(el('td', time), el('td', e.type), el('td', chans.join(', ')), el('td', details(e), 'details'));
  tr.hidden = !matches(tr);
  const body = $('stream');
  body.prepend(tr);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
}

function matches(tr) {
  const f = $('filter').value.trim();
  if (!f) return true;
  return tr.dataset.channels.split(' ').some((c) => c && c.includes(f));
}

$('filter').addEventListener('input', () => {
  for (const tr of $('stream').rows) tr.hidden = !matches(tr);
});

$('clear').addEventListener('click', () => $('stream').replaceChildren());

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  const { status, body } = await api('/login', {
    method: 'POST',
    body: JSON.stringify({ app_id: $('app-id').value.trim(), secret: $('secret').value }),
  });
  if (status === 200) {
    $('secret').value = '';
    showConsole(body.app_id);
  } else {
    $('login-error').textContent = body.error || `Login failed (${status})`;
  }
});

$('logout').addEventListener('click', async () => {
  await api('/logout', { method: 'POST' });
  showLogin();
});

$('send-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const result = $('send-result');
  result.textContent = 'sending';
  result.className = '';
  const { status, body } = await api('/events', {
    method: 'POST',
    body: JSON.stringify({
      name: $('send-event').value,
      channel: $('send-channel').value,
      data: $('send-data').value,
    }),
  });
  if (status === 401) return showLogin();
  result.textContent = status === 200 ? 'sent' : (body.error || `failed (${status})`);
  result.className = status === 200 ? '' : 'error';
});

api('/session').then(({ status, body }) => (status === 200 ? showConsole(body.app_id) : showLogin()));
