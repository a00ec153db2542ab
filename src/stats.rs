//! Counters the core keeps about what the seam (`hooks`) does not carry: bytes and frames on
//! the sockets, HTTP API requests, slow consumers and dropped frames, refused client events,
//! the Redis link. Owned by the core (one [`AppStats`] per app, one [`NodeStats`] per node),
//! written where it happens, and read by whoever wants them (the metrics plugin, at scrape
//! time). Writing one is a relaxed atomic add: no lock, no allocation. On the delivery path
//! the adds are made once per write syscall or per inbound frame, never per recipient.
//!
//! A plugin that keeps counters of its own (webhooks) hands them over once it runs:
//! [`NodeStats::webhooks`] holds them as a [`WebhookCounts`], read when they are scraped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Stripes of a [`Traffic`] counter: threads add to their own, so the sockets' writers on
/// different cores never contend for one cache line.
const STRIPES: usize = 8;

/// Frames and bytes, counted on the delivery path: added to the calling thread's stripe
/// (two relaxed adds on a line no other core writes, usually), summed when read.
#[derive(Default, Debug)]
pub(crate) struct Traffic([Stripe; STRIPES]);

#[derive(Default, Debug)]
#[repr(align(128))]
struct Stripe {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl Traffic {
    #[inline]
    pub(crate) fn add(&self, frames: u64, bytes: u64) {
        let s = &self.0[stripe()];
        s.frames.fetch_add(frames, Relaxed);
        s.bytes.fetch_add(bytes, Relaxed);
    }

    /// Frames and bytes so far.
    pub(crate) fn read(&self) -> (u64, u64) {
        self.0.iter().fold((0, 0), |(f, b), s| {
            (f + s.frames.load(Relaxed), b + s.bytes.load(Relaxed))
        })
    }
}

/// This thread's stripe, given out round-robin on a thread's first use.
#[inline]
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// A counter that only goes up.
#[derive(Default, Debug)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One app's counters on this node.
#[derive(Default, Debug)]
pub(crate) struct AppStats {
    /// Text messages read from clients, and their payload bytes.
    pub(crate) received: Traffic,
    /// Frames written to clients (every kind: messages, pings, close frames), and the bytes
    /// written on the wire for them (WebSocket headers included).
    pub(crate) sent: Traffic,
    /// Connections closed with 4100 because their outbound queue was full.
    pub(crate) slow_consumers: Counter,
    /// Frames given to a connection and never written: refused by a full queue, or left
    /// unstarted in the queue of a connection that closed without flushing it.
    pub(crate) frames_dropped: Counter,
    /// Client events refused with a `pusher:error` (disabled, forbidden, not a member, name
    /// too long, rate limited).
    pub(crate) client_events_refused: Counter,
    pub(crate) api: ApiStats,
}

/// What the webhooks plugin counts, for the whole node.
pub(crate) trait WebhookCounts: Send + Sync + 'static {
    /// Events dropped (queue full, retries given up), requests a receiver accepted (2xx),
    /// and retries, so far.
    fn counts(&self) -> (u64, u64, u64);
}

/// This node's counters that belong to no app.
#[derive(Debug)]
pub(crate) struct NodeStats {
    pub(crate) started: SystemTime,
    /// HTTP API requests that named no configured app.
    pub(crate) api_unmatched: ApiStats,
    pub(crate) redis: RedisStats,
    /// Set by the webhooks plugin when it runs.
    pub(crate) webhooks: OnceLock<Arc<dyn WebhookCounts>>,
}

impl std::fmt::Debug for dyn WebhookCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WebhookCounts")
            .field(&self.counts())
            .finish()
    }
}

impl Default for NodeStats {
    fn default() -> NodeStats {
        NodeStats {
            started: SystemTime::now(),
            api_unmatched: ApiStats::default(),
            redis: RedisStats::default(),
            webhooks: OnceLock::new(),
        }
    }
}

/// The cluster's Redis link (written by the cluster plugin).
#[derive(Default, Debug)]
pub(crate) struct RedisStats {
    /// Scaling is on (the link exists).
    pub(crate) enabled: AtomicBool,
    /// The link is connected now.
    pub(crate) up: AtomicBool,
    /// Connections made to Redis; every one after the first is a reconnect.
    pub(crate) connects: Counter,
    /// Connections lost, or attempts that failed.
    pub(crate) failures: Counter,
    /// Messages published to the other nodes, and read from the channel.
    pub(crate) published: Counter,
    pub(crate) received: Counter,
}

impl RedisStats {
    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Relaxed);
    }
}

/// An HTTP API endpoint, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Events,
    BatchEvents,
    Channels,
    Channel,
    ChannelUsers,
    Connections,
    TerminateUser,
    /// A path under `/apps/{id}/` that is no endpoint.
    Unknown,
}

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 8] = [
        Endpoint::Events,
        Endpoint::BatchEvents,
        Endpoint::Channels,
        Endpoint::Channel,
        Endpoint::ChannelUsers,
        Endpoint::Connections,
        Endpoint::TerminateUser,
        Endpoint::Unknown,
    ];

    /// The endpoint of the path after `/apps/{id}` (or of the SDK's terminate path).
    pub(crate) fn of(tail: &[&str]) -> Endpoint {
        match tail {
            ["events"] => Endpoint::Events,
            ["batch_events"] => Endpoint::BatchEvents,
            ["channels"] => Endpoint::Channels,
            ["channels", _] => Endpoint::Channel,
            ["channels", _, "users"] => Endpoint::ChannelUsers,
            ["connections"] => Endpoint::Connections,
            ["users", _, "terminate_connections"] => Endpoint::TerminateUser,
            _ => Endpoint::Unknown,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::Events => "events",
            Endpoint::BatchEvents => "batch_events",
            Endpoint::Channels => "channels",
            Endpoint::Channel => "channel",
            Endpoint::ChannelUsers => "channel_users",
            Endpoint::Connections => "connections",
            Endpoint::TerminateUser => "terminate_user_connections",
            Endpoint::Unknown => "unknown",
        }
    }
}

/// The statuses the API answers with, each counted on its own; any other is counted as the
/// last slot ("other").
pub(crate) const STATUSES: [u16; 9] = [200, 400, 401, 403, 404, 405, 408, 413, 500];

/// Upper bounds of the latency histogram's buckets, in seconds (`+Inf` is the count).
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Requests by endpoint and status, and the latency of each endpoint.
#[derive(Default, Debug)]
pub(crate) struct ApiStats {
    requests: [[Counter; STATUSES.len() + 1]; Endpoint::ALL.len()],
    latency: [Histogram; Endpoint::ALL.len()],
}

impl ApiStats {
    pub(crate) fn record(&self, endpoint: Endpoint, status: u16, took: Duration) {
        let e = endpoint as usize;
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len());
        self.requests[e][s].add(1);
        self.latency[e].observe(took);
    }

    /// Requests to `endpoint` answered with the status in slot `slot` of [`STATUSES`] (the
    /// slot after the last is "other").
    pub(crate) fn requests(&self, endpoint: Endpoint, slot: usize) -> u64 {
        self.requests[endpoint as usize][slot].get()
    }

    pub(crate) fn latency(&self, endpoint: Endpoint) -> &Histogram {
        &self.latency[endpoint as usize]
    }
}

/// A latency histogram over [`LATENCY_BUCKETS`], each bucket counting its own range (the
/// cumulative counts Prometheus wants are summed when read).
#[derive(Default, Debug)]
pub(crate) struct Histogram {
    buckets: [Counter; LATENCY_BUCKETS.len() + 1],
    /// Sum of the observations, in nanoseconds.
    sum_nanos: Counter,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].add(1);
        self.sum_nanos
            .add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`] then `+Inf`, and the sum in
    /// seconds. Read bucket by bucket, so a scrape racing an observation may see it in the
    /// count and not yet in the sum, never a count that goes down.
    pub(crate) fn read(&self) -> ([u64; LATENCY_BUCKETS.len() + 1], f64) {
        let mut out = [0; LATENCY_BUCKETS.len() + 1];
        let mut total = 0;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            total += b.get();
            *o = total;
        }
        (out, self.sum_nanos.get() as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_sums_every_threads_stripe() {
        let t = std::sync::Arc::new(Traffic::default());
        let threads: Vec<_> = (0..STRIPES + 3)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || t.add(2, 100))
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(
            t.read(),
            (2 * (STRIPES as u64 + 3), 100 * (STRIPES as u64 + 3))
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_the_sum_in_seconds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        let (buckets, sum) = h.read();
        assert_eq!(buckets[0], 1, "<= 0.5 ms");
        assert_eq!(buckets[3], 2, "<= 5 ms");
        assert_eq!(buckets[LATENCY_BUCKETS.len() - 1], 2, "<= 5 s");
        assert_eq!(buckets[LATENCY_BUCKETS.len()], 3, "+Inf is the count");
        assert!((sum - 9.0033).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn api_requests_are_counted_by_endpoint_and_status() {
        let api = ApiStats::default();
        api.record(Endpoint::of(&["events"]), 200, Duration::ZERO);
        api.record(Endpoint::of(&["events"]), 401, Duration::ZERO);
        api.record(Endpoint::of(&["channels", "x"]), 418, Duration::ZERO);
        assert_eq!(api.requests(Endpoint::Events, 0), 1);
        assert_eq!(api.requests(Endpoint::Events, 2), 1);
        assert_eq!(api.requests(Endpoint::Channel, STATUSES.len()), 1);
        assert_eq!(
            api.latency(Endpoint::Events).read().0[LATENCY_BUCKETS.len()],
            2
        );
    }
}
