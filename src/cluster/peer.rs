//! What this node keeps of each other node: when it was last heard from, which of its
//! sequence numbers were seen recently (to skip what it publishes twice), and whether it let
//! a query go unanswered.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// How many of a node's latest sequence numbers are remembered. What a node publishes twice
/// is the one batch (at most `wire::BATCH` messages) that a lost connection left
/// unconfirmed, republished before anything new: so a repeat is always among the last
/// `BATCH` numbers heard from it. Four times that leaves room to spare.
const RECENT: usize = 4 * super::wire::BATCH;

pub(super) struct Peer {
    pub(super) heard: Instant,
    recent: Recent,
    /// It let a query time out and has not been heard from since.
    pub(super) missed_query: bool,
    /// It said it is draining: alive, but it no longer leads.
    pub(super) draining: bool,
}

impl Peer {
    /// A node first heard from now, with message `seq`.
    pub(super) fn new(now: Instant, seq: u64) -> Peer {
        let mut recent = Recent::default();
        recent.first_time(seq);
        Peer {
            heard: now,
            recent,
            missed_query: false,
            draining: false,
        }
    }

    /// Message `seq` heard from it now: `None` when it was seen already (published again
    /// after a lost connection, or replayed), else whether it had been silent for `timeout`.
    pub(super) fn hear(&mut self, now: Instant, seq: u64, timeout: Duration) -> Option<bool> {
        if !self.recent.first_time(seq) {
            return None;
        }
        let stale = now.duration_since(self.heard) >= timeout;
        self.heard = now;
        self.missed_query = false;
        Some(stale)
    }
}

/// The last [`RECENT`] sequence numbers heard from one node, in the order heard. A number
/// is new unless it is one of them or below them all.
///
/// Why this and not the highest number seen (a high-water mark): with a high-water mark, one
/// message numbered far ahead (`u64::MAX`, from a forger before messages were signed, or
/// from a bug) makes every later real message look old, and they are all dropped until the
/// node restarts. Here a number far ahead takes one slot of the window and leaves the
/// window's lowest number where it was, so the node's next real numbers are new; once
/// `RECENT` more have been heard it is forgotten. What the window still refuses is what a
/// high-water mark refused: a node's numbers only grow (one counter per process, published
/// in order on one connection), so anything at or below what was heard before is a repeat
/// (a batch republished after a lost connection) or a replay of a recorded message, both
/// dropped. A node's numbers start again only under a new id: the id is random per
/// process start.
#[derive(Default)]
struct Recent {
    order: VecDeque<u64>,
    seen: BTreeSet<u64>,
}

impl Recent {
    /// Remembers `seq`; false when it was heard already, or is older than the window.
    fn first_time(&mut self, seq: u64) -> bool {
        if self.seen.first().is_some_and(|&lowest| seq < lowest) || !self.seen.insert(seq) {
            return false;
        }
        self.order.push_back(seq);
        if self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_far_ahead_does_not_make_later_real_messages_look_old() {
        let (now, timeout) = (Instant::now(), Duration::from_secs(10));
        let mut p = Peer::new(now, 1);
        assert_eq!(p.hear(now, 2, timeout), Some(false));
        assert_eq!(p.hear(now, u64::MAX, timeout), Some(false));
        // The node's own next messages, all of them (the forged number dropped 23 of 50
        // events under a high-water mark).
        for seq in 3..=50 {
            assert_eq!(p.hear(now, seq, timeout), Some(false), "seq {seq}");
        }
        // What it publishes again after a lost connection is still skipped.
        for seq in [1, 2, 49, 50, u64::MAX] {
            assert_eq!(p.hear(now, seq, timeout), None, "seq {seq} again");
        }
        // Once the window has moved on, the far number is forgotten and changes nothing.
        for seq in 51..=(RECENT as u64 + 60) {
            assert_eq!(p.hear(now, seq, timeout), Some(false), "seq {seq}");
        }
        assert!(!p.recent.seen.contains(&u64::MAX));
    }

    #[test]
    fn the_window_remembers_the_latest_numbers_and_forgets_older_ones() {
        let (now, timeout) = (Instant::now(), Duration::from_secs(10));
        let mut p = Peer::new(now, 1);
        let last = RECENT as u64 + 10;
        for seq in 2..=last {
            assert!(p.hear(now, seq, timeout).is_some());
        }
        // A batch republished after a lost connection: the last BATCH numbers.
        let batch = last - super::super::wire::BATCH as u64 + 1;
        assert!((batch..=last).all(|seq| p.hear(now, seq, timeout).is_none()));
        assert_eq!(p.recent.order.len(), RECENT);
        assert_eq!(p.recent.seen.len(), RECENT);
        // Older than the window: a replay, not news.
        assert_eq!(p.hear(now, 1, timeout), None, "below the window");
        assert_eq!(p.hear(now, 10, timeout), None, "below the window");
        let later = now + timeout;
        assert_eq!(
            p.hear(later, last + 1, timeout),
            Some(true),
            "silent too long"
        );
    }
}
