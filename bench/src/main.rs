//! resound-bench: a load generator for Pusher-protocol servers on loopback. Each scenario
//! prints one JSON line with throughput, latency, delivery ratio, and the server's and the
//! generator's own CPU time (from /proc) per million messages. Every run is bounded in time
//! and only targets 127.0.0.0/8.

mod floor;
mod presence;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use resound::auth;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use wire::{Http, Ws};

#[derive(Parser)]
#[command(about = "Load generator for Pusher-protocol servers (loopback only)")]
struct Cli {
    /// Server address (must be on 127.0.0.0/8)
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value = "558412")]
    app_id: String,
    #[arg(long, default_value = "q7h2x9v4m1n8b3c6z5k0")]
    key: String,
    #[arg(long, default_value = "w3e8r1t6y9u4i2o7p5a0")]
    secret: String,
    /// PID of the server process, for CPU time and RSS (every scenario but `floor`)
    #[arg(long, default_value_t = 0)]
    server_pid: u32,
    /// Where publishers send their HTTP API calls, when not `--addr`: another node of a
    /// cluster (must be on 127.0.0.0/8)
    #[arg(long)]
    api_addr: Option<SocketAddr>,
    /// PID of the `--api-addr` node, for its CPU time
    #[arg(long, default_value_t = 0)]
    api_pid: u32,
    /// Free-form label copied into the output
    #[arg(long, default_value = "")]
    label: String,
    /// Delivery scenarios: publish from a second generator thread instead of the receivers'
    #[arg(long, global = true)]
    publisher_thread: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// N idle connections, each subscribed to a channel: server RSS per connection
    Idle {
        #[arg(long, default_value_t = 19_000)]
        connections: usize,
    },
    /// S subscribers on one channel, HTTP triggers at a fixed rate (0 = flat out)
    Fanout {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// HTTP connections publishing in parallel (flat out)
        #[arg(long, default_value_t = 4)]
        publishers: usize,
    },
    /// C channels x K subscribers, flat-out triggers to random channels
    Channels {
        #[arg(long, default_value_t = 1000)]
        channels: usize,
        #[arg(long, default_value_t = 5)]
        per_channel: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 8)]
        publishers: usize,
    },
    /// P pairs on private channels whispering to each other at R events/s each
    Whisper {
        #[arg(long, default_value_t = 200)]
        pairs: usize,
        #[arg(long, default_value_t = 5)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// No server: the kernel's cost of one small write to each of N loopback sockets
    Floor(floor::Options),
    /// M members join one presence channel (`user_info` of INFO bytes each), C at a time,
    /// while a probe member hears a trigger every 5 ms: join cost and the probe's latency
    Presence {
        #[arg(long, default_value_t = 900)]
        members: usize,
        #[arg(long, default_value_t = 1000)]
        info: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// HTTP API throughput with no subscribers
    Trigger {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
}

struct Target {
    addr: String,
    /// HTTP API calls go here (`addr` unless `--api-addr`).
    api_addr: String,
    /// The `api_addr` node's PID when it is another process, else 0.
    api_pid: u32,
    app_id: String,
    key: String,
    secret: String,
    pid: u32,
    epoch: Instant,
    publisher_thread: bool,
}

/// CPU seconds (user, system) a process has used; USER_HZ is 100 on Linux.
fn cpu_split(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / 100.0;
    (field(11), field(12))
}

fn cpu_seconds(pid: &str) -> f64 {
    let (u, s) = cpu_split(pid);
    u + s
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// CPU used by the server and by this generator between `start()` and `stop()`.
struct CpuWindow {
    /// CPU seconds of the `--api-pid` node at the start (0 without one).
    api: f64,
    server: f64,
    server_sys: f64,
    own: f64,
    wall: Instant,
}

impl CpuWindow {
    fn start(pid: u32) -> CpuWindow {
        let (u, s) = cpu_split(&pid.to_string());
        CpuWindow {
            api: 0.0,
            server: u + s,
            server_sys: s,
            own: cpu_seconds("self"),
            wall: Instant::now(),
        }
    }

    /// Share of the server's CPU time spent in the kernel since `start()`.
    fn server_kernel_share(&self, pid: u32) -> f64 {
        let (u, s) = cpu_split(&pid.to_string());
        let total = u + s - self.server;
        if total > 0.0 {
            (s - self.server_sys) / total
        } else {
            0.0
        }
    }

    /// Also watches the `--api-pid` node.
    fn with_api(mut self, api_pid: u32) -> CpuWindow {
        if api_pid != 0 {
            self.api = cpu_seconds(&api_pid.to_string());
        }
        self
    }

    /// CPU seconds the `--api-pid` node used since `start()`.
    fn api_cpu(&self, api_pid: u32) -> f64 {
        cpu_seconds(&api_pid.to_string()) - self.api
    }

    /// (server CPU s, generator CPU s, wall s)
    fn stop(&self, pid: u32) -> (f64, f64, f64) {
        (
            cpu_seconds(&pid.to_string()) - self.server,
            cpu_seconds("self") - self.own,
            self.wall.elapsed().as_secs_f64(),
        )
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

impl Target {
    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A signed `POST /apps/{id}/events` request, ready to write.
    fn trigger_request(&self, channels: &[&str], data: &str) -> Vec<u8> {
        let body = json!({"name": "bench", "data": data, "channels": channels}).to_string();
        let path = format!("/apps/{}/events", self.app_id);
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let params = vec![
            ("auth_key".to_owned(), self.key.clone()),
            ("auth_timestamp".to_owned(), ts.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("body_md5".to_owned(), auth::md5_hex(body.as_bytes())),
        ];
        let sig = auth::sign(
            &self.secret,
            &auth::api_string_to_sign("POST", &path, &params),
        );
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "POST {path}?{}&auth_signature={sig} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            query.join("&"),
            self.api_addr,
            body.len()
        )
        .into_bytes()
    }

    /// Connects, reads `connection_established`, subscribes (signing private channels) and
    /// waits for `subscription_succeeded`.
    async fn subscriber(&self, channel: &str) -> std::io::Result<Ws> {
        let mut ws = Ws::connect(
            &self.addr,
            &format!("/app/{}?protocol=7&client=bench", self.key),
        )
        .await?;
        let hello: Value =
            serde_json::from_str(&ws.next_text().await?).map_err(std::io::Error::other)?;
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap_or("{}"))
            .map_err(std::io::Error::other)?;
        let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
        let auth = if channel.starts_with("private-") {
            format!(
                "{}:{}",
                self.key,
                auth::sign(
                    &self.secret,
                    &auth::channel_string_to_sign(&socket_id, channel, None)
                )
            )
        } else {
            String::new()
        };
        let sub =
            json!({"event":"pusher:subscribe","data":{"auth":auth,"channel":channel}}).to_string();
        ws.send_text(sub.as_bytes()).await?;
        let reply = ws.next_text().await?;
        if !reply.contains("subscription_succeeded") {
            return Err(std::io::Error::other(reply));
        }
        Ok(ws)
    }

    /// Opens one subscriber per channel name, 200 handshakes at a time.
    async fn subscribers(&self, channels: Vec<String>) -> Vec<Ws> {
        futures_util::stream::iter(channels)
            .map(|c| async move { self.subscriber(&c).await.expect("subscribe") })
            .buffered(200)
            .collect()
            .await
    }
}

/// The microsecond timestamp that follows `key` in a delivered frame (`\"t\":` inside the
/// string data of API events, `"t":` inside the object data of client events).
fn stamp(payload: &[u8], key: &[u8]) -> Option<u64> {
    let at = wire::find(payload, key)? + key.len();
    let digits = payload[at..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Reads frames on every subscriber until cancelled; counts `bench` events and records
/// send-to-arrival latency (microseconds).
fn spawn_receivers(
    t: &Arc<Target>,
    subs: Vec<Ws>,
    delivered: &Arc<AtomicU64>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<Vec<u32>>> {
    subs.into_iter()
        .map(|mut ws| {
            let (t, delivered, stop) = (t.clone(), delivered.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let read = ws.read_frames(|f| {
                        if f.opcode == 1 && wire::find(f.payload, b"\"bench\"").is_some() {
                            delivered.fetch_add(1, Ordering::Relaxed);
                            if let Some(sent) = stamp(f.payload, b"t\\\":") {
                                lat.push(t.micros().saturating_sub(sent) as u32);
                            }
                        }
                    });
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = read => if !matches!(r, Ok(true)) { break },
                    }
                }
                lat
            })
        })
        .collect()
}

async fn collect_latencies(handles: Vec<tokio::task::JoinHandle<Vec<u32>>>) -> Vec<u32> {
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap_or_default());
    }
    all.sort_unstable();
    all
}

/// Waits until `delivered` reaches `expected` or `grace` passes.
async fn drain(delivered: &AtomicU64, expected: u64, grace: Duration) {
    let until = Instant::now() + grace;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn padded(t: &Target, size: usize) -> String {
    let head = format!("{{\"t\":{},\"p\":\"", t.micros());
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Publishes on `publishers` keep-alive connections for `duration`: at `rate` per second in
/// total, or flat out when `rate` is 0. `pick` chooses the channel for each trigger.
/// What the publishers do: how many keep-alive connections, at what total rate (0 = flat
/// out), for how long, with how much data, choosing each trigger's channel with `pick`.
struct Load {
    publishers: usize,
    rate: u64,
    duration: Duration,
    size: usize,
    pick: Arc<dyn Fn() -> String + Send + Sync>,
}

async fn publish(t: &Arc<Target>, load: &Load) -> u64 {
    let sent = Arc::new(AtomicU64::new(0));
    let (publishers, rate, size) = (load.publishers, load.rate, load.size);
    let end = Instant::now() + load.duration;
    let per = if rate == 0 {
        None
    } else {
        Some(Duration::from_secs_f64(publishers as f64 / rate as f64))
    };
    let tasks: Vec<_> = (0..publishers)
        .map(|_| {
            let (t, sent, pick) = (t.clone(), sent.clone(), load.pick.clone());
            tokio::spawn(async move {
                let mut http = Http::connect(&t.api_addr).await.expect("http connect");
                let mut tick = per.map(|p| {
                    let mut i = tokio::time::interval(p);
                    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    i
                });
                while Instant::now() < end {
                    if let Some(i) = tick.as_mut() {
                        i.tick().await;
                    }
                    let channel = pick();
                    let req = t.trigger_request(&[&channel], &padded(&t, size));
                    let status = http.request(&req).await.expect("trigger");
                    assert_eq!(status, 200, "trigger refused");
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("publisher");
    }
    sent.load(Ordering::Relaxed)
}

async fn delivery_run(t: Arc<Target>, subs: Vec<Ws>, per_trigger: u64, load: Load) -> Value {
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let receivers = spawn_receivers(&t, subs, &delivered, &stop);
    let cpu = CpuWindow::start(t.pid).with_api(t.api_pid);
    // With `--publisher-thread` the publishers get a thread of their own, as a backend
    // publishes from its own processes: on the receivers' thread a trigger's response waits
    // behind the frames it caused, which throttles a lone flat-out publisher.
    let sent = if !t.publisher_thread {
        publish(&t, &load).await
    } else {
        let t = t.clone();
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("publisher runtime")
                .block_on(publish(&t, &load))
        })
        .await
        .expect("publisher thread")
    };
    let expected = sent * per_trigger;
    let mut v = finish(
        &t,
        cpu,
        &stop,
        receivers,
        &delivered,
        expected,
        Duration::from_secs(10),
    )
    .await;
    v["triggers"] = json!(sent);
    v
}

/// Waits for the expected deliveries (at most `grace`), stops the receivers and reports the
/// figures every delivery scenario shares.
async fn finish(
    t: &Target,
    cpu: CpuWindow,
    stop: &CancellationToken,
    receivers: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    delivered: &AtomicU64,
    expected: u64,
    grace: Duration,
) -> Value {
    drain(delivered, expected, grace).await;
    let (server_cpu, own_cpu, wall) = cpu.stop(t.pid);
    let kernel = cpu.server_kernel_share(t.pid);
    let api_cpu = (t.api_pid != 0).then(|| cpu.api_cpu(t.api_pid));
    stop.cancel();
    let lat = collect_latencies(receivers).await;
    let got = delivered.load(Ordering::Relaxed);
    let per_million = |cpu: f64| round(cpu / got.max(1) as f64 * 1e6, 3);
    let mut v = json!({
        "delivered": got,
        "delivery_ratio": round(got as f64 / expected.max(1) as f64, 4),
        "delivered_per_s": round(got as f64 / wall, 0),
        "latency_ms_p50": round(percentile(&lat, 0.50), 3),
        "latency_ms_p99": round(percentile(&lat, 0.99), 3),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_s_per_million": per_million(server_cpu),
        "server_kernel_share": round(kernel, 2),
        "generator_cpu_s_per_million": per_million(own_cpu),
        "wall_s": round(wall, 2),
    });
    if let Some(api_cpu) = api_cpu {
        v["api_node_cpu_s"] = json!(round(api_cpu, 2));
    }
    v
}

async fn idle(t: Arc<Target>, connections: usize) -> Value {
    let before = rss_bytes(t.pid);
    let start = Instant::now();
    let subs = t
        .subscribers(
            (0..connections)
                .map(|i| format!("idle-{}", i % 1000))
                .collect(),
        )
        .await;
    let connect_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(t.pid);
    drop(subs);
    json!({
        "connections": connections,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_connection": (after.saturating_sub(before)) / connections.max(1) as u64,
        "connect_s": round(connect_s, 2),
    })
}

async fn whisper(t: Arc<Target>, pairs: usize, rate: u64, duration: u64) -> Value {
    let names: Vec<String> = (0..pairs * 2)
        .map(|i| format!("private-bench-{}", i / 2))
        .collect();
    let members = t.subscribers(names.clone()).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let cpu = CpuWindow::start(t.pid);
    let end = Instant::now() + Duration::from_secs(duration);
    let mut tasks = Vec::new();
    for (ws, channel) in members.into_iter().zip(names) {
        let (mut r, mut w) = ws.into_split();
        let (t, delivered, sent, stop) = (t.clone(), delivered.clone(), sent.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            loop {
                let read = r.read_frames(|f| {
                    if f.opcode == 1 && wire::find(f.payload, b"client-bench").is_some() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        if let Some(s) = stamp(f.payload, b"\"t\":") {
                            lat.push(t.micros().saturating_sub(s) as u32);
                        }
                    }
                });
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick(), if Instant::now() < end => {
                        let ev = format!(r#"{{"event":"client-bench","channel":"{channel}","data":{{"t":{}}}}}"#, t.micros());
                        if w.send_text(ev.as_bytes()).await.is_err() { break }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    r = read => if !matches!(r, Ok(true)) { break },
                }
            }
            lat
        }));
    }
    tokio::time::sleep_until((end + Duration::from_millis(50)).into()).await;
    let expected = sent.load(Ordering::Relaxed);
    let mut v = finish(
        &t,
        cpu,
        &stop,
        tasks,
        &delivered,
        expected,
        Duration::from_secs(5),
    )
    .await;
    v["sent"] = json!(expected);
    v
}

async fn trigger(t: Arc<Target>, concurrency: usize, duration: u64) -> Value {
    let req = Arc::new(t.trigger_request(&["bench-nobody"], "{}"));
    let end = Instant::now() + Duration::from_secs(duration);
    let cpu = CpuWindow::start(t.pid);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (t, req) = (t.clone(), req.clone());
            tokio::spawn(async move {
                let mut http = Http::connect(&t.api_addr).await.expect("http connect");
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let s = Instant::now();
                    assert_eq!(http.request(&req).await.expect("request"), 200);
                    lat.push(s.elapsed().as_micros() as u32);
                }
                lat
            })
        })
        .collect();
    let lat = collect_latencies(tasks).await;
    let (server_cpu, own_cpu, wall) = cpu.stop(t.pid);
    let n = lat.len() as f64;
    json!({
        "requests": lat.len(),
        "requests_per_s": round(n / wall, 0),
        "latency_ms_p50": round(percentile(&lat, 0.50), 3),
        "latency_ms_p99": round(percentile(&lat, 0.99), 3),
        "server_cpu_us_per_request": round(server_cpu / n.max(1.0) * 1e6, 2),
        "generator_cpu_us_per_request": round(own_cpu / n.max(1.0) * 1e6, 2),
    })
}

fn main() {
    let cli = Cli::parse();
    for ip in std::iter::once(cli.addr.ip()).chain(cli.api_addr.map(|a| a.ip())) {
        if !ip.is_loopback() {
            eprintln!(
                "resound-bench: refusing to target {ip}: only loopback addresses are allowed"
            );
            std::process::exit(2);
        }
    }
    if let Scenario::Floor(options) = cli.scenario {
        let mut out = floor::run(options);
        out["scenario"] = json!("floor");
        out["label"] = json!(cli.label);
        println!("{out}");
        return;
    }
    if cli.server_pid == 0 {
        eprintln!("resound-bench: --server-pid is required for this scenario");
        std::process::exit(2);
    }
    let t = Arc::new(Target {
        addr: cli.addr.to_string(),
        api_addr: cli.api_addr.unwrap_or(cli.addr).to_string(),
        api_pid: cli.api_pid,
        app_id: cli.app_id,
        key: cli.key,
        secret: cli.secret,
        pid: cli.server_pid,
        epoch: Instant::now(),
        publisher_thread: cli.publisher_thread,
    });
    // The generator reads on one thread so that it leaves the other core to the server
    // (publishers, in the delivery scenarios, get a second one).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (name, mut out) = rt.block_on(async {
        match cli.scenario.clone() {
            Scenario::Idle { connections } => ("idle", idle(t.clone(), connections).await),
            Scenario::Fanout {
                subscribers,
                rate,
                size,
                duration,
                publishers,
            } => {
                let subs = t
                    .subscribers(vec!["bench-fanout".to_owned(); subscribers])
                    .await;
                let publishers = if rate == 0 { publishers } else { 1 };
                let pick: Arc<dyn Fn() -> String + Send + Sync> =
                    Arc::new(|| "bench-fanout".to_owned());
                let load = Load {
                    publishers,
                    rate,
                    duration: Duration::from_secs(duration),
                    size,
                    pick,
                };
                let mut v = delivery_run(t.clone(), subs, subscribers as u64, load).await;
                v["subscribers"] = json!(subscribers);
                v["publishers"] = json!(publishers);
                v["publisher_thread"] = json!(t.publisher_thread);
                v["rate"] = json!(if rate == 0 {
                    "flat-out".to_owned()
                } else {
                    rate.to_string()
                });
                ("fanout", v)
            }
            Scenario::Channels {
                channels,
                per_channel,
                size,
                duration,
                publishers,
            } => {
                let names: Vec<String> = (0..channels * per_channel)
                    .map(|i| format!("bench-ch-{}", i % channels))
                    .collect();
                let subs = t.subscribers(names).await;
                let pick: Arc<dyn Fn() -> String + Send + Sync> =
                    Arc::new(move || format!("bench-ch-{}", rand::random_range(0..channels)));
                let load = Load {
                    publishers,
                    rate: 0,
                    duration: Duration::from_secs(duration),
                    size,
                    pick,
                };
                let mut v = delivery_run(t.clone(), subs, per_channel as u64, load).await;
                v["channels"] = json!(channels);
                v["publishers"] = json!(publishers);
                v["per_channel"] = json!(per_channel);
                ("channels", v)
            }
            Scenario::Whisper {
                pairs,
                rate,
                duration,
            } => {
                let mut v = whisper(t.clone(), pairs, rate, duration).await;
                v["pairs"] = json!(pairs);
                ("whisper", v)
            }
            Scenario::Trigger {
                concurrency,
                duration,
            } => {
                let mut v = trigger(t.clone(), concurrency, duration).await;
                v["concurrency"] = json!(concurrency);
                ("trigger", v)
            }
            Scenario::Presence {
                members,
                info,
                concurrency,
            } => (
                "presence",
                presence::run(t.clone(), members, info, concurrency).await,
            ),
            Scenario::Floor(_) => unreachable!("handled before the runtime starts"),
        }
    });
    out["scenario"] = json!(name);
    out["label"] = json!(cli.label);
    out["server_rss_bytes"] = json!(rss_bytes(cli.server_pid));
    println!("{out}");
}
