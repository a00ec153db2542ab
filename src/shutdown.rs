//! The shutdown signals: SIGINT or SIGTERM starts the shutdown (and its drain); a second one
//! (Ctrl-C pressed again in a terminal) closes what the drain has not reached yet at once.

use std::future::Future;

use tokio::sync::watch;

/// Registers for SIGINT and SIGTERM at once (so a signal that arrives before the returned
/// future is first polled is not lost or fatal) and returns a future that resolves on either.
/// Must be called inside a Tokio runtime.
pub fn signal() -> impl Future<Output = ()> {
    signals().0
}

/// The first SIGINT/SIGTERM and the second, registered at once and counted by a task of
/// their own. Must be called inside a Tokio runtime.
pub fn signals() -> (impl Future<Output = ()>, impl Future<Output = ()>) {
    let (tx, rx) = watch::channel(0u8);
    count(tx);
    (nth(&rx, 1), nth(&rx, 2))
}

/// Resolves once `n` signals have been counted.
fn nth(rx: &watch::Receiver<u8>, n: u8) -> impl Future<Output = ()> {
    let mut rx = rx.clone();
    async move {
        if rx.wait_for(|seen| *seen >= n).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(unix)]
fn count(tx: watch::Sender<u8>) {
    use tokio::signal::unix::{signal as listen, SignalKind};
    let mut int = listen(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = listen(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = int.recv() => {}
                Some(()) = term.recv() => {}
                else => return,
            }
            tx.send_modify(|n| *n = n.saturating_add(1));
        }
    });
}

/// Ctrl-C only, where Unix signals do not exist.
#[cfg(not(unix))]
fn count(tx: watch::Sender<u8>) {
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            tx.send_modify(|n| *n = n.saturating_add(1));
        }
    });
}
