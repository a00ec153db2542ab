//! The per-app channel registry: channel name -> subscribers, presence members and the cached
//! last event. Joins, leaves and cache-channel publishes happen under the channel's entry held
//! exclusively, so they are seen in one order by everybody; other publishes share the entry
//! (two concurrent HTTP triggers may reach two subscribers in different orders, as on Pusher).
//!
//! Frames are queued while the entry is held (that never waits, so no lock is ever held
//! across an `.await`); the sockets are written after it is released, through `Flushes`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::presence::{Presence, PresenceMember};
use super::ChannelKind;
use crate::cluster::{Bus, Msg};
use crate::connection::{ConnectionHandle, Flushes, Outgoing, SocketId};
use crate::protocol::server;

struct Subscriber {
    handle: ConnectionHandle,
    /// The presence member id this socket joined as.
    member_id: Option<String>,
}

#[derive(Default)]
struct Channel {
    subscribers: HashMap<SocketId, Subscriber>,
    presence: Option<Presence>,
    /// Last event of a cache channel and when it was stored.
    cached: Option<(Utf8Bytes, Instant)>,
    /// When `subscription_count` was last sent, for throttling busy channels.
    count_sent: Option<Instant>,
}

impl Channel {
    /// Queues `text` for every subscriber but `except`; `out` writes the sockets later.
    fn send_all(&self, text: &Utf8Bytes, except: Option<SocketId>, out: &mut Flushes) {
        let frame = Outgoing::text(text.clone());
        for (id, sub) in &self.subscribers {
            if Some(*id) != except {
                out.send(&sub.handle, frame.clone());
            }
        }
    }

    fn is_idle(&self, now: Instant, ttl: Duration) -> bool {
        self.subscribers.is_empty()
            && self.presence.as_ref().is_none_or(Presence::is_empty)
            && self
                .cached
                .as_ref()
                .is_none_or(|(_, at)| now.duration_since(*at) >= ttl)
    }
}

/// Counts of one occupied channel.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    pub name: String,
    pub subscription_count: usize,
    /// Unique users, for presence channels.
    pub user_count: Option<usize>,
}

/// Above this many subscribers, `subscription_count` goes out at most once per [`COUNT_EVERY`].
const COUNT_THROTTLE_ABOVE: usize = 100;
const COUNT_EVERY: Duration = Duration::from_secs(5);

/// All channels of one app.
pub struct ChannelRegistry {
    channels: DashMap<String, Channel>,
    cache_ttl: Duration,
    /// Whether subscribers of non-presence channels get `subscription_count`.
    subscription_count: bool,
    /// Channels whose count changed while throttled; flushed by [`Self::flush_counts`].
    counts_pending: Mutex<HashSet<String>>,
    /// With scaling: the bus and this app's id, to tell the other nodes about presence.
    bus: Option<(Arc<Bus>, String)>,
    /// With scaling and `subscription_count`: channel -> node -> that node's subscribers.
    remote_counts: Mutex<HashMap<String, HashMap<String, usize>>>,
}

impl ChannelRegistry {
    pub fn new(
        cache_ttl: Duration,
        subscription_count: bool,
        bus: Option<(Arc<Bus>, String)>,
    ) -> ChannelRegistry {
        ChannelRegistry {
            channels: DashMap::new(),
            cache_ttl,
            subscription_count,
            counts_pending: Default::default(),
            bus,
            remote_counts: Default::default(),
        }
    }

    /// Sends `subscription_count` after a change, unless the channel is busy and heard one
    /// less than 5 s ago (then it is sent by the next [`Self::flush_counts`]).
    /// With scaling the count is the cluster's: this node's subscribers plus what the other
    /// nodes last reported.
    fn count_changed(&self, name: &str, kind: ChannelKind, ch: &mut Channel, out: &mut Flushes) {
        let local = ch.subscribers.len();
        if !self.subscription_count || kind.presence || local == 0 {
            return;
        }
        let remote: usize = match &self.bus {
            Some(_) => self
                .remote_counts
                .lock()
                .get(name)
                .map_or(0, |nodes| nodes.values().sum()),
            None => 0,
        };
        let n = local + remote;
        if n > COUNT_THROTTLE_ABOVE && ch.count_sent.is_some_and(|t| t.elapsed() < COUNT_EVERY) {
            self.counts_pending.lock().insert(name.to_owned());
            return;
        }
        ch.count_sent = Some(Instant::now());
        ch.send_all(&server::subscription_count(name, n).into(), None, out);
    }

    /// With scaling: tells the other nodes this node's new subscriber count of `name`.
    fn announce_count(&self, name: &str, kind: ChannelKind, local: usize) {
        if let Some((bus, app)) = self.bus.as_ref().filter(|_| self.subscription_count) {
            if !kind.presence {
                bus.send(Msg::Count {
                    app: app.clone(),
                    channel: name.to_owned(),
                    subscribers: local,
                });
            }
        }
    }

    /// Another node now has `n` subscribers on `name`: this node's subscribers hear the new
    /// total.
    pub fn remote_count(&self, node: &str, name: &str, n: usize) {
        {
            let mut counts = self.remote_counts.lock();
            if n == 0 {
                if let Some(nodes) = counts.get_mut(name) {
                    nodes.remove(node);
                    if nodes.is_empty() {
                        counts.remove(name);
                    }
                }
            } else {
                let previous = counts
                    .entry(name.to_owned())
                    .or_default()
                    .insert(node.to_owned(), n);
                if previous == Some(n) {
                    return;
                }
            }
        }
        let mut out = Flushes::deferred();
        if let Some(mut ch) = self.channels.get_mut(name) {
            self.count_changed(name, ChannelKind::from_name(name), &mut ch, &mut out);
        }
    }

    /// Makes `counts` (channel, subscribers) the whole of what `node` reports; an empty list
    /// drops the node.
    pub fn replace_node_counts(&self, node: &str, counts: Vec<(String, usize)>) {
        let reported: HashSet<&str> = counts.iter().map(|(c, _)| c.as_str()).collect();
        let stale: Vec<String> = self
            .remote_counts
            .lock()
            .iter()
            .filter(|(name, nodes)| nodes.contains_key(node) && !reported.contains(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.remote_count(node, &name, 0);
        }
        for (name, n) in counts {
            self.remote_count(node, &name, n);
        }
    }

    /// This node's subscriber counts of occupied non-presence channels, for a `State`
    /// message (only when `subscription_count` is on: nobody needs them otherwise).
    pub fn local_counts(&self) -> Vec<(String, usize)> {
        if !self.subscription_count {
            return Vec::new();
        }
        self.channels
            .iter()
            .filter(|c| !c.subscribers.is_empty() && !ChannelKind::from_name(c.key()).presence)
            .map(|c| (c.key().clone(), c.subscribers.len()))
            .collect()
    }

    /// Sends the throttled `subscription_count` updates that are due.
    pub fn flush_counts(&self) {
        let names: Vec<String> = self.counts_pending.lock().drain().collect();
        for name in names {
            // Declared before the entry: dropped (and written) after the lock is released.
            let mut out = Flushes::default();
            if let Some(mut ch) = self.channels.get_mut(&name) {
                let kind = ChannelKind::from_name(&name);
                self.count_changed(&name, kind, &mut ch, &mut out);
            }
        }
    }

    /// Subscribes `handle` and sends, in order: `member_added` to the others (a presence
    /// user's first socket), `subscription_succeeded` to the subscriber, then the cached event
    /// or `pusher:cache_miss` on cache channels. Re-subscribing only repeats the reply.
    /// Returns false when the socket was subscribed already.
    pub fn subscribe(
        &self,
        name: &str,
        kind: ChannelKind,
        handle: &ConnectionHandle,
        member: Option<PresenceMember>,
    ) -> bool {
        // Declared before the entry: dropped (and written) after the lock is released.
        let mut out = Flushes::default();
        let _ordered = self.bus.as_ref().map(|(bus, _)| bus.ordered());
        let mut ch = self.channels.entry(name.to_owned()).or_default();
        let id = handle.id();
        let fresh = !ch.subscribers.contains_key(&id);
        if fresh {
            let member_id = member.as_ref().map(|m| m.id.clone());
            if let Some(m) = member {
                let announce = server::member_added(name, &m.user_id, m.user_info.as_deref());
                let tell = self.bus.as_ref().map(|(bus, app)| {
                    let msg = Msg::Join {
                        app: app.clone(),
                        channel: name.to_owned(),
                        user_id: m.user_id.clone(),
                        user_info: m.user_info.clone(),
                    };
                    (bus, msg)
                });
                let joined = ch.presence.get_or_insert_with(Presence::default).join(m);
                if joined.added {
                    ch.send_all(&Utf8Bytes::from(announce), Some(id), &mut out);
                }
                if let Some((bus, msg)) = tell.filter(|_| joined.first_local) {
                    bus.send(msg);
                }
            }
            ch.subscribers.insert(
                id,
                Subscriber {
                    handle: handle.clone(),
                    member_id,
                },
            );
        }
        let data = match &ch.presence {
            Some(p) if kind.presence => p.snapshot_json(),
            _ => "{}".to_owned(),
        };
        let reply = server::subscription_succeeded(name, &data).into();
        out.send(handle, Outgoing::text(reply));
        if kind.cache {
            match &ch.cached {
                Some((text, at)) if at.elapsed() < self.cache_ttl => {
                    out.send(handle, Outgoing::text(text.clone()))
                }
                _ => out.send(handle, Outgoing::text(server::cache_miss(name).into())),
            }
        }
        if fresh {
            self.count_changed(name, kind, &mut ch, &mut out);
            self.announce_count(name, kind, ch.subscribers.len());
        }
        fresh
    }

    /// Removes one socket from a channel, announcing `member_removed` when it was the user's
    /// last socket there; an emptied channel is dropped unless it holds a live cached event.
    pub fn unsubscribe(&self, name: &str, id: SocketId) -> bool {
        let now = Instant::now();
        let mut out = Flushes::default();
        let ordered = self.bus.as_ref().map(|(bus, _)| bus.ordered());
        let removed = match self.channels.get_mut(name) {
            None => return false,
            Some(mut ch) => match ch.subscribers.remove(&id) {
                None => false,
                Some(sub) => {
                    let left = match (sub.member_id, ch.presence.as_mut()) {
                        (Some(mid), Some(p)) => Some((p.leave(&mid), mid)),
                        _ => None,
                    };
                    let gone = left.and_then(|(left, mid)| {
                        if let Some((bus, app)) = self.bus.as_ref().filter(|_| left.last_local) {
                            bus.send(Msg::Leave {
                                app: app.clone(),
                                channel: name.to_owned(),
                                id: mid,
                            });
                        }
                        left.removed
                    });
                    if let Some(m) = gone {
                        ch.send_all(
                            &server::member_removed(name, &m.user_id).into(),
                            None,
                            &mut out,
                        );
                    }
                    let kind = ChannelKind::from_name(name);
                    self.count_changed(name, kind, &mut ch, &mut out);
                    self.announce_count(name, kind, ch.subscribers.len());
                    true
                }
            },
        };
        drop(ordered);
        self.channels
            .remove_if(name, |_, ch| ch.is_idle(now, self.cache_ttl));
        removed
    }

    /// Delivers one serialized frame to every subscriber but `except`, and keeps it as the
    /// last event of a cache channel (even with nobody subscribed). Returns recipients.
    pub fn publish(
        &self,
        name: &str,
        cache: bool,
        text: impl FnOnce() -> Utf8Bytes,
        except: Option<SocketId>,
        out: &mut Flushes,
    ) -> usize {
        if cache {
            let text = text();
            let mut ch = self.channels.entry(name.to_owned()).or_default();
            ch.cached = Some((text.clone(), Instant::now()));
            ch.send_all(&text, except, out);
            return ch.subscribers.len();
        }
        match self.channels.get(name) {
            // Serialized only when somebody will receive it.
            Some(ch) if !ch.subscribers.is_empty() => {
                ch.send_all(&text(), except, out);
                ch.subscribers.len()
            }
            _ => 0,
        }
    }

    /// Another node's user joined presence channel `name`: `member_added` here when the user
    /// was not present anywhere yet.
    pub fn remote_join(&self, node: &str, name: &str, member: PresenceMember) {
        if !ChannelKind::from_name(name).presence {
            return;
        }
        let mut out = Flushes::deferred();
        let mut ch = self.channels.entry(name.to_owned()).or_default();
        let announce = server::member_added(name, &member.user_id, member.user_info.as_deref());
        let presence = ch.presence.get_or_insert_with(Presence::default);
        if presence.remote_join(node, member) {
            ch.send_all(&announce.into(), None, &mut out);
        }
    }

    /// Another node's user left presence channel `name`: `member_removed` here when the
    /// user is now gone everywhere.
    pub fn remote_leave(&self, node: &str, name: &str, id: &str) {
        let now = Instant::now();
        let mut out = Flushes::deferred();
        if let Some(mut ch) = self.channels.get_mut(name) {
            if let Some(m) = ch.presence.as_mut().and_then(|p| p.remote_leave(node, id)) {
                ch.send_all(
                    &server::member_removed(name, &m.user_id).into(),
                    None,
                    &mut out,
                );
            }
        }
        self.channels
            .remove_if(name, |_, ch| ch.is_idle(now, self.cache_ttl));
    }

    /// Makes `members` (channel, member) the whole of what `node` reports, announcing only
    /// the differences. An empty list drops the node.
    pub fn replace_node(&self, node: &str, members: Vec<(String, PresenceMember)>) {
        let mut keep: HashMap<&str, HashSet<&str>> = HashMap::new();
        for (channel, m) in &members {
            keep.entry(channel).or_default().insert(&m.id);
        }
        let reported: Vec<(String, Vec<String>)> = self
            .channels
            .iter()
            .filter_map(|c| Some((c.key().clone(), c.presence.as_ref()?.ids_on(node))))
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        for (channel, ids) in reported {
            for id in ids {
                if !keep
                    .get(channel.as_str())
                    .is_some_and(|k| k.contains(id.as_str()))
                {
                    self.remote_leave(node, &channel, &id);
                }
            }
        }
        for (channel, m) in members {
            self.remote_join(node, &channel, m);
        }
    }

    /// Presence members with a socket on this node, per channel.
    pub fn local_presence(&self) -> Vec<(String, PresenceMember)> {
        let mut out = Vec::new();
        for ch in self.channels.iter() {
            if let Some(p) = &ch.presence {
                out.extend(p.local_members().map(|m| (ch.key().clone(), m.clone())));
            }
        }
        out
    }

    /// Connections that joined a presence channel as member `user_id`.
    pub fn presence_connections(&self, user_id: &str) -> Vec<ConnectionHandle> {
        let mut out = Vec::new();
        for ch in self.channels.iter().filter(|c| c.presence.is_some()) {
            out.extend(
                ch.subscribers
                    .values()
                    .filter(|s| s.member_id.as_deref() == Some(user_id))
                    .map(|s| s.handle.clone()),
            );
        }
        out
    }

    /// Subscribers of `name` (0 when unoccupied).
    pub fn subscription_count(&self, name: &str) -> usize {
        self.channels.get(name).map_or(0, |c| c.subscribers.len())
    }

    /// Unique users of a presence channel (0 when unoccupied).
    pub fn user_count(&self, name: &str) -> usize {
        self.channels
            .get(name)
            .and_then(|c| c.presence.as_ref().map(Presence::count))
            .unwrap_or(0)
    }

    /// String ids of a presence channel's users.
    pub fn user_ids(&self, name: &str) -> Vec<String> {
        self.channels
            .get(name)
            .and_then(|c| {
                c.presence
                    .as_ref()
                    .map(|p| p.ids().map(str::to_owned).collect())
            })
            .unwrap_or_default()
    }

    /// The live cached event of a cache channel and its remaining time to live.
    pub fn cached(&self, name: &str) -> Option<(Utf8Bytes, Duration)> {
        let ch = self.channels.get(name)?;
        let (text, at) = ch.cached.as_ref()?;
        self.cache_ttl
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
            .map(|left| (text.clone(), left))
    }

    /// Occupied channels whose name starts with `prefix`.
    pub fn occupied(&self, prefix: &str) -> Vec<ChannelInfo> {
        self.channels
            .iter()
            .filter(|e| !e.subscribers.is_empty() && e.key().starts_with(prefix))
            .map(|e| ChannelInfo {
                name: e.key().clone(),
                subscription_count: e.subscribers.len(),
                user_count: e.presence.as_ref().map(Presence::count),
            })
            .collect()
    }

    /// Drops cached events past their time to live (and channels left with nothing).
    pub fn sweep(&self) {
        let now = Instant::now();
        let ttl = self.cache_ttl;
        self.channels.retain(|_, ch| {
            if ch
                .cached
                .as_ref()
                .is_some_and(|(_, at)| now.duration_since(*at) >= ttl)
            {
                ch.cached = None;
            }
            !ch.is_idle(now, ttl)
        });
    }
}
