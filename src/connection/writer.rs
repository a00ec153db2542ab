//! The connection's writer task. Senders and flush jobs write to the socket themselves (see
//! `handle.rs`); this task takes over when the kernel's send buffer is full, waiting until
//! the socket is writable again, and it ends the connection: the last frames, the close
//! frame, then the write half is shut down when the last handle goes.

use std::time::Duration;

use super::handle::ConnectionHandle;

/// Time allowed for the last frames (error and close) to reach a client.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

enum Drained {
    Done,
    /// Closing was asked for while the socket was full.
    Closing,
    Failed,
}

/// Writes what the handle owes until it is drained, waiting for the socket when it is full.
async fn drain(handle: &ConnectionHandle, stop_on_close: bool) -> Drained {
    loop {
        if stop_on_close && handle.is_closing() {
            return Drained::Closing;
        }
        match handle.flush_parked() {
            Ok(true) => return Drained::Done,
            Ok(false) => {}
            Err(_) => return Drained::Failed,
        }
        let Some(socket) = handle.socket() else {
            return Drained::Done;
        };
        // A client that stops reading keeps the socket full; closing must still win.
        tokio::select! {
            biased;
            _ = handle.wake(), if stop_on_close => {}
            r = socket.writable() => if r.is_err() { return Drained::Failed },
        }
    }
}

pub(super) async fn run(handle: ConnectionHandle) {
    loop {
        handle.wake().await;
        if handle.is_closing() {
            break;
        }
        // Let the publishers that are queueing finish their bursts first, so more of them go
        // out in this write (fewer write syscalls under load).
        tokio::task::yield_now().await;
        match drain(&handle, true).await {
            Drained::Done => {}
            Drained::Closing => break,
            Drained::Failed => {
                // The socket is gone: make sure the session ends too.
                handle.close_now();
                return;
            }
        }
    }
    handle.seal(handle.close_reason());
    let _ = tokio::time::timeout(CLOSE_GRACE, drain(&handle, false)).await;
}
