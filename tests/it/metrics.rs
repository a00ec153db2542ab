//! Prometheus metrics: scraped over a real socket, parsed as the text format, and checked to
//! move with real traffic (connections, subscriptions, API triggers, whispers, refusals, a
//! slow consumer, the Redis link).

use std::net::SocketAddr;
use std::time::Duration;

use resound::config::Metrics;
use serde_json::json;

use crate::support::prom::{get, scrape, Scrape};
use crate::support::*;

fn with_metrics(metrics: Metrics) -> resound::Config {
    resound::Config {
        metrics,
        ..config_with(app())
    }
}

async fn metrics_of(server: &TestServer) -> Scrape {
    scrape(server.addr, "/metrics").await
}

/// Polls the scrape until `check` holds (a count moves a moment after the frame that caused
/// it, e.g. a close is counted once the session has cleaned up).
async fn settles(server: &TestServer, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    let ok = wait_until(
        async || {
            let s = metrics_of(server).await;
            let ok = check(&s);
            last = Some(s);
            ok
        },
        WAIT,
    )
    .await;
    let last = last.unwrap();
    assert!(ok, "the metrics never got there: {:#?}", last.samples);
    last
}

const APP: (&str, &str) = ("app", APP_ID);

#[tokio::test]
async fn counts_move_with_connections_subscriptions_triggers_and_whispers() {
    let server = TestServer::start_with(with_metrics(Metrics::MainPort)).await;
    let before = metrics_of(&server).await;
    assert_eq!(before.get("resound_connections", &[APP]), Some(0.0));
    assert!(before.value("resound_process_resident_memory_bytes", &[]) > 0.0);
    assert!(before.value("resound_process_open_fds", &[]) >= 3.0);
    assert!(before.value("resound_start_time_seconds", &[]) > 1.7e9);
    assert!(before.get("resound_uptime_seconds", &[]).is_some());
    assert!(
        before.get("resound_redis_link_up", &[]).is_none(),
        "no Redis metrics without scaling"
    );

    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.subscribe_signed("private-chat", None).await;
    b.subscribe_signed("private-chat", None).await;
    a.subscribe_public("news").await;
    // Three subscribe frames in, and each client got connection_established and a
    // subscription_succeeded per subscribe out (counted once written).
    let s = settles(&server, |s| {
        s.value("resound_messages_sent_total", &[APP]) == 5.0
    })
    .await;
    assert_eq!(s.get("resound_connections", &[APP]), Some(2.0));
    assert_eq!(s.value("resound_connections_opened_total", &[APP]), 2.0);
    let kind = |k| [APP, ("kind", k)];
    assert_eq!(s.get("resound_subscriptions", &kind("private")), Some(2.0));
    assert_eq!(s.get("resound_subscriptions", &kind("public")), Some(1.0));
    assert_eq!(
        s.get("resound_subscriptions_total", &kind("private")),
        Some(2.0)
    );
    assert_eq!(
        s.get("resound_channels_occupied", &kind("private")),
        Some(1.0)
    );
    assert_eq!(
        s.get("resound_channels_occupied", &kind("public")),
        Some(1.0)
    );
    assert_eq!(
        s.get("resound_channels_occupied", &kind("presence")),
        Some(0.0)
    );
    assert_eq!(s.value("resound_messages_received_total", &[APP]), 3.0);
    assert!(s.value("resound_received_bytes_total", &[APP]) > 3.0 * 40.0);

    // An HTTP API trigger: counted by endpoint and status, timed, and its frame sent.
    let sent_before = s.value("resound_sent_bytes_total", &[APP]);
    let data = "d".repeat(500);
    server
        .http()
        .trigger(&["news"], "update", &data, None)
        .await;
    assert_eq!(a.recv().await["event"], "update");
    let events = [APP, ("endpoint", "events"), ("status", "200")];
    let s = settles(&server, |s| {
        s.value("resound_messages_sent_total", &[APP]) == 6.0
    })
    .await;
    assert_eq!(s.get("resound_http_requests_total", &events), Some(1.0));
    let timed = [APP, ("endpoint", "events")];
    assert_eq!(
        s.get("resound_http_request_duration_seconds_count", &timed),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            "resound_http_request_duration_seconds_bucket",
            &[APP, ("endpoint", "events"), ("le", "+Inf")]
        ),
        Some(1.0)
    );
    assert!(s.value("resound_http_request_duration_seconds_sum", &timed) > 0.0);
    assert_eq!(
        s.types["resound_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(s.types["resound_connections"], "gauge");
    assert_eq!(s.value("resound_api_events_total", &[APP]), 1.0);
    assert!(s.value("resound_sent_bytes_total", &[APP]) >= sent_before + 500.0);

    // A whisper relayed, and one refused (the sender is not a member of that channel).
    a.send(json!({"event":"client-typing","channel":"private-chat","data":{"t":1}}))
        .await;
    assert_eq!(b.recv().await["event"], "client-typing");
    a.send(json!({"event":"client-typing","channel":"private-elsewhere","data":{}}))
        .await;
    assert_eq!(error_of(&a.recv().await).0, 4009);
    let s = metrics_of(&server).await;
    assert_eq!(s.value("resound_client_events_total", &[APP]), 1.0);
    assert_eq!(s.value("resound_client_events_refused_total", &[APP]), 1.0);
    assert_eq!(s.value("resound_messages_received_total", &[APP]), 5.0);

    // A refused signature is counted with its status.
    let path = format!("/apps/{APP_ID}/events");
    let body = json!({"name":"e","data":"x","channels":["news"]}).to_string();
    let query = server.http().signed_query("POST", &path, &[], &body, now());
    let forged = query.replace("auth_signature=", "auth_signature=00");
    let r = server
        .http()
        .raw("POST", &format!("{path}?{forged}"), &body)
        .await;
    assert_eq!(r.status, 401);
    // And a request for an app that does not exist, without an app label.
    let r = server.http().raw("GET", "/apps/nope/channels", "").await;
    assert_eq!(r.status, 404);
    let s = metrics_of(&server).await;
    let refused = [APP, ("endpoint", "events"), ("status", "401")];
    assert_eq!(s.get("resound_http_requests_total", &refused), Some(1.0));
    let unknown = s
        .samples
        .iter()
        .find(|x| x.name == "resound_http_requests_total" && !x.labels.contains_key("app"))
        .expect("a series without an app label");
    assert_eq!(unknown.labels["endpoint"], "channels");
    assert_eq!(unknown.labels["status"], "404");
    assert_eq!(unknown.value, 1.0);

    // A client that leaves: its subscriptions go, the public channel is vacated, and the
    // close is counted as `none` (the client closed first).
    a.ws.close(None).await.unwrap();
    let s = settles(&server, |s| {
        s.get("resound_connections", &[APP]) == Some(1.0)
            && s.value("resound_connections_closed_total", &[APP, ("code", "none")]) == 1.0
    })
    .await;
    assert_eq!(s.get("resound_subscriptions", &kind("private")), Some(1.0));
    assert_eq!(s.get("resound_subscriptions", &kind("public")), Some(0.0));
    assert_eq!(
        s.get("resound_channels_occupied", &kind("public")),
        Some(0.0)
    );
    assert_eq!(
        s.get("resound_channels_occupied", &kind("private")),
        Some(1.0)
    );
}

/// Every `pusher:error` sent is counted by its code: a refused signature, a frame that is
/// not a message, the error that ends a silent connection, and a refusal at the handshake.
#[tokio::test]
async fn client_errors_are_counted_by_code() {
    let mut app = app();
    app.ping_interval = Duration::from_millis(300);
    app.pong_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(resound::Config {
        metrics: Metrics::MainPort,
        ..config_with(app)
    })
    .await;
    let errors = |code| [APP, ("code", code)];
    let before = metrics_of(&server).await;
    assert_eq!(before.types["resound_client_errors_total"], "counter");
    assert_eq!(
        before.get("resound_client_errors_total", &errors("4009")),
        None
    );

    let mut c = server.connected().await;
    let forged = format!("{KEY}:{}", "0".repeat(64));
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":forged}}))
        .await;
    assert_eq!(error_of(&c.recv().await).0, 4009);
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-y","auth":forged}}))
        .await;
    assert_eq!(error_of(&c.recv().await).0, 4009);
    c.send_text("not json").await;
    assert_eq!(error_of(&c.recv().await).0, 4200);
    let s = metrics_of(&server).await;
    assert_eq!(s.value("resound_client_errors_total", &errors("4009")), 2.0);
    assert_eq!(s.value("resound_client_errors_total", &errors("4200")), 1.0);

    // Never answering the ping: 4201 is sent, then the close.
    assert_eq!(c.expect_close().await.0, Some(4201));
    let s = settles(&server, |s| {
        s.get("resound_client_errors_total", &errors("4201")) == Some(1.0)
    })
    .await;
    assert_eq!(s.value("resound_client_errors_total", &errors("4009")), 2.0);

    // Refused at the handshake (a protocol we do not speak): counted too.
    let mut refused = server.connect_raw(&format!("/app/{KEY}?protocol=99")).await;
    assert_eq!(error_of(&refused.recv().await).0, 4007);
    let s = metrics_of(&server).await;
    assert_eq!(s.value("resound_client_errors_total", &errors("4007")), 1.0);
}

#[tokio::test]
async fn a_slow_consumer_is_counted_with_what_it_dropped() {
    let mut config = with_metrics(Metrics::MainPort);
    config.outbound_queue = 16;
    config.max_request_size = Some(1_000_000);
    let server = TestServer::start_with(config).await;
    // Never read: its socket's buffers fill, then its queue.
    let mut slow = server.connected().await;
    slow.subscribe_public("firehose").await;
    let payload = "y".repeat(8_000);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"channel":"firehose","name":"e","data":payload}))
        .collect();
    let api = server.http();
    let mut dropped = false;
    for i in 0..300 {
        let r = api.post("/batch_events", json!({ "batch": batch })).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if i % 10 == 9
            && metrics_of(&server)
                .await
                .value("resound_slow_consumer_disconnects_total", &[APP])
                > 0.0
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the slow consumer was never dropped");
    let s = settles(&server, |s| {
        s.value("resound_connections_closed_total", &[APP, ("code", "4100")]) == 1.0
    })
    .await;
    assert_eq!(
        s.value("resound_slow_consumer_disconnects_total", &[APP]),
        1.0
    );
    assert!(s.value("resound_outbound_dropped_total", &[APP]) >= 1.0);
    assert_eq!(s.get("resound_connections", &[APP]), Some(0.0));
    let ok = [APP, ("endpoint", "batch_events"), ("status", "200")];
    assert!(s.value("resound_http_requests_total", &ok) >= 10.0);
    drop(slow);
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let server = TestServer::start().await;
    assert_eq!(server.state.config.metrics, Metrics::Off);
    assert_eq!(get(server.addr, "/metrics").await.0, 404);
}

#[tokio::test]
async fn metrics_live_under_the_path_prefix() {
    let config = resound::Config {
        path: "/reverb".into(),
        ..with_metrics(Metrics::MainPort)
    };
    let server = TestServer::start_with(config).await;
    let s = scrape(server.addr, "/reverb/metrics").await;
    assert_eq!(s.get("resound_connections", &[APP]), Some(0.0));
    assert_eq!(get(server.addr, "/metrics").await.0, 404);
}

#[tokio::test]
async fn a_listener_of_their_own_serves_them_and_the_main_port_does_not() {
    let port = free_port();
    let own: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = TestServer::start_with(with_metrics(Metrics::Own(own.to_string()))).await;
    let _client = server.connected().await;
    let s = scrape(own, "/metrics").await;
    assert_eq!(s.get("resound_connections", &[APP]), Some(1.0));
    assert_eq!(get(server.addr, "/metrics").await.0, 404);
    assert_eq!(get(own, "/up").await.0, 404);
}

#[tokio::test]
async fn a_taken_metrics_address_fails_at_startup() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = match resound::server::try_state(with_metrics(Metrics::Own(addr.clone()))) {
        Err(e) => e,
        Ok(_) => panic!("bound a taken port"),
    };
    assert!(err.contains(&addr), "{err}");
}

/// Two nodes on a real Redis: the link is up, messages cross it (counted on both sides),
/// and when Redis goes away the gauge drops, then a reconnect is counted.
#[tokio::test]
async fn the_redis_link_is_counted_when_scaling() {
    let redis = crate::scaling::Redis::start().await;
    let channel = format!("resound-metrics-{}", now());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = crate::scaling::node_config(redis.port, &channel);
        config.metrics = Metrics::MainPort;
        nodes.push(TestServer::start_with(config).await);
    }
    let peers = wait_until(
        async || {
            nodes
                .iter()
                .all(|s| s.state.peers().unwrap().live_nodes() == 1)
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(peers, "the nodes did not hear each other");
    let up = metrics_of(&nodes[0]).await;
    assert_eq!(up.get("resound_redis_link_up", &[]), Some(1.0));
    assert_eq!(up.get("resound_redis_reconnects_total", &[]), Some(0.0));
    assert!(up.value("resound_redis_messages_published_total", &[]) >= 1.0);

    let mut sub = nodes[1].connected().await;
    sub.subscribe_public("room").await;
    let received = metrics_of(&nodes[1])
        .await
        .value("resound_redis_messages_received_total", &[]);
    let published = metrics_of(&nodes[0])
        .await
        .value("resound_redis_messages_published_total", &[]);
    nodes[0]
        .http()
        .trigger(&["room"], "e", "across", None)
        .await;
    assert_eq!(sub.recv().await["data"], "across");
    assert!(
        metrics_of(&nodes[1])
            .await
            .value("resound_redis_messages_received_total", &[])
            > received
    );
    assert!(
        metrics_of(&nodes[0])
            .await
            .value("resound_redis_messages_published_total", &[])
            > published
    );

    let port = redis.port;
    drop(redis);
    settles(&nodes[0], |s| {
        s.get("resound_redis_link_up", &[]) == Some(0.0)
    })
    .await;
    let _redis = crate::scaling::Redis::start_on(port).await;
    let ok = wait_until(
        async || {
            let s = metrics_of(&nodes[0]).await;
            s.get("resound_redis_link_up", &[]) == Some(1.0)
                && s.value("resound_redis_reconnects_total", &[]) >= 1.0
        },
        Duration::from_secs(20),
    )
    .await;
    assert!(ok, "{:#?}", metrics_of(&nodes[0]).await.samples);
    assert_documented(&metrics_of(&nodes[0]).await);
    assert!(
        metrics_of(&nodes[0])
            .await
            .value("resound_redis_link_failures_total", &[])
            >= 1.0
    );
}

/// Every family of `scrape` is named in docs/metrics.md.
fn assert_documented(scrape: &Scrape) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    for family in scrape.types.keys() {
        assert!(
            doc.contains(&format!("`{family}`")),
            "{family} is not in docs/metrics.md"
        );
    }
}

/// docs/metrics.md names every family a scrape has, and the Grafana dashboard uses only
/// metrics that exist.
#[tokio::test]
async fn every_metric_is_documented_and_the_dashboard_uses_real_ones() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let server = TestServer::start_with(with_metrics(Metrics::MainPort)).await;
    server.http().trigger(&["x"], "e", "1", None).await;
    let s = metrics_of(&server).await;
    assert_documented(&s);
    let dashboard = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    assert!(!parsed["panels"].as_array().unwrap().is_empty());
    let mut used = 0;
    for (i, _) in dashboard.match_indices("resound_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = name.strip_suffix("_bucket").unwrap_or(&name);
        if name == "resound_" || base.starts_with("resound_overview") {
            continue;
        }
        assert!(
            doc.contains(&format!("`{base}`")),
            "the dashboard uses {name}, undocumented"
        );
        used += 1;
    }
    assert!(used > 15, "{used}");
}

/// With a webhook target, the webhooks plugin's counters are scraped: a receiver that fails
/// once, then accepts, shows one retry and accepted requests, nothing dropped.
#[tokio::test]
async fn webhook_deliveries_and_retries_are_counted() {
    use crate::webhooks::{config, target, Answer, Receiver, LIFECYCLE};
    let plain = TestServer::start_with(with_metrics(Metrics::MainPort)).await;
    assert!(
        metrics_of(&plain)
            .await
            .get("resound_webhook_requests_total", &[])
            .is_none(),
        "no webhook metrics without a target"
    );
    let mut rx = Receiver::start(vec![Answer::Fail(500)]).await;
    let mut c = config(vec![target(&rx.url, LIFECYCLE)], Duration::ZERO);
    c.metrics = Metrics::MainPort;
    let server = TestServer::start_with(c).await;
    let mut a = server.connected().await;
    a.subscribe_public("hooked").await;
    assert_eq!(rx.next().await.answer, "Fail(500)");
    assert_eq!(rx.next().await.answer, "Ok");
    let s = settles(&server, |s| {
        s.value("resound_webhook_requests_total", &[]) >= 1.0
    })
    .await;
    assert_eq!(s.get("resound_webhook_retries_total", &[]), Some(1.0));
    assert_eq!(
        s.get("resound_webhook_events_dropped_total", &[]),
        Some(0.0)
    );
    assert_documented(&s);
}

/// A receiver that fails for the whole retry window: its event is dropped, counted, and not
/// tried again after the window.
#[tokio::test]
async fn a_webhook_failing_for_the_whole_retry_window_is_dropped_and_counted() {
    use crate::webhooks::{config, target, Answer, Receiver};
    let mut rx = Receiver::start(vec![Answer::Fail(500); 50]).await;
    let mut c = config(vec![target(&rx.url, &["channel_occupied"])], Duration::ZERO);
    c.metrics = Metrics::MainPort;
    c.webhooks.retry_window = Duration::from_secs(2);
    let server = TestServer::start_with(c).await;
    let mut a = server.connected().await;
    a.subscribe_public("never-accepted").await;
    let mut tries = 0;
    while let Some(h) = rx.next_within(Duration::from_secs(3)).await {
        assert_eq!(h.answer, "Fail(500)");
        tries += 1;
    }
    assert!(tries >= 2, "retried within the window ({tries} tries)");
    let s = settles(&server, |s| {
        s.value("resound_webhook_events_dropped_total", &[]) >= 1.0
    })
    .await;
    assert_eq!(
        s.get("resound_webhook_events_dropped_total", &[]),
        Some(1.0)
    );
    assert_eq!(s.get("resound_webhook_requests_total", &[]), Some(0.0));
}
