//! What other nodes report about presence: their members join and leave the same `Presence`
//! sets as local sockets, so `subscription_succeeded`, `member_added`/`member_removed` and
//! the users API are cluster-wide. The registry knows nodes only by an opaque id; whoever
//! holds the other nodes (the cluster) calls these, and passes a [`Pending`] it flushes.
//! Which nodes have subscribers of which channels is kept too, so that cluster-wide
//! occupancy (`ClusterOccupied`/`ClusterVacated`) is known on every node. Cluster-wide
//! transitions caused here are reported under the channel's entry, like local ones.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::ChannelRegistry;
use crate::channel::presence::{Presence, PresenceMember};
use crate::channel::ChannelKind;
use crate::connection::Pending;
use crate::hooks::Activity;
use crate::protocol::server;

impl ChannelRegistry {
    /// Another node's user joined presence channel `name`: `member_added` here when the user
    /// was not present anywhere yet.
    pub(crate) fn remote_join(
        &self,
        node: &str,
        name: &str,
        member: PresenceMember,
        out: &mut Pending,
    ) {
        if !ChannelKind::from_name(name).presence {
            return;
        }
        let mut ch = self.channels.entry(name.to_owned()).or_default();
        let announce = server::member_added(name, &member.user_id, member.user_info.as_deref());
        let presence = ch.presence.get_or_insert_with(Presence::default);
        let id = self.hooks.is_heard().then(|| member.id.clone());
        if presence.remote_join(node, member) {
            ch.send_all(&announce.into(), None, out);
            if let Some(user_id) = &id {
                self.hooks.report(|| Activity::ClusterMemberAdded {
                    channel: name,
                    user_id,
                });
            }
        }
    }

    /// Another node's user left presence channel `name`: `member_removed` here when the
    /// user is now gone everywhere.
    pub(crate) fn remote_leave(&self, node: &str, name: &str, id: &str, out: &mut Pending) {
        let now = Instant::now();
        if let Some(mut ch) = self.channels.get_mut(name) {
            if let Some(m) = ch.presence.as_mut().and_then(|p| p.remote_leave(node, id)) {
                let text = server::member_removed(name, &m.user_id).into();
                ch.send_all(&text, None, out);
                self.hooks.report(|| Activity::ClusterMemberRemoved {
                    channel: name,
                    user_id: &m.id,
                });
            }
        }
        self.channels
            .remove_if(name, |_, ch| ch.is_idle(now, self.cache_ttl));
    }

    /// Makes `members` (channel, member) the whole of what `node` reports, announcing only
    /// the differences. An empty list drops the node.
    pub(crate) fn replace_node(
        &self,
        node: &str,
        members: Vec<(String, PresenceMember)>,
        out: &mut Pending,
    ) {
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
                    self.remote_leave(node, &channel, &id, out);
                }
            }
        }
        for (channel, m) in members {
            self.remote_join(node, &channel, m, out);
        }
    }

    /// Presence members with a socket on this node, per channel.
    pub(crate) fn local_presence(&self) -> Vec<(String, PresenceMember)> {
        let mut out = Vec::new();
        for ch in self.channels.iter() {
            if let Some(p) = &ch.presence {
                out.extend(p.local_members().map(|m| (ch.key().clone(), m.clone())));
            }
        }
        out
    }

    /// Whether another node reports subscribers of `name`.
    pub(super) fn occupied_elsewhere(&self, name: &str) -> bool {
        self.remote_occupied
            .lock()
            .get(name)
            .is_some_and(|nodes| !nodes.is_empty())
    }
    /// Another node now has subscribers of `name` (`occupied`), or no longer has any:
    /// reported as `ClusterOccupied`/`ClusterVacated` when the channel's occupancy across
    /// the cluster changes.
    pub(crate) fn remote_occupied(&self, node: &str, name: &str, occupied: bool) {
        let now = Instant::now();
        {
            let ch = self.channels.entry(name.to_owned()).or_default();
            let local = !ch.subscribers.is_empty();
            let mut remote = self.remote_occupied.lock();
            let before = local || remote.get(name).is_some_and(|n| !n.is_empty());
            if occupied {
                remote
                    .entry(name.to_owned())
                    .or_default()
                    .insert(node.to_owned());
            } else if let Some(nodes) = remote.get_mut(name) {
                nodes.remove(node);
                if nodes.is_empty() {
                    remote.remove(name);
                }
            }
            let after = local || remote.contains_key(name);
            drop(remote);
            match (before, after) {
                (false, true) => self
                    .hooks
                    .report(|| Activity::ClusterOccupied { channel: name }),
                (true, false) => self
                    .hooks
                    .report(|| Activity::ClusterVacated { channel: name }),
                _ => {}
            }
        }
        self.channels
            .remove_if(name, |_, ch| ch.is_idle(now, self.cache_ttl));
    }

    /// Makes `channels` the whole of the channels `node` reports occupied; an empty list
    /// drops the node.
    pub(crate) fn replace_node_channels(&self, node: &str, channels: &[String]) {
        let reported: HashSet<&str> = channels.iter().map(String::as_str).collect();
        let (stale, new): (Vec<String>, Vec<&str>) = {
            let remote = self.remote_occupied.lock();
            let known = |name: &str| remote.get(name).is_some_and(|n| n.contains(node));
            let stale = remote
                .iter()
                .filter(|(name, nodes)| nodes.contains(node) && !reported.contains(name.as_str()))
                .map(|(name, _)| name.clone())
                .collect();
            // What the node reported before changes nothing: only the others are applied, in
            // the order reported.
            let new = channels
                .iter()
                .map(String::as_str)
                .filter(|c| !known(c))
                .collect();
            (stale, new)
        };
        for name in stale {
            self.remote_occupied(node, &name, false);
        }
        for name in new {
            self.remote_occupied(node, name, true);
        }
    }

    /// This node's live cached events (cache channels), each with its remaining time to
    /// live, for another node that has just joined (see `adopt_cached`).
    pub(crate) fn cached_events(&self) -> Vec<(String, Utf8Bytes, Duration)> {
        let now = Instant::now();
        self.channels
            .iter()
            .filter_map(|e| {
                let (text, at) = e.cached.as_ref()?;
                let left = self.cache_ttl.checked_sub(now.duration_since(*at))?;
                (!left.is_zero()).then(|| (e.key().clone(), text.clone(), left))
            })
            .collect()
    }

    /// Another node's cached event of cache channel `name`, with `left` of its time to live:
    /// kept here too, so that a subscriber of this node gets it, unless this node holds a
    /// newer one (one with more time left). Nobody is sent anything.
    pub(crate) fn adopt_cached(&self, name: &str, text: Utf8Bytes, left: Duration) {
        if !ChannelKind::from_name(name).cache || left.is_zero() {
            return;
        }
        let left = left.min(self.cache_ttl);
        let Some(at) = Instant::now().checked_sub(self.cache_ttl - left) else {
            return;
        };
        let mut ch = self.channels.entry(name.to_owned()).or_default();
        if ch.cached.as_ref().is_none_or(|(_, mine)| *mine < at) {
            ch.cached = Some((text, at));
        }
    }
}
