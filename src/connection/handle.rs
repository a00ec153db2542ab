//! `ConnectionHandle`: what the rest of the server holds of a connection. A cheap clone of
//! its socket id and the sending side of its bounded outbound queue; it exposes no socket.
//!
//! Imports nothing from above `protocol/`, so the channel registry can store handles and the
//! session can use the registry without a cycle.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::socket_id::SocketId;

/// How the writer ends the connection.
#[derive(Debug, Clone)]
pub struct CloseReason {
    /// A frame written just before the close frame (usually a `pusher:error`).
    pub last_frame: Option<String>,
    /// Close code and reason; `None` closes without a code (the client closed first).
    pub code: Option<(u16, String)>,
    /// Deliver what is already queued before closing (not for a client that is too slow).
    pub flush_queue: bool,
}

/// Close code for a client whose outbound queue is full (pusher-js backs off 1 s and reconnects).
pub const CLOSE_SLOW_CONSUMER: u16 = 4100;

struct Shared {
    id: SocketId,
    tx: mpsc::Sender<Message>,
    /// Cancelled once the connection must end; `reason` is set first.
    closing: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// A cheap-clone handle to one live connection.
#[derive(Clone)]
pub struct ConnectionHandle(Arc<Shared>);

impl ConnectionHandle {
    /// A handle and the receiving end of its queue (for the writer).
    pub fn new(id: SocketId, capacity: usize) -> (ConnectionHandle, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Shared { id, tx, closing: CancellationToken::new(), reason: OnceLock::new() };
        (ConnectionHandle(Arc::new(shared)), rx)
    }

    pub fn id(&self) -> SocketId {
        self.0.id
    }

    /// Queues a text frame without waiting. A full queue means the client cannot keep up:
    /// it is closed with 4100 rather than letting it slow the sender or grow memory.
    pub fn send_text(&self, text: Utf8Bytes) {
        self.send(Message::Text(text));
    }

    /// Queues any frame, with the same slow-consumer policy as [`Self::send_text`].
    pub fn send(&self, msg: Message) {
        match self.0.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.close(CloseReason {
                last_frame: None,
                code: Some((CLOSE_SLOW_CONSUMER, "Client too slow: outbound queue full".into())),
                flush_queue: false,
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Asks the writer to end the connection. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.0.reason.set(reason).is_ok() {
            self.0.closing.cancel();
        }
    }

    /// Resolves once [`Self::close`] was called. Cancel-safe.
    pub async fn closed(&self) {
        self.0.closing.cancelled().await
    }

    pub fn is_closing(&self) -> bool {
        self.0.closing.is_cancelled()
    }

    /// The reason given to [`Self::close`], if any.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.0.reason.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_closes_with_4100_and_never_blocks() {
        let (h, mut rx) = ConnectionHandle::new(SocketId::random(), 2);
        for _ in 0..5 {
            h.send_text(Utf8Bytes::from_static("x"));
        }
        assert!(h.is_closing());
        assert_eq!(h.close_reason().unwrap().code.as_ref().unwrap().0, 4100);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
    }
}
