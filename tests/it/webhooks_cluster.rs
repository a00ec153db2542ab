//! Webhooks with scaling on: nodes sharing a real `redis-server`, every node configured with
//! the same receiver. Each cluster-wide transition is sent once, by one node, whichever
//! nodes the sockets are on; a node that goes away (saying goodbye, or silently) does not
//! take its sockets' vacate/remove webhooks with it.

use std::time::Duration;

use serde_json::json;

use crate::scaling::{
    node_config, publish_raw, sealed, wait_for_peers, wait_until_subscribed, Redis,
};
use crate::support::*;
use crate::webhooks::{ev, target, Receiver, LIFECYCLE};

/// The leave delay in these tests.
const DELAY: Duration = Duration::from_millis(300);

/// A node on `redis`'s `channel` sending webhooks to `url`, with a short beat and peer
/// timeout.
async fn node(redis: &Redis, channel: &str, url: &str) -> TestServer {
    node_for(redis, channel, url, LIFECYCLE).await
}

/// [`node`] with the target wanting `events`.
async fn node_for(redis: &Redis, channel: &str, url: &str, events: &[&str]) -> TestServer {
    TestServer::start_with(webhook_node_config(redis, channel, url, events)).await
}

/// A node whose shutdown drains its clients over `drain`, timed as [`node`].
async fn node_with_drain(redis: &Redis, channel: &str, url: &str, drain: Duration) -> TestServer {
    let config = webhook_node_config(redis, channel, url, LIFECYCLE);
    TestServer::start_with(resound::Config { drain, ..config }).await
}

fn webhook_node_config(
    redis: &Redis,
    channel: &str,
    url: &str,
    events: &[&str],
) -> resound::Config {
    let mut config = node_config(redis.port, channel);
    config.apps[0].webhooks = vec![target(url, events)];
    config.webhooks.leave_delay = DELAY;
    config.webhooks.batch_delay = Duration::ZERO;
    let s = config.scaling.as_mut().unwrap();
    s.beat_every = Duration::from_millis(200);
    s.peer_timeout = Duration::from_secs(1);
    config
}

/// Waits until every node sees the others and knows who leads; exactly one does.
async fn settled(nodes: &[TestServer]) {
    if nodes.len() > 1 {
        wait_for_peers(nodes, nodes.len() - 1).await;
    }
    let known = wait_until(
        async || {
            nodes
                .iter()
                .all(|s| s.state.peers().unwrap().leads().is_some())
        },
        WAIT,
    )
    .await;
    assert!(known, "the nodes never settled who leads");
    let leaders = nodes
        .iter()
        .filter(|s| s.state.peers().unwrap().leads() == Some(true))
        .count();
    assert_eq!(leaders, 1, "exactly one node leads");
}

/// `n` nodes on `redis`, all sending webhooks to `url`, once settled.
async fn nodes(redis: &Redis, n: usize, url: &str) -> Vec<TestServer> {
    let channel = format!("resound-webhooks-{}", now_nanos());
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(redis, &channel, url).await);
    }
    settled(&nodes).await;
    nodes
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn each_transition_is_sent_once_whichever_node_the_sockets_are_on() {
    let redis = Redis::start().await;
    let mut rx = Receiver::start(vec![]).await;
    let nodes = nodes(&redis, 2, &rx.url).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let ch = "presence-everywhere";

    // First socket anywhere: occupied and the member, once.
    let mut on_a = a.connected().await;
    on_a.join(ch, "1").await;
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"channel_occupied","channel":ch})),
            ev(json!({"name":"member_added","channel":ch,"user_id":"1"})),
        ]
    );
    // The same user on the other node, and another user there: one member_added, for "2".
    let mut on_b = b.connected().await;
    on_b.join(ch, "1").await;
    let mut two = b.connected().await;
    two.join(ch, "2").await;
    assert_eq!(
        rx.events(1).await,
        [ev(
            json!({"name":"member_added","channel":ch,"user_id":"2"})
        )]
    );
    rx.expect_none(DELAY * 2).await;

    // User 1 leaves node a but is still on node b; then leaves b too.
    drop(on_a);
    rx.expect_none(DELAY * 3).await;
    drop(on_b);
    assert_eq!(
        rx.events(1).await,
        [ev(
            json!({"name":"member_removed","channel":ch,"user_id":"1"})
        )]
    );
    // The last socket anywhere: removed and vacated, once.
    drop(two);
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"member_removed","channel":ch,"user_id":"2"})),
            ev(json!({"name":"channel_vacated","channel":ch})),
        ]
    );
    rx.expect_none(DELAY * 3).await;
}

#[tokio::test]
async fn a_leader_that_shuts_down_leaves_its_vacates_to_the_node_that_joined_after() {
    let redis = Redis::start().await;
    let mut rx = Receiver::start(vec![]).await;
    let channel = format!("resound-webhooks-{}", now_nanos());
    // The first node leads (the oldest does), and has a channel before the second starts:
    // the second learns it from the first's state.
    let first = node(&redis, &channel, &rx.url).await;
    settled(std::slice::from_ref(&first)).await;
    let mut on_first = first.connected().await;
    on_first.subscribe_public("with-the-leader").await;
    let mut also = first.connected().await;
    also.subscribe_public("on-both").await;
    let mut got = rx.events(2).await;
    got.sort();
    assert_eq!(
        got,
        [
            ev(json!({"name":"channel_occupied","channel":"on-both"})),
            ev(json!({"name":"channel_occupied","channel":"with-the-leader"})),
        ]
    );
    let mut nodes = vec![first, node(&redis, &channel, &rx.url).await];
    settled(&nodes).await;
    assert_eq!(nodes[0].state.peers().unwrap().leads(), Some(true));
    let mut on_second = nodes[1].connected().await;
    on_second.subscribe_public("on-both").await;
    rx.expect_none(QUIET).await;
    // The leader stops: its channel is vacated everywhere (sent once, by the node that now
    // leads); "on-both" still has a socket on the second node.
    let stopped = nodes[0].shutdown();
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rx.events(1).await,
        [ev(
            json!({"name":"channel_vacated","channel":"with-the-leader"})
        )]
    );
    assert_eq!(nodes[1].state.peers().unwrap().leads(), Some(true));
    rx.expect_none(DELAY * 3).await;
    drop(on_second);
    assert_eq!(
        rx.events(1).await,
        [ev(json!({"name":"channel_vacated","channel":"on-both"}))]
    );
    nodes.clear();
}

#[tokio::test]
async fn a_node_that_dies_without_a_word_still_gets_its_vacate_and_remove_sent() {
    let redis = Redis::start().await;
    let mut rx = Receiver::start(vec![]).await;
    let nodes = nodes(&redis, 1, &rx.url).await;
    wait_until_subscribed(&redis, &nodes[0]).await;
    // A node with a socket in a presence channel, which then falls silent (as after
    // SIGKILL). Its id sorts after ours, so ours leads throughout.
    let says = [
        format!(
            r#"{{"occupied":{{"app":"{APP_ID}","channel":"presence-ghost","occupied":true}}}}"#
        ),
        format!(r#"{{"join":{{"app":"{APP_ID}","channel":"presence-ghost","user_id":"g"}}}}"#),
    ];
    for (seq, msg) in says.iter().enumerate() {
        let text = sealed(&nodes[0], "ghost", seq as u64 + 1, msg);
        assert_eq!(publish_raw(&redis, &nodes[0], &text).await, 1);
    }
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"channel_occupied","channel":"presence-ghost"})),
            ev(json!({"name":"member_added","channel":"presence-ghost","user_id":"g"})),
        ]
    );
    // After the peer timeout (1 s) and the leave delay.
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"member_removed","channel":"presence-ghost","user_id":"g"})),
            ev(json!({"name":"channel_vacated","channel":"presence-ghost"})),
        ]
    );
    rx.expect_none(QUIET).await;
}

#[tokio::test]
async fn subscription_counts_are_the_clusters_and_sent_once() {
    let redis = Redis::start().await;
    let mut rx = Receiver::start(vec![]).await;
    let channel = format!("resound-webhooks-{}", now_nanos());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(node_for(&redis, &channel, &rx.url, &["subscription_count"]).await);
    }
    settled(&nodes).await;
    let count = |n: u64| {
        ev(json!({"name":"subscription_count","channel":"counted","subscription_count":n}))
    };
    let mut on_a = nodes[0].connected().await;
    on_a.subscribe_public("counted").await;
    assert_eq!(rx.events(1).await, [count(1)]);
    let mut on_b = nodes[1].connected().await;
    on_b.subscribe_public("counted").await;
    assert_eq!(rx.events(1).await, [count(2)]);
    let mut again = nodes[1].connected().await;
    again.subscribe_public("counted").await;
    assert_eq!(rx.events(1).await, [count(3)]);
    drop(on_a);
    assert_eq!(rx.events(1).await, [count(2)]);
    rx.expect_none(QUIET).await;
}

#[tokio::test]
async fn a_node_that_cannot_reach_redis_does_not_lead() {
    let mut redis = Redis::start().await;
    let rx = Receiver::start(vec![]).await;
    let nodes = nodes(&redis, 1, &rx.url).await;
    let leads = || nodes[0].state.peers().unwrap().leads();
    assert_eq!(leads(), Some(true));
    redis.stop();
    let stepped_down = wait_until(async || leads() == Some(false), WAIT).await;
    assert!(stepped_down, "still leads without Redis");
}

#[tokio::test]
async fn a_node_alone_in_its_cluster_still_sends_its_departures_at_shutdown() {
    // Scaling on, one node (a common Laravel setup): nobody else knows its channels, so its
    // shutdown must send what is still delayed and what the drain's closes cause, as a
    // node without scaling does.
    let redis = Redis::start().await;
    let mut rx = Receiver::start(vec![]).await;
    let channel = format!("resound-webhooks-{}", now_nanos());
    let mut config = webhook_node_config(&redis, &channel, &rx.url, LIFECYCLE);
    // Delayed far beyond the test: only the shutdown flush can send it in time.
    config.webhooks.leave_delay = Duration::from_secs(60);
    config.drain = Duration::from_secs(1);
    let server = TestServer::start_with(config).await;
    settled(std::slice::from_ref(&server)).await;
    crate::webhooks::shutdown_sends_the_delayed_and_the_departures(server, &mut rx).await;
}

#[tokio::test]
async fn a_draining_node_sends_nothing_cluster_wide_and_the_leader_sends_its_departures_once() {
    let redis = Redis::start().await;
    let mut rx = Receiver::start(vec![]).await;
    let channel = format!("resound-webhooks-{}", now_nanos());
    let leader = node(&redis, &channel, &rx.url).await;
    settled(std::slice::from_ref(&leader)).await;
    // The second node drains over 2 s: after its `bye` it keeps reading Redis (so it hears
    // the leader's changes) while its clients are still open.
    let draining = node_with_drain(&redis, &channel, &rx.url, Duration::from_secs(2)).await;
    let nodes = [leader, draining];
    settled(&nodes).await;
    let [leader, mut draining] = nodes;
    assert_eq!(leader.state.peers().unwrap().leads(), Some(true));
    let mut member = draining.connected().await;
    member.join("presence-drain", "9").await;
    let mut public = draining.connected().await;
    public.subscribe_public("drain-only").await;
    let mut got = rx.events(3).await;
    got.sort();
    assert_eq!(
        got,
        [
            ev(json!({"name":"channel_occupied","channel":"drain-only"})),
            ev(json!({"name":"channel_occupied","channel":"presence-drain"})),
            ev(json!({"name":"member_added","channel":"presence-drain","user_id":"9"})),
        ]
    );
    let stopped = draining.shutdown();
    // While the other node drains, a channel on the leader: heard by both, sent once.
    let mut on_leader = leader.connected().await;
    on_leader.subscribe_public("new-on-leader").await;
    let mut got = rx.events(4).await;
    got.sort();
    assert_eq!(
        got,
        [
            ev(json!({"name":"channel_vacated","channel":"drain-only"})),
            ev(json!({"name":"channel_occupied","channel":"new-on-leader"})),
            ev(json!({"name":"channel_vacated","channel":"presence-drain"})),
            ev(json!({"name":"member_removed","channel":"presence-drain","user_id":"9"})),
        ]
    );
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("shutdown ends")
        .unwrap();
    // Nothing twice: not from the drained node's own departures, nor its flush.
    rx.expect_none(DELAY * 3).await;
    drop(on_leader);
    assert_eq!(
        rx.events(1).await,
        [ev(
            json!({"name":"channel_vacated","channel":"new-on-leader"})
        )]
    );
}

#[tokio::test]
async fn a_client_moved_by_a_rolling_deploy_causes_no_vacate_or_remove() {
    // A deploy drains a node; its client is closed (4200) at some instant of the drain and
    // reconnects at once to the other node, as pusher-js does. The channel and the member
    // were never gone anywhere for longer than the leave delay: no webhook at all.
    let redis = Redis::start().await;
    let mut rx = Receiver::start(vec![]).await;
    let channel = format!("resound-webhooks-{}", now_nanos());
    let leader = node(&redis, &channel, &rx.url).await;
    settled(std::slice::from_ref(&leader)).await;
    let draining = node_with_drain(&redis, &channel, &rx.url, Duration::from_secs(3)).await;
    let nodes = [leader, draining];
    settled(&nodes).await;
    let [leader, mut draining] = nodes;
    let mut member = draining.connected().await;
    member.join("presence-deploy", "7").await;
    assert_eq!(rx.events(2).await.len(), 2, "occupied and added");
    let stopped = draining.shutdown();
    loop {
        match member.next_seen(Duration::from_secs(5)).await {
            Some(Seen::Closed(code, _)) => {
                assert_eq!(code, Some(4200));
                break;
            }
            Some(Seen::Frame(_)) => continue,
            None => panic!("the drain did not close the client"),
        }
    }
    let mut moved = leader.connected().await;
    moved.join("presence-deploy", "7").await;
    rx.expect_none(DELAY * 4).await;
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("shutdown ends")
        .unwrap();
    rx.expect_none(DELAY * 2).await;
}
