//! A node's first sync with the cluster: it accepts clients (and answers `/up`) once it
//! holds the other nodes' state, so that its first subscribers see the presence members and
//! cached events already there. The others answer our first hello with their state, at once
//! or (one state per beat, `bus::Gate`) at their next beat; `PUBLISH` of that hello tells
//! how many are subscribed. Bounded: a node that cannot reach Redis, or whose peers do not
//! answer, starts serving anyway (as a node alone, as documented).

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

pub(super) struct FirstSync {
    done: watch::Sender<bool>,
    /// Other nodes to hear a state from; `None` until our first hello is published.
    expected: Mutex<Option<usize>>,
    heard: Mutex<HashSet<String>>,
}

impl FirstSync {
    pub(super) fn new() -> FirstSync {
        FirstSync {
            done: watch::Sender::new(false),
            expected: Mutex::new(None),
            heard: Mutex::default(),
        }
    }

    /// Serve from now on, synced or not (Redis unreachable, say).
    pub(super) fn finish(&self) {
        self.done.send_replace(true);
    }

    /// Our first hello reached `receivers` subscribers of the channel, ourselves included.
    pub(super) fn hello_reached(&self, receivers: usize) {
        let mut expected = self.expected.lock();
        if expected.is_none() {
            *expected = Some(receivers.saturating_sub(1));
        }
        drop(expected);
        self.check();
    }

    /// `node` sent its state.
    pub(super) fn state_from(&self, node: &str) {
        if *self.done.borrow() {
            return;
        }
        self.heard.lock().insert(node.to_owned());
        self.check();
    }

    fn check(&self) {
        let expected = *self.expected.lock();
        if expected.is_some_and(|n| self.heard.lock().len() >= n) {
            self.finish();
        }
    }

    /// Until synced, or `within` at most.
    pub(super) async fn wait(&self, within: Duration) {
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(within, done.wait_for(|d| *d)).await;
    }
}
