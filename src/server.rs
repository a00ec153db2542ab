//! `run`: the accept loop on one listener, background tasks, and the four-step shutdown
//! (signal, stop accepting, tell every task, wait with a deadline).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::state::{Plugins, State};
use crate::tls::Tls;

/// The share of the shutdown timeout the drain may use at most.
const DRAIN_SHARE: f64 = 0.8;
/// How often expired cache-channel events are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often throttled `subscription_count` updates are looked at.
const COUNTS_EVERY: Duration = Duration::from_secs(1);

/// Serves `listener` until `shutdown` resolves, then closes every connection (4200) and
/// waits for in-flight work, at most `config.shutdown_timeout`.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    serve(listener, state(config), shutdown).await
}

/// The server's state with what the configuration plugs into the core: the Redis cluster
/// when scaling is enabled, webhooks when an app has a target, the debug console when it is
/// enabled, the metrics when they are on, nothing otherwise. The one place that wires
/// plugins. Panics where [`try_state`] fails.
pub fn state(config: Config) -> Arc<State> {
    try_state(config).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`state`]; fails when a plugin cannot bind what it listens on (the metrics'
/// own address).
pub fn try_state(config: Config) -> Result<Arc<State>, String> {
    let mut plugins = match &config.scaling {
        Some(scaling) => crate::cluster::plug(scaling.clone(), &config.apps),
        None => Plugins::default(),
    };
    if let Some(webhooks) = crate::webhooks::plug(&config) {
        plugins = plugins.with(webhooks);
    }
    if let Some(console) = &config.console {
        plugins = plugins.with(crate::console::plug(console));
    }
    if let Some(metrics) = crate::metrics::plug(&config)? {
        plugins = plugins.with(metrics);
    }
    Ok(Arc::new(State::with_plugins(config, plugins)))
}

/// Like [`run`], with state built by the caller (tests inspect it).
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    // TLS, when configured: the files were checked when the configuration was read, but
    // may have changed since.
    let tls = match state.config.tls.as_ref().map(Tls::new) {
        None => None,
        Some(Ok(tls)) => Some(Arc::new(tls)),
        Some(Err(e)) => {
            error!("{e}");
            return;
        }
    };
    serve_with(listener, state, tls, shutdown).await
}

/// Like [`serve`], with the TLS acceptor (for `state.config.tls`) built by the caller: the
/// binary builds it before binding, so that a certificate that went bad since the
/// configuration was read still stops start-up with exit code 2.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    match &tls {
        Some(tls) => tokio::spawn(tls.clone().watch(state.shutdown.clone())),
        // SIGHUP would otherwise end the process (`systemctl reload` sends it).
        None => tokio::spawn(crate::tls::no_reload(state.shutdown.clone())),
    };
    tokio::spawn(housekeeping(state.clone()));
    let background: Vec<_> = state
        .take_background()
        .into_iter()
        .map(|start| tokio::spawn(start(state.clone())))
        .collect();
    tokio::pin!(shutdown);
    // With other nodes: accept the first client once this node holds what they know.
    let ready = async {
        if let Some(peers) = state.peers() {
            peers.ready().await;
        }
    };
    tokio::pin!(ready);
    let stopped = tokio::select! {
        () = &mut ready => false,
        _ = &mut shutdown => true,
    };
    loop {
        if stopped {
            break;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    debug!(%peer, "tcp accepted");
                    match &tls {
                        None => state.tasks.spawn(serve_connection(stream, state.clone())),
                        Some(tls) => state.tasks.spawn(serve_tls(stream, tls.clone(), state.clone())),
                    };
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Stop accepting first: with SO_REUSEPORT the kernel sends new connections to the
    // process that takes over the port from now on.
    drop(listener);
    shut_down(&state, background).await;
}

/// The shutdown after the signal: tell every task at once (HTTP connections finish the
/// request in flight, the plugins' tasks hear it at the start, so the cluster tells the other
/// nodes now that this one is draining), close the WebSocket connections spread over the drain window, give the plugins'
/// tasks until the end, and wait for it all, never beyond the shutdown timeout.
async fn shut_down(state: &Arc<State>, background: Vec<tokio::task::JoinHandle<()>>) {
    let start = tokio::time::Instant::now();
    let deadline = start + state.config.shutdown_timeout;
    // The drain leaves the last fifth of the shutdown timeout to what must follow the
    // departures: their close frames, the requests in flight, the webhooks they cause.
    let window = state
        .config
        .drain
        .min(state.config.shutdown_timeout.mul_f64(DRAIN_SHARE));
    info!(
        drain_ms = window.as_millis() as u64,
        "shutting down: stopped accepting; draining connections"
    );
    state.shutdown.cancel();
    state.tasks.close();
    let all = async {
        tokio::join!(
            crate::drain::drain(state, start, window),
            futures_util::future::join_all(background),
            state.tasks.wait(),
        )
    };
    if tokio::time::timeout_at(deadline, all).await.is_err() {
        // Whatever the drain had not reached yet is closed now.
        state.close_all();
        warn!("shutdown deadline reached with connections still open");
    }
}

/// Binds `addr` as the server listens: with `SO_REUSEADDR`, and with `SO_REUSEPORT` when
/// `reuse_port` (Unix), so that a new process can bind the port while this one drains.
pub async fn bind(addr: &str, reuse_port: bool) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        #[cfg(not(windows))]
        socket.set_reuseaddr(true)?;
        #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
        socket.set_reuseport(reuse_port)?;
        #[cfg(not(all(unix, not(target_os = "solaris"), not(target_os = "illumos"))))]
        let _ = reuse_port;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

/// Accept queue length asked for (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;
/// How long an HTTP connection open at shutdown has to send a request before it counts as
/// idle and is closed.
const LATE_REQUEST_GRACE: Duration = Duration::from_millis(250);
/// How long a client has to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_tls(stream: tokio::net::TcpStream, tls: Arc<Tls>, state: Arc<State>) {
    let handshake = tls.acceptor().accept(stream);
    let stream = tokio::select! {
        done = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake) => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                return;
            }
        },
        _ = state.shutdown.cancelled() => return,
    };
    serve_connection(stream, state).await
}

async fn serve_connection<S>(stream: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_state = state.clone();
    let service = service_fn(move |req| crate::http::handle(req, svc_state.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // One buffer per response, written with one `write`, rather than a gather.
        .writev(false)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = state.shutdown.cancelled() => {}
    }
    // A connection accepted just before the listener closed may not have sent (or hyper not
    // yet read) its request: closing it as idle would fail that attempt, so it gets a moment.
    // A WebSocket upgrade then goes through and is closed with 4200 like the others.
    if tokio::time::timeout(LATE_REQUEST_GRACE, conn.as_mut())
        .await
        .is_ok()
    {
        return;
    }
    // Let the request in flight finish; idle keep-alive connections close at once.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Periodic work: expire cached events, send throttled subscription counts.
async fn housekeeping(state: Arc<State>) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut counts = tokio::time::interval(COUNTS_EVERY);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = sweep.tick() => state.apps().for_each(|app| app.channels.sweep()),
            _ = counts.tick() => state.apps().for_each(|app| app.channels.flush_counts()),
        }
    }
}
