//! The write half of a connection: drains the queue into the socket, everything queued in
//! one flush, and ends the connection with the reason the handle carries. It is the only
//! writer of the socket and makes no protocol decisions.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::handle::{CloseReason, ConnectionHandle};

/// Time allowed for the last frames (error and close) to reach a client.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(super) async fn run<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    handle: ConnectionHandle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut batch = VecDeque::new();
    // Created once: re-creating a cancellation future per loop would register and
    // unregister a waiter every time.
    let closed = handle.closed();
    tokio::pin!(closed);
    loop {
        handle.take_queued(&mut batch);
        if batch.is_empty() {
            // Both futures are cancel-safe: a lost `ready` only means one more empty check.
            tokio::select! {
                biased;
                _ = &mut closed => break,
                _ = handle.ready() => {
                    // Let the publisher that woke us finish its burst first, so more of it
                    // goes out in this flush (fewer write syscalls under load).
                    tokio::task::yield_now().await;
                    continue;
                }
            }
        }
        let write = async {
            for m in batch.drain(..) {
                sink.feed(m).await?;
            }
            sink.flush().await
        };
        // A client that stops reading blocks the write; closing must still win.
        tokio::select! {
            r = write => if r.is_err() {
                // The socket is gone: make sure the session ends too.
                handle.close(CloseReason { last_frame: None, code: None, flush_queue: false });
                return;
            },
            _ = &mut closed => break,
        }
    }
    let reason = handle.close_reason().cloned();
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if reason.as_ref().is_some_and(|r| r.flush_queue) {
            batch.clear();
            handle.take_queued(&mut batch);
            for m in batch.drain(..) {
                sink.feed(m).await?;
            }
        }
        if let Some(frame) = reason.as_ref().and_then(|r| r.last_frame.clone()) {
            sink.feed(Message::text(frame)).await?;
        }
        match reason.and_then(|r| r.code) {
            Some((code, text)) => {
                let frame = CloseFrame {
                    code: code.into(),
                    reason: text.into(),
                };
                sink.send(Message::Close(Some(frame))).await
            }
            None => sink.close().await,
        }
    })
    .await;
}
