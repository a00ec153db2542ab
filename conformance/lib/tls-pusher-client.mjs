// pusher-js over wss:// in a process of its own: Node reads NODE_EXTRA_CA_CERTS only at
// start-up, and pusher-js's Node transport takes no CA option, so this is how it comes to
// trust the test's CA. Arguments: port, app key, channel. One JSON line per observation on
// stdout; it disconnects and exits when its stdin closes.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Pusher = require('pusher-js');

const [port, key, channel] = process.argv.slice(2);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const pusher = new Pusher(key, {
  cluster: '',
  wsHost: 'localhost',
  wsPort: Number(port),
  wssPort: Number(port),
  forceTLS: true,
  enabledTransports: ['ws'],
});
pusher.connection.bind('state_change', (s) => out({ kind: 'state', current: s.current }));
pusher.connection.bind('error', (e) => out({ kind: 'error', error: String(e?.error?.message ?? e?.error?.data?.message ?? e?.type ?? e) }));
const ch = pusher.subscribe(channel);
ch.bind('pusher:subscription_succeeded', () => out({ kind: 'subscribed', socketId: pusher.connection.socket_id }));
ch.bind_global((event, data) => {
  if (!event.startsWith('pusher:')) out({ kind: 'event', event, data });
});
process.stdin.on('end', () => {
  pusher.disconnect();
  process.exit(0);
});
process.stdin.resume();
