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
//! [`Flushes`]). Only when the kernel's send buffer is full does the connection's writer task
//! take over (see `writer.rs`), waiting until the socket is writable again.
//!
//! Every write to the socket happens under the queue's lock, so frames go out whole and in
//! queue order. The queue never holds more than `capacity` frames: a client that cannot keep
//! up is closed with 4100 instead of slowing the sender or growing memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Utf8Bytes;

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

/// Queue slots an idle connection keeps allocated.
const KEEP_SLOTS: usize = 16;
/// Writes up to this size are copied into one buffer instead of gathered.
const SMALL_WRITE: usize = 2048;
/// Frames gathered into one `writev` at most (two slices each).
const FRAMES_PER_WRITE: usize = 64;

/// One queued frame: its WebSocket header, and a payload shared with every other recipient.
/// Built once per broadcast; a clone per recipient copies the header and counts a reference.
#[derive(Clone)]
pub struct Outgoing {
    head: [u8; 10],
    head_len: u8,
    body: Bytes,
}

impl Outgoing {
    /// A server-to-client text frame (unmasked, final) around `text`.
    pub fn text(text: Utf8Bytes) -> Outgoing {
        Outgoing::text_bytes(text.into())
    }

    fn text_bytes(body: Bytes) -> Outgoing {
        let mut head = [0u8; 10];
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let mut cursor = io::Cursor::new(&mut head[..]);
        header
            .format(body.len() as u64, &mut cursor)
            .expect("a frame header fits in 10 bytes");
        let head_len = cursor.position() as u8;
        Outgoing {
            head,
            head_len,
            body,
        }
    }

    /// Bytes that are already a complete frame (or several).
    fn raw(bytes: Bytes) -> Outgoing {
        Outgoing {
            head: [0; 10],
            head_len: 0,
            body: bytes,
        }
    }

    fn len(&self) -> usize {
        self.head_len as usize + self.body.len()
    }
}

#[derive(Default)]
struct Outbound {
    queue: VecDeque<Outgoing>,
    /// Bytes of the front frame already written (a partial write).
    front_written: usize,
    /// Somebody other than the next sender owns flushing: a flush job that claimed the
    /// queue, or the writer task because the socket's send buffer was full.
    parked: bool,
    /// The close frame is queued: nothing more is accepted.
    sealed: bool,
}

impl Outbound {
    /// Writes queued frames until the queue is empty (`Ok(true)`) or the socket would block
    /// (`Ok(false)`). Partial writes resume at the exact byte where they stopped.
    fn write_to(&mut self, socket: &OwnedWriteHalf) -> io::Result<bool> {
        while !self.queue.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE * 2];
                let mut n = 0;
                let mut skip = self.front_written;
                for out in self.queue.iter().take(FRAMES_PER_WRITE) {
                    for part in [&out.head[..out.head_len as usize], &out.body[..]] {
                        if skip >= part.len() {
                            skip -= part.len();
                            continue;
                        }
                        slices[n] = IoSlice::new(&part[skip..]);
                        skip = 0;
                        n += 1;
                    }
                }
                let total: usize = slices[..n].iter().map(|s| s.len()).sum();
                let result = if total <= SMALL_WRITE {
                    // One contiguous write: cheaper than a gather for the kernel
                    // (measured) and the copy is a few hundred bytes.
                    let mut buf = [0u8; SMALL_WRITE];
                    let mut at = 0;
                    for s in &slices[..n] {
                        buf[at..at + s.len()].copy_from_slice(s);
                        at += s.len();
                    }
                    socket.try_write(&buf[..at])
                } else {
                    socket.try_write_vectored(&slices[..n])
                };
                match result {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(w) => w,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            let mut left = written + self.front_written;
            self.front_written = 0;
            while let Some(front) = self.queue.front() {
                if left < front.len() {
                    self.front_written = left;
                    break;
                }
                left -= front.len();
                self.queue.pop_front();
            }
        }
        // A burst may have grown the queue to `capacity` slots; an idle connection keeps few.
        if self.queue.capacity() > KEEP_SLOTS {
            self.queue.shrink_to(KEEP_SLOTS);
        }
        Ok(true)
    }
}

struct Shared {
    id: SocketId,
    capacity: usize,
    out: Mutex<Outbound>,
    /// `None` only for handles made in unit tests: frames then just queue.
    socket: Option<OwnedWriteHalf>,
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

/// What a push left for the caller to do.
#[must_use]
enum Pushed {
    /// The queue was empty: the caller must flush it.
    Flush,
    /// Queued behind frames that somebody else is flushing, or dropped (closing/full).
    Done,
}

/// A cheap-clone handle to one live connection.
#[derive(Clone)]
pub struct ConnectionHandle(Arc<Shared>);

impl ConnectionHandle {
    /// A handle writing to `socket`, whose queue holds at most `capacity` frames.
    pub fn new(id: SocketId, capacity: usize, socket: Option<OwnedWriteHalf>) -> ConnectionHandle {
        ConnectionHandle(Arc::new(Shared {
            id,
            capacity,
            out: Mutex::new(Outbound::default()),
            socket,
            parked: Notify::new(),
            reason: OnceLock::new(),
            session: AtomicWaker::new(),
        }))
    }

    pub fn id(&self) -> SocketId {
        self.0.id
    }

    /// Sends a text frame now: queues it and, unless frames are already waiting (then it goes
    /// out with them), writes the queue to the socket before returning. Never waits.
    pub fn send_text(&self, text: Utf8Bytes) {
        self.send(Outgoing::text(text));
    }

    /// Sends bytes that already form complete frames (pings, pongs, close replies).
    pub fn send_raw(&self, frames: Bytes) {
        self.send(Outgoing::raw(frames));
    }

    fn send(&self, out: Outgoing) {
        if let Pushed::Flush = self.push(out) {
            self.flush();
        }
    }

    /// Queues a frame; with `Pushed::Flush` the caller owes a [`Self::flush`].
    fn push(&self, out: Outgoing) -> Pushed {
        let mut st = self.0.out.lock();
        if st.sealed {
            return Pushed::Done;
        }
        if st.queue.len() >= self.0.capacity {
            drop(st);
            self.close(CloseReason {
                last_frame: None,
                code: Some((
                    CLOSE_SLOW_CONSUMER,
                    "Client too slow: outbound queue full".into(),
                )),
                flush_queue: false,
            });
            return Pushed::Done;
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(out);
        if was_empty && !st.parked {
            Pushed::Flush
        } else {
            Pushed::Done
        }
    }

    /// Writes what is queued. If the socket is full, the writer task takes over.
    fn flush(&self) {
        self.write_queue(false);
    }

    /// Writes the queue for a sender (`claimed` false: nothing to do if somebody else owns
    /// it) or for the flush job that [claimed](Self::claim) it (then it is the owner, unless
    /// the queue was sealed since: the writer finishes a closing connection). A full socket
    /// hands the rest to the writer task; a drained queue is the next sender's again.
    fn write_queue(&self, claimed: bool) {
        let Some(socket) = &self.0.socket else { return };
        let mut st = self.0.out.lock();
        if st.sealed || (st.parked && !claimed) {
            return;
        }
        match st.write_to(socket) {
            Ok(true) => st.parked = false,
            Ok(false) => self.park(st),
            Err(_) => {
                drop(st);
                self.close_now();
            }
        }
    }

    /// Takes responsibility for flushing the queue on behalf of a flush job (a large
    /// fan-out; see [`Flushes`]): until its job's [`Self::write_queue`], senders only append.
    fn claim(&self) -> bool {
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
        self.close(CloseReason {
            last_frame: None,
            code: None,
            flush_queue: false,
        });
    }

    /// Asks the writer to end the connection. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.0.reason.set(reason).is_ok() {
            self.0.session.wake();
            self.0.parked.notify_one();
        }
    }

    /// Resolves once [`Self::close`] was called. Cancel-safe; for one waiter (the session).
    pub async fn closed(&self) {
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

    pub fn is_closing(&self) -> bool {
        self.0.reason.get().is_some()
    }

    /// The reason given to [`Self::close`], if any.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.0.reason.get()
    }

    // ---- for the writer task ----

    /// Resolves when the writer has work: flushing handed over, or closing (check
    /// [`Self::is_closing`]). A wake-up that came while it was busy is kept for later.
    pub(super) async fn wake(&self) {
        self.0.parked.notified().await
    }

    pub(super) fn socket(&self) -> Option<&OwnedWriteHalf> {
        self.0.socket.as_ref()
    }

    /// Flushes on behalf of the writer: `Ok(true)` once the queue is empty (then senders
    /// flush for themselves again), `Ok(false)` while the socket is still full.
    pub(super) fn flush_parked(&self) -> io::Result<bool> {
        let Some(socket) = &self.0.socket else {
            return Ok(true);
        };
        let mut st = self.0.out.lock();
        let drained = st.write_to(socket)?;
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
            let keep = usize::from(st.front_written > 0);
            st.queue.truncate(keep);
        }
        if let Some(text) = reason.and_then(|r| r.last_frame.clone()) {
            st.queue.push_back(Outgoing::text_bytes(Bytes::from(text)));
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
            st.queue.push_back(Outgoing::raw(bytes.into()));
        }
        st.sealed = true;
        st.parked = true;
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.0.out.lock().queue.len()
    }
}

/// Frames queued now and written later, after the caller has let go of its locks: a
/// fan-out queues to every recipient under the channel's lock (so everybody sees one order)
/// and writes the sockets outside it when this is dropped, itself or through flush jobs
/// (which write what they hold even if they are dropped unrun, so no path strands a queue).
pub struct Flushes {
    owed: Vec<ConnectionHandle>,
    /// Up to this many owed sockets are written by the caller itself.
    inline_max: usize,
    /// How this caller's flush jobs give way (see [`flush_job`]).
    pace: Pace,
}

impl Default for Flushes {
    fn default() -> Flushes {
        Flushes {
            owed: Vec::new(),
            inline_max: INLINE_FLUSHES,
            pace: Pace::Defer,
        }
    }
}

impl Flushes {
    /// Leaves every write to flush jobs, for a caller that must not spend its own time on
    /// syscalls (one task delivering a whole cluster's events). Outside a tokio runtime (unit
    /// tests) every write is made inline instead.
    pub fn deferred() -> Flushes {
        Flushes {
            owed: Vec::new(),
            inline_max: 0,
            pace: Pace::Through,
        }
    }

    /// Queues `frame` for `handle`; it is written when this is dropped (or by a flush job
    /// started then).
    pub fn send(&mut self, handle: &ConnectionHandle, frame: Outgoing) {
        if let Pushed::Flush = handle.push(frame) {
            self.owed.push(handle.clone());
        }
    }
}

/// Above this many owed sockets a fan-out does not write them itself: it hands them to flush
/// jobs, tasks of [`JOB_SOCKETS`] sockets each that the runtime spreads over its threads.
/// A job yields once before writing, so frames that other publishers queue meanwhile go out
/// in the same write.
const INLINE_FLUSHES: usize = 16;
const JOB_SOCKETS: usize = 128;
/// Writes between a [`Pace::Defer`] job's yields.
const JOB_BURST: usize = 32;

/// How a flush job shares its thread once it has started writing.
#[derive(Clone, Copy)]
enum Pace {
    /// After every [`JOB_BURST`] writes it waits until the thread next polls for I/O: the
    /// triggers arriving meanwhile are handled first and their frames join the same writes
    /// (measured: flat-out fan-out gains about a quarter in throughput per CPU).
    Defer,
    /// It writes all its sockets in one go. For jobs of the cluster link: that one task stays
    /// busy under a backlog, and jobs waiting for the I/O poll fell so far behind it that
    /// subscribers' queues overflowed (measured).
    Through,
}

/// The sockets a flush job owes a write. Whatever it has not written when it is dropped
/// (spawned while the runtime shuts down, or cancelled at a yield) is written then.
struct Job {
    handles: Vec<ConnectionHandle>,
    done: usize,
}

impl Drop for Job {
    fn drop(&mut self) {
        for h in &self.handles[self.done..] {
            h.write_queue(true);
        }
    }
}

async fn flush_job(mut job: Job, pace: Pace) {
    tokio::task::yield_now().await;
    while job.done < job.handles.len() {
        if let Pace::Defer = pace {
            if job.done > 0 && job.done.is_multiple_of(JOB_BURST) {
                tokio::task::yield_now().await;
            }
        }
        // Counted before the write: a write is never made twice.
        job.done += 1;
        job.handles[job.done - 1].write_queue(true);
    }
}

impl Drop for Flushes {
    fn drop(&mut self) {
        let runtime = match self.owed.len() > self.inline_max {
            true => tokio::runtime::Handle::try_current().ok(),
            false => None,
        };
        let Some(runtime) = runtime else {
            for h in self.owed.drain(..) {
                h.flush();
            }
            return;
        };
        self.owed.retain(ConnectionHandle::claim);
        for job in self.owed.chunks(JOB_SOCKETS) {
            let job = Job {
                handles: job.to_vec(),
                done: 0,
            };
            runtime.spawn(flush_job(job, self.pace));
        }
        self.owed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_closes_with_4100_and_never_blocks() {
        let h = ConnectionHandle::new(SocketId::random(), 2, None);
        for _ in 0..5 {
            h.send_text(Utf8Bytes::from_static("x"));
        }
        assert!(h.is_closing());
        assert_eq!(h.close_reason().unwrap().code.as_ref().unwrap().0, 4100);
        assert_eq!(h.queued(), 2);
    }

    #[test]
    fn text_frame_headers_use_the_shortest_length_encoding() {
        for (len, head) in [
            (5usize, vec![0x81, 5]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65535, vec![0x81, 126, 0xff, 0xff]),
            (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let out = Outgoing::text_bytes(Bytes::from(vec![b'a'; len]));
            assert_eq!(&out.head[..out.head_len as usize], &head[..], "len {len}");
            assert_eq!(out.len(), head.len() + len);
        }
    }

    /// A handle writing to a real loopback socket (queue of `capacity`), the client end, and
    /// the server's read half (kept open).
    async fn connected(
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
        let h = ConnectionHandle::new(SocketId::random(), capacity, Some(wr));
        (client, rd, h)
    }

    #[tokio::test]
    async fn a_flush_job_dropped_unrun_still_writes_what_it_claimed() {
        use tokio::io::AsyncReadExt;
        let (mut client, _rd, h) = connected(16).await;
        let mut out = Flushes::default();
        out.send(&h, Outgoing::text(Utf8Bytes::from_static("hello")));
        assert!(h.claim(), "an owed queue can be claimed");
        let handles = std::mem::take(&mut out.owed);
        // A runtime shutting down drops spawned futures without polling them.
        drop(flush_job(Job { handles, done: 0 }, Pace::Defer));
        let mut got = [0u8; 7];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_exact(&mut got),
        )
        .await
        .expect("the claimed frame is written")
        .unwrap();
        assert_eq!(&got, b"\x81\x05hello");
        assert!(!h.0.out.lock().parked, "senders flush for themselves again");
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
        assert!(
            h.0.out.lock().parked,
            "a full socket hands over to the writer"
        );
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
            h.0.out.lock().queue.capacity() <= KEEP_SLOTS,
            "a drained queue gives back what the burst allocated"
        );
    }
}
