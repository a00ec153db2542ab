//! Cache channels across nodes: the last event of a cache channel is kept by every node, so a
//! new subscriber gets it whichever node it lands on, including a node that started (or
//! restarted, as in a rolling deploy) after the event was sent.

use std::time::Duration;

use crate::scaling::{wait_for_peers, wait_until_subscribed, Redis};
use crate::support::*;

#[tokio::test]
async fn a_node_that_starts_later_replays_the_cached_event_sent_before_it_started() {
    let redis = Redis::start().await;
    let mut nodes = crate::scaling::cluster_timed(&redis, 1, |_| {}).await;
    // Linked to Redis before the events, so that they are not merely queued for later.
    wait_until_subscribed(&redis, &nodes[0]).await;
    let mut early = nodes[0].connected().await;
    early.subscribe_public("cache-late").await;
    assert_eq!(early.recv().await["event"], "pusher:cache_miss");
    nodes[0]
        .http()
        .trigger(&["cache-late"], "tick", "before the newcomer", None)
        .await;
    let delivered = early.recv_raw().await;
    // Sent while no subscriber anywhere: still the channel's last event.
    nodes[0]
        .http()
        .trigger(&["cache-quiet"], "tick", "nobody listened", None)
        .await;

    let late = TestServer::start_with(nodes[0].state.config.clone()).await;
    nodes.push(late);
    wait_for_peers(&nodes, 1).await;
    // The newcomer learns the others' state in answer to its hello: subscribe until it has
    // it (a cache miss before then) rather than wait a fixed time.
    let mut replayed = None;
    let learned = wait_until(
        async || {
            let mut c = nodes[1].connected().await;
            c.subscribe_public("cache-late").await;
            let first = c.recv_raw().await;
            let hit = !first.contains("pusher:cache_miss");
            replayed = Some(first);
            hit
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(
        learned,
        "the new node never learned the cached event: {replayed:?}"
    );
    assert_eq!(
        replayed.unwrap(),
        delivered,
        "replayed exactly as the first node delivered it"
    );
    let mut newcomer = nodes[1].connected().await;
    newcomer.subscribe_public("cache-late").await;
    assert_eq!(newcomer.recv_raw().await, delivered);
    newcomer.subscribe_public("cache-quiet").await;
    assert_eq!(newcomer.recv().await["data"], "nobody listened");

    // A later event on the new node wins over what it learned, and the first node keeps its
    // own newer event when the new node's state comes back to it.
    nodes[1]
        .http()
        .trigger(&["cache-late"], "tick", "after", None)
        .await;
    assert_eq!(newcomer.recv().await["data"], "after");
    assert_eq!(early.recv().await["data"], "after");
    let mut again = nodes[0].connected().await;
    again.subscribe_public("cache-late").await;
    assert_eq!(again.recv().await["data"], "after");
}

/// Nodes started one after another within a beat (a rolling deploy, an autoscaler): the
/// older node answers the second newcomer's hello only at its next beat (one state per beat).
/// A client that joins the newcomer at once must still see who is there and the cached event.
#[tokio::test]
async fn a_node_accepts_clients_once_it_holds_the_others_state() {
    let redis = Redis::start().await;
    let mut nodes = crate::scaling::cluster_timed(&redis, 1, |s| {
        s.beat_every = Duration::from_millis(1500);
        s.peer_timeout = Duration::from_secs(5);
    })
    .await;
    wait_until_subscribed(&redis, &nodes[0]).await;
    let mut early = nodes[0].connected().await;
    early.join("presence-deploy", "early").await;
    nodes[0]
        .http()
        .trigger(&["cache-deploy"], "tick", "kept", None)
        .await;
    for round in 0..2 {
        let config = nodes[0].state.config.clone();
        nodes.push(TestServer::start_with(config).await);
        let newcomer = nodes.last().unwrap();
        // No waiting for the peers: a load balancer sends clients as soon as the port answers.
        let mut c = newcomer.connected().await;
        let data = c.join("presence-deploy", &format!("new-{round}")).await;
        let ids = data["presence"]["ids"].to_string();
        assert!(ids.contains("\"early\""), "round {round}: members {ids}");
        c.subscribe_public("cache-deploy").await;
        assert_eq!(c.recv().await["data"], "kept", "round {round}");
    }
}
