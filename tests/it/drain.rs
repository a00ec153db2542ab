//! The drain at shutdown (`RESOUND_DRAIN_SECONDS`): the listener closes at once, the clients
//! are closed with 4200 each at its own instant across the window rather than all at once,
//! and a request in flight still gets its answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::support::*;

/// Clients in the drain test.
const CLIENTS: usize = 40;
const DRAIN: Duration = Duration::from_secs(2);

#[tokio::test]
async fn shutdown_spreads_the_closes_over_the_drain_window() {
    let mut server = TestServer::start_with(resound::Config {
        drain: DRAIN,
        ..config_with(app())
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = server.connected().await;
        c.subscribe_public("news").await;
        clients.push(c);
    }
    // A request in flight when shutdown starts: head sent, body held back (see
    // shutdown.rs); its body goes out in the middle of the drain.
    let api = server.http();
    let body = r#"{"name":"e","data":"d","channel":"news"}"#;
    let path = format!("/apps/{APP_ID}/events");
    let q = api.signed_query("POST", &path, &[], body, now());
    let mut request = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {path}?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    request.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0; 25];
    request.read_exact(&mut interim).await.unwrap();

    let start = Instant::now();
    let task = server.shutdown();
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                // Frames before the 4200 are events still owed: the one the request in flight
                // triggers may come first.
                let mut frames = Vec::new();
                loop {
                    match c.next_seen(DRAIN + WAIT).await {
                        Some(Seen::Frame(v)) => frames.push(v),
                        Some(Seen::Closed(code, _)) => return (start.elapsed(), code, frames),
                        None => panic!("no close within the drain window"),
                    }
                }
            })
        })
        .collect();

    // The listener is closed at the start, while the clients are still being drained.
    let refused = wait_until(
        async || tokio::net::TcpStream::connect(server.addr).await.is_err(),
        WAIT,
    )
    .await;
    assert!(refused, "the listener still accepts during the drain");
    tokio::time::sleep(DRAIN / 4).await;
    request.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, request.read_to_end(&mut answer))
        .await
        .expect("the request in flight is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut at = Vec::new();
    for w in waits {
        let (when, code, frames) = w.await.unwrap();
        assert_eq!(code, Some(4200), "every client is closed with 4200");
        let last = frames.last().expect("pusher:error before the close");
        assert_eq!(error_of(last).0, 4200, "{last}");
        at.push(when);
    }
    // Spread: not all in one 100 ms bucket, and every close within the window (plus the
    // time a close takes to travel).
    let mut buckets: Vec<u128> = at.iter().map(|d| d.as_millis() / 100).collect();
    buckets.sort_unstable();
    buckets.dedup();
    assert!(
        buckets.len() >= 5,
        "{CLIENTS} closes fell into only {} buckets of 100 ms: {at:?}",
        buckets.len()
    );
    let latest = at.iter().max().unwrap();
    assert!(*latest < DRAIN + Duration::from_secs(1), "{latest:?}");
    tokio::time::timeout(WAIT, task)
        .await
        .expect("shutdown ends after the drain")
        .unwrap();
}

#[tokio::test]
async fn the_shutdown_timeout_bounds_a_longer_drain() {
    // A drain window longer than the shutdown timeout is cut to it: every client is closed
    // (with 4200) and the server stops within the timeout.
    let mut server = TestServer::start_with(resound::Config {
        drain: Duration::from_secs(60),
        shutdown_timeout: Duration::from_secs(1),
        ..config_with(app())
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(server.connected().await);
    }
    let start = Instant::now();
    let task = server.shutdown();
    for c in &mut clients {
        let v = c.recv().await;
        assert_eq!(error_of(&v).0, 4200);
        assert_eq!(c.expect_close().await.0, Some(4200));
    }
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the shutdown timeout bounds the drain")
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_drain_of_zero_closes_every_client_at_once() {
    let mut server = TestServer::start_with(resound::Config {
        drain: Duration::ZERO,
        ..config_with(app())
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(server.connected().await);
    }
    let task = server.shutdown();
    for c in &mut clients {
        assert_eq!(error_of(&c.recv().await).0, 4200);
        assert_eq!(c.expect_close().await.0, Some(4200));
    }
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

/// Ctrl-C pressed twice in a terminal: the second SIGINT (or SIGTERM) closes every client the
/// drain has not reached yet, with 4200, and the binary exits 0 at once instead of sitting
/// out the window (30 s here). Before, the second signal was ignored.
#[tokio::test]
async fn a_second_signal_closes_the_rest_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = resound_command(dir.path())
        .args(["--port", &port.to_string(), "--app-id", APP_ID])
        .args(["--app-key", KEY, "--app-secret", SECRET])
        .args(["--drain-seconds", "30", "--shutdown-timeout", "40"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7");
    let up = wait_until(
        async || tokio_tungstenite::connect_async(&url).await.is_ok(),
        WAIT,
    )
    .await;
    assert!(up, "the binary did not come up");
    let mut clients = Vec::new();
    for _ in 0..10 {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut c = Client {
            ws,
            socket_id: String::new(),
        };
        assert_eq!(c.recv().await["event"], "pusher:connection_established");
        clients.push(c);
    }
    let pid = child.id().to_string();
    let kill = |signal: &str| {
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    kill("-INT");
    tokio::time::sleep(QUIET).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal drains"
    );
    kill("-INT");
    for c in &mut clients {
        let (code, _) = tokio::time::timeout(WAIT, c.expect_close())
            .await
            .expect("closed after the second signal");
        assert_eq!(code, Some(4200));
    }
    let exited = wait_until(async || child.try_wait().unwrap().is_some(), WAIT).await;
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(exited, "still running after the second signal");
    assert_eq!(status.code(), Some(0));
}
