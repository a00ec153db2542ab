//! `floor`: what this machine's kernel charges for the fan-out's unavoidable part, with no
//! server at all. One thread writes one small frame to each of N connected loopback sockets,
//! `rate` rounds per second (0 = flat out), while a second thread reads them all. The writer's
//! own CPU per write is the lower bound for any server that delivers one message per socket
//! with one `send` (every delivery at a rate where nothing can be batched); its time per
//! round is the lower bound of send-to-arrival latency for the last socket of a round.

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

pub fn run(sockets: usize, rate: u64, size: usize, duration: u64) -> Value {
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
    // The reader: polls every socket without blocking, like one event-loop thread would
    // after epoll; its CPU is reported but is not the figure that matters.
    let reader = {
        let (done, received) = (done.clone(), received.clone());
        std::thread::spawn(move || {
            let start = thread_cpu();
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
                    break;
                }
                if !any {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
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
    while Instant::now() < until {
        if rate > 0 {
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
            next += Duration::from_secs_f64(1.0 / rate as f64);
        }
        let round = Instant::now();
        for s in writers.iter_mut() {
            s.write_all(&frame).expect("loopback write");
        }
        rounds_us.push(round.elapsed().as_micros() as u32);
        written.fetch_add(sockets as u64, Ordering::Relaxed);
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
