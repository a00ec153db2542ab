//! Multi-node scaling: nodes share one Redis pub/sub channel (`REVERB_SCALING_CHANNEL`), as
//! Reverb's do. What one node must tell the others goes over it:
//! - HTTP API events (with the `socket_id` to skip, which may be on any node), client events,
//!   and user terminations: every node delivers them to its own sockets;
//! - presence and signed-in users: each node announces a user's first join and last leave per
//!   presence channel, and its first sign-in and last sign-out; it answers a newcomer's `hello`
//!   with its whole state, beats every few seconds, and says `bye` on shutdown; a node silent
//!   for [`PEER_TIMEOUT`] is dropped with its members and users. So `subscription_succeeded`,
//!   `member_added`/`member_removed`, the users API and watchlist events are cluster-wide;
//! - HTTP API channel queries: the node that got the request asks the others for their counts
//!   and waits for every live node's reply, at most [`QUERY_WAIT`].
//!
//! Each node delivers locally at once and publishes for the others; a node ignores its own
//! messages. When Redis is unreachable the node keeps serving its own sockets and reconnects
//! with backoff; messages for the other nodes wait in a bounded outbox meanwhile (beyond it
//! they are dropped, and the node's state is re-sent once the link is back).
//!
//! A node's state message must agree with the joins and leaves around it: every change that
//! is announced takes [`Bus::ordered`] (shared) before its own locks, and the state is read
//! and queued under it exclusively, so each change is either in the state or queued after it.

mod link;
mod subscriber;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::channel::presence::PresenceMember;
use crate::config::Scaling;
use crate::connection::{Flushes, SocketId};
use crate::protocol::server;
use crate::state::{AppRuntime, State};

pub use link::spawn;

/// How often a node says it is alive.
pub const BEAT_EVERY: Duration = Duration::from_secs(3);
/// A node not heard from for this long is gone, and so are its presence members.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an HTTP API query waits for the other nodes' counts. A live node answers in
/// milliseconds; one that lets a query time out is not waited for again until it is heard
/// from, so a crashed node delays one query, not every query until it times out.
pub const QUERY_WAIT: Duration = Duration::from_secs(3);
/// Messages, and bytes, waiting for Redis before new ones are dropped.
const OUTBOX: usize = 65_536;
const OUTBOX_BYTES: usize = 64 << 20;
/// Marks our messages on a channel other software may share.
const WIRE_VERSION: u32 = 1;

/// One message between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Msg {
    /// An HTTP API event: deliver `data` verbatim on each channel, skipping `except`.
    Event {
        app: String,
        channels: Vec<String>,
        event: String,
        data: String,
        except: Option<String>,
    },
    /// A client event relayed by the sender's node (the sender is not here).
    Client {
        app: String,
        channel: String,
        event: String,
        data: Option<Box<RawValue>>,
        user_id: Option<Box<RawValue>>,
    },
    /// A user's first socket on the sending node joined a presence channel.
    Join {
        app: String,
        channel: String,
        user_id: Box<RawValue>,
        user_info: Option<Box<RawValue>>,
    },
    /// A user's last socket on the sending node left a presence channel.
    Leave {
        app: String,
        channel: String,
        id: String,
    },
    /// A user's first connection on the sending node signed in (`online`), or its last one
    /// closed.
    Online {
        app: String,
        user_id: String,
        online: bool,
    },
    /// The sending node's subscriber count of a channel changed (sent only for apps with
    /// `subscription_count` on).
    Count {
        app: String,
        channel: String,
        subscribers: usize,
    },
    /// Every presence member, signed-in user and (with `subscription_count`) channel count of
    /// the sending node (replaces what it reported before).
    State {
        members: Vec<StateMember>,
        /// (app id, user id)
        #[serde(default)]
        users: Vec<(String, String)>,
        /// (app id, channel, subscribers)
        #[serde(default)]
        counts: Vec<(String, String, usize)>,
    },
    /// A node (re)joined: everybody answers with `State`.
    Hello,
    /// The sending node is alive.
    Beat,
    /// The sending node is shutting down.
    Bye,
    /// Close every connection of a user.
    Terminate { app: String, user_id: String },
    /// Asks every node for its subscriber counts: one channel, or all with a prefix.
    Query {
        id: u64,
        app: String,
        channel: Option<String>,
        prefix: String,
    },
    /// The answer to `Query` `id`, for node `to`: occupied channels and their subscriber
    /// counts, and the node's open connections.
    Reply {
        id: u64,
        to: String,
        channels: Vec<(String, usize)>,
        connections: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StateMember {
    app: String,
    channel: String,
    user_id: Box<RawValue>,
    user_info: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Envelope {
    resound: u32,
    node: String,
    /// Numbers the sending node's messages in the order it published them, so that what a
    /// lost connection makes it publish again is recognised (0: unnumbered).
    #[serde(default)]
    seq: u64,
    msg: Msg,
}

struct Peer {
    heard: Instant,
    /// The highest sequence number seen from it.
    last_seq: u64,
    /// It let a query time out and has not been heard from since.
    missed_query: bool,
}

/// What the other nodes answered to a query, added up.
#[derive(Debug, Default)]
pub struct Counts {
    /// One entry per node and occupied channel.
    pub channels: Vec<(String, usize)>,
    pub connections: usize,
}

type ReplySender = mpsc::UnboundedSender<(String, Counts)>;

/// This node's side of the cluster: an outbox drained by the Redis link, the peers heard
/// from, and the queries waiting for replies.
pub struct Bus {
    node: String,
    settings: Scaling,
    outbox: mpsc::Sender<String>,
    /// Taken once by [`spawn`].
    inbox_for_link: Mutex<Option<mpsc::Receiver<String>>>,
    peers: Mutex<HashMap<String, Peer>>,
    queries: Mutex<HashMap<u64, ReplySender>>,
    next_query: AtomicU64,
    dropped: AtomicU64,
    /// Bytes in the outbox.
    queued_bytes: AtomicUsize,
    /// Something was dropped: the others may have missed a change, send the state again.
    resync: AtomicBool,
    /// Orders announced changes against state snapshots (see the module notes).
    order: RwLock<()>,
}

impl Bus {
    pub fn new(settings: Scaling) -> Arc<Bus> {
        let (outbox, rx) = mpsc::channel(OUTBOX);
        Arc::new(Bus {
            node: format!("{:016x}", rand::random::<u64>()),
            settings,
            outbox,
            inbox_for_link: Mutex::new(Some(rx)),
            peers: Mutex::default(),
            queries: Mutex::default(),
            next_query: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            queued_bytes: AtomicUsize::new(0),
            resync: AtomicBool::new(false),
            order: RwLock::new(()),
        })
    }

    /// Held (shared) by every change that is announced to the other nodes, from before the
    /// change until its message is queued.
    pub fn ordered(&self) -> RwLockReadGuard<'_, ()> {
        // Never taken twice by one thread (so a waiting snapshot cannot deadlock it), and not
        // recursive, so a snapshot is not starved by a stream of changes.
        self.order.read()
    }

    /// Queues this node's whole state, read while no announced change is in progress.
    fn queue_state(&self, state: &State) {
        let _snapshot = self.order.write();
        self.send(local_state(state));
    }

    /// Counts every peer as just heard: after our own outage, their beats are still on the
    /// way, and the state they send on our hello replaces what we had.
    fn refresh_peers(&self) {
        let now = Instant::now();
        for p in self.peers.lock().values_mut() {
            p.heard = now;
        }
    }

    /// The link took `n` bytes out of the outbox.
    fn dequeued(&self, n: usize) {
        self.queued_bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// This node's id on the bus.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Queues `msg` for the other nodes. Never waits: when Redis is away long enough for the
    /// outbox to fill, messages are dropped and counted.
    pub fn send(&self, msg: Msg) {
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

    /// Nodes heard from within [`PEER_TIMEOUT`].
    pub fn live_peers(&self) -> HashSet<String> {
        self.peers_where(|_| true)
    }

    fn peers_where(&self, keep: impl Fn(&Peer) -> bool) -> HashSet<String> {
        let now = Instant::now();
        self.peers
            .lock()
            .iter()
            .filter(|(_, p)| now.duration_since(p.heard) < PEER_TIMEOUT && keep(p))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The other nodes' counts: subscribers of `channel`, or of every occupied channel
    /// starting with `prefix`, and connections. Waits for every live node, at most
    /// [`QUERY_WAIT`]; a node that does not answer in time is left out.
    pub async fn query(&self, app: &str, channel: Option<&str>, prefix: &str) -> Counts {
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
        let deadline = tokio::time::sleep(QUERY_WAIT);
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
    fn heard(&self, node: &str, seq: u64) -> Option<bool> {
        let now = Instant::now();
        let mut peers = self.peers.lock();
        match peers.get_mut(node) {
            Some(p) => {
                if seq != 0 && seq <= p.last_seq {
                    return None;
                }
                let stale = now.duration_since(p.heard) >= PEER_TIMEOUT;
                p.heard = now;
                p.last_seq = p.last_seq.max(seq);
                p.missed_query = false;
                Some(stale)
            }
            None => {
                let p = Peer {
                    heard: now,
                    last_seq: seq,
                    missed_query: false,
                };
                peers.insert(node.to_owned(), p);
                Some(true)
            }
        }
    }

    /// Forgets nodes silent for [`PEER_TIMEOUT`]; returns them.
    fn expire_peers(&self) -> Vec<String> {
        let now = Instant::now();
        let mut gone = Vec::new();
        self.peers.lock().retain(|node, p| {
            let alive = now.duration_since(p.heard) < PEER_TIMEOUT;
            if !alive {
                gone.push(node.clone());
            }
            alive
        });
        gone
    }
}

/// A message's JSON, without its envelope (added by the link, see [`wrap`]).
fn encode(msg: &Msg) -> String {
    serde_json::to_string(msg).expect("cluster messages serialize")
}

/// The envelope around an encoded message: our marker, the node id (hex) and the sequence
/// number.
fn wrap(node: &str, seq: u64, msg: &str) -> String {
    format!(r#"{{"resound":{WIRE_VERSION},"node":"{node}","seq":{seq},"msg":{msg}}}"#)
}

/// Everything this node knows about its own presence members, for a `State` message.
fn local_state(state: &State) -> Msg {
    let mut members = Vec::new();
    let mut users = Vec::new();
    let mut counts = Vec::new();
    for app in state.apps() {
        for (channel, m) in app.channels.local_presence() {
            members.push(StateMember {
                app: app.app.id.clone(),
                channel,
                user_id: m.user_id,
                user_info: m.user_info,
            });
        }
        users.extend(
            app.users
                .local_users()
                .into_iter()
                .map(|u| (app.app.id.clone(), u)),
        );
        let id = &app.app.id;
        counts.extend(
            app.channels
                .local_counts()
                .into_iter()
                .map(|(c, n)| (id.clone(), c, n)),
        );
    }
    Msg::State {
        members,
        users,
        counts,
    }
}

/// Applies one message from the bus. Our own messages come back too and are skipped.
fn receive(state: &State, bus: &Bus, payload: &[u8]) {
    let Ok(env) = serde_json::from_slice::<Envelope>(payload) else {
        debug!("scaling: ignored a message that is not ours");
        return;
    };
    if env.resound != WIRE_VERSION || env.node == bus.node {
        return;
    }
    let node = env.node.as_str();
    let Some(new_peer) = bus.heard(node, env.seq) else {
        debug!(
            node,
            seq = env.seq,
            "scaling: skipped a message published twice"
        );
        return;
    };
    if new_peer && !matches!(env.msg, Msg::Hello | Msg::Bye | Msg::State { .. }) {
        // A node we did not know, or had given up on, that neither said hello nor gave its
        // state (we missed them, say while reconnecting): ask for everybody's state again.
        bus.send(Msg::Hello);
    }
    let app_of = |id: &str| state.app_by_id(id).cloned();
    match env.msg {
        Msg::Event {
            app,
            channels,
            event,
            data,
            except,
        } => {
            if let Some(app) = app_of(&app) {
                let except = except.as_deref().and_then(SocketId::parse);
                let mut out = Flushes::deferred();
                crate::dispatch::deliver(&app, &channels, &event, &data, except, &mut out);
            }
        }
        Msg::Client {
            app,
            channel,
            event,
            data,
            user_id,
        } => {
            if let Some(app) = app_of(&app) {
                let text =
                    || server::client_event(&event, &channel, data.as_deref(), user_id.as_deref());
                let mut out = Flushes::deferred();
                app.channels
                    .publish(&channel, false, || text().into(), None, &mut out);
            }
        }
        Msg::Join {
            app,
            channel,
            user_id,
            user_info,
        } => {
            if let (Some(app), Some(m)) =
                (app_of(&app), PresenceMember::from_parts(user_id, user_info))
            {
                app.channels.remote_join(node, &channel, m);
            }
        }
        Msg::Leave { app, channel, id } => {
            if let Some(app) = app_of(&app) {
                app.channels.remote_leave(node, &channel, &id);
            }
        }
        Msg::State {
            members,
            users,
            counts,
        } => {
            // What the node reports, per app; an app it does not mention has none of it.
            #[derive(Default)]
            struct Reported {
                members: Vec<(String, PresenceMember)>,
                users: Vec<String>,
                counts: Vec<(String, usize)>,
            }
            let mut by_app: HashMap<String, Reported> = HashMap::new();
            for m in members {
                if let Some(pm) = PresenceMember::from_parts(m.user_id, m.user_info) {
                    by_app
                        .entry(m.app)
                        .or_default()
                        .members
                        .push((m.channel, pm));
                }
            }
            for (app, user) in users {
                by_app.entry(app).or_default().users.push(user);
            }
            for (app, channel, n) in counts {
                by_app.entry(app).or_default().counts.push((channel, n));
            }
            for app in state.apps() {
                let r = by_app.remove(&app.app.id).unwrap_or_default();
                app.channels.replace_node(node, r.members);
                app.users.replace_node(node, &r.users);
                app.channels.replace_node_counts(node, r.counts);
            }
        }
        Msg::Count {
            app,
            channel,
            subscribers,
        } => {
            if let Some(app) = app_of(&app) {
                app.channels.remote_count(node, &channel, subscribers);
            }
        }
        Msg::Online {
            app,
            user_id,
            online,
        } => {
            if let Some(app) = app_of(&app) {
                app.users.remote(node, &user_id, online);
            }
        }
        Msg::Hello => bus.queue_state(state),
        Msg::Beat => {}
        Msg::Bye => {
            bus.peers.lock().remove(node);
            drop_node(state, node);
        }
        Msg::Terminate { app, user_id } => {
            if let Some(app) = app_of(&app) {
                crate::http::users::terminate_local(&app, &user_id);
            }
        }
        Msg::Query {
            id,
            app,
            channel,
            prefix,
        } => {
            let (channels, connections) = match app_of(&app) {
                Some(app) => (
                    local_counts(&app, channel.as_deref(), &prefix),
                    app.connections.len(),
                ),
                None => (Vec::new(), 0),
            };
            bus.send(Msg::Reply {
                id,
                to: node.to_owned(),
                channels,
                connections,
            });
        }
        Msg::Reply {
            id,
            to,
            channels,
            connections,
        } => {
            if to == bus.node {
                if let Some(tx) = bus.queries.lock().get(&id) {
                    let reply = Counts {
                        channels,
                        connections,
                    };
                    let _ = tx.send((node.to_owned(), reply));
                }
            }
        }
    }
}

/// This node's occupied channels (one, or all with `prefix`) and their subscriber counts.
pub fn local_counts(app: &AppRuntime, channel: Option<&str>, prefix: &str) -> Vec<(String, usize)> {
    match channel {
        Some(name) => match app.channels.subscription_count(name) {
            0 => Vec::new(),
            n => vec![(name.to_owned(), n)],
        },
        None => app
            .channels
            .occupied(prefix)
            .into_iter()
            .map(|c| (c.name, c.subscription_count))
            .collect(),
    }
}

fn drop_node(state: &State, node: &str) {
    debug!(node, "scaling: node gone; dropping its presence members");
    for app in state.apps() {
        app.channels.replace_node(node, Vec::new());
        app.users.replace_node(node, &[]);
        app.channels.replace_node_counts(node, Vec::new());
    }
}
