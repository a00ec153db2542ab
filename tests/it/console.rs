//! The debug console's HTTP side (`RESOUND_CONSOLE_ENABLED`): not served when off, 401
//! without a session, the login, the live stream over a real WebSocket, the overview, the
//! test event through the API's trigger, and a stalled viewer that loses entries without
//! holding up delivery. (The page itself is tested in a browser: conformance/tests/console.)

use std::time::Duration;

use futures_util::StreamExt;
use resound::config::Console;
use resound::Config;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{app, config_with, wait_until, Response, TestServer, APP_ID, SECRET, WAIT};

fn console_config() -> Config {
    Config {
        console: Some(Console::default()),
        ..config_with(app())
    }
}

/// One HTTP/1.1 request with extra headers; the whole response (`Connection: close`).
async fn request(
    server: &TestServer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    server.http().raw_with(method, target, headers, body).await
}

async fn login(server: &TestServer, base: &str, app_id: &str, secret: &str) -> Response {
    let body = json!({"app_id": app_id, "secret": secret}).to_string();
    request(server, "POST", &format!("{base}/login"), &[], &body).await
}

/// The `Set-Cookie` line of a response, if any.
fn set_cookie(r: &Response) -> Option<String> {
    r.headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(|l| l["set-cookie:".len()..].trim().to_owned())
}

/// Logs in with the app's secret; the `Cookie` header value of the session.
async fn session(server: &TestServer, base: &str) -> String {
    let r = login(server, base, APP_ID, SECRET).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = set_cookie(&r).expect("a session cookie");
    cookie.split(';').next().unwrap().to_owned()
}

async fn get(server: &TestServer, target: &str, cookie: &str) -> Response {
    request(server, "GET", target, &[("Cookie", cookie)], "").await
}

async fn overview(server: &TestServer, cookie: &str) -> Value {
    let r = get(server, "/console/overview", cookie).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens the stream with `cookie`; reads its `hello`.
async fn open_stream(server: &TestServer, cookie: &str) -> Ws {
    let mut req = format!("ws://{}/console/stream", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("stream opens");
    let hello = next_entry(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    assert_eq!(hello["app_id"], APP_ID);
    ws
}

async fn next_entry(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an entry in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a stream entry, saw {other:?}"),
        }
    }
}

/// Reads entries until one of type `kind`; returns it.
async fn entry_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let e = next_entry(ws).await;
        if e["type"] == kind {
            return e;
        }
    }
}

#[tokio::test]
async fn the_console_is_not_served_when_it_is_off() {
    let server = TestServer::start().await;
    assert_eq!(
        request(&server, "GET", "/console", &[], "").await.status,
        404
    );
    assert_eq!(login(&server, "/console", APP_ID, SECRET).await.status, 404);
    let r = request(&server, "GET", "/console/overview", &[], "").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn without_a_session_every_console_endpoint_is_401() {
    let server = TestServer::start_with(Config {
        path: "/reverb".into(),
        ..console_config()
    })
    .await;
    // The page is public (it is the login form), under the path prefix only.
    let page = request(&server, "GET", "/reverb/console", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"href="/reverb/console/console.css""#));
    assert!(page.body.contains("login-form"));
    assert_eq!(
        request(&server, "GET", "/console", &[], "").await.status,
        404
    );
    let bogus = "resound_console=00112233";
    for cookie in ["", bogus] {
        let r = get(&server, "/reverb/console/overview", cookie).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(
            get(&server, "/reverb/console/session", cookie).await.status,
            401
        );
        let body = r#"{"name":"e","channel":"c","data":"d"}"#;
        let headers = [("Cookie", cookie)];
        let sent = request(&server, "POST", "/reverb/console/events", &headers, body).await;
        assert_eq!(sent.status, 401);
    }
    let mut req = format!("ws://{}/reverb/console/stream", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Cookie", bogus.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("the stream opened without a session: {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_the_right_one_opens_a_session() {
    let server = TestServer::start_with(console_config()).await;
    for (id, secret) in [(APP_ID, "wrong"), (APP_ID, ""), ("no-such-app", SECRET)] {
        let r = login(&server, "/console", id, secret).await;
        assert_eq!(r.status, 401, "{id}/{secret}: {}", r.body);
        assert_eq!(r.json()["error"], "Wrong app id or secret");
        assert_eq!(set_cookie(&r), None, "no session for a refused login");
    }
    let bad = request(&server, "POST", "/console/login", &[], "{\"app_id\":1}").await;
    assert_eq!(bad.status, 400);
    // Another site's page cannot log in (nor use a session).
    let body = json!({"app_id": APP_ID, "secret": SECRET}).to_string();
    let cross = [("Origin", "http://evil.example")];
    let r = request(&server, "POST", "/console/login", &cross, &body).await;
    assert_eq!(r.status, 403);

    let r = login(&server, "/console", APP_ID, SECRET).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie_line = set_cookie(&r).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie_line.contains(attr), "{cookie_line} lacks {attr}");
    }
    assert!(!cookie_line.contains("Secure"), "plain HTTP: {cookie_line}");
    let cookie = cookie_line.split(';').next().unwrap().to_owned();
    assert_eq!(cookie.len(), "resound_console=".len() + 64);
    // Behind a TLS-terminating proxy the cookie is HTTPS-only.
    let https = [("X-Forwarded-Proto", "https")];
    let r = request(&server, "POST", "/console/login", &https, &body).await;
    assert!(
        set_cookie(&r).unwrap().ends_with("; Secure"),
        "{}",
        r.headers
    );
    let s = get(&server, "/console/session", &cookie).await;
    assert_eq!((s.status, s.json()["app_id"].clone()), (200, json!(APP_ID)));

    let out = request(
        &server,
        "POST",
        "/console/logout",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(out.status, 200);
    assert_eq!(get(&server, "/console/session", &cookie).await.status, 401);
}

#[tokio::test]
async fn the_console_token_logs_in_instead_of_the_secret() {
    let server = TestServer::start_with(Config {
        console: Some(Console {
            token: Some("console-token-for-support".into()),
        }),
        ..config_with(app())
    })
    .await;
    let r = login(&server, "/console", APP_ID, "console-token-for-support").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(login(&server, "/console", APP_ID, SECRET).await.status, 200);
    let r = login(&server, "/console", APP_ID, "console-token-for-suppor").await;
    assert_eq!(r.status, 401);
    // Without a token configured, the same value is just a wrong secret.
    let other = TestServer::start_with(console_config()).await;
    let r = login(&other, "/console", APP_ID, "console-token-for-support").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn the_stream_carries_connections_subscriptions_and_events() {
    let server = TestServer::start_with(console_config()).await;
    let cookie = session(&server, "/console").await;
    let mut stream = open_stream(&server, &cookie).await;

    let mut client = server.connected().await;
    let opened = entry_of(&mut stream, "connection_opened").await;
    assert_eq!(opened["socket_id"], client.socket_id.as_str());
    client.subscribe_public("orders").await;
    let sub = entry_of(&mut stream, "subscribed").await;
    assert_eq!(
        (&sub["channel"], &sub["socket_id"]),
        (&json!("orders"), &json!(client.socket_id))
    );

    server
        .http()
        .trigger(&["orders"], "order-shipped", r#"{"id":7}"#, None)
        .await;
    let api = entry_of(&mut stream, "api_event").await;
    assert_eq!(api["channels"], json!(["orders"]));
    assert_eq!(api["event"], "order-shipped");
    assert_eq!(api["data"], r#"{"id":7}"#);
    assert!(api["at"].as_u64().unwrap() > 0);

    client
        .send(json!({"event":"client-typing","channel":"orders","data":{"who":"me"}}))
        .await;
    let whisper = entry_of(&mut stream, "client_event").await;
    assert_eq!(whisper["event"], "client-typing");
    assert_eq!(whisper["data"], json!({"who": "me"}));

    let id = client.socket_id.clone();
    drop(client);
    let closed = entry_of(&mut stream, "connection_closed").await;
    assert_eq!(closed["socket_id"], id.as_str());
}

/// A `pusher:error` sent to a client shows in the stream with its code and text, and with
/// the channel of the refused subscription (so the channel filter finds it); an error that
/// ends the connection shows before the close.
#[tokio::test]
async fn errors_sent_to_clients_appear_in_the_stream_with_their_channel() {
    let mut app = app();
    app.ping_interval = Duration::from_millis(300);
    app.pong_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(Config {
        console: Some(Console::default()),
        ..config_with(app)
    })
    .await;
    let cookie = session(&server, "/console").await;
    let mut stream = open_stream(&server, &cookie).await;

    let mut client = server.connected().await;
    let forged = format!("{}:{}", crate::support::KEY, "0".repeat(64));
    client
        .send(json!({"event":"pusher:subscribe",
            "data":{"channel":"private-orders","auth":forged}}))
        .await;
    assert_eq!(crate::support::error_of(&client.recv().await).0, 4009);
    let err = entry_of(&mut stream, "error").await;
    assert_eq!(err["code"], 4009, "{err}");
    assert_eq!(err["channel"], "private-orders");
    assert_eq!(err["socket_id"], client.socket_id.as_str());
    assert_eq!(err["message"], "Connection is unauthorized");
    assert!(
        !err.to_string().contains(&forged),
        "the signature is never shown: {err}"
    );

    // Not a message at all: an error without a channel.
    client.send_text("not json").await;
    let err = entry_of(&mut stream, "error").await;
    assert_eq!(
        (&err["code"], &err["channel"]),
        (&json!(4200), &Value::Null)
    );

    // Silent past the pong timeout: the closing error, then the close.
    let err = entry_of(&mut stream, "error").await;
    assert_eq!(err["code"], 4201, "{err}");
    assert_eq!(err["message"], "Pong reply not received in time");
    let closed = entry_of(&mut stream, "connection_closed").await;
    assert_eq!(closed["code"], 4201);

    // Refused at the handshake: an error without a socket (none was given).
    let mut refused = server
        .connect_raw(&format!("/app/{}?protocol=99", crate::support::KEY))
        .await;
    assert_eq!(crate::support::error_of(&refused.recv().await).0, 4007);
    let err = entry_of(&mut stream, "error").await;
    assert_eq!(err["code"], 4007, "{err}");
    assert_eq!(err["socket_id"], Value::Null);
    assert_eq!(err["message"], "Unsupported protocol version");
}

#[tokio::test]
async fn the_overview_lists_connections_channels_and_presence_members() {
    let server = TestServer::start_with(console_config()).await;
    let cookie = session(&server, "/console").await;
    let mut a = server.connected().await;
    a.join("presence-room", "7").await;
    let mut b = server.connected().await;
    b.subscribe_public("news").await;

    let v = overview(&server, &cookie).await;
    assert_eq!(v["app_id"], APP_ID);
    assert_eq!(v["connections"]["count"], 2);
    let listed = v["connections"]["listed"].as_array().unwrap();
    for c in [&a, &b] {
        assert!(listed.contains(&json!(c.socket_id)), "{listed:?}");
    }
    assert_eq!(v["channel_count"], 2);
    assert_eq!(
        v["channels"],
        json!([
            {"name": "news", "subscribers": 1},
            {"name": "presence-room", "subscribers": 1, "user_count": 1,
             "members": [{"id": "7", "info": {"name": "user 7"}}]},
        ])
    );
    assert_eq!(v["stream"]["viewers"], 0);
}

#[tokio::test]
async fn a_test_event_goes_through_the_api_trigger() {
    let server = TestServer::start_with(console_config()).await;
    let cookie = session(&server, "/console").await;
    let mut client = server.connected().await;
    client.subscribe_public("orders").await;
    let send = |body: Value, origin: Option<String>| {
        let cookie = cookie.clone();
        let server = &server;
        async move {
            let mut headers = vec![("Cookie", cookie.as_str())];
            headers.extend(origin.as_deref().map(|o| ("Origin", o)));
            request(
                server,
                "POST",
                "/console/events",
                &headers,
                &body.to_string(),
            )
            .await
        }
    };
    let here = Some(format!("http://{}", server.addr));
    let r = send(
        json!({"name": "ping", "channel": "orders", "data": "{\"x\":1}"}),
        here,
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
    let got = client.recv().await;
    assert_eq!(
        got,
        json!({"event": "ping", "channel": "orders", "data": "{\"x\":1}"})
    );

    // The API's own checks and messages.
    let bad = send(
        json!({"name": "ping", "channel": "bad channel!", "data": "x"}),
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    let api = server
        .http()
        .post(
            "/events",
            json!({"name": "ping", "channel": "bad channel!", "data": "x"}),
        )
        .await;
    assert_eq!(bad.json()["error"], api.json()["error"]);
    let big = "x".repeat(10_241);
    let r = send(
        json!({"name": "ping", "channel": "orders", "data": big}),
        None,
    )
    .await;
    assert_eq!(r.status, 413);
    let r = send(json!({"channel": "orders", "data": "x"}), None).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("name is required"))
    );
    // Not from another site's page.
    let r = send(
        json!({"name": "ping", "channel": "orders", "data": "x"}),
        Some("http://evil.example".into()),
    )
    .await;
    assert_eq!(r.status, 403);
    client.expect_nothing().await;
}

#[tokio::test]
async fn a_stalled_viewer_loses_entries_and_never_holds_up_delivery() {
    const TRIGGERS: usize = 300;
    // Large events fill the viewer's socket buffers and its bounded buffer quickly; the
    // client's own queue is large so that only the console could fall behind.
    let server = TestServer::start_with(Config {
        max_event_size: 65_536,
        outbound_bytes: 256 << 20,
        ..console_config()
    })
    .await;
    let cookie = session(&server, "/console").await;

    // A viewer with a small receive buffer that never reads after the handshake.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let mut req = format!("ws://{}/console/stream", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (stalled, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("stream opens");
    assert!(
        wait_until(
            async || overview(&server, &cookie).await["stream"]["viewers"] == 1,
            WAIT
        )
        .await,
        "the viewer is registered"
    );

    let mut client = server.connected().await;
    client.subscribe_public("firehose").await;
    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(TRIGGERS);
        while seen.len() < TRIGGERS {
            let v = client.recv().await;
            assert_eq!(v["event"], "big", "{v}");
            let data = v["data"].as_str().unwrap();
            seen.push(data[..data.find(':').unwrap()].parse::<usize>().unwrap());
        }
        seen
    });
    let api = server.http();
    for i in 0..TRIGGERS {
        let data = format!("{i}:{}", "x".repeat(50_000));
        api.trigger(&["firehose"], "big", &data, None).await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("every event reaches the client")
        .unwrap();
    assert_eq!(
        seen,
        (0..TRIGGERS).collect::<Vec<_>>(),
        "all of them, in order"
    );

    let v = overview(&server, &cookie).await;
    let dropped = v["stream"]["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "the stalled viewer lost entries: {v}");
    assert!(dropped < TRIGGERS as u64 + 10, "{v}");
    assert_eq!(v["stream"]["viewers"], 1);
    drop(stalled);
}
