//! `floor`: what this machine's kernel charges for the fan-out's unavoidable part, with no
//! server at all. One thread writes one small frame to each of N connected loopback sockets,
//! `rate` rounds per second (0 = flat out), while a second thread reads them all. The writer's
//! own CPU per write is the lower bound for any server that delivers one message per socket
//! with one `send` (every delivery at a rate where nothing can be batched); its time per
//! round is the lower bound of send-to-arrival latency for the last socket of a round.
//!
//! The default reader polls every socket in turn and sleeps between passes, so no write ever
//! has to wake it: the cheapest receiver there is. `--epoll-reader` reads as real clients and
//! the bench's own receivers do, one task per socket on a tokio thread that sleeps in
//! `epoll_wait`, so a write to an idle reader also pays for waking it. `--per-round N` writes
//! to N sockets per round, in turn, instead of all of them: at a high rate and a small N each
//! socket hears a message now and then, as in the `channels` scenario.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// (user, system) CPU seconds of the calling thread.
fn thread_cpu() -> (f64, f64) {
    super::cpu_split("thread-self")
}

#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Rounds per second (one write per socket each); 0 = flat out
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Payload bytes per frame
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Write to this many sockets per round, in turn, instead of to all of them
    #[arg(long)]
    per_round: Option<usize>,
    /// Read on a tokio thread that sleeps in `epoll_wait`, as clients do, instead of
    /// polling every socket in turn (which no write ever has to wake)
    #[arg(long)]
    epoll_reader: bool,
}

pub fn run(o: Options) -> Value {
    let Options {
        sockets,
        rate,
        size,
        duration,
        per_round,
        epoll_reader,
    } = o;
    let per_round = per_round.unwrap_or(sockets).clamp(1, sockets.max(1));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let mut writers = Vec::with_capacity(sockets);
    let mut readers = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nodelay(true).unwrap();
        client.set_nonblocking(true).unwrap();
        writers.push(server);
        readers.push(client);
    }
    // A server text frame: 2-byte header (payload < 126 bytes) or 4-byte header.
    let mut frame = if size < 126 {
        vec![0x81, size as u8]
    } else {
        vec![0x81, 126, (size >> 8) as u8, size as u8]
    };
    frame.extend(std::iter::repeat_n(b'x', size));

    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    // The reader's CPU is reported but is not the figure that matters.
    let reader = {
        let (done, received) = (done.clone(), received.clone());
        std::thread::spawn(move || {
            let start = thread_cpu();
            let bytes = if epoll_reader {
                read_with_epoll(readers, &done)
            } else {
                read_by_polling(readers, &done)
            };
            received.store(bytes, Ordering::Release);
            let end = thread_cpu();
            end.0 + end.1 - start.0 - start.1
        })
    };

    let start_cpu = thread_cpu();
    let started = Instant::now();
    let until = started + Duration::from_secs(duration);
    let mut rounds_us = Vec::new();
    let mut next = started;
    let mut cursor = 0;
    while Instant::now() < until {
        if rate > 0 {
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
            next += Duration::from_secs_f64(1.0 / rate as f64);
        }
        let round = Instant::now();
        for _ in 0..per_round {
            writers[cursor].write_all(&frame).expect("loopback write");
            cursor = (cursor + 1) % sockets;
        }
        rounds_us.push(round.elapsed().as_micros() as u32);
        written.fetch_add(per_round as u64, Ordering::Relaxed);
    }
    let end_cpu = thread_cpu();
    let wall = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Release);
    let reader_cpu = reader.join().unwrap_or(0.0);

    let sends = written.load(Ordering::Relaxed);
    let user = end_cpu.0 - start_cpu.0;
    let sys = end_cpu.1 - start_cpu.1;
    rounds_us.sort_unstable();
    let pct = |p: f64| {
        let i = ((rounds_us.len() as f64 - 1.0) * p).round() as usize;
        rounds_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let per_million = |cpu: f64| super::round(cpu / sends.max(1) as f64 * 1e6, 2);
    json!({
        "sockets": sockets,
        "rate": rate,
        "per_round": per_round,
        "epoll_reader": epoll_reader,
        "size": size,
        "sends": sends,
        "sends_per_s": (sends as f64 / wall).round(),
        "delivery_ratio": super::round(
            received.load(Ordering::Acquire) as f64 / (sends as f64 * frame.len() as f64).max(1.0), 4),
        "writer_cpu_s_per_million": per_million(user + sys),
        "writer_kernel_share": super::round(sys / (user + sys).max(1e-9), 3),
        "reader_cpu_s_per_million": per_million(reader_cpu),
        "round_ms_p50": pct(0.5),
        "round_ms_p99": pct(0.99),
    })
}

/// Polls every socket without blocking, like one event-loop thread after `epoll` would, and
/// sleeps 200 µs when a pass found nothing: no write ever has to wake it.
fn read_by_polling(mut readers: Vec<TcpStream>, done: &AtomicBool) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let finished = done.load(Ordering::Acquire);
        let mut any = false;
        for s in readers.iter_mut() {
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes += n as u64;
                any = true;
            }
        }
        if finished && !any {
            return bytes;
        }
        if !any {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// One task per socket on a single-threaded tokio runtime: the thread sleeps in
/// `epoll_wait` when nothing has arrived, as a client's event loop does.
fn read_with_epoll(readers: Vec<TcpStream>, done: &AtomicBool) -> u64 {
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let tasks: Vec<_> = readers
            .into_iter()
            .map(|s| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::from_std(s).expect("tokio socket");
                    let mut buf = [0u8; 4096];
                    let mut bytes = 0u64;
                    loop {
                        tokio::select! {
                            r = s.read(&mut buf) => match r {
                                Ok(0) | Err(_) => break,
                                Ok(n) => bytes += n as u64,
                            },
                            _ = stop.cancelled() => break,
                        }
                    }
                    bytes
                })
            })
            .collect();
        while !done.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        let mut bytes = 0;
        for t in tasks {
            bytes += t.await.unwrap_or(0);
        }
        bytes
    })
}
