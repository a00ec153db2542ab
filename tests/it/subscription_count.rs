//! `pusher_internal:subscription_count` (per-app option, off by default).

use serde_json::json;

use crate::support::*;

fn count_of(v: &serde_json::Value) -> u64 {
    assert_eq!(v["event"], "pusher_internal:subscription_count", "{v}");
    let d: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
    d["subscription_count"].as_u64().unwrap()
}

#[tokio::test]
async fn off_by_default() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    a.subscribe_public("c").await;
    let mut b = server.connected().await;
    b.subscribe_public("c").await;
    a.expect_nothing().await;
}

#[tokio::test]
async fn sent_to_all_subscribers_when_count_changes() {
    let mut app = app();
    app.subscription_count = true;
    let server = TestServer::start_with(config_with(app)).await;
    let mut a = server.connected().await;
    a.subscribe_public("c").await;
    assert_eq!(
        a.recv_raw().await,
        r#"{"event":"pusher_internal:subscription_count","channel":"c","data":"{\"subscription_count\":1}"}"#
    );
    let mut b = server.connected().await;
    b.subscribe_public("c").await;
    assert_eq!(count_of(&a.recv().await), 2);
    assert_eq!(count_of(&b.recv().await), 2);
    drop(b);
    assert_eq!(count_of(&a.recv().await), 1);
    // Presence channels never get it.
    a.join("presence-p", "1").await;
    a.expect_nothing().await;
    let r = server
        .http()
        .get("/channels/c", &[("info", "subscription_count")])
        .await;
    assert_eq!(r.json(), json!({"occupied":true,"subscription_count":1}));
}

#[tokio::test]
async fn busy_channels_are_throttled() {
    let mut app = app();
    app.subscription_count = true;
    let server = TestServer::start_with(config_with(app)).await;
    let mut watcher = server.connected().await;
    watcher.subscribe_public("busy").await;
    let mut others = Vec::new();
    for _ in 0..101 {
        let mut c = server.connected().await;
        c.subscribe_public("busy").await;
        others.push(c);
    }
    // Counts up to 100 go out as they happen ...
    for expected in 1..=100 {
        assert_eq!(count_of(&watcher.recv().await), expected);
    }
    // ... above 100, a change within 5 s of the last update is held back, and the held
    // changes are flushed later as one update with the latest count.
    let start = std::time::Instant::now();
    watcher.expect_nothing().await;
    let v = match watcher.next_seen(std::time::Duration::from_secs(8)).await {
        Some(Seen::Frame(v)) => v,
        other => panic!("expected the held-back count, saw {other:?}"),
    };
    assert_eq!(count_of(&v), 102);
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(3),
        "held back, not sent at once"
    );
    watcher.expect_nothing().await;
}
