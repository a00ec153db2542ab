//! The per-app channel registry: channel name -> subscribers, presence members and the cached
//! last event. Joins, leaves and cache-channel publishes happen under the channel's entry held
//! exclusively, so they are seen in one order by everybody; other publishes share the entry
//! (two concurrent HTTP triggers may reach two subscribers in different orders, as on Pusher).
//!
//! Frames are queued while the entry is held (that never waits, so no lock is ever held
//! across an `.await`); the sockets are written after it is released, by [`Pending::flush`].
//! What happens is reported to the app's [`AppHooks`] under the same entry (see `hooks`).
//!
//! Split by concern: this file holds subscriptions and delivery, `counts.rs` the
//! `subscription_count` bookkeeping, `remote.rs` what other nodes report.

mod counts;
mod remote;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::presence::{Presence, PresenceMember};
use super::ChannelKind;
use crate::connection::{ConnectionHandle, Outgoing, Pending, SocketId};
use crate::hooks::{Activity, AppHooks};
use crate::protocol::{server, PusherError};

struct Subscriber {
    handle: ConnectionHandle,
    /// The presence member id this socket joined as.
    member_id: Option<String>,
    /// Set while the socket's `subscription_succeeded` is being built outside the entry:
    /// frames for the channel wait here meanwhile, so the reply still comes first.
    held: Option<Box<Mutex<Vec<Outgoing>>>>,
}

impl Subscriber {
    fn send(&self, frame: Outgoing, out: &mut Pending) {
        match &self.held {
            None => out.send(&self.handle, frame),
            Some(held) => held.lock().push(frame),
        }
    }
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
    fn send_all(&self, text: &Utf8Bytes, except: Option<SocketId>, out: &mut Pending) {
        let frame = Outgoing::text(text.clone());
        for (id, sub) in &self.subscribers {
            if Some(*id) != except {
                sub.send(frame.clone(), out);
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
pub(crate) struct ChannelInfo {
    pub name: String,
    pub subscription_count: usize,
}

/// All channels of one app.
pub(crate) struct ChannelRegistry {
    channels: DashMap<String, Channel>,
    cache_ttl: Duration,
    /// Whether subscribers of non-presence channels get `subscription_count`.
    subscription_count: bool,
    /// Users a presence channel may hold (on every node); 0 is unlimited.
    max_members: usize,
    /// Channels whose count changed while throttled; flushed by [`Self::flush_counts`].
    counts_pending: Mutex<HashSet<String>>,
    /// With other nodes and `subscription_count`: channel -> node -> that node's subscribers.
    remote_counts: Mutex<HashMap<String, HashMap<String, usize>>>,
    /// With other nodes that report them (see `remote.rs`): channel -> nodes it is occupied on.
    remote_occupied: Mutex<HashMap<String, HashSet<String>>>,
    hooks: AppHooks,
    /// Runs between a presence join's two steps (tests interleave other work there).
    #[cfg(test)]
    pub(super) between_phases: Mutex<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

impl ChannelRegistry {
    pub(crate) fn new(
        cache_ttl: Duration,
        subscription_count: bool,
        max_members: usize,
        hooks: AppHooks,
    ) -> ChannelRegistry {
        ChannelRegistry {
            channels: DashMap::new(),
            cache_ttl,
            subscription_count,
            max_members,
            counts_pending: Default::default(),
            remote_counts: Default::default(),
            remote_occupied: Default::default(),
            hooks,
            #[cfg(test)]
            between_phases: Mutex::new(std::sync::Arc::new(|| {})),
        }
    }

    /// Subscribes `handle` and sends, in order: `member_added` to the others (a presence
    /// user's first socket), `subscription_succeeded` to the subscriber, then the cached event
    /// or `pusher:cache_miss` on cache channels. Re-subscribing only repeats the reply.
    /// On a presence channel the entry is held for O(1) work: the member list is copied, and
    /// serialized after the entry is released, while the channel's frames for the new
    /// subscriber wait (`held`) so that the reply still reaches it first.
    /// Returns false when the socket was subscribed already; refuses a new user of a presence
    /// channel that holds `max_members` users (counted on every node).
    pub(crate) fn subscribe(
        &self,
        name: &str,
        kind: ChannelKind,
        handle: &ConnectionHandle,
        member: Option<PresenceMember>,
    ) -> Result<bool, PusherError> {
        let mut out = Pending::new();
        let ordered = self.hooks.ordered();
        let mut ch = self.channels.entry(name.to_owned()).or_default();
        let id = handle.id();
        let fresh = !ch.subscribers.contains_key(&id);
        if let (true, Some(m), Some(p)) = (fresh, &member, &ch.presence) {
            if self.max_members > 0 && p.count() >= self.max_members && !p.has(&m.id) {
                return Err(PusherError::PresenceFull(self.max_members));
            }
        }
        if fresh {
            let occupied = ch.subscribers.is_empty();
            let member_id = member.as_ref().map(|m| m.id.clone());
            let (mut added, mut joined_here) = (None, None);
            if let Some(m) = member {
                (added, joined_here) = self.join_presence(name, &mut ch, m, id, &mut out);
            }
            ch.subscribers.insert(
                id,
                Subscriber {
                    handle: handle.clone(),
                    member_id,
                    held: None,
                },
            );
            self.hooks.report(|| Activity::Subscribed {
                channel: name,
                socket_id: id,
            });
            if occupied {
                self.hooks
                    .report(|| Activity::ChannelOccupied { channel: name });
                if !self.occupied_elsewhere(name) {
                    self.hooks
                        .report(|| Activity::ClusterOccupied { channel: name });
                }
            }
            // After the occupancy: a listener hears of a channel before its members.
            if let Some(member) = &joined_here {
                self.hooks.report(|| Activity::MemberJoined {
                    channel: name,
                    member,
                });
            }
            if let Some(user_id) = &added {
                self.hooks.report(|| Activity::ClusterMemberAdded {
                    channel: name,
                    user_id,
                });
            }
        }
        // A presence channel's members are copied here (O(1)) and serialized below, once the
        // entry is released; the subscriber's frames wait meanwhile.
        let members = ch
            .presence
            .as_ref()
            .filter(|_| kind.presence)
            .map(|p| p.members());
        if members.is_some() {
            if let Some(sub) = ch.subscribers.get_mut(&id) {
                sub.held = Some(Default::default());
            }
        }
        // What a cache channel's new subscriber gets after its reply, decided now: a
        // publish between the two steps reaches it as a held frame, not a second time.
        let cached = self.cached_for(name, kind, &ch, id);
        if members.is_none() {
            self.reply(name, handle, "{}", cached.clone(), &mut out);
        }
        if fresh {
            self.subscribers_changed(name, kind, &mut ch, &mut out);
        }
        drop(ch);
        drop(ordered);
        out.flush();
        if let Some(members) = members {
            #[cfg(test)]
            {
                let between = self.between_phases.lock().clone();
                between();
            }
            let data = members.to_json();
            let mut out = Pending::new();
            if let Some(mut ch) = self.channels.get_mut(name) {
                self.reply(name, handle, &data, cached, &mut out);
                if let Some(held) = ch.subscribers.get_mut(&id).and_then(|s| s.held.take()) {
                    for frame in held.into_inner() {
                        out.send(handle, frame);
                    }
                }
            }
            out.flush();
        }
        Ok(fresh)
    }

    /// On cache channels, what subscriber `id` gets after its reply: the live cached event,
    /// or `pusher:cache_miss` (reported). `None` on other channels.
    fn cached_for(
        &self,
        name: &str,
        kind: ChannelKind,
        ch: &Channel,
        id: SocketId,
    ) -> Option<Utf8Bytes> {
        if !kind.cache {
            return None;
        }
        Some(match &ch.cached {
            Some((text, at)) if at.elapsed() < self.cache_ttl => text.clone(),
            _ => {
                self.hooks.report(|| Activity::CacheMiss {
                    channel: name,
                    socket_id: id,
                });
                server::cache_miss(name).into()
            }
        })
    }

    /// Queues the subscriber's `subscription_succeeded` (with `data`), then `cached` (see
    /// [`Self::cached_for`]).
    fn reply(
        &self,
        name: &str,
        handle: &ConnectionHandle,
        data: &str,
        cached: Option<Utf8Bytes>,
        out: &mut Pending,
    ) {
        let reply = server::subscription_succeeded(name, data).into();
        out.send(handle, Outgoing::text(reply));
        if let Some(text) = cached {
            out.send(handle, Outgoing::text(text));
        }
    }

    /// A local socket of `m` joins: `member_added` to the others when the user is new to the
    /// channel everywhere. When somebody listens, returns what the caller reports once the
    /// channel's occupancy is: the user's id when it is new everywhere, and the member when
    /// this is the user's first socket here.
    fn join_presence(
        &self,
        name: &str,
        ch: &mut Channel,
        m: PresenceMember,
        id: SocketId,
        out: &mut Pending,
    ) -> (Option<String>, Option<PresenceMember>) {
        let announce = server::member_added(name, &m.user_id, m.user_info.as_deref());
        // Kept for the report only when somebody listens (the member moves into the set).
        let reported = self.hooks.is_heard().then(|| m.clone());
        let joined = ch.presence.get_or_insert_with(Presence::default).join(m);
        if joined.added {
            ch.send_all(&Utf8Bytes::from(announce), Some(id), out);
        }
        let added = reported
            .as_ref()
            .filter(|_| joined.added)
            .map(|m| m.id.clone());
        (added, reported.filter(|_| joined.first_local))
    }

    /// Removes one socket from a channel, announcing `member_removed` when it was the user's
    /// last socket there; an emptied channel is dropped unless it holds a live cached event.
    pub(crate) fn unsubscribe(&self, name: &str, id: SocketId) -> bool {
        let now = Instant::now();
        let mut out = Pending::new();
        let ordered = self.hooks.ordered();
        let removed = match self.channels.get_mut(name) {
            None => return false,
            Some(mut ch) => match ch.subscribers.remove(&id) {
                None => false,
                Some(sub) => {
                    self.hooks.report(|| Activity::Unsubscribed {
                        channel: name,
                        socket_id: id,
                    });
                    if let Some(mid) = sub.member_id {
                        self.leave_presence(name, &mut ch, &mid, &mut out);
                    }
                    let kind = ChannelKind::from_name(name);
                    self.subscribers_changed(name, kind, &mut ch, &mut out);
                    if ch.subscribers.is_empty() {
                        self.hooks
                            .report(|| Activity::ChannelVacated { channel: name });
                        if !self.occupied_elsewhere(name) {
                            self.hooks
                                .report(|| Activity::ClusterVacated { channel: name });
                        }
                    }
                    true
                }
            },
        };
        drop(ordered);
        self.channels
            .remove_if(name, |_, ch| ch.is_idle(now, self.cache_ttl));
        out.flush();
        removed
    }

    /// A local socket of member `mid` leaves: reported when it was the user's last socket
    /// here, `member_removed` when the user is now gone everywhere.
    fn leave_presence(&self, name: &str, ch: &mut Channel, mid: &str, out: &mut Pending) {
        let Some(p) = ch.presence.as_mut() else {
            return;
        };
        let left = p.leave(mid);
        if left.last_local {
            self.hooks.report(|| Activity::MemberLeft {
                channel: name,
                id: mid,
            });
        }
        if let Some(m) = left.removed {
            let text = server::member_removed(name, &m.user_id).into();
            ch.send_all(&text, None, out);
            self.hooks.report(|| Activity::ClusterMemberRemoved {
                channel: name,
                user_id: &m.id,
            });
        }
    }

    /// Delivers one serialized frame to every subscriber but `except`, and keeps it as the
    /// last event of a cache channel (even with nobody subscribed). Returns recipients.
    pub(crate) fn publish(
        &self,
        name: &str,
        cache: bool,
        text: impl FnOnce() -> Utf8Bytes,
        except: Option<SocketId>,
        out: &mut Pending,
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

    /// Connections that joined a presence channel as member `user_id`.
    pub(crate) fn presence_connections(&self, user_id: &str) -> Vec<ConnectionHandle> {
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

    /// Subscribers of `name` on this node (0 when unoccupied).
    pub(crate) fn subscription_count(&self, name: &str) -> usize {
        self.channels.get(name).map_or(0, |c| c.subscribers.len())
    }

    /// Unique users of a presence channel, on every node (0 when unoccupied).
    pub(crate) fn user_count(&self, name: &str) -> usize {
        self.channels
            .get(name)
            .and_then(|c| c.presence.as_ref().map(Presence::count))
            .unwrap_or(0)
    }

    /// String ids of a presence channel's users, on every node.
    pub(crate) fn user_ids(&self, name: &str) -> Vec<String> {
        self.channels
            .get(name)
            .and_then(|c| {
                c.presence
                    .as_ref()
                    .map(|p| p.ids().map(str::to_owned).collect())
            })
            .unwrap_or_default()
    }

    /// Up to `max` members of a presence channel, on every node (none when unoccupied),
    /// in string order of their ids. The channel's entry is held only to take the O(1) copy.
    pub(crate) fn members(&self, name: &str, max: usize) -> Vec<std::sync::Arc<PresenceMember>> {
        let members = self
            .channels
            .get(name)
            .and_then(|c| c.presence.as_ref().map(Presence::members));
        members.map_or_else(Vec::new, |m| m.iter().take(max).cloned().collect())
    }

    /// The live cached event of a cache channel and its remaining time to live.
    pub(crate) fn cached(&self, name: &str) -> Option<(Utf8Bytes, Duration)> {
        let ch = self.channels.get(name)?;
        let (text, at) = ch.cached.as_ref()?;
        self.cache_ttl
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
            .map(|left| (text.clone(), left))
    }

    /// Channels occupied on this node whose name starts with `prefix`.
    pub(crate) fn occupied(&self, prefix: &str) -> Vec<ChannelInfo> {
        self.channels
            .iter()
            .filter(|e| !e.subscribers.is_empty() && e.key().starts_with(prefix))
            .map(|e| ChannelInfo {
                name: e.key().clone(),
                subscription_count: e.subscribers.len(),
            })
            .collect()
    }

    /// This node's occupied channels (`channel` alone, or all starting with `prefix`) and
    /// their subscriber counts.
    pub(crate) fn local_counts(&self, channel: Option<&str>, prefix: &str) -> Vec<(String, usize)> {
        match channel {
            Some(name) => match self.subscription_count(name) {
                0 => Vec::new(),
                n => vec![(name.to_owned(), n)],
            },
            None => self
                .occupied(prefix)
                .into_iter()
                .map(|c| (c.name, c.subscription_count))
                .collect(),
        }
    }

    /// Drops cached events past their time to live (and channels left with nothing).
    pub(crate) fn sweep(&self) {
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
