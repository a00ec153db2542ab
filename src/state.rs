//! `State`: everything shared by every task, built once at startup: the config, each app's
//! runtime (channels, users and live connections), the hooks listeners are plugged into, and
//! the shutdown token and task tracker.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::apps::App;
use crate::channel::registry::ChannelRegistry;
use crate::config::Config;
use crate::connection::{CloseReason, ConnectionHandle, OutboundLimits, SocketId};
use crate::hooks::{Activity, Answer, AppHooks, Hooks, Listener, Peers};
use crate::protocol::PusherError;
use crate::stats::{AppStats, NodeStats};
use crate::users::UserRegistry;

/// One app's live state.
pub(crate) struct AppRuntime {
    pub(crate) app: App,
    pub(crate) channels: ChannelRegistry,
    /// Signed-in users and their watchers.
    pub(crate) users: UserRegistry,
    /// Every open connection of this app on this node (subscribed or not).
    pub(crate) connections: DashMap<SocketId, ConnectionHandle>,
    /// Where this app reports what happens (see `hooks`).
    pub(crate) hooks: AppHooks,
    /// The other nodes, when something plugged them in.
    pub(crate) peers: Option<Arc<dyn Peers>>,
    /// Connection slots taken, for the `max_connections` quota (an atomic so two handshakes
    /// cannot both take the last slot).
    slots: AtomicUsize,
    /// What the seam does not carry, counted for the metrics (see `stats`).
    pub(crate) stats: Arc<AppStats>,
}

impl AppRuntime {
    fn new(app: App, config: &Config, hooks: &Hooks, peers: Option<Arc<dyn Peers>>) -> Self {
        let hooks = hooks.for_app(&app.id);
        let channels = ChannelRegistry::new(
            config.cache_ttl,
            app.subscription_count,
            app.max_presence_members,
            hooks.clone(),
        );
        let users = UserRegistry::new(hooks.clone());
        AppRuntime {
            app,
            channels,
            users,
            connections: DashMap::new(),
            hooks,
            peers,
            slots: AtomicUsize::new(0),
            stats: Arc::default(),
        }
    }

    /// Takes a connection slot, or `None` when the app is at `max_connections`.
    pub(crate) fn take_slot(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.app.max_connections.unwrap_or(usize::MAX);
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.clone()))
    }

    /// Registers a new connection under a fresh unique socket id.
    pub(crate) fn register(
        &self,
        make: impl FnOnce(SocketId) -> ConnectionHandle,
    ) -> ConnectionHandle {
        let mut make = Some(make);
        loop {
            let id = SocketId::random();
            if let dashmap::Entry::Vacant(v) = self.connections.entry(id) {
                let handle = (make.take().expect("called once"))(id);
                // The shard's lock is released with the entry `insert` returns, at once.
                v.insert(handle.clone());
                self.hooks
                    .report(|| Activity::ConnectionOpened { socket_id: id });
                return handle;
            }
        }
    }

    /// Closes this node's connections signed in as `user_id` and those that joined a
    /// presence channel as that user (`pusher:error` 4009, then close 4009). Their sessions
    /// clean up as for any close, so presence channels see `member_removed`.
    pub(crate) fn close_user(&self, user_id: &str) {
        let mut handles = self.users.connections(user_id);
        handles.extend(self.channels.presence_connections(user_id));
        debug!(
            user_id,
            connections = handles.len(),
            "terminating user connections"
        );
        let reason = CloseReason::for_error(&PusherError::Terminated);
        for h in handles {
            h.close(reason.clone());
        }
    }
}

/// A taken connection slot; dropping it frees the slot.
pub(crate) struct ConnectionSlot(Arc<AppRuntime>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.slots.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A task a plugin runs beside the server (the cluster's Redis link, say): started by
/// `server::serve` with the state. At shutdown it is told at the start of the drain
/// (`State::shutdown` is cancelled before any connection is closed, so the cluster says `bye`
/// at once) and given until the end of the shutdown timeout to finish.
pub type Background =
    Box<dyn FnOnce(Arc<State>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What is plugged into the core at startup (see `hooks`): nothing on a single node.
#[derive(Default)]
pub struct Plugins {
    pub listeners: Vec<Arc<dyn Listener>>,
    pub peers: Option<Arc<dyn Peers>>,
    pub background: Vec<Background>,
    /// HTTP pages served under the path prefix (the debug console).
    pub pages: Vec<Arc<dyn Pages>>,
}

impl Plugins {
    /// These plugins and `more`'s together (`more`'s peers only where these have none).
    pub fn with(mut self, more: Plugins) -> Plugins {
        self.listeners.extend(more.listeners);
        self.peers = self.peers.or(more.peers);
        self.background.extend(more.background);
        self.pages.extend(more.pages);
        self
    }
}

/// HTTP pages a plugin serves at `{path}/{mount}/..` (the debug console): the router hands
/// it every request under its mount, whatever the method.
pub trait Pages: Send + Sync + 'static {
    /// The first path segment after the prefix, e.g. `console`.
    fn mount(&self) -> &'static str;

    /// Answers `req`; `rest` holds the path's decoded segments after the mount.
    fn serve(
        self: Arc<Self>,
        state: Arc<State>,
        req: Request<Incoming>,
        rest: Vec<String>,
    ) -> Answer<'static, Response<Full<Bytes>>>;
}

/// Shared server state.
pub struct State {
    pub config: Config,
    by_id: HashMap<String, Arc<AppRuntime>>,
    by_key: HashMap<String, Arc<AppRuntime>>,
    /// Cancelled when the server shuts down (see [`State::close_all`]).
    pub shutdown: CancellationToken,
    /// Tracks every connection task so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// The listeners every app reports to.
    pub(crate) hooks: Hooks,
    /// Every connection's outbound bounds, with the budget they share.
    pub(crate) outbound: OutboundLimits,
    /// The other nodes, when something plugged them in.
    peers: Option<Arc<dyn Peers>>,
    /// Taken once by `server::serve`.
    background: Mutex<Vec<Background>>,
    /// The plugins' HTTP pages.
    pages: Vec<Arc<dyn Pages>>,
    /// This node's counters that belong to no app (see `stats`).
    pub(crate) stats: NodeStats,
}

impl State {
    /// State with nothing plugged in: one node on its own.
    pub fn new(config: Config) -> State {
        State::with_plugins(config, Plugins::default())
    }

    pub fn with_plugins(config: Config, plugins: Plugins) -> State {
        let hooks = Hooks::new(plugins.listeners);
        let mut by_id = HashMap::new();
        let mut by_key = HashMap::new();
        for app in &config.apps {
            let rt = AppRuntime::new(app.clone(), &config, &hooks, plugins.peers.clone());
            let rt = Arc::new(rt);
            by_id.insert(app.id.clone(), rt.clone());
            by_key.insert(app.key.clone(), rt);
        }
        State {
            outbound: OutboundLimits::from_config(&config),
            config,
            by_id,
            by_key,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            hooks,
            peers: plugins.peers,
            background: Mutex::new(plugins.background),
            pages: plugins.pages,
            stats: NodeStats::default(),
        }
    }

    /// Starts shutdown: cancels `shutdown` (HTTP connections finish their request) and
    /// closes every WebSocket connection with 4200. Sessions check the token once when they
    /// start, so one registering during this sweep is closed too.
    pub fn close_all(&self) {
        self.shutdown.cancel();
        let reason = CloseReason::for_error(&PusherError::ShuttingDown);
        for app in self.by_id.values() {
            for conn in app.connections.iter() {
                conn.close(reason.clone());
            }
        }
    }

    /// Bytes that connections which fell behind hold queued, as charged to the shared
    /// outbound budget (`RESOUND_OUTBOUND_BUDGET`); 0 when every connection keeps up.
    pub fn outbound_backlog(&self) -> usize {
        self.outbound.budget.used()
    }

    /// The other nodes, when something plugged them in.
    pub fn peers(&self) -> Option<&dyn Peers> {
        self.peers.as_deref()
    }

    /// The plugins' background tasks, once.
    pub(crate) fn take_background(&self) -> Vec<Background> {
        std::mem::take(&mut self.background.lock())
    }

    pub(crate) fn app_by_id(&self, id: &str) -> Option<&Arc<AppRuntime>> {
        self.by_id.get(id)
    }

    pub(crate) fn app_by_key(&self, key: &str) -> Option<&Arc<AppRuntime>> {
        self.by_key.get(key)
    }

    pub(crate) fn apps(&self) -> impl Iterator<Item = &Arc<AppRuntime>> {
        self.by_id.values()
    }

    /// The plugin pages mounted at `mount`, if any.
    pub(crate) fn pages(&self, mount: &str) -> Option<&Arc<dyn Pages>> {
        self.pages.iter().find(|p| p.mount() == mount)
    }
}
