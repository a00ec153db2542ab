//! Multi-node scaling: two or three resound nodes sharing a real `redis-server` (started here
//! on a free loopback port; the test fails, never skips, when the binary is missing).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use resound::auth;
use resound::config::Scaling;
use serde_json::{json, Value};

use crate::support::*;

/// A `redis-server` on a free loopback port, killed when dropped.
pub(crate) struct Redis {
    pub(crate) port: u16,
    child: Child,
}

impl Redis {
    pub(crate) async fn start() -> Redis {
        let port = free_port();
        Redis::start_on(port).await
    }

    pub(crate) async fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &[]).await
    }

    async fn start_with(port: u16, args: &[&str]) -> Redis {
        Redis::spawn(port, args, port).await
    }

    /// Starts with `--port port` and `args`; ready when `listen` accepts connections.
    #[allow(clippy::zombie_processes)] // waited for in `stop`, from `Drop`
    async fn spawn(port: u16, args: &[&str], listen: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the scaling tests (scripts/test.sh installs it)");
        // Built first so that a failed start still kills it (`Drop`).
        let redis = Redis {
            port: listen,
            child,
        };
        let listening = wait_until(
            async || {
                tokio::net::TcpStream::connect(("127.0.0.1", listen))
                    .await
                    .is_ok()
            },
            WAIT,
        )
        .await;
        assert!(listening, "redis-server did not listen on {listen}");
        redis
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn node_config(redis_port: u16, channel: &str) -> resound::Config {
    node_config_url(&format!("redis://127.0.0.1:{redis_port}/0"), channel)
}

/// The nodes' `RESOUND_SCALING_SECRET` in these tests, so that a test can sign as a node.
const CLUSTER_SECRET: &str = "the test cluster's secret";

fn node_config_url(url: &str, channel: &str) -> resound::Config {
    resound::Config {
        scaling: Some(Scaling {
            timeout: Duration::from_secs(5),
            secret: Some(CLUSTER_SECRET.to_owned()),
            ..Scaling::new(url, channel)
        }),
        ..config_with(app())
    }
}

/// `msg` (JSON) in the envelope a node holding the cluster's key publishes on `node`'s
/// channel: HMAC-SHA256 (`auth::sign`) over the channel, a zero byte and the envelope up to
/// its MAC.
pub(crate) fn sealed(node: &TestServer, from: &str, seq: u64, msg: &str) -> String {
    sealed_with(CLUSTER_SECRET, node, from, seq, msg)
}

fn sealed_with(secret: &str, node: &TestServer, from: &str, seq: u64, msg: &str) -> String {
    let channel = &node.state.config.scaling.as_ref().unwrap().channel;
    let signed = format!(r#"{{"resound":2,"node":"{from}","seq":{seq},"msg":{msg}"#);
    let mac = auth::sign(secret, &format!("{channel}\0{signed}"));
    format!(r#"{signed},"mac":"{mac}"}}"#)
}

/// Starts `n` nodes on one Redis and waits until each has heard from all the others.
async fn cluster(redis: &Redis, n: usize) -> Vec<TestServer> {
    cluster_timed(redis, n, |_| {}).await
}

/// [`cluster`] with the nodes' timings (beat, peer timeout, query wait) set by `timing`, for
/// tests that would otherwise wait out the production defaults.
pub(crate) async fn cluster_timed(
    redis: &Redis,
    n: usize,
    timing: impl Fn(&mut Scaling),
) -> Vec<TestServer> {
    let channel = format!("resound-test-{}", rand_suffix());
    let mut nodes = Vec::new();
    for _ in 0..n {
        let mut config = node_config(redis.port, &channel);
        timing(config.scaling.as_mut().unwrap());
        nodes.push(TestServer::start_with(config).await);
    }
    wait_for_peers(&nodes, n - 1).await;
    nodes
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub(crate) async fn wait_for_peers(nodes: &[TestServer], peers: usize) {
    let all_see = wait_until(
        async || {
            nodes
                .iter()
                .all(|s| s.state.peers().unwrap().live_nodes() == peers)
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(all_see, "nodes did not all see {peers} peers within 10 s");
}

/// Two nodes of one cluster share events both ways; `outsider` (a node that could not join:
/// wrong password, untrusted certificate) serves its own clients and nobody else's.
async fn assert_pair_shares_and_outsider_is_alone(nodes: &[TestServer], outsider: &TestServer) {
    wait_for_peers(nodes, 1).await;
    let mut on_b = nodes[1].connected().await;
    on_b.subscribe_public("public-pair").await;
    nodes[0]
        .http()
        .trigger(&["public-pair"], "in", "{}", None)
        .await;
    assert_eq!(on_b.recv().await["event"], "in");
    let mut local = outsider.connected().await;
    local.subscribe_public("public-pair").await;
    nodes[0]
        .http()
        .trigger(&["public-pair"], "not-for-outsider", "{}", None)
        .await;
    assert_eq!(on_b.recv().await["event"], "not-for-outsider");
    local.expect_nothing().await;
    outsider
        .http()
        .trigger(&["public-pair"], "own", "{}", None)
        .await;
    assert_eq!(local.recv().await["event"], "own");
    on_b.expect_nothing().await;
    assert!(outsider.state.peers().unwrap().live_nodes() == 0);
}

/// Publishes `text` on `node`'s scaling channel as another program would; returns how many
/// subscribers received it.
pub(crate) async fn publish_raw(redis: &Redis, node: &TestServer, text: &str) -> i64 {
    let channel = &node.state.config.scaling.as_ref().unwrap().channel;
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(text)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Waits until `node` has subscribed to its channel (a publication reaches nobody before).
pub(crate) async fn wait_until_subscribed(redis: &Redis, node: &TestServer) {
    let mut receivers = 0;
    wait_until(
        async || {
            receivers = publish_raw(redis, node, "not one of ours").await;
            receivers > 0
        },
        WAIT,
    )
    .await;
    assert_eq!(receivers, 1, "the node never subscribed");
}

/// Everything published on `channel` from now on, as another program subscribed to it sees it.
async fn listen(redis: &Redis, channel: &str) -> redis::aio::PubSubStream {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub.into_on_message()
}

/// The kinds of message (`"beat"`, `"state"`, ...) `heard` carries within `within`.
async fn kinds_heard(heard: &mut redis::aio::PubSubStream, within: Duration) -> Vec<String> {
    kinds_heard_until(heard, within, |_| false).await
}

/// [`kinds_heard`], ending early after a message of a kind that `last` accepts.
async fn kinds_heard_until(
    heard: &mut redis::aio::PubSubStream,
    within: Duration,
    last: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut kinds = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, heard.next()).await {
        let text: String = m.get_payload().unwrap();
        // A signed envelope, or a test's raw publication.
        let kind = match serde_json::from_str::<Value>(&text).map(|v| v["msg"].clone()) {
            Ok(Value::String(kind)) => kind,
            Ok(Value::Object(o)) => o.keys().next().cloned().unwrap_or_default(),
            _ => "other".to_owned(),
        };
        let done = last(&kind);
        kinds.push(kind);
        if done {
            break;
        }
    }
    kinds
}

/// Polls a node's users API until it answers `expected` (presence news travel through Redis).
async fn users_become(node: &TestServer, channel: &str, expected: Value) {
    let mut seen = Value::Null;
    let became = wait_until(
        async || {
            seen = node
                .http()
                .get(&format!("/channels/{channel}/users"), &[])
                .await
                .json();
            seen == expected
        },
        WAIT,
    )
    .await;
    assert!(
        became,
        "users of {channel}: expected {expected}, last saw {seen}"
    );
}

fn signin_frame(socket_id: &str, user_data: &str) -> Value {
    let sig = auth::sign(SECRET, &auth::signin_string_to_sign(socket_id, user_data));
    json!({"event":"pusher:signin","data":{"auth": format!("{KEY}:{sig}"), "user_data": user_data}})
}

#[tokio::test]
async fn http_events_reach_every_node_and_skip_the_socket_id_wherever_it_is() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = a.connected().await;
    let mut on_b = b.connected().await;
    let mut sender_on_b = b.connected().await;
    for c in [&mut on_a, &mut on_b, &mut sender_on_b] {
        c.subscribe_signed("private-Rooms.lobby", None).await;
    }
    // The backend used toOthers(): the sender is on node B, the API call lands on node A.
    let ciphertext = r#"{"message":"3q2+7w==","slug":"lobby"}"#;
    a.http()
        .trigger(
            &["private-Rooms.lobby"],
            "App\\Events\\RoomMessageEvent",
            ciphertext,
            Some(&sender_on_b.socket_id),
        )
        .await;
    let expected = r#"{"event":"App\\Events\\RoomMessageEvent","channel":"private-Rooms.lobby","data":"{\"message\":\"3q2+7w==\",\"slug\":\"lobby\"}"}"#;
    assert_eq!(on_a.recv_raw().await, expected);
    assert_eq!(
        on_b.recv_raw().await,
        expected,
        "same bytes on the other node"
    );
    sender_on_b.expect_nothing().await;

    // A batch through node B reaches node A in order.
    let batch = json!({"batch": [
        {"channel": "private-Rooms.lobby", "name": "one", "data": "1"},
        {"channel": "private-Rooms.lobby", "name": "two", "data": "2"},
    ]});
    assert_eq!(b.http().post("/batch_events", batch).await.status, 200);
    assert_eq!(on_a.recv().await["event"], "one");
    assert_eq!(on_a.recv().await["event"], "two");
}

#[tokio::test]
async fn client_events_cross_nodes_and_are_not_echoed() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, 2).await;
    let mut alice = nodes[0].connected().await;
    let mut bob = nodes[1].connected().await;
    alice.join("presence-Rooms.x", "1").await;
    users_become(&nodes[1], "presence-Rooms.x", json!({"users":[{"id":"1"}]})).await;
    bob.join("presence-Rooms.x", "2").await;
    assert_eq!(alice.recv().await["event"], "pusher_internal:member_added");
    alice
        .send(json!({"event":"client-typing","channel":"presence-Rooms.x","data":{"typing":true}}))
        .await;
    assert_eq!(
        bob.recv_raw().await,
        r#"{"event":"client-typing","channel":"presence-Rooms.x","data":{"typing":true},"user_id":"1"}"#
    );
    alice.expect_nothing().await;
}

#[tokio::test]
async fn presence_members_are_cluster_wide() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let ch = "presence-Rooms.team";
    let mut one_on_a = a.connected().await;
    one_on_a.join(ch, "1").await;
    // Node B must have heard the join before user 2 subscribes there.
    let mut two_on_b = b.connected().await;
    users_become(b, ch, json!({"users":[{"id":"1"}]})).await;
    let data = two_on_b.join(ch, "2").await;
    assert_eq!(data["presence"]["count"], 2, "{data}");
    assert_eq!(data["presence"]["hash"]["1"], json!({"name":"user 1"}));
    assert_eq!(
        one_on_a.recv_raw().await,
        format!(
            r#"{{"event":"pusher_internal:member_added","channel":"{ch}","data":"{{\"user_id\":\"2\",\"user_info\":{{\"name\":\"user 2\"}}}}"}}"#
        )
    );

    // User 1 opens a second tab on node B: already present, nobody hears of it.
    let mut one_on_b = b.connected().await;
    assert_eq!(one_on_b.join(ch, "1").await["presence"]["count"], 2);
    two_on_b.expect_nothing().await;
    one_on_a.expect_nothing().await;
    let users = a
        .http()
        .get(&format!("/channels/{ch}"), &[("info", "user_count")])
        .await;
    assert_eq!(users.json(), json!({"occupied": true, "user_count": 2}));

    // The tab on node A closes: user 1 is still on node B.
    drop(one_on_a);
    two_on_b.expect_nothing().await;
    // The last tab closes: gone everywhere.
    drop(one_on_b);
    assert_eq!(
        two_on_b.recv_raw().await,
        format!(
            r#"{{"event":"pusher_internal:member_removed","channel":"{ch}","data":"{{\"user_id\":\"1\"}}"}}"#
        )
    );
    // Node A hears of it through Redis.
    users_become(a, ch, json!({"users":[{"id":"2"}]})).await;
}

#[tokio::test]
async fn a_node_that_starts_later_learns_the_members_already_there() {
    let redis = Redis::start().await;
    let mut nodes = cluster(&redis, 1).await;
    let mut early = nodes[0].connected().await;
    early.join("presence-late", "1").await;
    // Same Redis channel as node 0: reuse its configuration.
    let late = TestServer::start_with(nodes[0].state.config.clone()).await;
    nodes.push(late);
    wait_for_peers(&nodes, 1).await;
    users_become(&nodes[1], "presence-late", json!({"users":[{"id":"1"}]})).await;
    let mut newcomer = nodes[1].connected().await;
    let data = newcomer.join("presence-late", "2").await;
    assert_eq!(data["presence"]["count"], 2, "{data}");
    assert_eq!(early.recv().await["event"], "pusher_internal:member_added");
}

#[tokio::test]
async fn a_draining_nodes_member_leaves_when_the_drain_closes_its_connection() {
    // The draining node keeps its members until the drain closes their connections, and
    // reports each departure then: user 2 is removed on the other node when its client is
    // closed, not at the start of the drain, and not after the peer timeout either.
    let redis = Redis::start().await;
    let mut nodes = cluster(&redis, 2).await;
    let mut stays = nodes[0].connected().await;
    stays.join("presence-bye", "1").await;
    let mut leaves = nodes[1].connected().await;
    leaves.join("presence-bye", "2").await;
    assert_eq!(stays.recv().await["event"], "pusher_internal:member_added");
    let start = tokio::time::Instant::now();
    let task = nodes[1].shutdown();
    let closed = async {
        loop {
            match leaves.next_seen(Duration::from_secs(12)).await {
                Some(Seen::Closed(code, _)) => return (code, start.elapsed()),
                Some(Seen::Frame(_)) => continue,
                None => panic!("the drain did not close the client"),
            }
        }
    };
    let removed = async {
        let v = stays.next_seen(Duration::from_secs(12)).await;
        (v, start.elapsed())
    };
    let ((code, closed_at), (v, removed_at)) = tokio::join!(closed, removed);
    assert_eq!(code, Some(4200));
    let Some(Seen::Frame(v)) = v else {
        panic!("no member_removed: {v:?}")
    };
    assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
    assert_eq!(v["data"], r#"{"user_id":"2"}"#);
    assert!(
        removed_at >= closed_at,
        "user 2 was removed at {removed_at:?}, before its connection closed at {closed_at:?}"
    );
    assert!(
        removed_at < closed_at + Duration::from_secs(2),
        "removed at {removed_at:?}, long after the close at {closed_at:?}"
    );
    task.await.unwrap();
}

#[tokio::test]
async fn http_queries_count_every_node() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, 3).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..=i {
            let mut c = node.connected().await;
            c.subscribe_public("public-news").await;
            clients.push(c);
        }
    }
    let mut only_c = nodes[2].connected().await;
    only_c.subscribe_public("public-only-on-c").await;
    let api = nodes[0].http();
    let one = api
        .get("/channels/public-news", &[("info", "subscription_count")])
        .await;
    assert_eq!(
        one.json(),
        json!({"occupied": true, "subscription_count": 6})
    );
    let all = api
        .get(
            "/channels",
            &[
                ("filter_by_prefix", "public-"),
                ("info", "subscription_count"),
            ],
        )
        .await;
    assert_eq!(
        all.json(),
        json!({"channels": {
            "public-news": {"subscription_count": 6},
            "public-only-on-c": {"subscription_count": 1}
        }})
    );
    let conns = api.get("/connections", &[]).await;
    assert_eq!(conns.json(), json!({"connections": 7}));
    // A trigger asking for counts gets the cluster's too.
    let body = json!({"name": "e", "data": "{}", "channels": ["public-news"], "info": "subscription_count"});
    let r = api.post("/events", body).await;
    assert_eq!(
        r.json(),
        json!({"channels": {"public-news": {"subscription_count": 6}}})
    );
    let batch = json!({"batch": [
        {"name": "e", "data": "{}", "channel": "public-only-on-c", "info": "subscription_count"},
        {"name": "e", "data": "{}", "channel": "public-news"},
    ]});
    let r = api.post("/batch_events", batch).await;
    assert_eq!(r.json(), json!({"batch": [{"subscription_count": 1}, {}]}));
    let none = api.get("/channels/public-nobody", &[]).await;
    assert_eq!(none.json(), json!({"occupied": false}));
}

#[tokio::test]
async fn terminating_a_user_closes_its_connections_on_every_node() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, 2).await;
    let mut user = nodes[1].connected().await;
    let user_data = r#"{"id":"42","user_info":{"name":"x"}}"#;
    user.send(signin_frame(&user.socket_id, user_data)).await;
    assert_eq!(user.recv().await["event"], "pusher:signin_success");
    let mut other = nodes[1].connected().await;
    let r = nodes[0]
        .http()
        .post("/users/42/terminate_connections", json!({}))
        .await;
    assert_eq!(r.status, 200);
    let v = user.recv().await;
    assert_eq!(error_of(&v).0, 4009, "{v}");
    assert_eq!(user.expect_close().await.0, Some(4009));
    other.expect_nothing().await;
}

#[tokio::test]
async fn nodes_keep_serving_alone_while_redis_is_away_and_rejoin_when_it_returns() {
    let mut redis = Redis::start().await;
    let nodes = cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = a.connected().await;
    on_a.subscribe_public("public-x").await;
    let mut on_b = b.connected().await;
    on_b.subscribe_public("public-x").await;

    redis.stop();
    // Local delivery does not depend on Redis.
    a.http().trigger(&["public-x"], "alone", "{}", None).await;
    assert_eq!(on_a.recv().await["event"], "alone");

    let port = redis.port;
    let _redis = Redis::start_on(port).await;
    // Each node redials (backoff under 10 s) and says hello again; then events cross again.
    let mut crossed = false;
    for _ in 0..60 {
        a.http().trigger(&["public-x"], "back", "{}", None).await;
        assert_eq!(on_a.recv().await["event"], "back");
        if let Some(Seen::Frame(v)) = on_b.next_seen(Duration::from_millis(500)).await {
            // Anything queued while Redis was away may arrive first.
            if v["event"] == "back" {
                crossed = true;
                break;
            }
        }
    }
    assert!(crossed, "events did not cross nodes after Redis came back");
}

#[tokio::test]
async fn a_single_node_with_scaling_and_no_redis_still_serves() {
    // Nothing listens on this port.
    let port = free_port();
    let node = TestServer::start_with(node_config(port, "nobody")).await;
    let mut c = node.connected().await;
    c.subscribe_public("public-x").await;
    node.http()
        .trigger(&["public-x"], "still-here", "{}", None)
        .await;
    assert_eq!(c.recv().await["event"], "still-here");
    let one = node
        .http()
        .get("/channels/public-x", &[("info", "subscription_count")])
        .await;
    assert_eq!(
        one.json(),
        json!({"occupied": true, "subscription_count": 1})
    );
}

#[tokio::test]
async fn nodes_authenticate_to_a_redis_with_a_password_and_a_wrong_one_stays_alone() {
    let port = free_port();
    let _redis = Redis::start_with(port, &["--requirepass", "s3cr:t@x"]).await;
    let url = format!("redis://:s3cr%3At%40x@127.0.0.1:{port}/0");
    let nodes = vec![
        TestServer::start_with(node_config_url(&url, "auth")).await,
        TestServer::start_with(node_config_url(&url, "auth")).await,
    ];
    let wrong = format!("redis://:nope@127.0.0.1:{port}/0");
    let outsider = TestServer::start_with(node_config_url(&wrong, "auth")).await;
    assert_pair_shares_and_outsider_is_alone(&nodes, &outsider).await;
}

#[tokio::test]
async fn a_node_that_stops_answering_delays_one_query_not_every_query() {
    let redis = Redis::start().await;
    let nodes = cluster_timed(&redis, 2, |s| s.query_wait = Duration::from_secs(1)).await;
    let mut on_b = nodes[1].connected().await;
    on_b.subscribe_public("public-count").await;
    // A node that beats once and then dies without a word (as after SIGKILL).
    publish_raw(
        &redis,
        &nodes[0],
        &sealed(&nodes[0], "ghost", 1, r#""beat""#),
    )
    .await;
    wait_for_peers(&nodes[..1], 2).await;
    let api = nodes[0].http();
    let ask = || api.get("/channels/public-count", &[("info", "subscription_count")]);
    let expected = json!({"occupied": true, "subscription_count": 1});
    // The first query waits for the ghost until query_wait and answers with what it has.
    assert_eq!(ask().await.json(), expected);
    // The next ones do not wait for it again.
    let started = std::time::Instant::now();
    assert_eq!(ask().await.json(), expected);
    assert!(
        started.elapsed() < nodes[0].state.config.scaling.as_ref().unwrap().query_wait,
        "waited {:?} for a node that already missed a query",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_node_that_dies_without_a_word_loses_its_members_after_the_peer_timeout() {
    let redis = Redis::start().await;
    let nodes = cluster_timed(&redis, 1, |s| {
        s.beat_every = Duration::from_millis(200);
        s.peer_timeout = Duration::from_secs(1);
    })
    .await;
    let mut here = nodes[0].connected().await;
    here.join("presence-ghost", "1").await;
    // A node that announces a member and then falls silent (as after SIGKILL).
    let join =
        format!(r#"{{"join":{{"app":"{APP_ID}","channel":"presence-ghost","user_id":"g"}}}}"#);
    let join = sealed(&nodes[0], "ghost", 1, &join);
    // A cluster of one waits for no peer: the node may not have subscribed yet.
    wait_until_subscribed(&redis, &nodes[0]).await;
    assert_eq!(publish_raw(&redis, &nodes[0], &join).await, 1);
    let v = here.recv().await;
    assert_eq!(v["event"], "pusher_internal:member_added", "{v}");
    // Gone once the peer timeout passes without a beat from it (well within WAIT).
    let v = here.recv().await;
    assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
    assert_eq!(v["data"], r#"{"user_id":"g"}"#);
    users_become(&nodes[0], "presence-ghost", json!({"users":[{"id":"1"}]})).await;
}

fn watch_events(v: &Value) -> Value {
    assert_eq!(v["event"], "pusher_internal:watchlist_events", "{v}");
    serde_json::from_str::<Value>(v["data"].as_str().unwrap()).unwrap()["events"].clone()
}

async fn sign_in(node: &TestServer, user_data: &str) -> Client {
    let mut c = node.connected().await;
    c.send(signin_frame(&c.socket_id, user_data)).await;
    assert_eq!(c.recv().await["event"], "pusher:signin_success");
    c
}

#[tokio::test]
async fn watchlists_see_users_online_on_any_node() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut watcher = sign_in(a, r#"{"id":"w","watchlist":["42"]}"#).await;
    assert_eq!(
        watch_events(&watcher.recv().await),
        json!([{"name":"offline","user_ids":["42"]}])
    );
    let on_b = sign_in(b, r#"{"id":"42"}"#).await;
    assert_eq!(
        watch_events(&watcher.recv().await),
        json!([{"name":"online","user_ids":["42"]}])
    );
    // A second connection on node A: already online, nobody hears of it.
    let on_a = sign_in(a, r#"{"id":"42"}"#).await;
    watcher.expect_nothing().await;
    // A watcher signing in later on node A is told 42 is online (known from node B).
    let mut late = sign_in(a, r#"{"id":"w2","watchlist":["42"]}"#).await;
    assert_eq!(
        watch_events(&late.recv().await),
        json!([{"name":"online","user_ids":["42"]}])
    );
    drop(on_b);
    watcher.expect_nothing().await;
    drop(on_a);
    assert_eq!(
        watch_events(&watcher.recv().await),
        json!([{"name":"offline","user_ids":["42"]}])
    );
    assert_eq!(
        watch_events(&late.recv().await),
        json!([{"name":"offline","user_ids":["42"]}])
    );
}

#[tokio::test]
async fn nodes_reach_a_redis_over_tls_trusting_the_configured_ca() {
    // A CA and a server certificate for "localhost" signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();

    let port = free_port();
    let tls_port = port.to_string();
    let (cert_file, key_file, ca_file) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    // Only TLS: the plain port is off.
    let _redis = Redis::spawn(
        0,
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert_file,
            "--tls-key-file",
            &key_file,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
        ],
        port,
    )
    .await;
    let trusted = |channel: &str| resound::Config {
        scaling: Some(Scaling {
            timeout: Duration::from_secs(5),
            ca: Some(ca_cert.pem().into_bytes()),
            ..Scaling::new(format!("rediss://localhost:{port}/0"), channel)
        }),
        ..config_with(app())
    };
    let nodes = vec![
        TestServer::start_with(trusted("tls")).await,
        TestServer::start_with(trusted("tls")).await,
    ];
    // Without the CA (system roots only) the certificate is not trusted: the node stays alone.
    let mut untrusting = trusted("tls");
    untrusting.scaling.as_mut().unwrap().ca = None;
    let outsider = TestServer::start_with(untrusting).await;
    assert_pair_shares_and_outsider_is_alone(&nodes, &outsider).await;
}

#[tokio::test]
async fn subscription_counts_pushed_to_clients_add_up_every_node() {
    let redis = Redis::start().await;
    let channel = format!("resound-test-{}", rand_suffix());
    let config = || {
        let mut c = node_config(redis.port, &channel);
        c.apps[0].subscription_count = true;
        c
    };
    let nodes = vec![
        TestServer::start_with(config()).await,
        TestServer::start_with(config()).await,
    ];
    wait_for_peers(&nodes, 1).await;
    let count_of = |v: &Value| -> u64 {
        assert_eq!(v["event"], "pusher_internal:subscription_count", "{v}");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        data["subscription_count"].as_u64().unwrap()
    };
    let mut on_a = nodes[0].connected().await;
    on_a.subscribe_public("public-viewers").await;
    assert_eq!(count_of(&on_a.recv().await), 1);
    let mut on_b = nodes[1].connected().await;
    on_b.subscribe_public("public-viewers").await;
    // Node B may count before or after it hears node A's count: it ends at 2.
    let mut seen = count_of(&on_b.recv().await);
    if seen == 1 {
        seen = count_of(&on_b.recv().await);
    }
    assert_eq!(seen, 2);
    assert_eq!(
        count_of(&on_a.recv().await),
        2,
        "node A hears node B's subscriber"
    );
    drop(on_b);
    assert_eq!(count_of(&on_a.recv().await), 1, "and its departure");
}

#[tokio::test]
async fn presence_converges_after_changes_made_while_redis_was_away() {
    let mut redis = Redis::start().await;
    let nodes = cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let ch = "presence-outage";
    let mut one = a.connected().await;
    one.join(ch, "1").await;
    let mut two = b.connected().await;
    users_become(b, ch, json!({"users":[{"id":"1"}]})).await;
    two.join(ch, "2").await;
    assert_eq!(one.recv().await["event"], "pusher_internal:member_added");

    redis.stop();
    // While the nodes cannot talk: user 2 leaves node B, user 3 joins it.
    drop(two);
    let mut three = b.connected().await;
    three.join(ch, "3").await;
    let _redis = Redis::start_on(redis.port).await;
    // Node A ends up with exactly users 1 and 3, and its client heard it.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let v = one.recv().await;
        seen.push((
            v["event"].as_str().unwrap().to_owned(),
            v["data"].as_str().unwrap().to_owned(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "pusher_internal:member_added".to_owned(),
                r#"{"user_id":"3","user_info":{"name":"user 3"}}"#.to_owned()
            ),
            (
                "pusher_internal:member_removed".to_owned(),
                r#"{"user_id":"2"}"#.to_owned()
            ),
        ]
    );
    let users = a
        .http()
        .get(&format!("/channels/{ch}"), &[("info", "user_count")])
        .await;
    assert_eq!(users.json(), json!({"occupied": true, "user_count": 2}));
}

#[tokio::test]
async fn a_message_published_twice_after_a_lost_connection_is_delivered_once() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, 1).await;
    let mut c = nodes[0].connected().await;
    c.subscribe_public("public-once").await;
    // What another node's link does when a pipeline fails after Redis carried some of it: the
    // same numbered messages again, then new ones.
    let event = |seq: u64, name: &str| {
        let msg = format!(
            r#"{{"event":{{"app":"{APP_ID}","channels":["public-once"],"event":"{name}","data":"{{}}","except":null}}}}"#
        );
        sealed(&nodes[0], "replayer", seq, &msg)
    };
    wait_until_subscribed(&redis, &nodes[0]).await;
    for text in [
        event(1, "first"),
        event(2, "second"),
        event(1, "first"),
        event(2, "second"),
        event(3, "third"),
    ] {
        publish_raw(&redis, &nodes[0], &text).await;
    }
    for name in ["first", "second", "third"] {
        assert_eq!(c.recv().await["event"], name);
    }
    c.expect_nothing().await;
}

#[tokio::test]
async fn messages_without_the_clusters_signature_are_ignored() {
    let redis = Redis::start().await;
    let channel = format!("resound-test-{}", rand_suffix());
    let mut heard = listen(&redis, &channel).await;
    let node = &TestServer::start_with(node_config(redis.port, &channel)).await;
    // The node's own hello and state once its link is up.
    let start = kinds_heard_until(&mut heard, WAIT, |k| k == "state").await;
    assert_eq!(start, ["hello", "state"]);
    let mut private = node.connected().await;
    private.subscribe_signed("private-secrets", None).await;
    let mut user = sign_in(node, r#"{"id":"42"}"#).await;
    let event = |name: &str| {
        format!(
            r#"{{"event":{{"app":"{APP_ID}","channels":["private-secrets"],"event":"{name}","data":"{{}}","except":null}}}}"#
        )
    };
    let terminate = format!(r#"{{"terminate":{{"app":"{APP_ID}","user_id":"42"}}}}"#);
    let unsigned = |version: u32, seq: u64, msg: &str| {
        format!(r#"{{"resound":{version},"node":"intruder","seq":{seq},"msg":{msg}}}"#)
    };
    let guessed = |seq: u64, msg: &str| sealed_with("a guess", node, "intruder", seq, msg);
    // What the security review published: an event for a private channel, a termination, a
    // sequence number meant to make the node drop what follows, a hello asking for a state
    // dump; without a MAC, in the previous wire version, and signed with a guessed key.
    let forged = [
        unsigned(2, 1, &event("forged")),
        unsigned(1, 1, &event("forged")),
        unsigned(2, 2, &terminate),
        unsigned(2, u64::MAX, &event("forged")),
        unsigned(2, 3, r#""hello""#),
        guessed(u64::MAX, &event("forged")),
        guessed(4, &terminate),
        guessed(5, r#""hello""#),
    ];
    for text in &forged {
        assert_eq!(publish_raw(&redis, node, text).await, 2, "the node and us");
    }
    // Then a node holding the key: its event is the first the client sees, and its hello is
    // the only one answered with a state.
    publish_raw(&redis, node, &sealed(node, "peer", 1, &event("real"))).await;
    publish_raw(&redis, node, &sealed(node, "peer", 2, r#""hello""#)).await;
    assert_eq!(private.recv().await["event"], "real");
    private.expect_nothing().await;
    user.expect_nothing().await;
    let kinds = kinds_heard(&mut heard, Duration::from_millis(500)).await;
    let states = kinds.iter().filter(|k| *k == "state").count();
    assert_eq!(states, 1, "{kinds:?}");
    assert_eq!(
        node.state.peers().unwrap().live_nodes(),
        1,
        "only the real peer"
    );
}

#[tokio::test]
async fn a_node_with_another_scaling_secret_stays_alone() {
    let redis = Redis::start().await;
    let channel = format!("resound-test-{}", rand_suffix());
    let nodes = vec![
        TestServer::start_with(node_config(redis.port, &channel)).await,
        TestServer::start_with(node_config(redis.port, &channel)).await,
    ];
    let mut other = node_config(redis.port, &channel);
    other.scaling.as_mut().unwrap().secret = Some("another secret".to_owned());
    let outsider = TestServer::start_with(other).await;
    assert_pair_shares_and_outsider_is_alone(&nodes, &outsider).await;
}

#[tokio::test]
async fn a_burst_of_new_node_ids_causes_a_bounded_number_of_state_dumps() {
    let redis = Redis::start().await;
    let nodes = cluster_timed(&redis, 2, |s| {
        s.beat_every = Duration::from_millis(250);
        s.peer_timeout = Duration::from_secs(5);
    })
    .await;
    let node = &nodes[0];
    let mut heard = listen(&redis, &node.state.config.scaling.as_ref().unwrap().channel).await;
    // The cluster's own start-up exchange passes first.
    kinds_heard(&mut heard, Duration::from_millis(600)).await;
    // Each message from a node not known yet used to make both nodes say hello, and each
    // hello made the other answer with its whole state: about 100 states here.
    for i in 0..25 {
        let beat = sealed(node, &format!("beat-{i}"), 1, r#""beat""#);
        let hello = sealed(node, &format!("hello-{i}"), 1, r#""hello""#);
        publish_raw(&redis, node, &beat).await;
        publish_raw(&redis, node, &hello).await;
    }
    let kinds = kinds_heard(&mut heard, Duration::from_millis(1500)).await;
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert!(
        count("hello") >= 25,
        "the listener heard the burst: {kinds:?}"
    );
    // Per node: one at once, one at the next beat for the rest of the burst, one for the
    // other node's held-back hello.
    assert!(count("state") <= 6, "{} states: {kinds:?}", count("state"));
}

#[tokio::test]
async fn while_redis_is_away_the_other_nodes_members_leave_after_the_peer_timeout() {
    let mut redis = Redis::start().await;
    let nodes = cluster_timed(&redis, 2, |s| {
        s.beat_every = Duration::from_millis(200);
        s.peer_timeout = Duration::from_secs(1);
    })
    .await;
    let ch = "presence-away";
    let mut here = nodes[0].connected().await;
    here.join(ch, "1").await;
    let mut there = nodes[1].connected().await;
    users_become(&nodes[1], ch, json!({"users":[{"id":"1"}]})).await;
    there.join(ch, "2").await;
    assert_eq!(here.recv().await["event"], "pusher_internal:member_added");

    redis.stop();
    // Node B is as silent to node A as if it had died: its member leaves after the peer
    // timeout, though A's link is down (WAIT is 5 s).
    let v = here.recv().await;
    assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
    assert_eq!(v["data"], r#"{"user_id":"2"}"#);
    // Redis is back: node B answers A's hello with its state, and its member is back.
    let _redis = Redis::start_on(redis.port).await;
    match here.next_seen(Duration::from_secs(20)).await {
        Some(Seen::Frame(v)) => {
            assert_eq!(v["event"], "pusher_internal:member_added", "{v}");
            assert_eq!(
                v["data"],
                r#"{"user_id":"2","user_info":{"name":"user 2"}}"#
            );
        }
        other => panic!("expected user 2 back, saw {other:?}"),
    }
}

/// A TCP relay to Redis that can hold a node back: while closed it drops every connection,
/// so the node behind it redials as if Redis were still away.
struct Relay {
    port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn to(redis_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !gate.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                tokio::spawn(async move {
                    let upstream = tokio::net::TcpStream::connect(("127.0.0.1", redis_port)).await;
                    if let Ok(mut upstream) = upstream {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        Relay { port, open }
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn what_a_node_queued_while_redis_was_away_reaches_a_node_that_comes_back_later() {
    let mut redis = Redis::start().await;
    let relay = Relay::to(redis.port).await;
    let channel = format!("resound-test-{}", rand_suffix());
    let timed = |url: String| {
        let mut config = node_config_url(&url, &channel);
        config.scaling.as_mut().unwrap().beat_every = Duration::from_secs(1);
        config
    };
    let a = TestServer::start_with(timed(format!("redis://127.0.0.1:{}/0", redis.port))).await;
    let b = TestServer::start_with(timed(format!("redis://127.0.0.1:{}/0", relay.port))).await;
    let nodes = [a, b];
    wait_for_peers(&nodes, 1).await;
    let mut on_b = nodes[1].connected().await;
    on_b.subscribe_public("public-outage").await;

    redis.stop();
    relay.set_open(false);
    nodes[0]
        .http()
        .trigger(&["public-outage"], "queued", "{}", None)
        .await;
    redis = Redis::start_on(redis.port).await;
    // Node A is back at once; node B only 1.5 s later. A must not publish what it queued
    // into a channel B has not subscribed to again (Redis would drop it for B).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    relay.set_open(true);
    let v = on_b.recv().await;
    assert_eq!(v["event"], "queued", "{v}");
    drop(redis);
}

#[tokio::test]
async fn a_draining_node_says_bye_at_the_start_of_its_drain() {
    // With the default 10 s drain, the other node learns at once that this one is going,
    // while most of its clients are still connected.
    let redis = Redis::start().await;
    let mut nodes = cluster(&redis, 2).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(nodes[0].connected().await);
    }
    let task = nodes[0].shutdown();
    let gone = wait_until(
        async || nodes[1].state.peers().unwrap().live_nodes() == 0,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        gone,
        "the other node did not hear `bye` at the start of the drain"
    );
    let mut still_open = 0;
    for c in &mut clients {
        if c.next_seen(Duration::from_millis(1)).await.is_none() {
            still_open += 1;
        }
    }
    assert!(
        still_open > 0,
        "every client was closed before `bye` was heard"
    );
    drop(clients);
    tokio::time::timeout(Duration::from_secs(12), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_draining_node_still_delivers_the_others_events_until_its_clients_have_gone() {
    // After `bye`, HTTP API calls go to the other nodes (or to the process that took over the
    // port); the clients the drain has not closed yet still hear them, through Redis.
    let redis = Redis::start().await;
    let mut nodes = cluster(&redis, 2).await;
    wait_for_peers(&nodes, 1).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = nodes[0].connected().await;
        c.subscribe_public("during-drain").await;
        clients.push(c);
    }
    let task = nodes[0].shutdown();
    assert!(
        wait_until(
            async || nodes[1].state.peers().unwrap().live_nodes() == 0,
            Duration::from_secs(2),
        )
        .await,
        "the other node did not hear `bye`"
    );
    nodes[1]
        .http()
        .trigger(&["during-drain"], "after-bye", "{}", None)
        .await;
    let mut heard = 0;
    for c in &mut clients {
        loop {
            match c.next_seen(Duration::from_secs(12)).await {
                Some(Seen::Frame(v)) if v["event"] == "after-bye" => heard += 1,
                Some(Seen::Frame(_)) => continue,
                Some(Seen::Closed(code, _)) => {
                    assert_eq!(code, Some(4200));
                    break;
                }
                None => panic!("the drain did not close a client"),
            }
        }
    }
    // Each client is closed at a random instant of the 8 s window; the event was sent within
    // the first few hundred milliseconds, so nearly every one of them was still there.
    assert!(
        heard >= clients.len() / 2,
        "only {heard} of 10 clients heard the event"
    );
    drop(clients);
    tokio::time::timeout(Duration::from_secs(12), task)
        .await
        .unwrap()
        .unwrap();
}

/// Redis goes away just as a node starts draining and comes back during the drain: the
/// draining node keeps redialling while it has clients, so the others get back the members
/// they dropped after the peer timeout and then hear each departure as the drain closes it.
/// (Before, shutdown ended the redialling: the others never heard of that node again.)
#[tokio::test]
async fn a_node_that_loses_redis_as_it_drains_redials_to_report_its_departures() {
    let mut redis = Redis::start().await;
    let channel = format!("resound-test-{}", rand_suffix());
    let config = |drain: Duration| {
        let mut c = node_config(redis.port, &channel);
        let s = c.scaling.as_mut().unwrap();
        s.beat_every = Duration::from_millis(200);
        s.peer_timeout = Duration::from_secs(1);
        resound::Config {
            drain,
            shutdown_timeout: Duration::from_secs(12),
            ..c
        }
    };
    let mut draining = TestServer::start_with(config(Duration::from_secs(8))).await;
    let staying = TestServer::start_with(config(Duration::from_secs(1))).await;
    let nodes = [draining, staying];
    wait_for_peers(&nodes, 1).await;
    let [d, staying] = nodes;
    draining = d;
    let ch = "presence-drain-away";
    let mut observer = staying.connected().await;
    observer.join(ch, "observer").await;
    // Many members, each closed at its own random instant of the 8 s window: some are still
    // connected when Redis is back (all twelve gone within 2.5 s has odds of about 1e-6).
    let ids: Vec<String> = (1..=12).map(|i| format!("m{i}")).collect();
    let mut members = Vec::new();
    for id in &ids {
        let mut m = draining.connected().await;
        m.join(ch, id).await;
        members.push(m);
    }
    let mut present = std::collections::BTreeSet::new();
    while present.len() < ids.len() {
        let v = observer.recv().await;
        assert_eq!(v["event"], "pusher_internal:member_added", "{v}");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        present.insert(data["user_id"].as_str().unwrap().to_owned());
    }

    redis.stop();
    let stopped = draining.shutdown();
    // The staying node drops the silent node's members after the peer timeout...
    while !present.is_empty() {
        let v = observer.recv().await;
        assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        present.remove(data["user_id"].as_str().unwrap());
    }
    // ...and Redis is back while the other still drains.
    let _redis = Redis::start_on(redis.port).await;
    let mut back = std::collections::BTreeSet::new();
    let mut gone = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(Seen::Frame(v)) = observer.next_seen(left).await else {
            break;
        };
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        let id = data["user_id"].as_str().unwrap().to_owned();
        match v["event"].as_str().unwrap() {
            "pusher_internal:member_added" => assert!(back.insert(id.clone()), "{id} added twice"),
            "pusher_internal:member_removed" => {
                assert!(back.contains(&id), "{id} removed but never back");
                assert!(gone.insert(id.clone()), "{id} removed twice");
            }
            other => panic!("unexpected {other}: {v}"),
        }
        if !back.is_empty() && back == gone && stopped.is_finished() {
            break;
        }
    }
    assert!(
        !back.is_empty(),
        "the draining node never reported its members after Redis came back"
    );
    assert_eq!(
        back, gone,
        "every member brought back left again as the drain closed it"
    );
    tokio::time::timeout(Duration::from_secs(15), stopped)
        .await
        .expect("the draining node stops")
        .unwrap();
    users_become(&staying, ch, json!({"users":[{"id":"observer"}]})).await;
    drop(members);
}
