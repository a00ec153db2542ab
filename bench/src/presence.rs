//! The `presence` scenario: members join one presence channel, each with `user_info` of a
//! given size, while a probe member already in the channel hears HTTP triggers sent to the
//! channel at a steady rate. A join's `subscription_succeeded` carries every member, so each
//! join costs the server O(members) to serialize; what this measures is whether that work
//! stalls the channel's other traffic (the probe's latency) and what a join costs the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use resound::auth;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::wire::{Http, Ws};
use crate::{percentile, round, spawn_receivers, CpuWindow, Target};

const CHANNEL: &str = "presence-bench";

/// Connects and joins [`CHANNEL`] as `user`, with `info` bytes of padding in `user_info`;
/// returns the socket and the size of the `subscription_succeeded` frame.
async fn join(t: &Target, user: usize, info: usize) -> std::io::Result<(Ws, usize)> {
    let mut ws = Ws::connect(&t.addr, &format!("/app/{}?protocol=7&client=bench", t.key)).await?;
    let hello: Value =
        serde_json::from_str(&ws.next_text().await?).map_err(std::io::Error::other)?;
    let data: Value = serde_json::from_str(hello["data"].as_str().unwrap_or("{}"))
        .map_err(std::io::Error::other)?;
    let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
    let channel_data =
        json!({"user_id": format!("u{user}"), "user_info": {"p": "x".repeat(info)}}).to_string();
    let sig = auth::sign(
        &t.secret,
        &auth::channel_string_to_sign(&socket_id, CHANNEL, Some(&channel_data)),
    );
    let sub = json!({"event": "pusher:subscribe", "data": {
        "channel": CHANNEL, "auth": format!("{}:{sig}", t.key), "channel_data": channel_data,
    }})
    .to_string();
    ws.send_text(sub.as_bytes()).await?;
    let reply = ws.next_text().await?;
    if !reply.contains("subscription_succeeded") {
        return Err(std::io::Error::other(reply));
    }
    Ok((ws, reply.len()))
}

/// Reads and drops everything a joined member hears (`member_added` of the later joins),
/// so that no member falls behind and is closed as a slow consumer.
fn discard(mut ws: Ws, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = ws.read_frames(|_| {}) => if !matches!(r, Ok(true)) { break },
            }
        }
    })
}

pub(crate) async fn run(t: Arc<Target>, members: usize, info: usize, concurrency: usize) -> Value {
    let stop = CancellationToken::new();
    // The probe (a member hearing a trigger every 5 ms) runs on a thread of its own, so that
    // its latency is the server's, not the wait behind the joiners' traffic on this thread.
    let joining = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let probe = {
        let (t, joining) = (t.clone(), joining.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime");
            rt.block_on(async move {
                let (probe, _) = join(&t, 0, 16).await.expect("probe joins");
                let delivered = Arc::new(AtomicU64::new(0));
                let stop = CancellationToken::new();
                let receivers = spawn_receivers(&t, vec![probe], &delivered, &stop);
                let _ = ready_tx.send(());
                let mut http = Http::connect(&t.api_addr).await.expect("http connect");
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                let mut sent = 0u64;
                while !joining.is_cancelled() {
                    tick.tick().await;
                    let data = format!("{{\"t\":{}}}", t.micros());
                    let status = http
                        .request(&t.trigger_request(&[CHANNEL], &data))
                        .await
                        .expect("trigger");
                    assert_eq!(status, 200, "trigger refused");
                    sent += 1;
                }
                crate::drain(&delivered, sent, Duration::from_secs(5)).await;
                stop.cancel();
                let lat = crate::collect_latencies(receivers).await;
                (sent, delivered.load(Ordering::Relaxed), lat)
            })
        })
    };
    ready_rx.await.expect("the probe joined");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = CpuWindow::start(t.pid);
    let started = Instant::now();
    let joined: Vec<(tokio::task::JoinHandle<()>, usize)> = futures_util::stream::iter(1..=members)
        .map(|u| {
            let (t, stop) = (t.clone(), stop.clone());
            async move {
                let (ws, reply) = join(&t, u, info).await.expect("join");
                (discard(ws, stop), reply)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let join_s = started.elapsed().as_secs_f64();
    let (server_cpu, own_cpu, _) = cpu.stop(t.pid);
    joining.cancel();
    let reply_bytes: usize = joined.iter().map(|(_, n)| n).sum();
    let (sent, delivered, lat) = tokio::task::spawn_blocking(move || probe.join())
        .await
        .expect("probe thread")
        .expect("probe");
    stop.cancel();
    for (d, _) in joined {
        let _ = d.await;
    }
    json!({
        "members": members,
        "user_info_bytes": info,
        "concurrency": concurrency,
        "joins_per_s": round(members as f64 / join_s, 0),
        "server_cpu_ms_per_join": round(server_cpu / members as f64 * 1e3, 3),
        "generator_cpu_ms_per_join": round(own_cpu / members as f64 * 1e3, 3),
        "reply_mb_total": round(reply_bytes as f64 / 1e6, 1),
        "probe_triggers": sent,
        "probe_delivered": delivered,
        "probe_latency_ms_p50": round(percentile(&lat, 0.50), 3),
        "probe_latency_ms_p99": round(percentile(&lat, 0.99), 3),
        "probe_latency_ms_max": round(lat.last().copied().unwrap_or(0) as f64 / 1000.0, 3),
        "wall_s": round(join_s, 2),
    })
}
