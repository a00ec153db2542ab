//! The Pusher HTTP API: triggers, batches, queries, authentication and limits.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn laravel_trigger_with_to_others_excludes_sender() {
    let server = TestServer::start().await;
    let mut sender = server.connected().await;
    let mut other = server.connected().await;
    sender.subscribe_signed("private-Rooms.my-room", None).await;
    other.subscribe_signed("private-Rooms.my-room", None).await;
    // Exactly the PHP SDK's body: `channel`, not `channels`.
    let body = json!({"name":"App\\Events\\RoomMessageEvent","data":"{\"message\":\"Hello\",\"slug\":\"my-room\"}","channel":"private-Rooms.my-room","socket_id":sender.socket_id});
    let r = server.http().post("/events", body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
    assert!(r
        .headers
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    assert_eq!(
        other.recv_raw().await,
        r#"{"event":"App\\Events\\RoomMessageEvent","channel":"private-Rooms.my-room","data":"{\"message\":\"Hello\",\"slug\":\"my-room\"}"}"#
    );
    sender.expect_nothing().await;
}

#[tokio::test]
async fn trigger_to_several_channels_and_info() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    a.subscribe_public("one").await;
    a.join("presence-two", "1").await;
    let body = json!({"name":"e","data":"d","channels":["one","presence-two","empty"],"info":"user_count,subscription_count"});
    let r = server.http().post("/events", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"channels":{"one":{"subscription_count":1},"presence-two":{"user_count":1},"empty":{}}})
    );
    let mut got = vec![
        a.recv().await["channel"].clone(),
        a.recv().await["channel"].clone(),
    ];
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json!("one"), json!("presence-two")]);
}

#[tokio::test]
async fn unknown_socket_id_delivers_to_all() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    a.subscribe_public("c").await;
    server.http().trigger(&["c"], "e", "x", Some("1.1")).await;
    assert_eq!(a.recv().await["data"], "x");
}

#[tokio::test]
async fn batch_events() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    a.join("presence-Rooms.lobby", "1").await;
    a.subscribe_public("cache-ticker").await;
    assert_eq!(a.recv().await["event"], "pusher:cache_miss");
    let body = json!({"batch":[{"channel":"presence-Rooms.lobby","name":"a","data":"{}"},{"channel":"cache-ticker","name":"b","data":"1","socket_id":a.socket_id}]});
    let r = server.http().post("/batch_events", body).await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"batch":{}}"#));
    assert_eq!(a.recv().await["event"], "a");
    a.expect_nothing().await;
    let body = json!({"batch":[{"channel":"presence-Rooms.lobby","name":"a","data":"{}","info":"user_count"},{"channel":"x","name":"b","data":"1"}]});
    let r = server.http().post("/batch_events", body).await;
    assert_eq!(r.json(), json!({"batch":[{"user_count":1},{}]}));
}

#[tokio::test]
async fn batch_is_all_or_nothing() {
    let server = TestServer::start().await;
    let mut a = server.connected().await;
    a.subscribe_public("ok").await;
    let body =
        json!({"batch":[{"channel":"ok","name":"a","data":"1"},{"channel":"ok","name":"b"}]});
    let r = server.http().post("/batch_events", body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "batch[1].data is required (a string)");
    a.expect_nothing().await;
}

#[tokio::test]
async fn channel_queries() {
    let server = TestServer::start().await;
    let api = server.http();
    assert_eq!(api.get("/channels", &[]).await.body, r#"{"channels":{}}"#);
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.subscribe_signed("private-Rooms.my-room", None).await;
    b.subscribe_signed("private-Rooms.my-room", None).await;
    a.join("presence-Rooms.lobby", "1").await;
    b.join("presence-Rooms.lobby", "2").await;
    let r = api
        .get(
            "/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"channels":{"presence-Rooms.lobby":{"user_count":2}}})
    );
    let r = api.get("/channels", &[]).await;
    assert_eq!(
        r.json(),
        json!({"channels":{"presence-Rooms.lobby":{},"private-Rooms.my-room":{}}})
    );
    let r = api
        .get(
            "/channels/private-Rooms.my-room",
            &[("info", "subscription_count,user_count")],
        )
        .await;
    assert_eq!(r.json(), json!({"occupied":true,"subscription_count":2}));
    let r = api
        .get("/channels/presence-Rooms.lobby", &[("info", "user_count")])
        .await;
    assert_eq!(r.json(), json!({"occupied":true,"user_count":2}));
    assert_eq!(
        api.get("/channels/nobody", &[]).await.body,
        r#"{"occupied":false}"#
    );
    let r = api.get("/channels/presence-Rooms.lobby/users", &[]).await;
    let mut ids: Vec<String> = r.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["1", "2"]);
    let r = api.get("/channels/private-Rooms.my-room/users", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        api.get("/connections", &[]).await.json(),
        json!({"connections":2})
    );
}

#[tokio::test]
async fn cache_info_on_channel() {
    let server = TestServer::start().await;
    let api = server.http();
    api.trigger(&["cache-x"], "e", "payload", None).await;
    let r = api.get("/channels/cache-x", &[("info", "cache")]).await;
    let v = r.json();
    assert_eq!(v["occupied"], false);
    assert_eq!(v["cache"]["data"], "payload");
    assert!(v["cache"]["ttl"].as_u64().unwrap() > 1700);
}

#[tokio::test]
async fn python_sdk_get_with_empty_body_md5_is_accepted() {
    let server = TestServer::start().await;
    let api = server.http();
    let r = api
        .get(
            "/channels",
            &[("body_md5", "d41d8cd98f00b204e9800998ecf8427e")],
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"channels":{}}"#));
}

#[tokio::test]
async fn authentication_failures_are_401_with_reason() {
    let server = TestServer::start().await;
    let api = server.http();
    let body = r#"{"name":"e","data":"d","channel":"c"}"#;
    let path = format!("/apps/{APP_ID}/events");
    // Bad signature.
    let q = api
        .signed_query("POST", &path, &[], body, now())
        .replace("auth_signature=", "auth_signature=00");
    let r = api.raw("POST", &format!("{path}?{q}"), body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "Authentication signature invalid.");
    // Stale timestamp, correctly signed.
    let q = api.signed_query("POST", &path, &[], body, now() - 601);
    let r = api.raw("POST", &format!("{path}?{q}"), body).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("auth_timestamp"));
    // Body changed after signing.
    let q = api.signed_query("POST", &path, &[], body, now());
    let r = api
        .raw(
            "POST",
            &format!("{path}?{q}"),
            r#"{"name":"e","data":"X","channel":"c"}"#,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "body_md5 does not match the body");
    // Replayed signature on another path.
    let q = api.signed_query("GET", &format!("/apps/{APP_ID}/channels"), &[], "", now());
    let r = api
        .raw("GET", &format!("/apps/{APP_ID}/connections?{q}"), "")
        .await;
    assert_eq!(r.status, 401);
    // Wrong key.
    let other = Api {
        key: "other".into(),
        ..server.http()
    };
    assert_eq!(other.get("/channels", &[]).await.status, 401);
    // Wrong secret.
    let other = Api {
        secret: "other".into(),
        ..server.http()
    };
    assert_eq!(other.get("/channels", &[]).await.status, 401);
    // No auth at all.
    assert_eq!(
        api.raw("GET", &format!("/apps/{APP_ID}/channels"), "")
            .await
            .status,
        401
    );
}

/// The security review's attack: a signature for `GET /channels?filter_by_prefix=presence-`,
/// replayed with the filter percent-encoded into `auth_version`, signs the same string once
/// decoded, and would list every channel. It, and the filter's name in capitals (which the
/// string to sign lower-cases), must be refused with 401.
#[tokio::test]
async fn a_signature_does_not_cover_parameters_folded_into_others() {
    let server = TestServer::start().await;
    let api = server.http();
    let mut a = server.connected().await;
    a.subscribe_signed("private-secret", None).await;
    a.join("presence-lobby", "1").await;
    let path = format!("/apps/{APP_ID}/channels");
    // Signed as an SDK signs it, with the app secret.
    let honest = api.signed_query(
        "GET",
        &path,
        &[("filter_by_prefix", "presence-")],
        "",
        now(),
    );
    assert!(
        honest.contains("&auth_version=1.0&filter_by_prefix=presence-&"),
        "{honest}"
    );
    let r = api.raw("GET", &format!("{path}?{honest}"), "").await;
    assert_eq!(r.json(), json!({"channels":{"presence-lobby":{}}}));
    let folded = honest.replace(
        "auth_version=1.0&filter_by_prefix=presence-",
        "auth_version=1.0%26filter_by_prefix%3Dpresence-",
    );
    let capitals = honest.replace("filter_by_prefix=", "FILTER_BY_PREFIX=");
    for forged in [folded, capitals] {
        let r = api.raw("GET", &format!("{path}?{forged}"), "").await;
        assert_eq!(r.status, 401, "{forged}: {}", r.body);
        let error = r.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with("Query parameter"), "{error}");
    }
}

#[tokio::test]
async fn timestamp_check_can_be_disabled() {
    let mut config = config_with(app());
    config.api_timestamp_window = None;
    let server = TestServer::start_with(config).await;
    let api = server.http();
    let path = format!("/apps/{APP_ID}/channels");
    let q = api.signed_query("GET", &path, &[], "", 1_000);
    assert_eq!(api.raw("GET", &format!("{path}?{q}"), "").await.status, 200);
}

#[tokio::test]
async fn validation_errors() {
    let server = TestServer::start().await;
    let api = server.http();
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let cases = [
        (json!({"data":"d","channel":"c"}), 400, "name is required"),
        (
            json!({"name":"e","channel":"c"}),
            400,
            "data is required (a string)",
        ),
        (
            json!({"name":"e","data":{"a":1},"channel":"c"}),
            400,
            "data must be a string",
        ),
        (
            json!({"name":"e","data":"d"}),
            400,
            "channels or channel is required",
        ),
        (
            json!({"name":"e","data":"d","channels":"c"}),
            400,
            "channels must be an array of strings",
        ),
        (
            json!({"name":"e","data":"d","channels":[]}),
            400,
            "channels must name 1 to 100 channels, not 0",
        ),
        (
            json!({"name":"e","data":"d","channels":many}),
            400,
            "channels must name 1 to 100 channels, not 101",
        ),
        (
            json!({"name":"e","data":"d","channel":"a".repeat(201)}),
            400,
            "is longer than 200 characters",
        ),
        (
            json!({"name":"e","data":"d","channel":"bad name"}),
            400,
            "may only contain",
        ),
        (
            json!({"name":"x".repeat(201),"data":"d","channel":"c"}),
            400,
            "name must be 1 to 200 characters",
        ),
        (
            json!({"name":"e","data":"d","channel":"c","socket_id":"abc"}),
            400,
            "socket_id \"abc\" is not of the form 123.456",
        ),
        (
            json!({"name":"e","data":"d","channels":["private-encrypted-a","b"]}),
            400,
            "cannot be mixed",
        ),
        (
            json!({"name":"e","data":"x".repeat(9000),"channel":"c"}),
            200,
            "",
        ),
    ];
    for (body, status, msg) in cases {
        let r = api.post("/events", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        if status != 200 {
            let err = r.json()["error"].as_str().unwrap().to_owned();
            assert!(err.contains(msg), "{err:?} should contain {msg:?}");
        }
    }
    let r = api.signed("POST", "/events", &[], "{not json").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("The body is not valid JSON"));
}

/// A 10,240-byte `data` string, as a Laravel event carrying a long AI reply (gzip + base64).
fn max_data() -> String {
    "QUJD/+".repeat(10_240 / 6 + 1)[..10_240].to_owned()
}

/// With `REVERB_MAX_REQUEST_SIZE` unset, every request Pusher admits is admitted: one event
/// with 10,240 bytes of data, and a batch of ten of them. One byte more of data is 413.
#[tokio::test]
async fn unset_request_size_admits_what_pusher_admits() {
    let server = TestServer::start().await;
    let api = server.http();
    let mut a = server.connected().await;
    a.subscribe_signed("private-Rooms.hawki", None).await;
    let data = max_data();
    let body =
        json!({"name":"App\\Events\\RoomMessageEvent","data":data,"channel":"private-Rooms.hawki"});
    let r = api.post("/events", body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
    assert_eq!(a.recv().await["data"], data.as_str());
    let batch: Vec<_> = (0..10)
        .map(|i| json!({"name":format!("e{i}"),"data":data,"channel":"private-Rooms.hawki"}))
        .collect();
    let body = json!({ "batch": batch });
    assert!(body.to_string().len() > 100_000);
    let r = api.post("/batch_events", body).await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"batch":{}}"#));
    for i in 0..10 {
        assert_eq!(a.recv().await["event"], format!("e{i}"));
    }
    // The worst escaping: every byte of the data written as `\u0001`, six bytes each.
    let escaped = "\u{1}".repeat(10_240);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"name":"e","data":escaped,"channel":"c"}))
        .collect();
    let r = api.post("/batch_events", json!({ "batch": batch })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .post(
            "/events",
            json!({"name":"e","data":"x".repeat(10_241),"channel":"c"}),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json()["error"],
        "data is 10241 bytes; at most 10240 are allowed"
    );
}

/// Set explicitly, `REVERB_MAX_REQUEST_SIZE` counts head and body, as Reverb does.
#[tokio::test]
async fn explicit_max_request_size_counts_head_and_body_as_reverb_does() {
    let mut config = config_with(app());
    config.max_request_size = Some(10_000);
    let server = TestServer::start_with(config).await;
    let r = server
        .http()
        .post(
            "/events",
            json!({"name":"e","data":"x".repeat(9_800),"channel":"c"}),
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("REVERB_MAX_REQUEST_SIZE"));
    let r = server
        .http()
        .post(
            "/events",
            json!({"name":"e","data":"x".repeat(9_000),"channel":"c"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Pusher's batch limit of 10 is the default; 0 still means unlimited.
#[tokio::test]
async fn batches_over_max_batch_size_are_400() {
    let items = |n: usize| {
        let batch: Vec<_> = (0..n)
            .map(|i| json!({"name":"e","data":i.to_string(),"channel":"c"}))
            .collect();
        json!({ "batch": batch })
    };
    let server = TestServer::start().await;
    assert_eq!(
        server.http().post("/batch_events", items(10)).await.status,
        200
    );
    let r = server.http().post("/batch_events", items(11)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "batch has 11 events; at most 10 are allowed (RESOUND_MAX_BATCH_SIZE)"
    );
    let mut config = config_with(app());
    config.max_batch_size = 0;
    let server = TestServer::start_with(config).await;
    let r = server.http().post("/batch_events", items(50)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The body is read only for a correctly signed query: an unsigned request is refused at
/// once, without waiting for (or buffering) the body it announces.
#[tokio::test]
async fn unsigned_requests_are_refused_before_their_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /apps/{APP_ID}/events?auth_key={KEY}&auth_timestamp={}&auth_version=1.0&auth_signature=00 HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\nConnection: close\r\n\r\n",
        now()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 1024];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("an answer without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}

#[tokio::test]
async fn routing_errors() {
    let server = TestServer::start().await;
    let api = server.http();
    let r = api.raw("GET", "/nowhere", "").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (404, "Not found.")
    );
    let r = api.raw("GET", "/apps/999/channels", "").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (404, "No matching application for ID [999].")
    );
    let r = api.raw("GET", &format!("/apps/{APP_ID}/events"), "").await;
    assert_eq!(r.status, 405);
    assert!(r.headers.contains("allow: POST"), "{}", r.headers);
    let r = api.raw("POST", "/up", "").await;
    assert_eq!(r.status, 405);
    assert!(r.headers.contains("allow: GET, HEAD"), "{}", r.headers);
    let r = api.raw("GET", "/up", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"health":"OK"}"#));
    // A monitor's HEAD gets the same status and length, without the body.
    let r = api.raw("HEAD", "/up", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{}", r.headers);
    assert!(r.headers.contains("content-length: 15"), "{}", r.headers);
}

#[tokio::test]
async fn path_prefix_moves_every_route() {
    let mut config = config_with(app());
    config.path = "/reverb".into();
    let server = TestServer::start_with(config).await;
    let mut api = server.http();
    assert_eq!(api.raw("GET", "/up", "").await.status, 404);
    assert_eq!(
        api.raw("GET", "/reverb/up", "").await.body,
        r#"{"health":"OK"}"#
    );
    let mut c = server
        .connect_raw(&format!("/reverb/app/{KEY}?protocol=7"))
        .await;
    assert_eq!(c.recv().await["event"], "pusher:connection_established");
    c.subscribe_public("p").await;
    // PHP SDK style: request under the prefix, signature over the path without it.
    api.prefix = "/reverb".into();
    api.trigger(&["p"], "e", "x", None).await;
    assert_eq!(c.recv().await["data"], "x");
    // Full-path signatures are accepted too.
    let path = format!("/reverb/apps/{APP_ID}/channels");
    let q = api.signed_query("GET", &path, &[], "", now());
    assert_eq!(api.raw("GET", &format!("{path}?{q}"), "").await.status, 200);
}

#[tokio::test]
async fn server_to_user_channel_name_is_url_decoded_in_paths() {
    let server = TestServer::start().await;
    let r = server
        .http()
        .get("/channels/%23server-to-user-42", &[])
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"occupied":false}"#));
}

#[tokio::test]
async fn a_disabled_app_answers_403_once_the_request_is_signed() {
    let mut app = app();
    app.enabled = false;
    let server = TestServer::start_with(config_with(app)).await;
    let api = server.http();
    let r = api
        .post("/events", json!({"name": "e", "data": "d", "channel": "c"}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.json()["error"],
        "The app is disabled (RESOUND_APP_ENABLED=false)"
    );
    assert_eq!(api.get("/channels", &[]).await.status, 403);
    // Unsigned requests still learn nothing but that they are unsigned.
    let r = api
        .raw("GET", &format!("/apps/{APP_ID}/channels?auth_key=x"), "")
        .await;
    assert_eq!(r.status, 401);
}
