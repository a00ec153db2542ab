//! `ConnectionHandle`: what the rest of the server holds of a connection. A cheap clone of
//! its socket id and its bounded outbound queue; it exposes no socket.
//!
//! The queue is a mutex-guarded `VecDeque` plus a `Notify`, not a channel: a publisher pushes
//! under an uncontended lock and wakes the writer only when the queue was empty, and the
//! writer takes everything queued in one swap, so a burst costs one wake and one flush.
//! Imports nothing from above `protocol/`, so the channel registry can store handles and the
//! session can use the registry without a cycle.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::sync::Notify;
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
    /// Frames waiting for the writer; never longer than `capacity`.
    queue: Mutex<VecDeque<Message>>,
    capacity: usize,
    /// Wakes the writer when the queue stops being empty (stores a permit if it is busy).
    ready: Notify,
    /// Cancelled once the connection must end; `reason` is set first.
    closing: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// A cheap-clone handle to one live connection.
#[derive(Clone)]
pub struct ConnectionHandle(Arc<Shared>);

impl ConnectionHandle {
    /// A handle whose queue holds at most `capacity` frames.
    pub fn new(id: SocketId, capacity: usize) -> ConnectionHandle {
        ConnectionHandle(Arc::new(Shared {
            id,
            queue: Mutex::new(VecDeque::new()),
            capacity,
            ready: Notify::new(),
            closing: CancellationToken::new(),
            reason: OnceLock::new(),
        }))
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
        let was_empty = {
            let mut q = self.0.queue.lock();
            if q.len() >= self.0.capacity {
                None
            } else {
                q.push_back(msg);
                Some(q.len() == 1)
            }
        };
        match was_empty {
            Some(true) => self.0.ready.notify_one(),
            Some(false) => {}
            None => self.close(CloseReason {
                last_frame: None,
                code: Some((
                    CLOSE_SLOW_CONSUMER,
                    "Client too slow: outbound queue full".into(),
                )),
                flush_queue: false,
            }),
        }
    }

    /// Moves every queued frame into `into` (which should be empty), in order.
    pub fn take_queued(&self, into: &mut VecDeque<Message>) {
        std::mem::swap(&mut *self.0.queue.lock(), into);
    }

    /// Resolves when frames may have been queued since the last [`Self::take_queued`].
    pub async fn ready(&self) {
        self.0.ready.notified().await
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
        let h = ConnectionHandle::new(SocketId::random(), 2);
        for _ in 0..5 {
            h.send_text(Utf8Bytes::from_static("x"));
        }
        assert!(h.is_closing());
        assert_eq!(h.close_reason().unwrap().code.as_ref().unwrap().0, 4100);
        let mut got = VecDeque::new();
        h.take_queued(&mut got);
        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn ready_fires_for_a_push_made_while_the_writer_was_busy() {
        let h = ConnectionHandle::new(SocketId::random(), 8);
        h.send_text(Utf8Bytes::from_static("a"));
        // The permit stored by the push is consumed here, as a writer waking up would.
        h.ready().await;
        let mut got = VecDeque::new();
        h.take_queued(&mut got);
        h.send_text(Utf8Bytes::from_static("b"));
        tokio::time::timeout(std::time::Duration::from_secs(1), h.ready())
            .await
            .expect("woken");
    }
}
