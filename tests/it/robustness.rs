//! Bad input and slow clients never disturb other clients.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn abuse_from_one_client_does_not_disturb_another() {
    let server = TestServer::start().await;
    let mut good = server.connected().await;
    good.subscribe_signed("private-Rooms.r", None).await;
    let mut bad = server.connected().await;
    let huge_list: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    let abuse: Vec<String> = vec![
        "{".into(),
        "\u{0}".into(),
        r#"{"event":"pusher:subscribe","data":{"channel":["a"]}}"#.into(),
        r#"{"event":"pusher:subscribe","data":{"channel":"private-Rooms.r","auth":"q7h2x9v4m1n8b3c6z5k0:deadbeef"}}"#.into(),
        r#"{"event":"pusher:subscribe","data":{"channel":"presence-x","auth":5,"channel_data":7}}"#.into(),
        r#"{"event":"client-typing","channel":"private-Rooms.r","data":{}}"#.into(),
        json!({"event":"pusher:subscribe","data":{"channel": huge_list.join(",")}}).to_string(),
    ];
    for (i, frame) in abuse.iter().enumerate() {
        bad.send_text(frame).await;
        server
            .http()
            .trigger(&["private-Rooms.r"], "tick", &i.to_string(), None)
            .await;
        assert_eq!(
            good.recv().await["data"],
            i.to_string(),
            "good client after abuse frame {i}"
        );
    }
    for _ in 0..abuse.len() - 1 {
        assert_eq!(bad.recv().await["event"], "pusher:error");
    }
    // A frame over the size limit closes only the abuser.
    let _ = bad.ws.send(Message::text("x".repeat(50_000))).await;
    assert_eq!(bad.expect_close().await.0, Some(1009));
    server
        .http()
        .trigger(&["private-Rooms.r"], "tick", "after", None)
        .await;
    assert_eq!(good.recv().await["data"], "after");
}

#[tokio::test]
async fn slow_consumer_is_dropped_while_others_get_everything() {
    let mut config = config_with(app());
    config.outbound_queue = 16;
    config.max_request_size = Some(1_000_000);
    slow_consumer_dropped_by(config).await;
}

/// A fast and a slow (never reading) subscriber of `firehose` on a server with `config`;
/// 3,000 events of 8 KB are triggered. The fast one gets every event; the slow one is
/// dropped, and what its backlog held goes back to the budget.
async fn slow_consumer_dropped_by(config: resound::Config) {
    let server = TestServer::start_with(config).await;
    let mut fast = server.connected().await;
    fast.subscribe_public("firehose").await;
    let mut slow = server.connected().await;
    slow.subscribe_public("firehose").await;
    let payload = "y".repeat(8_000);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"channel":"firehose","name":"e","data":payload}))
        .collect();
    let api = server.http();
    let reader = tokio::spawn(async move {
        for i in 0..3000 {
            assert_eq!(fast.recv().await["event"], "e", "frame {i}");
        }
        fast
    });
    for _ in 0..300 {
        assert_eq!(
            api.post("/batch_events", json!({ "batch": batch }))
                .await
                .status,
            200
        );
    }
    let _fast = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("fast client got all")
        .unwrap();
    let count = || async {
        server
            .http()
            .get("/channels/firehose", &[("info", "subscription_count")])
            .await
            .json()["subscription_count"]
            .as_u64()
    };
    assert!(
        wait_until(async || count().await == Some(1), WAIT).await,
        "slow consumer removed from the channel"
    );
    // Closed with 4100; a client that never reads may not get that far in its backlog before
    // the server gives up on the close handshake and drops the socket.
    let (code, _) = slow.expect_close().await;
    assert!(matches!(code, Some(4100) | None), "{code:?}");
    assert!(
        wait_until(async || server.state.outbound_backlog() == 0, WAIT).await,
        "its backlog left the budget: {}",
        server.state.outbound_backlog()
    );
}

#[tokio::test]
async fn a_slow_consumer_is_bounded_in_bytes_not_only_in_frames() {
    let mut config = config_with(app());
    // Far more frames than the test sends: only the byte bound can drop the slow client.
    config.outbound_queue = 100_000;
    config.outbound_bytes = 256 * 1024;
    config.max_request_size = Some(1_000_000);
    slow_consumer_dropped_by(config).await;
}

#[tokio::test]
async fn slow_consumers_together_are_held_to_the_process_budget() {
    let mut config = config_with(app());
    config.outbound_queue = 100_000;
    config.outbound_bytes = 100 << 20;
    config.outbound_budget = 256 * 1024;
    config.max_request_size = Some(1_000_000);
    slow_consumer_dropped_by(config).await;
}

#[tokio::test]
async fn an_error_reply_does_not_grow_with_the_invalid_name() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    // 9,950 DEL characters: a valid JSON string, an invalid channel name.
    let name = "\u{7f}".repeat(9_950);
    c.send(json!({"event":"pusher:subscribe","data":{"channel":name}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["event"], "pusher:error");
    let text = reply.to_string();
    assert!(text.len() < 300, "{} bytes: {text}", text.len());
    assert!(text.contains("(9950 bytes)"), "{text}");
}

#[tokio::test]
async fn bad_http_requests_do_not_disturb_delivery() {
    let server = TestServer::start().await;
    let mut good = server.connected().await;
    good.subscribe_public("feed").await;
    let api = server.http();
    let path = format!("/apps/{APP_ID}/events");
    let body = r#"{"name":"e","data":"bad","channel":"feed"}"#;
    let huge: Vec<String> = (0..5000).map(|i| format!("c{i}")).collect();
    let stale = api.signed_query("POST", &path, &[], body, now() - 3600);
    let forged = api
        .signed_query("POST", &path, &[], body, now())
        .replace("auth_signature=", "auth_signature=1");
    let bad: Vec<(String, String, u16)> = vec![
        (format!("{path}?{stale}"), body.into(), 401),
        (format!("{path}?{forged}"), body.into(), 401),
        (format!("/apps/nope/events?{stale}"), body.into(), 404),
        (path.clone(), body.into(), 401),
    ];
    for (i, (target, b, status)) in bad.iter().enumerate() {
        let r = api.raw("POST", target, b).await;
        assert_eq!(r.status, *status, "bad request {i}: {}", r.body);
        api.trigger(&["feed"], "e", &format!("good-{i}"), None)
            .await;
        assert_eq!(good.recv().await["data"], format!("good-{i}"));
    }
    for (i, b) in [
        "{not json".to_owned(),
        json!({"name":"e","data":"bad","channels":huge}).to_string(),
        json!({"name":"e","data":7,"channel":"feed"}).to_string(),
        json!({"name":["x"],"data":"bad","channel":"feed"}).to_string(),
    ]
    .iter()
    .enumerate()
    {
        let r = api.signed("POST", "/events", &[], b).await;
        assert!(
            r.status == 400 || r.status == 413,
            "malformed body {i}: {} {}",
            r.status,
            r.body
        );
        assert!(r.json()["error"].is_string());
        api.trigger(&["feed"], "e", &format!("after-{i}"), None)
            .await;
        assert_eq!(good.recv().await["data"], format!("after-{i}"));
    }
    good.expect_nothing().await;
}

/// Fan-outs above the inline threshold go through each connection's writer task; concurrent
/// publishers share its writes. Every subscriber must still get every event, each publisher's
/// in its order, and a frame too big for one write must arrive whole.
#[tokio::test]
async fn large_concurrent_fanouts_reach_everyone_whole_and_in_order() {
    let mut config = config_with(app());
    config.max_event_size = 200_000;
    config.max_request_size = Some(1_000_000);
    let server = TestServer::start_with(config).await;
    let (subscribers, publishers, each) = (40, 4, 50);
    let mut clients = Vec::new();
    for _ in 0..subscribers {
        let mut c = server.connected().await;
        c.subscribe_public("crowd").await;
        clients.push(c);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut next = vec![0; publishers];
                for _ in 0..publishers * each {
                    let v = c.recv().await;
                    let data = v["data"].as_str().unwrap().to_owned();
                    let (p, i) = data.split_once('-').unwrap();
                    let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
                    assert_eq!(i, next[p], "publisher {p}'s events in order");
                    next[p] += 1;
                }
                let big = c.recv().await;
                assert_eq!(big["data"].as_str().unwrap().len(), 150_000);
            })
        })
        .collect();
    let sends: Vec<_> = (0..publishers)
        .map(|p| {
            let api = server.http();
            tokio::spawn(async move {
                for i in 0..each {
                    api.trigger(&["crowd"], "e", &format!("{p}-{i}"), None)
                        .await;
                }
            })
        })
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    let big = "z".repeat(150_000);
    server.http().trigger(&["crowd"], "e", &big, None).await;
    for r in readers {
        tokio::time::timeout(Duration::from_secs(20), r)
            .await
            .expect("every subscriber got every event")
            .unwrap();
    }
}

/// serde reads a JSON array into a struct field by field, so `["5"]` used to pass for
/// `{"user_id":"5"}`: a presence member, a signed-in user or a whole frame made of an
/// array was accepted. Every one of these must be an object (Pusher and Reverb refuse them).
#[tokio::test]
async fn json_arrays_are_not_taken_for_objects() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    // A correctly signed presence subscribe whose channel_data is an array.
    c.send_signed_subscribe("presence-arr", Some(r#"["5",{"name":"x"}]"#))
        .await;
    assert_eq!(error_of(&c.recv().await).0, 4200);
    // A correctly signed sign-in whose user_data is an array.
    let ud = r#"["7",null,["8"]]"#;
    let sig = resound::auth::sign(
        SECRET,
        &resound::auth::signin_string_to_sign(&c.socket_id, ud),
    );
    c.send(
        json!({"event":"pusher:signin","data":{"auth": format!("{KEY}:{sig}"), "user_data": ud}}),
    )
    .await;
    assert_eq!(error_of(&c.recv().await).0, 4009);
    // Whole frames, and the data of pusher: events, as arrays.
    for frame in [
        r#"["pusher:ping"]"#,
        r#"{"event":"pusher:subscribe","data":["arr-channel"]}"#,
        r#"{"event":"pusher:subscribe","data":"[\"arr-channel\"]"}"#,
        r#"{"event":"pusher:unsubscribe","data":["arr-channel"]}"#,
    ] {
        c.send_text(frame).await;
        let v = c.recv().await;
        assert_eq!(error_of(&v).0, 4200, "{frame} -> {v}");
    }
    // None of it took effect: no member, no user, no subscription; the connection still works.
    let users = server.http().get("/channels/presence-arr/users", &[]).await;
    assert_eq!(users.json()["users"], json!([]), "{}", users.body);
    let arr = server.http().get("/channels/arr-channel", &[]).await;
    assert_eq!(arr.json()["occupied"], false, "{}", arr.body);
    c.subscribe_public("arr-channel").await;
    // Had the array signed it in as user 7, signing in as someone else would now be refused.
    let ud = r#"{"id":"9"}"#;
    let sig = resound::auth::sign(
        SECRET,
        &resound::auth::signin_string_to_sign(&c.socket_id, ud),
    );
    c.send(
        json!({"event":"pusher:signin","data":{"auth": format!("{KEY}:{sig}"), "user_data": ud}}),
    )
    .await;
    assert_eq!(c.recv().await["event"], "pusher:signin_success");
}

/// A client reading nothing yet, with no limit on frame sizes: for replies bigger than the
/// kernel's socket buffers, which stay queued on the server until the client reads.
async fn connected_unlimited(server: &TestServer) -> Client {
    let url = format!("ws://{}/app/{KEY}?protocol=7", server.addr);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
        .await
        .expect("websocket connects");
    let mut c = Client {
        ws,
        socket_id: String::new(),
    };
    let ev = c.recv().await;
    assert_eq!(ev["event"], "pusher:connection_established", "{ev}");
    let data: serde_json::Value = serde_json::from_str(ev["data"].as_str().unwrap()).unwrap();
    c.socket_id = data["socket_id"].as_str().unwrap().to_owned();
    c
}

/// A presence channel's `subscription_succeeded` can be larger than the per-connection
/// outbound bound (1 MiB): the default limits allow 1000 members with 1 KB of `user_info`
/// each, doubled by the string encoding. Such a reply goes out whole to a joiner that is
/// keeping up, but until the joiner has read it, any event for the channel used to find
/// the queue "over 1 MiB" and close the joiner with 4100; pusher-js came back a second later,
/// rejoined and was closed again. Here one member's large `user_info` stands in for many
/// members, so that the reply outgrows the kernel's socket buffers on loopback.
#[tokio::test]
async fn a_reply_bigger_than_the_outbound_bound_is_not_held_against_the_joiner() {
    let mut app = app();
    app.max_user_info_size = 0;
    app.max_message_size = 64 << 20;
    let server = TestServer::start_with(config_with(app)).await;
    let channel = "presence-crowd";
    let mut big = connected_unlimited(&server).await;
    let info = json!({"user_id": "big", "user_info": {"bio": "x".repeat(16 << 20)}}).to_string();
    big.subscribe_signed(channel, Some(&info)).await;

    // The joiner does not read while its reply (over 16 MB) waits; an event arrives meanwhile.
    let mut joiner = connected_unlimited(&server).await;
    joiner
        .send_signed_subscribe(channel, Some(r#"{"user_id":"joiner"}"#))
        .await;
    assert_eq!(big.recv().await["event"], "pusher_internal:member_added");
    let api = server.http();
    assert_eq!(api.trigger(&[channel], "news", "1", None).await.status, 200);
    assert_eq!(big.recv().await["event"], "news");
    let reply = joiner.recv().await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    let next = joiner.recv().await;
    assert_eq!(
        (&next["event"], &next["data"]),
        (&json!("news"), &json!("1"))
    );

    // The bound still holds for what queues up behind a large frame: a joiner that does not
    // read while more than 1 MiB of events follow its reply is dropped as too slow.
    let mut stalled = connected_unlimited(&server).await;
    stalled
        .send_signed_subscribe(channel, Some(r#"{"user_id":"stalled"}"#))
        .await;
    assert_eq!(big.recv().await["event"], "pusher_internal:member_added");
    let data = "y".repeat(10_000);
    for _ in 0..120 {
        assert_eq!(
            api.trigger(&[channel], "news", &data, None).await.status,
            200
        );
    }
    assert_eq!(stalled.expect_close().await.0, Some(4100));
}
