//! Presence channels: members, ids/hash/count, member_added/removed rules.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn join_lists_self_and_announces_to_others_only() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    let data = a.join("presence-Rooms.lobby", "1").await;
    assert_eq!(
        data,
        json!({"presence":{"count":1,"ids":["1"],"hash":{"1":{"name":"user 1"}}}})
    );
    let mut b = server.connected().await;
    let data = b.join("presence-Rooms.lobby", "2").await;
    assert_eq!(data["presence"]["count"], 2);
    assert_eq!(data["presence"]["hash"]["1"], json!({"name":"user 1"}));
    assert_eq!(data["presence"]["hash"]["2"], json!({"name":"user 2"}));
    assert_eq!(
        a.recv_raw().await,
        r#"{"event":"pusher_internal:member_added","channel":"presence-Rooms.lobby","data":"{\"user_id\":\"2\",\"user_info\":{\"name\":\"user 2\"}}"}"#
    );
    b.expect_nothing().await;
}

#[tokio::test]
async fn one_user_two_sockets_counts_once_and_leaves_when_both_gone() {
    let server = TestServer::start().await;
    let mut watcher = server.connected().await;
    watcher.join("presence-r", "w").await;
    let mut tab1 = server.connected().await;
    tab1.join("presence-r", "7").await;
    assert_eq!(
        watcher.recv().await["event"],
        "pusher_internal:member_added"
    );
    let mut tab2 = server.connected().await;
    let data = tab2.join("presence-r", "7").await;
    assert_eq!(data["presence"]["count"], 2);
    watcher.expect_nothing().await;
    let r = server
        .http()
        .get("/channels/presence-r", &[("info", "user_count")])
        .await;
    assert_eq!(r.json(), json!({"occupied":true,"user_count":2}));

    tab1.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-r"}}))
        .await;
    watcher.expect_nothing().await;
    drop(tab2);
    assert_eq!(
        watcher.recv_raw().await,
        r#"{"event":"pusher_internal:member_removed","channel":"presence-r","data":"{\"user_id\":\"7\"}"}"#
    );
    tab1.expect_nothing().await;
}

#[tokio::test]
async fn channel_data_is_verified_verbatim_php_and_python_shapes() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    let php = r#"{"user_id":"7","user_info":{"avatar":"https:\/\/example.com\/a.png"}}"#;
    let data = c.subscribe_signed("presence-php", Some(php)).await;
    assert_eq!(
        data["presence"]["hash"]["7"]["avatar"],
        "https://example.com/a.png"
    );
    let python = r#"{"user_id": "1", "user_info": {"id": 1, "name": "Taylor"}}"#;
    let data = c.subscribe_signed("presence-py", Some(python)).await;
    assert_eq!(data["presence"]["ids"], json!(["1"]));
}

#[tokio::test]
async fn numeric_user_id_is_the_same_member_as_its_string() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    a.subscribe_signed(
        "presence-n",
        Some(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#),
    )
    .await;
    let mut b = server.connected().await;
    let data = b
        .subscribe_signed("presence-n", Some(r#"{"user_id":"10"}"#))
        .await;
    assert_eq!(data["presence"]["count"], 1);
    a.expect_nothing().await;
}

#[tokio::test]
async fn presence_without_or_with_bad_channel_data_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    // No channel_data at all: nothing to verify.
    c.send_signed_subscribe("presence-x", None).await;
    assert_eq!(error_of(&c.recv().await).0, 4009);
    // Signed channel_data but not tampered: a different channel_data than signed.
    let auth = channel_auth(&c.socket_id, "presence-x", Some(r#"{"user_id":"1"}"#));
    c.send(json!({"event":"pusher:subscribe","data":{"auth":auth,"channel":"presence-x","channel_data":"{\"user_id\":\"2\"}"}})).await;
    assert_eq!(
        error_of(&c.recv().await),
        (4009, "Connection is unauthorized".into())
    );
    // Correctly signed, but no user_id inside.
    c.send_signed_subscribe("presence-x", Some(r#"{"user_info":{}}"#))
        .await;
    assert_eq!(error_of(&c.recv().await).0, 4200);
    // channel_data as an object is malformed.
    c.send(json!({"event":"pusher:subscribe","data":{"auth":"k:s","channel":"presence-x","channel_data":{"user_id":"1"}}})).await;
    assert_eq!(error_of(&c.recv().await).0, 4200);
    let r = server.http().get("/channels/presence-x/users", &[]).await;
    assert_eq!(r.json(), json!({"users":[]}));
}

#[tokio::test]
async fn closing_connection_removes_member_from_every_channel() {
    let server = TestServer::start().await;
    let mut w = server.connected().await;
    w.join("presence-a", "w").await;
    w.join("presence-b", "w").await;
    let mut u = server.connected().await;
    u.join("presence-a", "u").await;
    u.join("presence-b", "u").await;
    assert_eq!(w.recv().await["event"], "pusher_internal:member_added");
    assert_eq!(w.recv().await["event"], "pusher_internal:member_added");
    u.ws.close(None).await.unwrap();
    let mut removed = [w.recv().await, w.recv().await];
    removed.sort_by_key(|v| v["channel"].as_str().unwrap().to_owned());
    assert_eq!(removed[0]["channel"], "presence-a");
    assert_eq!(removed[1]["channel"], "presence-b");
    assert!(removed
        .iter()
        .all(|v| v["event"] == "pusher_internal:member_removed"));
}

#[tokio::test]
async fn presence_limits_refuse_with_4009_and_keep_the_connection() {
    let mut app = app();
    app.max_presence_members = 2;
    let server = TestServer::start_with(config_with(app)).await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.join("presence-small", "1").await;
    b.join("presence-small", "2").await;
    assert_eq!(a.recv().await["event"], "pusher_internal:member_added");
    // A third user is refused; a second socket of a present user is not.
    let mut c = server.connected().await;
    let cd = json!({"user_id": "3", "user_info": {}}).to_string();
    c.send_signed_subscribe("presence-small", Some(&cd)).await;
    assert_eq!(
        error_of(&c.recv().await),
        (4009, "Presence channel is full: at most 2 members".into())
    );
    a.expect_nothing().await;
    let mut a2 = server.connected().await;
    let data = a2.join("presence-small", "1").await;
    assert_eq!(data["presence"]["count"], 2, "{data}");
    // user_info beyond 1 KB (the default) is refused, the connection stays.
    let mut d = server.connected().await;
    let big = json!({"user_id": "4", "user_info": {"bio": "x".repeat(1_100)}}).to_string();
    d.send_signed_subscribe("presence-other", Some(&big)).await;
    assert_eq!(
        error_of(&d.recv().await),
        (
            4009,
            "user_info is larger than the 1024 bytes allowed".into()
        )
    );
    d.join("presence-other", "4").await;
}
