//! How much a connection's outbound queue may hold, in frames and in bytes, and the budget
//! every connection's backlog shares. A client that stops reading fills its own queue and is
//! closed (4100) once it holds either bound; many such clients together are held to the
//! process-wide budget, whatever filled their queues.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::stats::AppStats;

/// Backlogs up to this size are not charged to the budget: a connection that is keeping up
/// drains its queue in the same call that filled it, and touching the shared counter for
/// every frame would cost every fan-out a contended atomic per recipient.
pub(super) const UNCHARGED: usize = 16 * 1024;

/// Bytes held by every connection's backlog (beyond [`UNCHARGED`] each), and the limit.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    /// Connections charged now (their backlog is beyond [`UNCHARGED`]).
    charged: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes; 0 is unlimited.
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            charged: AtomicUsize::new(0),
            limit: if limit == 0 { usize::MAX } else { limit },
        }
    }

    /// True when a connection whose backlog would be `backlog` bytes after adding `more`
    /// must go: the budget would be past its limit, and this backlog is at least the average
    /// of the charged ones. So the connections that filled the budget are dropped, not one
    /// that keeps up and happens to be a burst behind.
    pub(super) fn must_drop(&self, backlog: usize, more: usize) -> bool {
        let used = self.used.load(Ordering::Relaxed).saturating_add(more);
        if used <= self.limit {
            return false;
        }
        let charged = self.charged.load(Ordering::Relaxed).max(1);
        backlog.saturating_mul(charged) >= used
    }

    /// Moves a connection's charge from `from` to `to` bytes.
    pub(super) fn recharge(&self, from: usize, to: usize) {
        if to > from {
            self.used.fetch_add(to - from, Ordering::Relaxed);
        } else if from > to {
            self.used.fetch_sub(from - to, Ordering::Relaxed);
        }
        match (from, to) {
            (0, 1..) => {
                self.charged.fetch_add(1, Ordering::Relaxed);
            }
            (1.., 0) => {
                self.charged.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Bytes charged now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The bounds of one connection's outbound queue.
#[derive(Debug, Clone)]
pub(crate) struct OutboundLimits {
    /// Most frames queued.
    pub(crate) frames: usize,
    /// Most bytes queued (a single frame bigger than this still goes to an idle connection).
    pub(crate) bytes: usize,
    pub(crate) budget: Arc<Budget>,
    /// Where the connection counts what it writes and drops (its app's counters).
    pub(crate) stats: Arc<AppStats>,
}

impl OutboundLimits {
    /// These limits, counting into `stats` (the connection's app).
    pub(crate) fn counted(self, stats: Arc<AppStats>) -> OutboundLimits {
        OutboundLimits { stats, ..self }
    }

    pub(crate) fn from_config(config: &Config) -> OutboundLimits {
        OutboundLimits {
            frames: config.outbound_queue,
            bytes: config.outbound_bytes,
            budget: Arc::new(Budget::new(config.outbound_budget)),
            stats: Arc::default(),
        }
    }

    /// At most `frames` frames, no byte bound, an unlimited budget (unit tests).
    #[cfg(test)]
    pub(crate) fn frames(frames: usize) -> OutboundLimits {
        OutboundLimits {
            frames,
            bytes: usize::MAX,
            budget: Arc::new(Budget::new(0)),
            stats: Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaviest_backlogs_go_when_the_budget_is_spent() {
        let b = Budget::new(100_000);
        b.recharge(0, 90_000);
        b.recharge(0, 20_000);
        assert_eq!(b.used(), 110_000);
        assert!(b.must_drop(90_000, 0), "the one that filled it");
        assert!(!b.must_drop(20_000, 0), "a burst behind, below the average");
        b.recharge(90_000, 0);
        assert!(!b.must_drop(20_000, 1_000), "within the limit again");
        b.recharge(20_000, 0);
        assert_eq!((b.used(), b.charged.load(Ordering::Relaxed)), (0, 0));
        assert!(
            !Budget::new(0).must_drop(usize::MAX / 2, 1),
            "0 is unlimited"
        );
    }
}
