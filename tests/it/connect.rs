//! Connection lifecycle: handshake, handshake refusals, ping/pong, heartbeat, bad frames.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn connection_established_comes_first_with_sdk_socket_id() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    let raw = c.recv_raw().await;
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["event"], "pusher:connection_established");
    let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
    let id = data["socket_id"].as_str().unwrap();
    let (a, b) = id.split_once('.').unwrap();
    assert!(a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok(), "{id}");
    assert_eq!(data["activity_timeout"], 30);
    let other = server.connected().await;
    assert_ne!(other.socket_id, id, "socket ids are unique");
}

#[tokio::test]
async fn unknown_key_gets_4001_error_then_close_4001() {
    let server = TestServer::start().await;
    let mut c = server.connect_raw("/app/nope?protocol=7").await;
    assert_eq!(
        c.recv_raw().await,
        r#"{"event":"pusher:error","data":"{\"code\":4001,\"message\":\"Application does not exist\"}"}"#
    );
    assert_eq!(
        c.expect_close().await,
        (Some(4001), "Application does not exist".into())
    );
}

#[tokio::test]
async fn disabled_app_gets_4003() {
    let mut app = app();
    app.enabled = false;
    let server = TestServer::start_with(config_with(app)).await;
    let mut c = server.connect().await;
    assert_eq!(error_of(&c.recv().await).0, 4003);
    assert_eq!(c.expect_close().await.0, Some(4003));
}

#[tokio::test]
async fn over_quota_gets_4004_and_a_slot_frees_on_close() {
    let mut app = app();
    app.max_connections = Some(1);
    let server = TestServer::start_with(config_with(app)).await;
    let first = server.connected().await;
    let mut second = server.connect().await;
    assert_eq!(
        second.recv_raw().await,
        r#"{"event":"pusher:error","data":"{\"code\":4004,\"message\":\"Application is over connection quota\"}"}"#
    );
    assert_eq!(second.expect_close().await.0, Some(4004));
    drop(first);
    // The slot comes back once the server has seen the first client go.
    let ok = wait_until(
        async || {
            let mut c = server.connect().await;
            c.recv().await["event"] == "pusher:connection_established"
        },
        WAIT,
    )
    .await;
    assert!(ok, "a new connection is accepted after the first closed");
}

#[tokio::test]
async fn unsupported_protocol_gets_4007_but_missing_protocol_is_accepted() {
    let server = TestServer::start().await;
    let mut c = server.connect_raw(&format!("/app/{KEY}?protocol=99")).await;
    assert_eq!(
        error_of(&c.recv().await),
        (4007, "Unsupported protocol version".into())
    );
    assert_eq!(c.expect_close().await.0, Some(4007));
    let mut c = server.connect_raw(&format!("/app/{KEY}")).await;
    assert_eq!(c.recv().await["event"], "pusher:connection_established");
}

#[tokio::test]
async fn disallowed_origin_gets_4009() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut app = app();
    app.allowed_origins = vec!["*.example.com".into()];
    let server = TestServer::start_with(config_with(app)).await;
    for (origin, allowed) in [
        ("https://evil.org", false),
        ("https://chat.example.com", true),
    ] {
        let mut req = format!("ws://{}/app/{KEY}?protocol=7", server.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut c = Client {
            ws,
            socket_id: String::new(),
        };
        let v = c.recv().await;
        if allowed {
            assert_eq!(v["event"], "pusher:connection_established", "{origin}");
        } else {
            assert_eq!(error_of(&v), (4009, "Origin not allowed".into()));
            assert_eq!(c.expect_close().await.0, Some(4009));
        }
    }
}

#[tokio::test]
async fn pusher_ping_gets_exact_pong() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    c.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(c.recv_raw().await, r#"{"event":"pusher:pong"}"#);
}

#[tokio::test]
async fn ws_ping_frame_gets_pong_frame() {
    use futures_util::StreamExt;
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    c.ws.send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, c.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg, Message::Pong(b"hi".to_vec().into()));
}

#[tokio::test]
async fn invalid_frames_get_4200_and_connection_stays_open() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    for bad in [
        "not json",
        "[1,2]",
        r#"{"event":5}"#,
        r#"{"data":{}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":7}}"#,
        r#"{"event":"pusher:subscribe","data":"not json"}"#,
        r#"{"event":"pusher:unknown","data":{}}"#,
        r#"{"event":"client-x","data":{}}"#,
    ] {
        c.send_text(bad).await;
        assert_eq!(
            c.recv_raw().await,
            r#"{"event":"pusher:error","data":"{\"code\":4200,\"message\":\"Invalid message format\"}"}"#,
            "after {bad}"
        );
    }
    c.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(error_of(&c.recv().await).0, 4200);
    // Non-pusher, non-client events are ignored silently.
    c.send(json!({"event":"hello","data":{}})).await;
    c.expect_nothing().await;
    c.subscribe_public("still-alive").await;
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    let big = format!(
        r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
        "x".repeat(10_001)
    );
    let _ = c.ws.send(Message::text(big)).await;
    assert_eq!(
        c.expect_close().await,
        (Some(1009), "Maximum message size exceeded".into())
    );
}

#[tokio::test]
async fn frame_at_the_limit_is_accepted() {
    let mut app = app();
    app.max_message_size = 200;
    let server = TestServer::start_with(config_with(app)).await;
    let mut c = server.connected().await;
    let frame = format!(r#"{{"event":"hello","data":"{}"}}"#, "x".repeat(200 - 27));
    assert_eq!(frame.len(), 200);
    c.send_text(&frame).await;
    c.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(c.recv_raw().await, r#"{"event":"pusher:pong"}"#);
}

fn heartbeat(ping_interval_ms: u64, pong_timeout_ms: u64) -> resound::Config {
    let mut app = app();
    app.ping_interval = Duration::from_millis(ping_interval_ms);
    app.pong_timeout = Duration::from_millis(pong_timeout_ms);
    config_with(app)
}

#[tokio::test]
async fn silent_client_is_pinged_then_closed_with_4201() {
    let server = TestServer::start_with(heartbeat(300, 300)).await;
    let mut c = server.connected().await;
    assert_eq!(c.recv_raw().await, r#"{"event":"pusher:ping"}"#);
    assert_eq!(
        c.recv_raw().await,
        r#"{"event":"pusher:error","data":"{\"code\":4201,\"message\":\"Pong reply not received in time\"}"}"#
    );
    assert_eq!(c.expect_close().await.0, Some(4201));
}

#[tokio::test]
async fn answering_pings_keeps_the_connection() {
    // A generous pong timeout: the test must not depend on how fast a loaded CI machine
    // schedules it.
    let server = TestServer::start_with(heartbeat(300, 3000)).await;
    let mut c = server.connected().await;
    for _ in 0..3 {
        assert_eq!(c.recv_raw().await, r#"{"event":"pusher:ping"}"#);
        c.send(json!({"event":"pusher:pong","data":{}})).await;
    }
    c.subscribe_public("alive").await;
}

#[tokio::test]
async fn any_frame_counts_as_activity() {
    let server = TestServer::start_with(heartbeat(1500, 3000)).await;
    let mut c = server.connected().await;
    // Chatter every 100 ms for 3 s: never idle for ping_interval, so never pinged. The
    // sleeps pace the chatter through a window in which a ping must NOT come: nothing to poll.
    for _ in 0..30 {
        c.ws.send(Message::Pong(Default::default())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(c.recv_raw().await, r#"{"event":"pusher:pong"}"#);
}

#[tokio::test]
async fn not_a_websocket_request_gets_426_json() {
    let server = TestServer::start().await;
    let r = server.http().raw("GET", &format!("/app/{KEY}"), "").await;
    assert_eq!(r.status, 426);
    assert!(r.json()["error"].as_str().unwrap().contains("WebSocket"));
}

/// RFC 6455 5.5.1: a close frame from the client is answered with one (pusher-js and
/// browsers otherwise see an unclean 1006 close).
#[tokio::test]
async fn client_close_is_answered_with_a_close_frame() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let server = TestServer::start().await;
    let mut client = server.connected().await;
    client
        .ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    match client.next_seen(Duration::from_secs(5)).await {
        Some(Seen::Closed(Some(1000), _)) => {}
        other => panic!("expected the close reply, saw {other:?}"),
    }
}
