//! Webhooks, as Pusher sends them: a plugin of the core like the cluster, wired by
//! `server::state` when an app has a webhook target. Three stages, none of which can hold up
//! the core:
//! - `listen.rs`: the listener on the seam (`hooks`). It copies what a webhook needs out of
//!   an activity and `try_send`s it to a bounded queue; when that is full the event is
//!   dropped, counted and logged ([`Stats`]).
//! - the worker ([`work`]): one task that takes the queue, delays `channel_vacated` and
//!   `member_removed` and drops them when the channel or member comes back in time
//!   (`sort.rs`), and hands each ready event to the queue of every target of its app that
//!   wants it (bounded too). Cluster-wide changes (occupied, vacated, member added and
//!   removed, subscription counts) are sent by the cluster's leader only (`Peers::leads`),
//!   decided when they fall due; client events and cache misses by the node where they
//!   happened.
//! - one sender per target (`send.rs`): batches, signs, POSTs (`client.rs`), retries.
//!
//! At shutdown the worker waits for the connections' departures, sends what is still
//! delayed at once, and the senders send what is queued, all by the shutdown deadline
//! (`shutdown_timeout`): they run as tasks `server::serve` waits for with that deadline.
//! With scaling on, a node that starts draining while other nodes serve sends nothing
//! cluster-wide from then on (they hear its sockets leave, and send what that changes); one
//! alone in its cluster sends its own departures, as a node without scaling ([`Speaks`]).

mod client;
mod listen;
mod send;
mod sort;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::apps::{App, WebhookTarget};
use crate::config::{Config, WebhookSettings};
use crate::state::{Plugins, State};

/// What a webhook event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Occupied,
    Vacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    Count,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Occupied,
        Kind::Vacated,
        Kind::MemberAdded,
        Kind::MemberRemoved,
        Kind::ClientEvent,
        Kind::CacheMiss,
        Kind::Count,
    ];

    /// Pusher's name (also a name of `apps::WEBHOOK_EVENTS`).
    fn name(self) -> &'static str {
        match self {
            Kind::Occupied => "channel_occupied",
            Kind::Vacated => "channel_vacated",
            Kind::MemberAdded => "member_added",
            Kind::MemberRemoved => "member_removed",
            Kind::ClientEvent => "client_event",
            Kind::CacheMiss => "cache_miss",
            Kind::Count => "subscription_count",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// A change of the whole cluster, sent by its leader only.
    fn cluster_wide(self) -> bool {
        matches!(
            self,
            Kind::Occupied | Kind::Vacated | Kind::MemberAdded | Kind::MemberRemoved | Kind::Count
        )
    }
}

/// The kinds of note an app's targets need: what they ask for, and the other half of a
/// pair they ask half of (a return undoes a delayed leave, so both must be heard).
fn needed(targets: &[WebhookTarget]) -> u8 {
    let mut bits = 0;
    for k in Kind::ALL {
        if targets.iter().any(|t| t.wants(k.name())) {
            bits |= k.bit();
        }
    }
    for (a, b) in [
        (Kind::Occupied, Kind::Vacated),
        (Kind::MemberAdded, Kind::MemberRemoved),
    ] {
        if bits & (a.bit() | b.bit()) != 0 {
            bits |= a.bit() | b.bit();
        }
    }
    bits
}

/// How long apart two warnings about dropped webhook events are, at least.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counters, and the rate limit on the drop warning.
#[derive(Default)]
pub(crate) struct Stats {
    dropped: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    logged: Mutex<Option<Instant>>,
}

impl Stats {
    /// `n` events were dropped for `why`: counted, and logged (at most every 10 s, with the
    /// total so far).
    fn dropped(&self, n: u64, why: &str) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let now = Instant::now();
        let mut logged = self.logged.lock();
        if logged.is_none_or(|t| now.duration_since(t) >= DROP_LOG_EVERY) {
            *logged = Some(now);
            warn!(
                dropped = n,
                dropped_total = total,
                "webhook events dropped: {why}"
            );
        }
    }

    fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// (events dropped, requests accepted, retries) so far.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (get(&self.dropped), get(&self.sent), get(&self.retried))
    }
}

/// For the metrics (`crate::stats`).
impl crate::stats::WebhookCounts for Stats {
    fn counts(&self) -> (u64, u64, u64) {
        Stats::counts(self)
    }
}

/// What the worker and the senders share.
pub(crate) struct Shared {
    settings: WebhookSettings,
    stats: Arc<Stats>,
    /// Set at shutdown: the time by which everything must be sent.
    stop_by: OnceLock<Instant>,
    /// Cancelled with `stop_by` set: cuts short the senders' waits between retries.
    stop: CancellationToken,
    /// For `https://` receivers: made on first use, shared.
    tls: Arc<OnceLock<client::Tls>>,
    ca: Option<Arc<[u8]>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop_by.get().is_some()
    }

    /// `until`, or shutdown's deadline when that is sooner.
    fn deadline(&self, until: Instant) -> Instant {
        self.stop_by.get().map_or(until, |s| until.min(*s))
    }
}

/// Webhooks as plugins, when any app has a target: the listener, and the worker started
/// beside the server.
pub(crate) fn plug(config: &Config) -> Option<Plugins> {
    if config.apps.iter().all(|a| a.webhooks.is_empty()) {
        return None;
    }
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel(config.webhooks.queue);
    let tap = listen::Tap::new(&config.apps, tx, stats.clone());
    let shared = Arc::new(Shared {
        settings: config.webhooks.clone(),
        stats,
        stop_by: OnceLock::new(),
        stop: CancellationToken::new(),
        tls: Arc::default(),
        ca: config.webhooks.ca.as_deref().map(Arc::from),
    });
    let plugins = Plugins {
        listeners: vec![Arc::new(tap)],
        peers: None,
        background: vec![Box::new(move |state: Arc<State>| {
            // Our counters, for whoever reads the node's (the metrics).
            let _ = state.stats.webhooks.set(shared.stats.clone());
            // Tracked with the connections, so that shutdown waits for the last webhooks
            // with the shutdown deadline rather than the plugins' short grace.
            state.tasks.spawn(work(state.clone(), rx, shared));
            Box::pin(async {})
        })],
        ..Plugins::default()
    };
    Some(plugins)
}

/// One app's targets: each sender's queue and what it wants.
struct Route {
    wants: u8,
    tx: mpsc::Sender<String>,
}

/// The worker (see the module notes).
async fn work(state: Arc<State>, mut rx: mpsc::Receiver<listen::Note>, shared: Arc<Shared>) {
    let settings = shared.settings.clone();
    let mut routes: HashMap<Arc<str>, Vec<Route>> = HashMap::new();
    let mut senders = Vec::new();
    for app in state.config.apps.iter().filter(|a| !a.webhooks.is_empty()) {
        routes.insert(
            app.id.as_str().into(),
            start_senders(app, &shared, &mut senders),
        );
    }
    let mut sorter = sort::Sorter::new(settings.leave_delay);
    let mut ready = Vec::new();
    let mut held = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether this node still speaks for the cluster while it shuts down (set then).
    let mut speaks = Speaks::Leader;
    loop {
        let next = sorter.next_due();
        tokio::select! {
            note = rx.recv() => match note {
                Some(n) => sorter.note(n, Instant::now(), &mut ready),
                None => break,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                sorter.due(Instant::now(), &mut ready);
            }
            // Heard at the moment the cluster's link says `draining` (both wait on this token),
            // so the deadline counts from the start of the shutdown.
            _ = state.shutdown.cancelled(), if !shared.stopping() => {
                let _ = shared.stop_by.set(
                    Instant::now() + state.config.shutdown_timeout.mul_f64(0.9),
                );
                shared.stop.cancel();
                speaks = Speaks::at_shutdown(&state);
            }
            _ = tick.tick() => {
                if sorter.counts_held() {
                    sorter.due(Instant::now(), &mut ready);
                }
                if let Some(stop_by) = shared.stop_by.get() {
                    let departed = state.apps().all(|a| a.connections.is_empty());
                    if departed || Instant::now() >= *stop_by {
                        break;
                    }
                }
            }
        }
        route(&state, &routes, &shared, speaks, &mut ready, &mut held);
    }
    // Shutdown: whatever was reported, and whatever is still delayed, goes now.
    while let Ok(n) = rx.try_recv() {
        sorter.note(n, Instant::now(), &mut ready);
    }
    sorter.flush(&mut ready);
    route(&state, &routes, &shared, speaks, &mut ready, &mut held);
    drop(routes);
    for s in senders {
        let _ = s.await;
    }
}

fn start_senders(
    app: &App,
    shared: &Arc<Shared>,
    senders: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Vec<Route> {
    let mut out = Vec::new();
    for target in &app.webhooks {
        let (tx, rx) = mpsc::channel(shared.settings.queue);
        let signer = send::Signer {
            key: app.key.clone(),
            secret: app.secret.clone(),
        };
        let wants = Kind::ALL
            .iter()
            .filter(|k| target.wants(k.name()))
            .fold(0, |bits, k| bits | k.bit());
        senders.push(tokio::spawn(send::run(
            target.clone(),
            signer,
            rx,
            shared.clone(),
        )));
        out.push(Route { wants, tx });
    }
    out
}

/// Who sends this node's cluster-wide transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    /// Running: the cluster's leader (`Peers::leads`).
    Leader,
    /// Shutting down with other serving nodes: they heard we are draining, hear our sockets
    /// leave and send what that changes; we send nothing cluster-wide any more.
    Others,
    /// Shutting down with no other serving node: nobody else will send what our sockets'
    /// departures change, so we send them ourselves, as a
    /// node without scaling does.
    Us,
}

impl Speaks {
    fn at_shutdown(state: &State) -> Speaks {
        match state.peers() {
            Some(p) if p.live_nodes() > 0 => Speaks::Others,
            _ => Speaks::Us,
        }
    }
}

/// Hands each ready event to the targets of its app that want it; cluster-wide transitions
/// only on the cluster's leader, and into `held` while this node cannot tell who leads.
fn route(
    state: &State,
    routes: &HashMap<Arc<str>, Vec<Route>>,
    shared: &Shared,
    speaks: Speaks,
    ready: &mut Vec<sort::Ready>,
    held: &mut Vec<sort::Ready>,
) {
    let leads = match (state.peers(), speaks) {
        (None, _) | (_, Speaks::Us) => Some(true),
        (Some(_), Speaks::Others) => Some(false),
        (Some(p), Speaks::Leader) => p.leads(),
    };
    if !held.is_empty() && leads.is_some() {
        let mut waited = std::mem::take(held);
        waited.append(ready);
        *ready = waited;
    }
    if ready.is_empty() {
        return;
    }
    for r in ready.drain(..) {
        if r.kind.cluster_wide() {
            match leads {
                Some(true) => {}
                Some(false) => continue,
                None if held.len() < shared.settings.queue => {
                    held.push(r);
                    continue;
                }
                None => {
                    shared
                        .stats
                        .dropped(1, "held while this node learns who leads");
                    continue;
                }
            }
        }
        let Some(targets) = routes.get(&r.app) else {
            continue;
        };
        let text = serde_json::to_string(&r.event).expect("an event serializes");
        for t in targets.iter().filter(|t| t.wants & r.kind.bit() != 0) {
            if t.tx.try_send(text.clone()).is_err() {
                shared.stats.dropped(
                    1,
                    "a webhook receiver's queue is full (it is slow or failing)",
                );
            }
        }
    }
}
