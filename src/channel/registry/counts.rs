//! `subscription_count`: what subscribers of a non-presence channel hear when the number of
//! subscribers changes, here or (as other nodes report) anywhere, throttled on busy channels.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Channel, ChannelRegistry};
use crate::channel::ChannelKind;
use crate::connection::Pending;
use crate::hooks::Activity;
use crate::protocol::server;

/// Above this many subscribers, `subscription_count` goes out at most once per [`COUNT_EVERY`].
const COUNT_THROTTLE_ABOVE: usize = 100;
const COUNT_EVERY: Duration = Duration::from_secs(5);

impl ChannelRegistry {
    /// This node's subscribers of `name` changed: reported, and subscribers hear the count.
    pub(super) fn subscribers_changed(
        &self,
        name: &str,
        kind: ChannelKind,
        ch: &mut Channel,
        out: &mut Pending,
    ) {
        let local = ch.subscribers.len();
        self.hooks.report(|| Activity::SubscriptionCount {
            channel: name,
            local,
        });
        if self.hooks.is_heard() {
            let count = local + self.remote_subscribers(name);
            self.hooks.report(|| Activity::ClusterSubscriptionCount {
                channel: name,
                count,
            });
        }
        self.count_changed(name, kind, ch, out);
    }

    /// Subscribers of `name` the other nodes last reported.
    fn remote_subscribers(&self, name: &str) -> usize {
        self.remote_counts
            .lock()
            .get(name)
            .map_or(0, |nodes| nodes.values().sum())
    }

    /// Sends `subscription_count` after a change, unless the channel is busy and heard one
    /// less than 5 s ago (then it is sent by the next [`Self::flush_counts`]). The count is
    /// the cluster's: this node's subscribers plus what the other nodes last reported.
    fn count_changed(&self, name: &str, kind: ChannelKind, ch: &mut Channel, out: &mut Pending) {
        let local = ch.subscribers.len();
        if !self.subscription_count || kind.presence || local == 0 {
            return;
        }
        let remote: usize = self
            .remote_counts
            .lock()
            .get(name)
            .map_or(0, |nodes| nodes.values().sum());
        let n = local + remote;
        if n > COUNT_THROTTLE_ABOVE && ch.count_sent.is_some_and(|t| t.elapsed() < COUNT_EVERY) {
            self.counts_pending.lock().insert(name.to_owned());
            return;
        }
        ch.count_sent = Some(Instant::now());
        ch.send_all(&server::subscription_count(name, n).into(), None, out);
    }

    /// Another node now has `n` subscribers on `name`: this node's subscribers hear the new
    /// total.
    pub(crate) fn remote_count(&self, node: &str, name: &str, n: usize, out: &mut Pending) {
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
        match self.channels.get_mut(name) {
            Some(mut ch) => {
                let count = ch.subscribers.len() + self.remote_subscribers(name);
                self.hooks.report(|| Activity::ClusterSubscriptionCount {
                    channel: name,
                    count,
                });
                self.count_changed(name, ChannelKind::from_name(name), &mut ch, out);
            }
            None => {
                let count = self.remote_subscribers(name);
                self.hooks.report(|| Activity::ClusterSubscriptionCount {
                    channel: name,
                    count,
                });
            }
        }
    }

    /// Makes `counts` (channel, subscribers) the whole of what `node` reports; an empty list
    /// drops the node.
    pub(crate) fn replace_node_counts(
        &self,
        node: &str,
        counts: Vec<(String, usize)>,
        out: &mut Pending,
    ) {
        let reported: HashSet<&str> = counts.iter().map(|(c, _)| c.as_str()).collect();
        let stale: Vec<String> = self
            .remote_counts
            .lock()
            .iter()
            .filter(|(name, nodes)| nodes.contains_key(node) && !reported.contains(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.remote_count(node, &name, 0, out);
        }
        for (name, n) in counts {
            self.remote_count(node, &name, n, out);
        }
    }

    /// This node's subscriber counts of occupied non-presence channels, for another node
    /// (which asks only for apps whose counts somebody needs: `subscription_count`, or the
    /// webhook of that name).
    pub(crate) fn counted_channels(&self) -> Vec<(String, usize)> {
        self.channels
            .iter()
            .filter(|c| !c.subscribers.is_empty() && !ChannelKind::from_name(c.key()).presence)
            .map(|c| (c.key().clone(), c.subscribers.len()))
            .collect()
    }

    /// Sends the throttled `subscription_count` updates that are due.
    pub(crate) fn flush_counts(&self) {
        let names: Vec<String> = self.counts_pending.lock().drain().collect();
        let mut out = Pending::new();
        for name in names {
            if let Some(mut ch) = self.channels.get_mut(&name) {
                let kind = ChannelKind::from_name(&name);
                self.count_changed(&name, kind, &mut ch, &mut out);
            }
            out.flush();
        }
    }
}
