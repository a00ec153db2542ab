//! The seam between the core and everything that watches it. The core (connections,
//! channels, users, dispatch, the HTTP API handlers) reports what happens as an [`Activity`]
//! through [`Hooks`], and asks cluster-wide questions through [`Peers`]; it imports no
//! listener. Listeners (the Redis cluster today; webhooks and metrics next) are plugged in at
//! startup (`server::state`). With none plugged in, reporting costs one length check and no
//! activity value is even built.
//!
//! Guarantees listeners may rely on, and the core keeps:
//! - **Synchronous, in order.** [`Listener::on`] is called on the thread that made the change.
//!   Changes to shared state are reported while the lock that ordered them is still held (a
//!   channel's entry for subscriptions, presence and counts; the app's sign-in lock for users),
//!   so one channel's activities reach a listener in the order everybody saw them. Activities
//!   of one connection or one request (connection opened/closed, `ApiEvent` before local
//!   delivery, `ClientEvent` after the local relay, `UserTerminated`) need no lock and are
//!   reported without one. Either way a listener must never block, await or call back into
//!   the core: it queues and returns.
//! - **Snapshots agree with the stream.** Every change that is reported to listeners holds
//!   [`Hooks::ordered`] (shared) from before the change until its activity is reported; a
//!   listener that reads the node's state under [`Hooks::snapshot`] (exclusive) therefore
//!   sees each change either in the snapshot or reported after it, never both or neither.
//! - **Sign-ins are serialised per app**: `UserOnline`/`UserOffline` and the watchlist events
//!   they cause happen under one per-app lock, in one order.
//! - **Listeners never write sockets on the reporting path.** What they deliver back into the
//!   core (a remote event, say) goes through `Pending::all_to_jobs`, so a listener's own
//!   task only queues frames and never waits on a client's socket.

mod activity;
mod peers;

use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};

pub use activity::Activity;
pub use peers::{Answer, Counts, Peers};

/// Something that wants to hear what happens. See the module notes for the rules.
pub trait Listener: Send + Sync + 'static {
    /// `activity` happened in app `app_id`.
    fn on(&self, app_id: &str, activity: &Activity<'_>);
}

struct Shared {
    listeners: Box<[Arc<dyn Listener>]>,
    /// Orders reported changes against snapshots (see the module notes).
    order: RwLock<()>,
}

/// The listeners plugged in at startup: a cheap clone, shared by every app.
#[derive(Clone)]
pub struct Hooks(Arc<Shared>);

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks::new(Vec::new())
    }
}

impl Hooks {
    pub fn new(listeners: Vec<Arc<dyn Listener>>) -> Hooks {
        Hooks(Arc::new(Shared {
            listeners: listeners.into(),
            order: RwLock::new(()),
        }))
    }

    /// The hooks as one app's code reports through them.
    pub fn for_app(&self, app_id: &str) -> AppHooks {
        AppHooks {
            hooks: self.clone(),
            app_id: app_id.into(),
        }
    }

    /// Held (shared) by a reported change from before the change until it is reported.
    /// `None` when nobody listens: a single node takes no lock.
    pub fn ordered(&self) -> Option<RwLockReadGuard<'_, ()>> {
        // Never taken twice by one thread (so a waiting snapshot cannot deadlock it), and not
        // recursive, so a snapshot is not starved by a stream of changes.
        (!self.0.listeners.is_empty()).then(|| self.0.order.read())
    }

    /// Runs `read` while no reported change is in progress (see the module notes).
    pub fn snapshot<T>(&self, read: impl FnOnce() -> T) -> T {
        let _exclusive = self.0.order.write();
        read()
    }
}

/// [`Hooks`] bound to one app.
#[derive(Clone)]
pub struct AppHooks {
    hooks: Hooks,
    app_id: Arc<str>,
}

impl AppHooks {
    /// Reports the activity `make` builds, to every listener; `make` is not called when
    /// nobody listens.
    #[inline]
    pub fn report<'a>(&self, make: impl FnOnce() -> Activity<'a>) {
        let listeners = &self.hooks.0.listeners;
        if listeners.is_empty() {
            return;
        }
        let activity = make();
        for l in listeners.iter() {
            l.on(&self.app_id, &activity);
        }
    }

    /// See [`Hooks::ordered`].
    pub fn ordered(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.hooks.ordered()
    }

    /// True when somebody listens (to skip work only a listener needs).
    pub fn is_heard(&self) -> bool {
        !self.hooks.0.listeners.is_empty()
    }
}

/// A listener for unit tests: records each activity as `"{app_id} {activity:?}"`.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Record(pub(crate) parking_lot::Mutex<Vec<String>>);

#[cfg(test)]
impl Record {
    /// Hooks with a fresh recorder plugged in, for app `app_id`.
    pub(crate) fn hooks(app_id: &str) -> (Arc<Record>, AppHooks) {
        let record = Arc::new(Record::default());
        let hooks = Hooks::new(vec![record.clone()]).for_app(app_id);
        (record, hooks)
    }

    /// What was recorded since the last call, with the app id left out.
    pub(crate) fn take(&self) -> Vec<String> {
        let all = std::mem::take(&mut *self.0.lock());
        all.into_iter()
            .map(|s| s.split_once(' ').map_or(s.clone(), |(_, a)| a.to_owned()))
            .collect()
    }
}

#[cfg(test)]
impl Listener for Record {
    fn on(&self, app_id: &str, activity: &Activity<'_>) {
        self.0.lock().push(format!("{app_id} {activity:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_listening_builds_nothing_and_takes_no_lock() {
        let hooks = Hooks::default().for_app("1");
        hooks.report(|| unreachable!("no activity is built without listeners"));
        assert!(hooks.ordered().is_none());
        assert!(!hooks.is_heard());
    }

    #[test]
    fn every_listener_hears_every_activity_in_order() {
        let (a, b) = (Arc::new(Record::default()), Arc::new(Record::default()));
        let hooks = Hooks::new(vec![a.clone(), b.clone()]);
        let app = hooks.for_app("7");
        app.report(|| Activity::ChannelOccupied { channel: "x" });
        app.report(|| Activity::UserOnline { user_id: "u" });
        for r in [a, b] {
            let got = r.0.lock().clone();
            assert_eq!(got.len(), 2);
            assert!(got[0].starts_with("7 ChannelOccupied"), "{got:?}");
            assert!(got[1].starts_with("7 UserOnline"), "{got:?}");
        }
        assert!(app.ordered().is_some());
    }
}
