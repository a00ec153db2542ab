//! Client events (Echo whispers): relay rules, modes, and rate limiting.

use std::time::Duration;

use resound::apps::{ClientEvents, RateLimit};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn whisper_reaches_others_but_not_the_sender() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    let mut c = server.connected().await;
    for x in [&mut a, &mut b, &mut c] {
        x.subscribe_signed("private-Rooms.my-room", None).await;
    }
    a.send(json!({"event":"client-typing","data":{"name":"Taylor"},"channel":"private-Rooms.my-room","user_id":"forged","extra":1})).await;
    let expected =
        r#"{"event":"client-typing","channel":"private-Rooms.my-room","data":{"name":"Taylor"}}"#;
    assert_eq!(b.recv_raw().await, expected);
    assert_eq!(c.recv_raw().await, expected);
    a.expect_nothing().await;
}

#[tokio::test]
async fn presence_whisper_carries_sender_user_id() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.join("presence-Rooms.lobby", "1").await;
    b.join("presence-Rooms.lobby", "2").await;
    assert_eq!(a.recv().await["event"], "pusher_internal:member_added");
    a.send(json!({"event":"client-typing","data":"plain string","channel":"presence-Rooms.lobby"}))
        .await;
    assert_eq!(
        b.recv_raw().await,
        r#"{"event":"client-typing","channel":"presence-Rooms.lobby","data":"plain string","user_id":"1"}"#
    );
}

#[tokio::test]
async fn sender_must_be_subscribed() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    b.subscribe_signed("private-x", None).await;
    a.send(json!({"event":"client-typing","data":{},"channel":"private-x"}))
        .await;
    assert_eq!(
        error_of(&a.recv().await),
        (
            4009,
            "The client is not a member of the specified channel.".into()
        )
    );
    b.expect_nothing().await;
}

#[tokio::test]
async fn public_and_cache_channels_relay_client_events_as_reverb_does() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    for x in [&mut a, &mut b] {
        x.subscribe_public("public").await;
        x.subscribe_public("cache-c").await;
        assert_eq!(x.recv().await["event"], "pusher:cache_miss");
    }
    for ch in ["public", "cache-c"] {
        a.send(json!({"event":"client-x","data":{"n":1},"channel":ch,"user_id":"forged"}))
            .await;
        assert_eq!(
            b.recv_raw().await,
            format!(r#"{{"event":"client-x","channel":"{ch}","data":{{"n":1}}}}"#)
        );
    }
    a.expect_nothing().await;
    // A client event is not the cache channel's last event.
    let mut c = server.connected().await;
    c.subscribe_public("cache-c").await;
    assert_eq!(c.recv().await["event"], "pusher:cache_miss");
    // Someone who has not joined the public channel cannot send on it.
    c.send(json!({"event":"client-x","data":{},"channel":"public"}))
        .await;
    assert_eq!(error_of(&c.recv().await).0, 4009);
    b.expect_nothing().await;
}

#[tokio::test]
async fn pusher_rule_keeps_client_events_to_private_and_presence_channels() {
    let mut app = app();
    app.public_client_events = false;
    let server = TestServer::start_with(config_with(app)).await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    for x in [&mut a, &mut b] {
        x.subscribe_public("public").await;
        x.subscribe_signed("private-p", None).await;
    }
    a.send(json!({"event":"client-x","data":{},"channel":"public"}))
        .await;
    assert_eq!(
        error_of(&a.recv().await),
        (
            4301,
            "Client events are not allowed on channel public".into()
        )
    );
    a.send(json!({"event":"client-x","data":{},"channel":"private-p"}))
        .await;
    assert_eq!(b.recv().await["channel"], "private-p");
    b.expect_nothing().await;
}

#[tokio::test]
async fn encrypted_channels_refuse_client_events() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    for x in [&mut a, &mut b] {
        x.subscribe_signed("private-encrypted-v", None).await;
    }
    a.send(json!({"event":"client-x","data":{},"channel":"private-encrypted-v"}))
        .await;
    assert_eq!(error_of(&a.recv().await).0, 4301);
    b.expect_nothing().await;
}

/// Pusher's 200-character event name limit: a longer name is refused with 4301 and not
/// relayed, and the connection stays open (the next whisper goes through).
#[tokio::test]
async fn client_event_names_over_200_characters_are_refused() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.subscribe_signed("private-x", None).await;
    b.subscribe_signed("private-x", None).await;
    let refused = (
        4301,
        "Client event name is longer than 200 characters".to_owned(),
    );
    for len in [201, 9_000] {
        let name = format!("client-{}", "a".repeat(len - "client-".len()));
        a.send(json!({"event":name,"data":{},"channel":"private-x"}))
            .await;
        assert_eq!(error_of(&a.recv().await), refused, "{len} characters");
        b.expect_nothing().await;
    }
    let name = format!("client-{}", "é".repeat(200 - "client-".len()));
    a.send(json!({"event":name,"data":{},"channel":"private-x"}))
        .await;
    assert_eq!(b.recv().await["event"], name, "200 characters are relayed");
}

/// The limit is a setting (`RESOUND_MAX_EVENT_NAME_LENGTH`), so an app that relies on longer
/// names, as Reverb allows, can raise it.
#[tokio::test]
async fn client_event_name_limit_can_be_raised() {
    let mut config = config_with(app());
    config.max_event_name_length = 1_000;
    let server = TestServer::start_with(config).await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.subscribe_signed("private-x", None).await;
    b.subscribe_signed("private-x", None).await;
    let name = format!("client-{}", "a".repeat(500));
    a.send(json!({"event":name,"data":{},"channel":"private-x"}))
        .await;
    assert_eq!(b.recv().await["event"], name);
}

#[tokio::test]
async fn disabled_client_events_get_4301() {
    let mut app = app();
    app.client_events = ClientEvents::None;
    let server = TestServer::start_with(config_with(app)).await;
    let mut a = server.connected().await;
    a.subscribe_signed("private-x", None).await;
    a.send(json!({"event":"client-x","data":{},"channel":"private-x"}))
        .await;
    assert_eq!(
        error_of(&a.recv().await),
        (
            4301,
            "The app does not have client messaging enabled.".into()
        )
    );
}

#[tokio::test]
async fn all_mode_lets_non_members_send() {
    let mut app = app();
    app.client_events = ClientEvents::All;
    let server = TestServer::start_with(config_with(app)).await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    b.subscribe_signed("private-x", None).await;
    a.send(json!({"event":"client-x","data":{"k":1},"channel":"private-x"}))
        .await;
    assert_eq!(b.recv().await["data"], json!({"k":1}));
}

fn limited(terminate: bool) -> resound::Config {
    let mut app = app();
    app.rate_limit = Some(RateLimit {
        max_attempts: 3,
        decay: Duration::from_secs(60),
        terminate,
    });
    config_with(app)
}

#[tokio::test]
async fn rate_limit_answers_4301_and_keeps_connection() {
    let server = TestServer::start_with(limited(false)).await;
    let mut a = server.connected().await;
    for _ in 0..3 {
        a.send(json!({"event":"pusher:ping"})).await;
        assert_eq!(a.recv().await["event"], "pusher:pong");
    }
    a.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(
        error_of(&a.recv().await),
        (4301, "Rate limit exceeded".into())
    );
    a.expect_nothing().await;
}

#[tokio::test]
async fn rate_limit_with_terminate_closes_with_backoff_code() {
    let server = TestServer::start_with(limited(true)).await;
    let mut a = server.connected().await;
    for _ in 0..4 {
        a.send(json!({"event":"pusher:ping"})).await;
    }
    for _ in 0..3 {
        assert_eq!(a.recv().await["event"], "pusher:pong");
    }
    let (code, _) = a.expect_close().await;
    assert_eq!(code, Some(4100), "41xx: pusher-js backs off and reconnects");
}

#[tokio::test]
async fn an_anonymous_flood_of_client_events_is_refused_and_readers_stay() {
    // Defaults: public client events on (as Reverb), 10 client events a second (as Pusher).
    let server = TestServer::start().await;
    let mut flooder = server.connected().await;
    let mut reader = server.connected().await;
    flooder.subscribe_public("public-room").await;
    reader.subscribe_public("public-room").await;
    let data = "x".repeat(2_000);
    let started = std::time::Instant::now();
    for i in 0..2_000 {
        flooder
            .send(json!({"event":"client-flood","channel":"public-room","data":{"i":i,"pad":data}}))
            .await;
    }
    let elapsed = started.elapsed();
    // The flooder hears 4301 for what was refused (its own queue takes the refusals).
    assert_eq!(
        error_of(&flooder.recv().await),
        (4301, "Client event rejected due to rate limit".into())
    );
    // The reader got a burst of 10 and then 10 a second at most, and is still connected.
    server
        .http()
        .trigger(&["public-room"], "after", "{}", None)
        .await;
    let mut relayed = 0;
    loop {
        let v = reader.recv().await;
        if v["event"] == "after" {
            break;
        }
        assert_eq!(v["event"], "client-flood", "{v}");
        relayed += 1;
    }
    let allowed = 10 + (elapsed.as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        relayed >= 10 && relayed <= allowed,
        "{relayed} relayed in {elapsed:?}"
    );
}

#[tokio::test]
async fn the_client_event_rate_is_a_setting() {
    let mut app = app();
    app.client_event_rate = 0;
    let server = TestServer::start_with(config_with(app)).await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.subscribe_signed("private-fast", None).await;
    b.subscribe_signed("private-fast", None).await;
    for i in 0..50 {
        a.send(json!({"event":"client-tick","channel":"private-fast","data":{"i":i}}))
            .await;
    }
    for i in 0..50 {
        let v = b.recv().await;
        assert_eq!(v["data"]["i"], i, "0 is unlimited: {v}");
    }
    a.expect_nothing().await;
}
