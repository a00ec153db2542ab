//! Graceful shutdown: clients are closed with 4200 (pusher-js reconnects at once) and the
//! server finishes within its deadline.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn shutdown_closes_clients_with_4200_and_finishes() {
    // The drain window within the clients' wait for a frame (the default is 10 s).
    let mut server = TestServer::start_with(resound::Config {
        drain: Duration::from_secs(2),
        ..config_with(app())
    })
    .await;
    let mut a = server.connected().await;
    a.subscribe_public("x").await;
    let mut b = server.connected().await;
    let task = server.shutdown();
    for c in [&mut a, &mut b] {
        let v = c.recv().await;
        assert_eq!(error_of(&v).0, 4200);
        assert_eq!(c.expect_close().await.0, Some(4200));
    }
    tokio::time::timeout(Duration::from_secs(12), task)
        .await
        .expect("server stops within the deadline")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn shutdown_waits_for_a_request_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = TestServer::start().await;
    let api = server.http();
    let body = r#"{"name":"e","data":"d","channel":"c"}"#;
    let path = format!("/apps/{APP_ID}/events");
    let q = api.signed_query("POST", &path, &[], body, now());
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Head sent, body not yet: the request is in flight when shutdown starts. With
    // `Expect: 100-continue` the server says when its handler starts reading the body.
    let head = format!(
        "POST {path}?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0; 25];
    tokio::time::timeout(WAIT, s.read_exact(&mut interim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let task = server.shutdown();
    // The body goes out only once shutdown has begun (no more accepts, every task told).
    let started = wait_until(async || server.state.shutdown.is_cancelled(), WAIT).await;
    assert!(started, "shutdown began");
    s.write_all(body.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("{}"), "{text}");
    tokio::time::timeout(Duration::from_secs(12), task)
        .await
        .unwrap()
        .unwrap();
}
