//! `run`: the accept loop on one listener, background tasks, and the four-step shutdown
//! (signal, stop accepting, tell every task, wait with a deadline).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::state::{Plugins, State};

/// How often expired cache-channel events are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often throttled `subscription_count` updates are looked at.
const COUNTS_EVERY: Duration = Duration::from_secs(1);
/// How long shutdown waits for the plugins' background tasks to finish.
const BACKGROUND_GRACE: Duration = Duration::from_secs(2);

/// Serves `listener` until `shutdown` resolves, then closes every connection (4200) and
/// waits for in-flight work, at most `config.shutdown_timeout`.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    serve(listener, state(config), shutdown).await
}

/// The server's state with what the configuration plugs into the core: the Redis cluster
/// when scaling is enabled, webhooks when an app has a target, nothing otherwise. The one
/// place that wires plugins.
pub fn state(config: Config) -> Arc<State> {
    let mut plugins = match &config.scaling {
        Some(scaling) => crate::cluster::plug(scaling.clone(), &config.apps),
        None => Plugins::default(),
    };
    if let Some(webhooks) = crate::webhooks::plug(&config) {
        plugins = plugins.and(webhooks);
    }
    Arc::new(State::with_plugins(config, plugins))
}

/// Like [`run`], with state built by the caller (tests inspect it).
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    tokio::spawn(housekeeping(state.clone()));
    let background: Vec<_> = state
        .take_background()
        .into_iter()
        .map(|start| tokio::spawn(start(state.clone())))
        .collect();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    debug!(%peer, "tcp accepted");
                    state.tasks.spawn(serve_connection(stream, state.clone()));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    info!("shutting down: closing connections");
    state.close_all();
    if !background.is_empty() {
        // The cluster link says `bye` to the other nodes before the connections' own
        // departures are reported.
        let all = futures_util::future::join_all(background);
        let _ = tokio::time::timeout(BACKGROUND_GRACE, all).await;
    }
    state.tasks.close();
    if tokio::time::timeout(state.config.shutdown_timeout, state.tasks.wait())
        .await
        .is_err()
    {
        warn!("shutdown deadline reached with connections still open");
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<State>) {
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
