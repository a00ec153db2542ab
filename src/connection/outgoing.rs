//! Outgoing frames and the per-connection queue they wait in: a frame is built once per
//! broadcast (its WebSocket header beside a payload shared by every recipient), and a queue
//! is written to its socket in as few syscalls as the kernel allows (one `writev` of many
//! frames, or one copy for small writes), resuming a partial write at the exact byte where it
//! stopped.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::limits::{Budget, UNCHARGED};
use super::socket::WriteSide;
use crate::stats::AppStats;

/// Queue slots an idle connection keeps allocated.
const KEEP_SLOTS: usize = 16;
/// Writes up to this size are copied into one buffer instead of gathered.
const SMALL_WRITE: usize = 2048;
/// Frames gathered into one `writev` at most (two slices each).
const FRAMES_PER_WRITE: usize = 64;

/// One queued frame: its WebSocket header, and a payload shared with every other recipient.
/// Built once per broadcast; a clone per recipient copies the header and counts a reference.
#[derive(Clone)]
pub(crate) struct Outgoing {
    head: [u8; 10],
    head_len: u8,
    body: Bytes,
}

impl Outgoing {
    /// A server-to-client text frame (unmasked, final) around `text`.
    pub(crate) fn text(text: Utf8Bytes) -> Outgoing {
        Outgoing::text_bytes(text.into())
    }

    pub(super) fn text_bytes(body: Bytes) -> Outgoing {
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
    pub(super) fn raw(bytes: Bytes) -> Outgoing {
        Outgoing {
            head: [0; 10],
            head_len: 0,
            body: bytes,
        }
    }

    /// The payload (for tests and fuzz targets that read what was queued).
    #[cfg(any(test, fuzzing))]
    pub(super) fn body(&self) -> &Bytes {
        &self.body
    }

    pub(super) fn len(&self) -> usize {
        self.head_len as usize + self.body.len()
    }
}

#[derive(Default)]
pub(super) struct Outbound {
    pub(super) queue: VecDeque<Outgoing>,
    /// Bytes of the front frame already written (a partial write).
    pub(super) front_written: usize,
    /// Somebody other than the next sender owns flushing: a flush job that claimed the
    /// queue, or the writer task because the socket's send buffer was full.
    pub(super) parked: bool,
    /// The close frame is queued: nothing more is accepted.
    pub(super) sealed: bool,
    /// Bytes queued and not yet written.
    pub(super) bytes: usize,
    /// Of those, the bytes charged to the shared budget (see [`Self::settle`]).
    pub(super) charged: usize,
}

impl Outbound {
    /// Queues `out`, counting its bytes.
    pub(super) fn push(&mut self, out: Outgoing) {
        self.bytes += out.len();
        self.queue.push_back(out);
    }

    /// Bytes queued, were `len` more queued, besides the larger of the frame being written
    /// (what is left of it) and the new one: what the per-connection byte bound is held
    /// against (see `ConnectionHandle::push`).
    pub(super) fn beyond_largest(&self, len: usize) -> usize {
        let front = self
            .queue
            .front()
            .map_or(0, |f| f.len() - self.front_written);
        self.bytes + len - front.max(len)
    }

    /// Drops the frames not yet started (a partly written one is kept: the client would
    /// otherwise read garbage); returns how many.
    pub(super) fn drop_unstarted(&mut self) -> usize {
        let keep = usize::from(self.front_written > 0);
        let dropped = self.queue.len().saturating_sub(keep);
        self.queue.truncate(keep);
        self.bytes = self.queue.iter().map(Outgoing::len).sum::<usize>() - self.front_written;
        dropped
    }

    /// Brings the budget's charge for this queue up to date: a backlog beyond
    /// [`UNCHARGED`] is charged in full, a smaller one not at all.
    pub(super) fn settle(&mut self, budget: &Budget) {
        let due = if self.bytes > UNCHARGED {
            self.bytes
        } else {
            0
        };
        if due != self.charged {
            budget.recharge(self.charged, due);
            self.charged = due;
        }
    }

    /// Writes queued frames until the queue is empty (`Ok(true)`) or the socket would block
    /// (`Ok(false)`). Partial writes resume at the exact byte where they stopped. What was
    /// written is counted in `stats` once per call (frames when complete).
    pub(super) fn write_to(&mut self, socket: &WriteSide, stats: &AppStats) -> io::Result<bool> {
        let mut sent = (0, 0);
        let result = self.write_some(socket, &mut sent);
        if sent.1 > 0 {
            stats.sent.add(sent.0, sent.1);
        }
        result
    }

    /// [`Self::write_to`], adding the frames completed and the bytes written to `sent`.
    fn write_some(&mut self, socket: &WriteSide, sent: &mut (u64, u64)) -> io::Result<bool> {
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
            self.bytes -= written;
            sent.1 += written as u64;
            let mut left = written + self.front_written;
            self.front_written = 0;
            while let Some(front) = self.queue.front() {
                if left < front.len() {
                    self.front_written = left;
                    break;
                }
                left -= front.len();
                self.queue.pop_front();
                sent.0 += 1;
            }
        }
        // A burst may have grown the queue to `capacity` slots; an idle connection keeps few.
        if self.queue.capacity() > KEEP_SLOTS {
            self.queue.shrink_to(KEEP_SLOTS);
        }
        // Over TLS, records the kernel did not take yet: the writer task finishes them.
        socket.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
