//! `Bus`: this node's side of the cluster. An outbox drained by the Redis link (never
//! waiting: beyond its bounds messages are dropped and the state is re-sent later), the
//! cluster's key, the peers heard from and when, how often we may ask for or send a full
//! state, and the count queries waiting for replies. It is the cluster's [`Listener`] (what
//! happens here goes out as a message) and its [`Peers`] (the HTTP API's cluster-wide counts).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::warn;

use super::peer::Peer;
use super::wire::{encode, Key, Msg};
use crate::channel::ChannelKind;
use crate::config::Scaling;
use crate::hooks::{Activity, Answer, Counts, Listener, Peers};

/// Messages, and bytes, waiting for Redis before new ones are dropped.
const OUTBOX: usize = 65_536;
const OUTBOX_BYTES: usize = 64 << 20;

/// The least time between two warnings about messages that failed verification: a flood of
/// forgeries must not become a flood of log lines.
const REJECTED_LOG_EVERY: Duration = Duration::from_secs(60);

/// Holds back a full-state resync (our `hello`, or our `state`) to one per interval (the beat):
/// the first asked for in an interval goes at once, the rest wait for the next beat, where
/// they go as one. Without it, every message from an unknown node made us say hello and every
/// node answer with its whole state, and a burst of new node ids was a burst of state dumps.
#[derive(Default)]
struct Gate {
    last: Option<Instant>,
    /// Asked for since `last` and held back.
    owed: bool,
}

impl Gate {
    /// Whether to send now; if not, it is owed at the next beat.
    fn ask(&mut self, now: Instant, every: Duration) -> bool {
        if self.last.is_some_and(|t| now.duration_since(t) < every) {
            self.owed = true;
            return false;
        }
        self.sent(now);
        true
    }

    /// At a beat: whether one is owed (it counts as sent now).
    fn due(&mut self, now: Instant) -> bool {
        let owed = std::mem::take(&mut self.owed);
        if owed {
            self.last = Some(now);
        }
        owed
    }

    fn sent(&mut self, now: Instant) {
        self.last = Some(now);
        self.owed = false;
    }
}

#[derive(Default)]
struct Resyncs {
    hello: Gate,
    state: Gate,
}

type ReplySender = mpsc::UnboundedSender<(String, Counts)>;

/// This node's side of the cluster: an outbox drained by the Redis link, the peers heard
/// from, and the queries waiting for replies.
pub(super) struct Bus {
    /// Random per process start, so a restarted node is a new node (its sequence numbers
    /// start again under a new id).
    node: String,
    pub(super) settings: Scaling,
    /// Signs what we publish and verifies what we read.
    key: Key,
    /// Apps with `subscription_count` on: only their counts are worth telling the others.
    counted_apps: HashSet<String>,
    /// Apps with webhooks: only their occupied channels are worth telling the others.
    webhook_apps: HashSet<String>,
    /// When this node's id was made; ids begin with it, so the oldest node has the smallest.
    started: Instant,
    /// Set once this node starts draining: it no longer speaks for the cluster.
    leaving: AtomicBool,
    /// Whether the link to Redis is up: without it this node cannot know the cluster.
    linked: AtomicBool,
    /// When the link last came up: for a beat after that, the others may not all have been
    /// heard yet (see [`Peers::leads`]).
    linked_at: Mutex<Option<Instant>>,
    outbox: mpsc::Sender<String>,
    /// Taken once by the link.
    pub(super) inbox_for_link: Mutex<Option<mpsc::Receiver<String>>>,
    peers: Mutex<HashMap<String, Peer>>,
    queries: Mutex<HashMap<u64, ReplySender>>,
    next_query: AtomicU64,
    dropped: AtomicU64,
    /// Bytes in the outbox.
    queued_bytes: AtomicUsize,
    /// Something was dropped: the others may have missed a change, send the state again.
    resync: AtomicBool,
    resyncs: Mutex<Resyncs>,
    /// Messages read from the channel whose MAC did not verify.
    rejected: AtomicU64,
    rejected_logged: Mutex<Option<Instant>>,
    pub(super) first_sync: super::sync::FirstSync,
}

impl Bus {
    pub(super) fn new(
        settings: Scaling,
        key: Key,
        counted_apps: HashSet<String>,
        webhook_apps: HashSet<String>,
    ) -> Arc<Bus> {
        let (outbox, rx) = mpsc::channel(OUTBOX);
        // The start time in milliseconds first, then randomness: ids sort by age (for
        // `leads`) and stay unique.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Arc::new(Bus {
            node: format!("{since_epoch:012x}{:016x}", rand::random::<u64>()),
            settings,
            key,
            counted_apps,
            webhook_apps,
            started: Instant::now(),
            leaving: AtomicBool::new(false),
            linked: AtomicBool::new(false),
            linked_at: Mutex::new(None),
            outbox,
            inbox_for_link: Mutex::new(Some(rx)),
            peers: Mutex::default(),
            queries: Mutex::default(),
            next_query: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            queued_bytes: AtomicUsize::new(0),
            resync: AtomicBool::new(false),
            resyncs: Mutex::default(),
            rejected: AtomicU64::new(0),
            rejected_logged: Mutex::new(None),
            first_sync: super::sync::FirstSync::new(),
        })
    }

    /// The cluster's key.
    pub(super) fn key(&self) -> &Key {
        &self.key
    }

    /// A message on the channel failed verification: counted, and logged at most once per
    /// [`REJECTED_LOG_EVERY`] with the count so far.
    pub(super) fn rejected(&self) {
        let n = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut logged = self.rejected_logged.lock();
        if logged.is_none_or(|t| now.duration_since(t) >= REJECTED_LOG_EVERY) {
            *logged = Some(now);
            warn!(
                rejected = n,
                "scaling: ignored messages without a valid signature on the channel (another \
                 program, a node with another key or version, or a forgery); logged at most \
                 once a minute"
            );
        }
    }

    /// How many messages failed verification so far.
    #[cfg(test)]
    pub(super) fn rejected_count(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The link (re)connected and is about to say hello and send our state: nothing else is
    /// owed, and no other hello is needed for a beat.
    pub(super) fn resynced(&self) {
        self.resync.store(false, Ordering::Relaxed);
        let mut r = self.resyncs.lock();
        r.hello.sent(Instant::now());
        // Not counted as a state sent: a node reconnecting with us may have missed it, and
        // its hello should be answered at once. (Reconnections are paced by the backoff.)
        r.state = Gate::default();
    }

    /// Whether to say hello now, for a node heard from that we did not know; if not, it is
    /// said at the next beat ([`Gate`]).
    pub(super) fn ask_hello(&self) -> bool {
        let every = self.settings.beat_every;
        self.resyncs.lock().hello.ask(Instant::now(), every)
    }

    /// Whether to send our state now, for a node's hello; if not, it goes at the next beat.
    pub(super) fn ask_state(&self) -> bool {
        let every = self.settings.beat_every;
        self.resyncs.lock().state.ask(Instant::now(), every)
    }

    /// At a beat: whether a hello, and whether our state, are owed (held back, or the state
    /// because messages were dropped).
    pub(super) fn due(&self) -> (bool, bool) {
        let now = Instant::now();
        let dropped = self.resync.swap(false, Ordering::Relaxed);
        let mut r = self.resyncs.lock();
        let hello = r.hello.due(now);
        let state = r.state.due(now) || dropped;
        if state {
            r.state.sent(now);
        }
        (hello, state)
    }

    /// Counts every peer as just heard: after our own outage, their beats are still on the
    /// way, and the state they send on our hello replaces what we had.
    pub(super) fn refresh_peers(&self) {
        let now = Instant::now();
        for p in self.peers.lock().values_mut() {
            p.heard = now;
        }
    }

    /// Whether every node of `expected` was heard from after `since`, or is gone (said
    /// goodbye, or expired).
    pub(super) fn heard_all_since(&self, expected: &HashSet<String>, since: Instant) -> bool {
        let peers = self.peers.lock();
        expected
            .iter()
            .all(|n| peers.get(n).is_none_or(|p| p.heard > since))
    }

    /// The link took `n` bytes out of the outbox.
    pub(super) fn dequeued(&self, n: usize) {
        self.queued_bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// This node's id on the bus.
    pub(super) fn node(&self) -> &str {
        &self.node
    }

    /// Queues `msg` for the other nodes. Never waits: when Redis is away long enough for the
    /// outbox to fill, messages are dropped and counted.
    pub(super) fn send(&self, msg: Msg) {
        let text = encode(&msg);
        let len = text.len();
        let within = self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len <= OUTBOX_BYTES;
        if !within || self.outbox.try_send(text).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.resync.store(true, Ordering::Relaxed);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(10_000) {
                warn!(
                    dropped = n + 1,
                    "scaling: outbox full (Redis unreachable?); messages for other nodes dropped"
                );
            }
        }
    }

    /// Nodes heard from within the peer timeout (`Scaling::peer_timeout`), draining ones
    /// included (they still hold clients and answer queries).
    pub(super) fn live_peers(&self) -> HashSet<String> {
        self.peers_where(|_| true)
    }

    /// Live nodes that are not draining: those that may lead.
    fn serving_peers(&self) -> HashSet<String> {
        self.peers_where(|p| !p.draining)
    }

    /// `node` said it is draining (see `Msg::Draining`).
    pub(super) fn draining(&self, node: &str) {
        if let Some(p) = self.peers.lock().get_mut(node) {
            p.draining = true;
        }
    }

    fn peers_where(&self, keep: impl Fn(&Peer) -> bool) -> HashSet<String> {
        let now = Instant::now();
        self.peers
            .lock()
            .iter()
            .filter(|(_, p)| now.duration_since(p.heard) < self.settings.peer_timeout && keep(p))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The other nodes' counts: subscribers of `channel`, or of every occupied channel
    /// starting with `prefix`, and connections. Waits for every live node, at most
    /// the query wait (`Scaling::query_wait`); a node that does not answer in time is left out.
    pub(super) async fn query(&self, app: &str, channel: Option<&str>, prefix: &str) -> Counts {
        let mut counts = Counts::default();
        let mut waiting = self.peers_where(|p| !p.missed_query);
        if waiting.is_empty() {
            return counts;
        }
        let id = self.next_query.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.queries.lock().insert(id, tx);
        // Forgets the query however this future ends (a dropped HTTP request included).
        struct Forget<'a>(&'a Bus, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.queries.lock().remove(&self.1);
            }
        }
        let _forget = Forget(self, id);
        self.send(Msg::Query {
            id,
            app: app.to_owned(),
            channel: channel.map(str::to_owned),
            prefix: prefix.to_owned(),
        });
        let deadline = tokio::time::sleep(self.settings.query_wait);
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            tokio::select! {
                reply = rx.recv() => match reply {
                    Some((node, reply)) => {
                        if waiting.remove(&node) {
                            counts.channels.extend(reply.channels);
                            counts.connections += reply.connections;
                        }
                    }
                    None => break,
                },
                _ = &mut deadline => {
                    warn!(missing = waiting.len(), "scaling: query answered by only some nodes");
                    let mut peers = self.peers.lock();
                    for node in &waiting {
                        if let Some(p) = peers.get_mut(node) {
                            p.missed_query = true;
                        }
                    }
                    break;
                }
            }
        }
        counts
    }

    /// Marks `node` alive: `Some(true)` when it was not known (or had timed out), `None` when
    /// message `seq` was seen already (published again after a lost connection).
    pub(super) fn heard(&self, node: &str, seq: u64) -> Option<bool> {
        let now = Instant::now();
        let mut peers = self.peers.lock();
        match peers.get_mut(node) {
            Some(p) => p.hear(now, seq, self.settings.peer_timeout),
            None => {
                peers.insert(node.to_owned(), Peer::new(now, seq));
                Some(true)
            }
        }
    }

    /// The link to Redis came up, or went down (see [`Peers::leads`]).
    pub(super) fn linked(&self, up: bool) {
        if up {
            *self.linked_at.lock() = Some(Instant::now());
        }
        self.linked.store(up, Ordering::Relaxed);
    }

    /// This node is draining (see [`Peers::leads`]).
    pub(super) fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// Whether the other nodes must hear of app `app_id`'s subscriber counts.
    pub(super) fn counts(&self, app_id: &str) -> bool {
        self.counted_apps.contains(app_id)
    }

    /// Whether the other nodes must hear of app `app_id`'s occupied channels.
    pub(super) fn shares_occupancy(&self, app_id: &str) -> bool {
        self.webhook_apps.contains(app_id)
    }

    /// Forgets `node` (it said goodbye).
    pub(super) fn forget(&self, node: &str) {
        self.peers.lock().remove(node);
    }

    /// `node`'s answer to our query `id`, for the query waiting for it (if still waiting).
    pub(super) fn replied(
        &self,
        id: u64,
        node: &str,
        channels: Vec<(String, usize)>,
        connections: usize,
    ) {
        if let Some(tx) = self.queries.lock().get(&id) {
            let reply = Counts {
                channels,
                connections,
            };
            let _ = tx.send((node.to_owned(), reply));
        }
    }

    /// Forgets nodes silent for the peer timeout (`Scaling::peer_timeout`); returns them.
    pub(super) fn expire_peers(&self) -> Vec<String> {
        let now = Instant::now();
        let mut gone = Vec::new();
        self.peers.lock().retain(|node, p| {
            let alive = now.duration_since(p.heard) < self.settings.peer_timeout;
            if !alive {
                gone.push(node.clone());
            }
            alive
        });
        gone
    }
}

impl Peers for Bus {
    fn counts<'a>(
        &'a self,
        app: &'a str,
        channel: Option<&'a str>,
        prefix: &'a str,
    ) -> Answer<'a, Counts> {
        Box::pin(self.query(app, channel, prefix))
    }

    /// After the first sync (`sync.rs`), at most two beats: a peer that held back its state
    /// sends it at its next beat.
    fn ready(&self) -> Answer<'_, ()> {
        Box::pin(self.first_sync.wait(self.settings.beat_every * 2))
    }

    /// Other nodes serving: heard from recently and not draining.
    fn live_nodes(&self) -> usize {
        self.serving_peers().len()
    }

    /// The oldest serving node leads (the smallest id: ids begin with their start time), so a
    /// node that joins a running cluster never takes over from one that knows more. Not
    /// known during this node's first beat, nor during the first beat after its link to Redis
    /// comes up (the others have not all been heard yet); never
    /// while this node cannot reach Redis (it would take the others' silence for their
    /// departure), nor once it is draining.
    fn leads(&self) -> Option<bool> {
        if self.leaving.load(Ordering::Relaxed) {
            return Some(false);
        }
        if self.started.elapsed() < self.settings.beat_every {
            return None;
        }
        if !self.linked.load(Ordering::Relaxed) {
            return Some(false);
        }
        // Just (re)connected: the others answer our hello within a beat; until then an
        // empty list of peers says nothing (Redis slow to answer at startup, or back after an
        // outage longer than the peer timeout, when every peer had been dropped).
        if self
            .linked_at
            .lock()
            .is_some_and(|at| at.elapsed() < self.settings.beat_every)
        {
            return None;
        }
        Some(self.serving_peers().iter().all(|n| self.node < *n))
    }
}

impl Listener for Bus {
    /// What the other nodes must hear of, as a message; everything else is this node's own.
    fn on(&self, app_id: &str, activity: &Activity<'_>) {
        // Copied only for the activities that become a message.
        let app = || app_id.to_owned();
        let msg = match *activity {
            Activity::ApiEvent {
                channels,
                event,
                data,
                except,
            } => Msg::Event {
                app: app(),
                channels: channels.to_vec(),
                event: event.to_owned(),
                data: data.to_owned(),
                except: except.map(|id| id.to_string()),
            },
            Activity::ClientEvent {
                channel,
                event,
                data,
                user_id,
                ..
            } => Msg::Client {
                app: app(),
                channel: channel.to_owned(),
                event: event.to_owned(),
                data: data.map(ToOwned::to_owned),
                user_id: user_id.map(ToOwned::to_owned),
            },
            // Reported after the channel's `ChannelOccupied`: the others hear of the channel
            // before its member, so their webhooks come in order.
            Activity::MemberJoined { channel, member } => Msg::Join {
                app: app(),
                channel: channel.to_owned(),
                user_id: member.user_id.clone(),
                user_info: member.user_info.clone(),
            },
            Activity::MemberLeft { channel, id } => Msg::Leave {
                app: app(),
                channel: channel.to_owned(),
                id: id.to_owned(),
            },
            Activity::SubscriptionCount { channel, local }
                if self.counted_apps.contains(app_id)
                    && !ChannelKind::from_name(channel).presence =>
            {
                Msg::Count {
                    app: app(),
                    channel: channel.to_owned(),
                    subscribers: local,
                }
            }
            Activity::UserOnline { user_id } | Activity::UserOffline { user_id } => Msg::Online {
                app: app(),
                user_id: user_id.to_owned(),
                online: matches!(activity, Activity::UserOnline { .. }),
            },
            Activity::ChannelOccupied { channel } | Activity::ChannelVacated { channel }
                if self.webhook_apps.contains(app_id) =>
            {
                Msg::Occupied {
                    app: app(),
                    channel: channel.to_owned(),
                    occupied: matches!(activity, Activity::ChannelOccupied { .. }),
                }
            }
            Activity::UserTerminated { user_id } => Msg::Terminate {
                app: app(),
                user_id: user_id.to_owned(),
            },
            _ => return,
        };
        self.send(msg);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Scaling;
    use crate::hooks::Peers;

    #[test]
    fn a_node_does_not_lead_for_a_beat_after_its_link_comes_up() {
        let settings = Scaling {
            beat_every: Duration::from_millis(500),
            ..Scaling::new("redis://127.0.0.1:1/0", "c")
        };
        let bus = super::super::new_bus(settings, &[]);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(bus.leads(), Some(false), "no link, no lead");
        // Linked late (Redis slow at startup, or back after a long outage): nobody heard
        // yet is not nobody there.
        bus.linked(true);
        assert_eq!(bus.leads(), None);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(bus.leads(), Some(true), "alone after a beat");
        bus.leave();
        assert_eq!(bus.leads(), Some(false), "draining");
    }
}
