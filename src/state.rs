//! `State`: everything shared by every task, built once at startup: the config, each app's
//! runtime (channels and live connections), and the shutdown token and task tracker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::App;
use crate::channel::registry::ChannelRegistry;
use crate::cluster::Bus;
use crate::config::Config;
use crate::connection::{session, ConnectionHandle, SocketId};
use crate::protocol::PusherError;
use crate::users::UserRegistry;

/// One app's live state.
pub struct AppRuntime {
    pub app: App,
    pub channels: ChannelRegistry,
    /// Signed-in users and their watchers.
    pub users: UserRegistry,
    /// Every open connection of this app (subscribed or not).
    pub connections: DashMap<SocketId, ConnectionHandle>,
    /// The other nodes, when scaling is enabled.
    pub bus: Option<Arc<Bus>>,
    /// Connection slots taken, for the `max_connections` quota (an atomic so two handshakes
    /// cannot both take the last slot).
    slots: AtomicUsize,
}

impl AppRuntime {
    fn new(app: App, config: &Config, bus: Option<Arc<Bus>>) -> AppRuntime {
        let announce = bus.clone().map(|b| (b, app.id.clone()));
        let channels =
            ChannelRegistry::new(config.cache_ttl, app.subscription_count, announce.clone());
        let users = UserRegistry::new(announce);
        AppRuntime {
            app,
            channels,
            users,
            connections: DashMap::new(),
            bus,
            slots: AtomicUsize::new(0),
        }
    }

    /// Takes a connection slot, or `None` when the app is at `max_connections`.
    pub fn take_slot(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.app.max_connections.unwrap_or(usize::MAX);
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.clone()))
    }

    /// Registers a new connection under a fresh unique socket id.
    pub fn register(&self, make: impl FnOnce(SocketId) -> ConnectionHandle) -> ConnectionHandle {
        let mut make = Some(make);
        loop {
            let id = SocketId::random();
            if let dashmap::Entry::Vacant(v) = self.connections.entry(id) {
                let handle = (make.take().expect("called once"))(id);
                v.insert(handle.clone());
                return handle;
            }
        }
    }
}

/// A taken connection slot; dropping it frees the slot.
pub struct ConnectionSlot(Arc<AppRuntime>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.slots.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Shared server state.
pub struct State {
    pub config: Config,
    by_id: HashMap<String, Arc<AppRuntime>>,
    by_key: HashMap<String, Arc<AppRuntime>>,
    /// Cancelled when the server shuts down (see [`State::close_all`]).
    pub shutdown: CancellationToken,
    /// Tracks every connection task so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// The other nodes, when scaling is enabled (see `cluster`).
    pub bus: Option<Arc<Bus>>,
}

impl State {
    /// Starts shutdown: cancels `shutdown` (HTTP connections finish their request) and
    /// closes every WebSocket connection with 4200. Sessions check the token once when they
    /// start, so one registering during this sweep is closed too.
    pub fn close_all(&self) {
        self.shutdown.cancel();
        for app in self.by_id.values() {
            for conn in app.connections.iter() {
                conn.close(session::close_reason(&PusherError::ShuttingDown, 4200));
            }
        }
    }

    pub fn new(config: Config) -> State {
        let mut by_id = HashMap::new();
        let mut by_key = HashMap::new();
        let bus = config.scaling.clone().map(Bus::new);
        for app in &config.apps {
            let rt = Arc::new(AppRuntime::new(app.clone(), &config, bus.clone()));
            by_id.insert(app.id.clone(), rt.clone());
            by_key.insert(app.key.clone(), rt);
        }
        State {
            config,
            by_id,
            by_key,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            bus,
        }
    }

    pub fn app_by_id(&self, id: &str) -> Option<&Arc<AppRuntime>> {
        self.by_id.get(id)
    }

    pub fn app_by_key(&self, key: &str) -> Option<&Arc<AppRuntime>> {
        self.by_key.get(key)
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<AppRuntime>> {
        self.by_id.values()
    }
}
