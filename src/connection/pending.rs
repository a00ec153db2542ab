//! `Pending`: frames queued now and written later, after the caller has let go of its locks.
//! A fan-out queues to every recipient under the channel's lock (so everybody sees one order)
//! and then calls [`Pending::flush`] outside it, which writes the owed sockets itself or hands
//! them to flush jobs. Dropping a `Pending` flushes too, as a backstop, so no path strands a
//! queue; flush jobs likewise write what they hold even if they are dropped unrun.

use super::handle::{ConnectionHandle, Pushed};
use super::outgoing::Outgoing;

/// Above this many owed sockets a fan-out does not write them itself: it hands them to flush
/// jobs, tasks of [`JOB_SOCKETS`] sockets each that the runtime spreads over its threads.
/// A job yields once before writing, so frames that other publishers queue meanwhile go out
/// in the same write.
const INLINE_FLUSHES: usize = 16;
const JOB_SOCKETS: usize = 128;
/// Writes between a [`Pace::YieldToIo`] job's yields.
const JOB_BURST: usize = 32;

/// Sockets that are owed a write of what was queued for them.
#[must_use = "call flush() once the locks are released"]
pub(crate) struct Pending {
    owed: Vec<ConnectionHandle>,
    /// Up to this many owed sockets are written by the caller itself.
    inline_max: usize,
    /// How this caller's flush jobs give way (see [`flush_job`]).
    pace: Pace,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending::new()
    }
}

impl Pending {
    /// The caller writes up to [`INLINE_FLUSHES`] sockets itself; a larger fan-out goes to
    /// flush jobs that yield to the I/O poll between bursts.
    pub(crate) fn new() -> Pending {
        Pending {
            owed: Vec::new(),
            inline_max: INLINE_FLUSHES,
            pace: Pace::YieldToIo,
        }
    }

    /// Every write goes to flush jobs that write straight through, for a caller that must not
    /// spend its own time on syscalls (the one task delivering a whole cluster's events).
    /// Outside a tokio runtime (unit tests) every write is made inline instead.
    pub(crate) fn all_to_jobs() -> Pending {
        Pending {
            owed: Vec::new(),
            inline_max: 0,
            pace: Pace::StraightThrough,
        }
    }

    /// Queues `frame` for `handle`; it is written by the next [`Self::flush`].
    pub(crate) fn send(&mut self, handle: &ConnectionHandle, frame: Outgoing) {
        if let Pushed::Flush = handle.push(frame) {
            self.owed.push(handle.clone());
        }
    }

    /// Writes every owed socket, itself or through flush jobs. Call it after releasing the
    /// locks the frames were queued under.
    pub(crate) fn flush(&mut self) {
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

impl Drop for Pending {
    /// The backstop: a path that returned early still writes what it queued.
    fn drop(&mut self) {
        self.flush();
    }
}

/// How a flush job shares its thread once it has started writing.
#[derive(Clone, Copy)]
enum Pace {
    /// After every [`JOB_BURST`] writes it waits until the thread next polls for I/O: the
    /// triggers arriving meanwhile are handled first and their frames join the same writes
    /// (measured: flat-out fan-out gains about a quarter in throughput per CPU).
    YieldToIo,
    /// It writes all its sockets in one go. For jobs of the cluster link: that one task stays
    /// busy under a backlog, and jobs waiting for the I/O poll fell so far behind it that
    /// subscribers' queues overflowed (measured).
    StraightThrough,
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
        if let Pace::YieldToIo = pace {
            if job.done > 0 && job.done.is_multiple_of(JOB_BURST) {
                tokio::task::yield_now().await;
            }
        }
        // Counted before the write: a write is never made twice.
        job.done += 1;
        job.handles[job.done - 1].write_queue(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::handle::tests::connected;
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    #[tokio::test]
    async fn a_flush_job_dropped_unrun_still_writes_what_it_claimed() {
        use tokio::io::AsyncReadExt;
        let (mut client, _rd, h) = connected(16).await;
        let mut out = Pending::new();
        out.send(&h, Outgoing::text(Utf8Bytes::from_static("hello")));
        assert!(h.claim(), "an owed queue can be claimed");
        let handles = std::mem::take(&mut out.owed);
        // A runtime shutting down drops spawned futures without polling them.
        drop(flush_job(Job { handles, done: 0 }, Pace::YieldToIo));
        let mut got = [0u8; 7];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_exact(&mut got),
        )
        .await
        .expect("the claimed frame is written")
        .unwrap();
        assert_eq!(&got, b"\x81\x05hello");
        assert!(!h.is_parked(), "senders flush for themselves again");
    }
}
