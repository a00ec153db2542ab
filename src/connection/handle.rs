//! `ConnectionHandle`: what the rest of the server holds of a connection. A cheap clone of
//! its socket id, its bounded outbound queue and the write half of its TCP socket.
//!
//! Frames are written by whoever queues them, not by a task per connection: the sender that
//! finds the queue empty becomes responsible for flushing it and writes it straight to the
//! socket (one `writev` of every queued frame, each frame's header beside the shared
//! payload). Senders that find frames already queued only append: the responsible one writes
//! theirs too, in the same call. So an idle socket costs no task wake-up per message, and a
//! busy one gets its messages in batches as large as the load (group commit). A large
//! fan-out leaves its writes to flush jobs, a few tasks of many sockets each (see
//! [`Pending`](super::Pending)). Only when the kernel's send buffer is full does the connection's writer task
//! take over (see `writer.rs`), waiting until the socket is writable again.
//!
//! Every write to the socket happens under the queue's lock, so frames go out whole and in
//! queue order. The queue never holds more than `capacity` frames: a client that cannot keep
//! up is closed with 4100 instead of slowing the sender or growing memory.

use std::io;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::close::{CloseReason, SLOW_CONSUMER};
use super::limits::{OutboundLimits, UNCHARGED};
use super::outgoing::{Outbound, Outgoing};
use super::socket::WriteSide;
use super::socket_id::SocketId;

struct Shared {
    id: SocketId,
    limits: OutboundLimits,
    out: Mutex<Outbound>,
    /// `None` only for handles made in unit tests: frames then just queue.
    socket: Option<WriteSide>,
    /// Wakes the writer task when it must take over (parked) or close.
    parked: Notify,
    // (The writer waits on `parked` alone: polling the cancellation token there would take
    // its lock on every wake-up, which the profile showed.)
    /// Set once the connection must end; the first reason wins.
    reason: OnceLock<CloseReason>,
    /// The session waiting in [`ConnectionHandle::closed`]. A per-connection waker, not a
    /// cancellation token: that would take a lock on every poll, i.e. on every frame read.
    session: AtomicWaker,
}

impl Drop for Shared {
    /// What a closed connection's backlog was charged goes back to the budget.
    fn drop(&mut self) {
        let st = self.out.get_mut();
        self.limits.budget.recharge(st.charged, 0);
    }
}

/// What a push left for the caller to do.
#[must_use]
pub(super) enum Pushed {
    /// The queue was empty: the caller must flush it.
    Flush,
    /// Queued behind frames that somebody else is flushing, or dropped (closing/full).
    Done,
}

/// A cheap-clone handle to one live connection.
#[derive(Clone)]
pub(crate) struct ConnectionHandle(Arc<Shared>);

impl ConnectionHandle {
    /// A handle writing to `socket`, whose queue is bounded by `limits`.
    pub(crate) fn new(
        id: SocketId,
        limits: OutboundLimits,
        socket: Option<WriteSide>,
    ) -> ConnectionHandle {
        ConnectionHandle(Arc::new(Shared {
            id,
            limits,
            out: Mutex::new(Outbound::default()),
            socket,
            parked: Notify::new(),
            reason: OnceLock::new(),
            session: AtomicWaker::new(),
        }))
    }

    pub(crate) fn id(&self) -> SocketId {
        self.0.id
    }

    /// Sends a text frame now: queues it and, unless frames are already waiting (then it goes
    /// out with them), writes the queue to the socket before returning. Never waits.
    pub(crate) fn send_text(&self, text: Utf8Bytes) {
        self.send(Outgoing::text(text));
    }

    /// Sends bytes that already form complete frames (pings, pongs, close replies).
    pub(crate) fn send_raw(&self, frames: Bytes) {
        self.send(Outgoing::raw(frames));
    }

    fn send(&self, out: Outgoing) {
        if let Pushed::Flush = self.push(out) {
            self.flush();
        }
    }

    /// Queues a frame; with `Pushed::Flush` the caller owes a [`Self::flush`].
    pub(super) fn push(&self, out: Outgoing) -> Pushed {
        let mut st = self.0.out.lock();
        if st.sealed {
            return Pushed::Done;
        }
        let limits = &self.0.limits;
        let (len, was_empty) = (out.len(), st.queue.is_empty());
        // A frame for a connection that is keeping up goes out at once, whatever its size;
        // a connection that is behind is held to its bounds and to the shared budget. The
        // byte bound leaves out the frame being written (or the new one, if larger): a reply
        // bigger than the bound (a large presence channel's member list) is not, while it
        // goes out, a reason to drop the client for the next event; what queues up behind
        // it still is.
        let full = st.queue.len() >= limits.frames
            || (!was_empty && st.beyond_largest(len) > limits.bytes)
            || (!was_empty
                && st.bytes + len > UNCHARGED
                && limits.budget.must_drop(st.bytes + len, len));
        if full {
            drop(st);
            limits.stats.frames_dropped.add(1);
            if self.close_first(CloseReason::bare(
                SLOW_CONSUMER,
                "Client too slow: outbound queue full",
                false,
            )) {
                limits.stats.slow_consumers.add(1);
            }
            return Pushed::Done;
        }
        st.push(out);
        st.settle(&limits.budget);
        if was_empty && !st.parked {
            Pushed::Flush
        } else {
            Pushed::Done
        }
    }

    /// Writes what is queued. If the socket is full, the writer task takes over.
    pub(super) fn flush(&self) {
        self.write_queue(false);
    }

    /// Writes the queue for a sender (`claimed` false: nothing to do if somebody else owns
    /// it) or for the flush job that [claimed](Self::claim) it (then it is the owner, unless
    /// the queue was sealed since: the writer finishes a closing connection). A full socket
    /// hands the rest to the writer task; a drained queue is the next sender's again.
    pub(super) fn write_queue(&self, claimed: bool) {
        let Some(socket) = &self.0.socket else { return };
        let mut st = self.0.out.lock();
        if st.sealed || (st.parked && !claimed) {
            return;
        }
        let written = st.write_to(socket, &self.0.limits.stats);
        st.settle(&self.0.limits.budget);
        match written {
            Ok(true) => st.parked = false,
            Ok(false) => self.park(st),
            Err(_) => {
                drop(st);
                self.close_now();
            }
        }
    }

    /// Takes responsibility for flushing the queue on behalf of a flush job (a large
    /// fan-out; see [`Pending`](super::Pending)): until its job's [`Self::write_queue`], senders only append.
    pub(super) fn claim(&self) -> bool {
        if self.0.socket.is_none() {
            return false;
        }
        let mut st = self.0.out.lock();
        if st.parked || st.queue.is_empty() {
            return false;
        }
        st.parked = true;
        true
    }

    /// Makes the writer task responsible for the queue, and wakes it.
    fn park(&self, mut st: MutexGuard<'_, Outbound>) {
        st.parked = true;
        drop(st);
        self.0.parked.notify_one();
    }

    /// Ends the connection because its socket failed: nothing more can be written.
    pub(super) fn close_now(&self) {
        self.close(CloseReason::silent(false));
    }

    /// Asks the writer to end the connection. The first reason wins.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.close_first(reason);
    }

    /// [`Self::close`]; true when `reason` was the first (it is the one the client gets).
    fn close_first(&self, reason: CloseReason) -> bool {
        let first = self.0.reason.set(reason).is_ok();
        if first {
            self.0.session.wake();
            self.0.parked.notify_one();
        }
        first
    }

    /// Resolves once [`Self::close`] was called. Cancel-safe; for one waiter (the session).
    pub(crate) async fn closed(&self) {
        std::future::poll_fn(|cx| {
            if self.is_closing() {
                return Poll::Ready(());
            }
            self.0.session.register(cx.waker());
            // Checked again: a close between the first check and `register` woke nobody.
            if self.is_closing() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.0.reason.get().is_some()
    }

    /// The reason given to [`Self::close`], if any.
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.0.reason.get()
    }

    // ---- for the writer task ----

    /// Resolves when the writer has work: flushing handed over, or closing (check
    /// [`Self::is_closing`]). A wake-up that came while it was busy is kept for later.
    pub(super) async fn wake(&self) {
        self.0.parked.notified().await
    }

    pub(super) fn socket(&self) -> Option<&WriteSide> {
        self.0.socket.as_ref()
    }

    /// Flushes on behalf of the writer: `Ok(true)` once the queue is empty (then senders
    /// flush for themselves again), `Ok(false)` while the socket is still full.
    pub(super) fn flush_parked(&self) -> io::Result<bool> {
        let Some(socket) = &self.0.socket else {
            return Ok(true);
        };
        let mut st = self.0.out.lock();
        let drained = st.write_to(socket, &self.0.limits.stats);
        st.settle(&self.0.limits.budget);
        let drained = drained?;
        st.parked = !drained;
        Ok(drained)
    }

    /// Queues the last frames and seals the queue: unless `reason.flush_queue`, frames not yet
    /// started are dropped first (a partly written frame is always finished, or the client
    /// would read garbage). Afterwards only the writer writes.
    pub(super) fn seal(&self, reason: Option<&CloseReason>) {
        let mut st = self.0.out.lock();
        if st.sealed {
            return;
        }
        if !reason.is_some_and(|r| r.flush_queue) {
            let dropped = st.drop_unstarted();
            self.0.limits.stats.frames_dropped.add(dropped as u64);
        }
        if let Some(text) = reason.and_then(|r| r.last_frame.clone()) {
            st.push(Outgoing::text_bytes(Bytes::from(text)));
        }
        if let Some((code, text)) = reason.and_then(|r| r.code.clone()) {
            let frame = Frame::close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: code.into(),
                reason: text.into(),
            }));
            let mut bytes = Vec::with_capacity(frame.len());
            frame
                .format(&mut bytes)
                .expect("writing to a Vec cannot fail");
            st.push(Outgoing::raw(bytes.into()));
        }
        st.settle(&self.0.limits.budget);
        st.sealed = true;
        st.parked = true;
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.0.out.lock().queue.len()
    }

    /// Takes the queued frames' payloads as text (for handles without a socket, in tests and
    /// the fuzz targets).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn take_texts(&self) -> Vec<String> {
        let mut st = self.0.out.lock();
        st.bytes = 0;
        st.queue
            .drain(..)
            .map(|f| String::from_utf8_lossy(f.body()).into_owned())
            .collect()
    }

    #[cfg(test)]
    pub(super) fn is_parked(&self) -> bool {
        self.0.out.lock().parked
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn full_queue_closes_with_4100_and_never_blocks() {
        let h = ConnectionHandle::new(SocketId::random(), OutboundLimits::frames(2), None);
        for _ in 0..5 {
            h.send_text(Utf8Bytes::from_static("x"));
        }
        assert!(h.is_closing());
        assert_eq!(h.close_reason().unwrap().code.as_ref().unwrap().0, 4100);
        assert_eq!(h.queued(), 2);
    }

    /// A handle writing to a real loopback socket (queue of `capacity`), the client end, and
    /// the server's read half (kept open).
    pub(crate) async fn connected(
        capacity: usize,
    ) -> (
        tokio::net::TcpStream,
        tokio::net::tcp::OwnedReadHalf,
        ConnectionHandle,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, wr) = server.into_split();
        let h = ConnectionHandle::new(
            SocketId::random(),
            OutboundLimits::frames(capacity),
            Some(wr.into()),
        );
        (client, rd, h)
    }

    #[tokio::test]
    async fn writes_resume_mid_frame_and_keep_order_when_the_socket_fills() {
        use tokio::io::AsyncReadExt;
        let (mut client, _rd, h) = connected(100_000).await;
        // Far more than the socket buffers hold while nobody reads: the queue parks.
        let frames: Vec<String> = (0..20_000)
            .map(|i| format!("{i:05}{}", "y".repeat(995)))
            .collect();
        for f in &frames {
            h.send_text(Utf8Bytes::from(f.clone()));
        }
        assert!(h.is_parked(), "a full socket hands over to the writer");
        let writer = {
            let h = h.clone();
            tokio::spawn(async move {
                loop {
                    if h.flush_parked().unwrap() {
                        break;
                    }
                    h.socket().unwrap().writable().await.unwrap();
                }
            })
        };
        let mut got = vec![0u8; frames.len() * 1004];
        client.read_exact(&mut got).await.unwrap();
        writer.await.unwrap();
        for (i, chunk) in got.chunks(1004).enumerate() {
            assert_eq!(&chunk[..4], &[0x81, 126, 0x03, 0xe8], "frame {i} header");
            assert_eq!(
                &chunk[4..9],
                format!("{i:05}").as_bytes(),
                "frame {i} in order"
            );
        }
        assert_eq!(h.queued(), 0);
        assert!(
            h.0.out.lock().queue.capacity() <= 16,
            "a drained queue gives back what the burst allocated"
        );
    }
}
