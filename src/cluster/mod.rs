//! Multi-node scaling: nodes share one Redis pub/sub channel (`REVERB_SCALING_CHANNEL`), as
//! Reverb's do. The cluster is a plugin of the core: [`plug`] builds it as a listener on the
//! core's seam (`hooks`), as the core's [`Peers`](crate::hooks::Peers), and as a background
//! task (the Redis link). The core never imports it. What one node must tell the others:
//! - HTTP API events (with the `socket_id` to skip, which may be on any node), client events,
//!   and user terminations: every node delivers them to its own sockets;
//! - presence and signed-in users: each node announces a user's first join and last leave per
//!   presence channel, and its first sign-in and last sign-out; it answers a newcomer's `hello`
//!   with its whole state, beats every `beat_every`, says `draining` when its drain starts
//!   (it no longer leads, but keeps its members and reports their departures as its clients
//!   are closed) and `bye` once its last client has gone; a node silent for `peer_timeout`
//!   is dropped with its members and users. So `subscription_succeeded`,
//!   `member_added`/`member_removed`, the users API and watchlist events are cluster-wide;
//! - HTTP API channel queries: the node that got the request asks the others for their counts
//!   and waits for every live node's reply, at most `query_wait`;
//! - for apps with webhooks, which channels each node has subscribers of (announced when
//!   that changes, in the state, dropped with the node), so every node's registry knows the
//!   cluster-wide occupancy and reports its transitions; the oldest live node leads
//!   (`Peers::leads`) and is the one that sends the webhooks for them.
//!
//! Each node delivers locally at once and publishes for the others; a node ignores its own
//! messages. When Redis is unreachable the node keeps serving its own sockets and reconnects
//! with backoff; messages for the other nodes wait in a bounded outbox meanwhile (beyond it
//! they are dropped, and the node's state is re-sent once the link is back).
//!
//! A node's state message agrees with the joins and leaves around it because the core reports
//! every change under `Hooks::ordered` and the state is read under `Hooks::snapshot`.
//!
//! Whoever can publish on the channel is not trusted: every message is signed with the
//! cluster's key (`RESOUND_SCALING_SECRET`, or derived from the apps' secrets), and one that
//! does not verify is dropped before anything reads it. Repeats are skipped by a window of
//! each node's sequence numbers, full-state resyncs are limited to one per beat, and silent
//! nodes expire on their own timer, with or without Redis (docs/scaling.md, Security).
//!
//! Files: `wire.rs` (messages, the signed envelope and the key), `bus.rs` (outbox, peers,
//! queries, resync limits; the listener), `peer.rs` (what we keep of each node: last heard,
//! sequence window), `apply.rs` (what other nodes say, applied here), `link.rs` and
//! `subscriber.rs` (Redis).

mod apply;
mod bus;
mod link;
mod peer;
mod subscriber;
mod sync;
pub(crate) mod tls;
mod wire;

use std::collections::HashSet;
use std::sync::Arc;

use crate::apps::App;
use crate::config::Scaling;
use crate::state::Plugins;

/// The cluster as plugins for the core: one [`bus::Bus`] that listens, answers the HTTP
/// API's cluster-wide questions, and runs the Redis link beside the server.
pub(crate) fn plug(settings: Scaling, apps: &[App]) -> Plugins {
    let bus = new_bus(settings, apps);
    let link = bus.clone();
    Plugins {
        background: vec![Box::new(move |state| Box::pin(link::run(state, link)))],
        ..listening(bus)
    }
}

/// The bus of a node serving `apps`.
fn new_bus(settings: Scaling, apps: &[App]) -> Arc<bus::Bus> {
    // Counts are shared for the clients' `subscription_count`, and for the webhook of that
    // name (sent by the leader, with the cluster's total).
    let counted = apps
        .iter()
        .filter(|a| {
            a.subscription_count || a.webhooks.iter().any(|t| t.wants("subscription_count"))
        })
        .map(|a| a.id.clone())
        .collect::<HashSet<_>>();
    let webhooks = apps
        .iter()
        .filter(|a| !a.webhooks.is_empty())
        .map(|a| a.id.clone())
        .collect::<HashSet<_>>();
    let key = wire::Key::new(settings.secret.as_deref(), apps, &settings.channel);
    bus::Bus::new(settings, key, counted, webhooks)
}

/// `bus` as the core's listener and its peers.
fn listening(bus: Arc<bus::Bus>) -> Plugins {
    Plugins {
        listeners: vec![bus.clone()],
        peers: Some(bus),
        ..Plugins::default()
    }
}

/// For the fuzz target `cluster_message` (`crate::fuzzing`): a node's cluster without its
/// Redis link, fed the bytes Redis would send it.
#[cfg(fuzzing)]
pub(crate) struct Inlet(Arc<bus::Bus>);

#[cfg(fuzzing)]
impl Inlet {
    /// Like [`plug`], without the link: nothing connects to Redis, and what the node would
    /// publish stays in the outbox (bounded; beyond it messages are dropped, as always).
    pub(crate) fn plug(settings: Scaling, apps: &[App]) -> (Inlet, Plugins) {
        let bus = new_bus(settings, apps);
        (Inlet(bus.clone()), listening(bus))
    }

    /// Reads `bytes` as the subscriber reads its connection, and applies each published
    /// message to `state` as the link does; stops at the first value that has not all
    /// arrived, or at a malformed one (where the link would reconnect).
    pub(crate) fn receive(&self, state: &crate::state::State, bytes: &[u8]) {
        let mut buf = bytes::BytesMut::from(bytes);
        while let Ok(Some(payload)) = subscriber::take_message(&mut buf) {
            apply::receive(state, &self.0, &payload);
        }
    }

    /// Applies one message payload, as the link does with what the subscriber read.
    pub(crate) fn apply(&self, state: &crate::state::State, payload: &[u8]) {
        apply::receive(state, &self.0, payload);
    }

    /// Applies `msg` (a message's JSON) as another node would have sent it: sealed with the
    /// cluster's key, so it passes the MAC check and reaches `apply` (a fuzzer cannot forge
    /// a MAC).
    pub(crate) fn apply_sealed(&self, state: &crate::state::State, msg: &[u8]) {
        let sealed = self.0.key().seal("f00d", 1, &String::from_utf8_lossy(msg));
        apply::receive(state, &self.0, sealed.as_bytes());
    }
}
