//! User sign-in, server-to-user channels, watchlists, presence through a signed-in user,
//! terminate_connections and authorized connections.

use std::time::Duration;

use resound::auth;
use serde_json::{json, Value};

use crate::support::*;

fn signin_frame(socket_id: &str, user_data: &str) -> Value {
    let sig = auth::sign(SECRET, &auth::signin_string_to_sign(socket_id, user_data));
    json!({"event":"pusher:signin","data":{"auth": format!("{KEY}:{sig}"), "user_data": user_data}})
}

async fn signed_in(server: &TestServer, user_data: &str) -> Client {
    let mut c = server.connected().await;
    let frame = signin_frame(&c.socket_id, user_data);
    c.send(frame).await;
    let v = c.recv().await;
    assert_eq!(v["event"], "pusher:signin_success", "{v}");
    let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["user_data"], user_data);
    c
}

fn watch_events(v: &Value) -> Value {
    assert_eq!(v["event"], "pusher_internal:watchlist_events", "{v}");
    serde_json::from_str::<Value>(v["data"].as_str().unwrap()).unwrap()["events"].clone()
}

#[tokio::test]
async fn signin_success_echoes_user_data_exactly() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    let ud = r#"{"id":"42","user_info":{"name":"Ada \/ Lovelace"}}"#;
    c.send(signin_frame(&c.socket_id, ud)).await;
    let raw = c.recv_raw().await;
    assert_eq!(raw, server_frame_signin(ud));
}

fn server_frame_signin(ud: &str) -> String {
    let data = json!({ "user_data": ud }).to_string();
    format!(
        r#"{{"event":"pusher:signin_success","data":{}}}"#,
        Value::String(data)
    )
}

#[tokio::test]
async fn bad_signin_gets_4009_and_connection_is_kept() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    let ud = r#"{"id":"42"}"#;
    let wrong_socket = signin_frame("1.2", ud);
    let mut tampered = signin_frame(&c.socket_id, ud);
    tampered["data"]["user_data"] = json!(r#"{"id":"43"}"#);
    let no_id = signin_frame(&c.socket_id, r#"{"user_info":{}}"#);
    let not_json = signin_frame(&c.socket_id, "nope");
    for f in [wrong_socket, tampered, no_id, not_json] {
        c.send(f.clone()).await;
        assert_eq!(
            error_of(&c.recv().await),
            (4009, "Connection is unauthorized".into()),
            "{f}"
        );
    }
    c.send(json!({"event":"pusher:signin","data":{"auth":5}}))
        .await;
    assert_eq!(error_of(&c.recv().await).0, 4200);
    c.subscribe_public("still-here").await;
}

#[tokio::test]
async fn second_signin_as_another_user_is_refused() {
    let server = TestServer::start().await;
    let mut c = signed_in(&server, r#"{"id":"1"}"#).await;
    let f = signin_frame(&c.socket_id, r#"{"id":"2"}"#);
    c.send(f).await;
    assert_eq!(error_of(&c.recv().await).0, 4009);
    // Still user 1: may subscribe to its own server-to-user channel only.
    c.subscribe_public("#server-to-user-1").await;
    c.send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-2"}}))
        .await;
    assert_eq!(error_of(&c.recv().await).0, 4009);
}

#[tokio::test]
async fn server_to_user_needs_that_signed_in_user_and_reaches_all_their_connections() {
    let server = TestServer::start().await;
    let mut anon = server.connected().await;
    anon.send(
        json!({"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-42"}}),
    )
    .await;
    assert_eq!(
        error_of(&anon.recv().await),
        (4009, "Connection is unauthorized".into())
    );
    let mut tab1 = signed_in(&server, r#"{"id":"42"}"#).await;
    let mut tab2 = signed_in(&server, r#"{"id":"42"}"#).await;
    let mut other = signed_in(&server, r#"{"id":"7"}"#).await;
    tab1.subscribe_public("#server-to-user-42").await;
    tab2.subscribe_public("#server-to-user-42").await;
    other.subscribe_public("#server-to-user-7").await;
    server
        .http()
        .trigger(&["#server-to-user-42"], "notice", r#"{"n":1}"#, None)
        .await;
    for c in [&mut tab1, &mut tab2] {
        assert_eq!(
            c.recv_raw().await,
            r##"{"event":"notice","channel":"#server-to-user-42","data":"{\"n\":1}"}"##
        );
    }
    other.expect_nothing().await;
    anon.expect_nothing().await;
}

#[tokio::test]
async fn watchlist_reports_state_on_signin_and_on_changes() {
    let server = TestServer::start().await;
    let _seven = signed_in(&server, r#"{"id":"7"}"#).await;
    let mut ada = server.connected().await;
    let ud = r#"{"id":"42","watchlist":["7","9"]}"#;
    ada.send(signin_frame(&ada.socket_id, ud)).await;
    assert_eq!(ada.recv().await["event"], "pusher:signin_success");
    assert_eq!(
        watch_events(&ada.recv().await),
        json!([{"name":"online","user_ids":["7"]},{"name":"offline","user_ids":["9"]}])
    );
    let nine = signed_in(&server, r#"{"id":"9"}"#).await;
    assert_eq!(
        watch_events(&ada.recv().await),
        json!([{"name":"online","user_ids":["9"]}])
    );
    // A second connection of 9 changes nothing; closing both makes 9 offline once.
    let nine_b = signed_in(&server, r#"{"id":"9"}"#).await;
    ada.expect_nothing().await;
    drop(nine);
    ada.expect_nothing().await;
    drop(nine_b);
    assert_eq!(
        watch_events(&ada.recv().await),
        json!([{"name":"offline","user_ids":["9"]}])
    );
}

#[tokio::test]
async fn watchlist_over_100_keeps_first_100_and_warns_4302() {
    let server = TestServer::start().await;
    let mut c = server.connected().await;
    let ids: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let ud = json!({"id":"1","watchlist":ids}).to_string();
    c.send(signin_frame(&c.socket_id, &ud)).await;
    assert_eq!(c.recv().await["event"], "pusher:signin_success");
    assert_eq!(
        error_of(&c.recv().await),
        (
            4302,
            "Watchlist limit exceeded. Only the first 100 user IDs are accepted.".into()
        )
    );
    let events = watch_events(&c.recv().await);
    assert_eq!(events[0]["name"], "offline");
    assert_eq!(events[0]["user_ids"].as_array().unwrap().len(), 100);
    assert!(!events[0]["user_ids"]
        .as_array()
        .unwrap()
        .contains(&json!("u100")));
    // u100 is not watched: its sign-in is not reported.
    let _u100 = signed_in(&server, r#"{"id":"u100"}"#).await;
    c.expect_nothing().await;
    let _u5 = signed_in(&server, r#"{"id":"u5"}"#).await;
    assert_eq!(
        watch_events(&c.recv().await),
        json!([{"name":"online","user_ids":["u5"]}])
    );
}

#[tokio::test]
async fn presence_through_signed_in_user_without_channel_data() {
    let server = TestServer::start().await;
    let mut other = server.connected().await;
    other.join("presence-room", "1").await;
    let mut c = signed_in(&server, r#"{"id":"42","user_info":{"name":"Ada"}}"#).await;
    let data = c.subscribe_signed("presence-room", None).await;
    assert_eq!(data["presence"]["count"], 2);
    assert_eq!(data["presence"]["hash"]["42"], json!({"name":"Ada"}));
    assert_eq!(
        other.recv_raw().await,
        r#"{"event":"pusher_internal:member_added","channel":"presence-room","data":"{\"user_id\":\"42\",\"user_info\":{\"name\":\"Ada\"}}"}"#
    );
}

#[tokio::test]
async fn terminate_closes_signed_in_and_presence_connections_of_the_user() {
    let server = TestServer::start().await;
    let mut watcher = server.connected().await;
    watcher.join("presence-room", "w").await;
    let mut signed = signed_in(&server, r#"{"id":"42"}"#).await;
    let mut member = server.connected().await;
    member.join("presence-room", "42").await;
    assert_eq!(
        watcher.recv().await["event"],
        "pusher_internal:member_added"
    );
    let mut bystander = signed_in(&server, r#"{"id":"7"}"#).await;
    let r = server
        .http()
        .post("/users/42/terminate_connections", json!({}))
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
    for c in [&mut signed, &mut member] {
        assert_eq!(
            error_of(&c.recv().await),
            (4009, "You got disconnected by the app.".into())
        );
        assert_eq!(c.expect_close().await.0, Some(4009));
    }
    assert_eq!(
        watcher.recv().await["event"],
        "pusher_internal:member_removed"
    );
    bystander.expect_nothing().await;
}

#[tokio::test]
async fn python_sdk_terminate_path_finds_the_app_by_key() {
    let server = TestServer::start().await;
    let mut c = signed_in(&server, r#"{"id":"42"}"#).await;
    let api = server.http();
    let path = "/users/42/terminate_connections";
    let q = api.signed_query("POST", path, &[], "{}", now());
    let r = api.raw("POST", &format!("{path}?{q}"), "{}").await;
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
    assert_eq!(c.expect_close().await.0, Some(4009));
    // Wrong signature on that path is still refused.
    let q = api.signed_query("POST", "/users/43/terminate_connections", &[], "{}", now());
    assert_eq!(
        api.raw("POST", &format!("{path}?{q}"), "{}").await.status,
        401
    );
}

#[tokio::test]
async fn authorized_connections_timeout() {
    let mut app = app();
    // Long enough for the authorized clients to sign in or subscribe on a loaded machine.
    app.authorized_timeout = Some(Duration::from_millis(1500));
    let server = TestServer::start_with(config_with(app)).await;
    let mut idle = server.connected().await;
    idle.subscribe_public("public-only").await;
    let _signed = signed_in(&server, r#"{"id":"1"}"#).await;
    let mut private = server.connected().await;
    private.subscribe_signed("private-x", None).await;
    assert_eq!(
        error_of(&idle.recv().await),
        (4009, "Connection not authorized within timeout".into())
    );
    assert_eq!(idle.expect_close().await.0, Some(4009));
    // Past the deadline for the other two as well: they stay. A sleep, not a poll: the test
    // asserts that a close does NOT come within the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    private.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(private.recv().await["event"], "pusher:pong");
}
