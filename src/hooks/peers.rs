//! `Peers`: the cluster-wide questions the core asks, answered by whatever holds the other
//! nodes (the Redis cluster when scaling is on; nothing on a single node).

use std::future::Future;
use std::pin::Pin;

/// What the other nodes answered to a count query, added up.
#[derive(Debug, Default)]
pub struct Counts {
    /// One entry per node and occupied channel: (channel, subscribers on that node).
    pub channels: Vec<(String, usize)>,
    /// Open connections of the app on the other nodes.
    pub connections: usize,
}

/// A boxed future borrowing its arguments.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The other nodes, as the HTTP API sees them. Presence members and signed-in users of other
/// nodes need no question: the cluster keeps them in the local registries.
pub trait Peers: Send + Sync + 'static {
    /// The other nodes' subscribers of `channel` (or of every occupied channel whose name
    /// starts with `prefix` when `channel` is `None`) and their connections, for app `app`.
    /// Waits a bounded time; a node that does not answer in time is left out.
    fn counts<'a>(
        &'a self,
        app: &'a str,
        channel: Option<&'a str>,
        prefix: &'a str,
    ) -> Answer<'a, Counts>;

    /// Other nodes heard from recently (within the cluster's peer timeout).
    fn live_nodes(&self) -> usize;

    /// Whether this node speaks for the cluster where exactly one node must (webhooks for
    /// cluster-wide transitions): one live node at a time, chosen the same way by all.
    /// `None` while this node cannot tell yet (it has just started and not heard every
    /// other node): ask again a little later.
    fn leads(&self) -> Option<bool> {
        Some(true)
    }

    /// Resolves when this node may start accepting clients (it holds what the other nodes
    /// know); waited for before the listener accepts its first connection.
    fn ready(&self) -> Answer<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
