//! Subscribing: public, private, encrypted and cache channels, signatures, names.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn public_subscribe_golden_and_delivery() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    c.send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}))
        .await;
    assert_eq!(
        c.recv_raw().await,
        r#"{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"my-channel"}"#
    );
    server
        .http()
        .trigger(&["my-channel"], "greet", r#"{"a":"\/b"}"#, None)
        .await;
    assert_eq!(
        c.recv_raw().await,
        r#"{"event":"greet","channel":"my-channel","data":"{\"a\":\"\\/b\"}"}"#
    );
}

#[tokio::test]
async fn subscribe_data_as_json_string_is_accepted() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    c.send(json!({"event":"pusher:subscribe","data":"{\"channel\":\"s\"}"}))
        .await;
    assert_eq!(
        c.recv().await["event"],
        "pusher_internal:subscription_succeeded"
    );
}

#[tokio::test]
async fn private_channel_with_valid_signature() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    assert_eq!(
        c.subscribe_signed("private-Rooms.my-room", None).await,
        json!({})
    );
    server
        .http()
        .trigger(
            &["private-Rooms.my-room"],
            "App\\Events\\RoomMessageEvent",
            r#"{"message":"Hello"}"#,
            None,
        )
        .await;
    assert_eq!(
        c.recv_raw().await,
        r#"{"event":"App\\Events\\RoomMessageEvent","channel":"private-Rooms.my-room","data":"{\"message\":\"Hello\"}"}"#
    );
}

#[tokio::test]
async fn bad_private_auth_gets_4009_and_connection_is_kept() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    let golden = r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Connection is unauthorized\"}"}"#;
    let other_socket = channel_auth("1.2", "private-a", None);
    let wrong_channel = channel_auth(&c.socket_id, "private-b", None);
    let wrong_key = channel_auth(&c.socket_id, "private-a", None).replacen(KEY, "otherkey", 1);
    for auth in [
        json!(""),
        json!(null),
        json!("garbage"),
        json!(other_socket),
        json!(wrong_channel),
        json!(wrong_key),
    ] {
        c.send(json!({"event":"pusher:subscribe","data":{"auth":auth,"channel":"private-a"}}))
            .await;
        assert_eq!(c.recv_raw().await, golden, "auth {auth}");
    }
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-a"}}))
        .await;
    assert_eq!(c.recv_raw().await, golden);
    // Never subscribed: an event on the channel does not arrive.
    server.http().trigger(&["private-a"], "e", "{}", None).await;
    c.expect_nothing().await;
    // Still usable.
    c.subscribe_signed("private-a", None).await;
}

#[tokio::test]
async fn encrypted_channel_uses_private_signature_and_relays_opaque_data() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    c.subscribe_signed("private-encrypted-Rooms.vault", None)
        .await;
    let data = r#"{"nonce":"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7","ciphertext":"2Seon6TWx36Ec/A+AgYyGLvSx63ph1k1pe/gJ0YIH/C6u1R6"}"#;
    server
        .http()
        .trigger(&["private-encrypted-Rooms.vault"], "secret", data, None)
        .await;
    let v = c.recv().await;
    assert_eq!(v["data"], data);
}

#[tokio::test]
async fn cache_channel_misses_then_replays_last_event_exactly() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    a.subscribe_public("cache-ticker").await;
    assert_eq!(
        a.recv_raw().await,
        r#"{"event":"pusher:cache_miss","channel":"cache-ticker"}"#
    );
    server
        .http()
        .trigger(&["cache-ticker"], "tick", "1", None)
        .await;
    server
        .http()
        .trigger(&["cache-ticker"], "tick", "2", None)
        .await;
    let first = a.recv_raw().await;
    let last = a.recv_raw().await;
    assert!(first.contains(r#""data":"1""#));
    let mut b = server.connected().await;
    b.subscribe_public("cache-ticker").await;
    assert_eq!(
        b.recv_raw().await,
        last,
        "replayed exactly as originally delivered"
    );
}

#[tokio::test]
async fn cache_is_kept_without_subscribers_and_for_private_cache() {
    let server = TestServer::start().await;
    server
        .http()
        .trigger(&["cache-empty"], "tick", "9", None)
        .await;
    let mut c = server.connected().await;
    c.subscribe_public("cache-empty").await;
    assert_eq!(c.recv().await["data"], "9");
    c.subscribe_signed("private-cache-x", None).await;
    assert_eq!(c.recv().await["event"], "pusher:cache_miss");
}

#[tokio::test]
async fn cached_event_expires_after_ttl() {
    let mut config = config_with(app());
    config.cache_ttl = std::time::Duration::from_millis(200);
    let server = TestServer::start_with(config).await;
    server.http().trigger(&["cache-x"], "tick", "1", None).await;
    // A sleep, not a poll: the cached event is judged against the clock when a client
    // subscribes, so the condition is the TTL's passing itself and nothing else shows it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut c = server.connected().await;
    c.subscribe_public("cache-x").await;
    assert_eq!(c.recv().await["event"], "pusher:cache_miss");
}

#[tokio::test]
async fn resubscribe_repeats_success_without_duplicate_delivery() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    c.subscribe_public("dup").await;
    c.subscribe_public("dup").await;
    server.http().trigger(&["dup"], "e", "x", None).await;
    assert_eq!(c.recv().await["data"], "x");
    c.expect_nothing().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_unknown_unsubscribe_is_silent() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    c.subscribe_public("u").await;
    c.send(json!({"event":"pusher:unsubscribe","data":{"channel":"u"}}))
        .await;
    c.send(json!({"event":"pusher:unsubscribe","data":{"channel":"never"}}))
        .await;
    c.expect_nothing().await;
    server.http().trigger(&["u"], "e", "x", None).await;
    c.expect_nothing().await;
    let r = server.http().get("/channels/u", &[]).await;
    assert_eq!(r.body, r#"{"occupied":false}"#);
}

#[tokio::test]
async fn invalid_channel_names_get_4009_error() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    for name in [
        "",
        "has space",
        "slash/y",
        &"a".repeat(201),
        "#other",
        "#server-to-user-1",
    ] {
        c.send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":name}}))
            .await;
        let (code, _) = error_of(&c.recv().await);
        assert_eq!(code, 4009, "channel {name:?}");
    }
    c.subscribe_public(&"a".repeat(200)).await;
}

#[tokio::test]
async fn channels_per_connection_are_capped() {
    let mut config = config_with(app());
    config.max_channels_per_connection = 3;
    let server = TestServer::start_with(config).await;
    let mut c = server.connected().await;
    for i in 0..3 {
        c.subscribe_public(&format!("c{i}")).await;
    }
    c.subscribe_public("c1").await; // re-subscribing an existing one is fine
    c.send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":"c3"}}))
        .await;
    assert_eq!(
        error_of(&c.recv().await),
        (4301, "Too many channels: at most 3 per connection".into())
    );
    c.send(json!({"event":"pusher:unsubscribe","data":{"channel":"c0"}}))
        .await;
    c.subscribe_public("c3").await;
}

#[tokio::test]
async fn private_auth_signed_with_channel_data_is_accepted_as_reverb_does() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    let cd = r#"{"user_id":"1"}"#;
    c.send_signed_subscribe("private-x", Some(cd)).await;
    assert_eq!(
        c.recv().await["event"],
        "pusher_internal:subscription_succeeded"
    );
}
