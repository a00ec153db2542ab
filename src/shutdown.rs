//! The shutdown signal: resolves on SIGINT or SIGTERM.

use std::future::Future;

/// Registers for SIGINT and SIGTERM at once (so a signal that arrives before the returned
/// future is first polled is not lost or fatal) and returns a future that resolves on either.
/// Must be called inside a Tokio runtime.
#[cfg(unix)]
pub fn signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal as listen, SignalKind};
    let mut int = listen(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = listen(SignalKind::terminate()).expect("SIGTERM handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

/// Ctrl-C only, where Unix signals do not exist.
#[cfg(not(unix))]
pub fn signal() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
