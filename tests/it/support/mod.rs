//! Test harness: a real server on 127.0.0.1:0 in-process, a WebSocket client that speaks
//! JSON frames with timeouts, and a signed HTTP client. No fixed ports, no sleeps to sync.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use resound::apps::App;
use resound::auth;
use resound::state::State;
use resound::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod prom;

pub const APP_ID: &str = "558412";
pub const KEY: &str = "q7h2x9v4m1n8b3c6z5k0";
pub const SECRET: &str = "w3e8r1t6y9u4i2o7p5a0";
/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test watches for a frame it expects NOT to arrive.
pub const QUIET: Duration = Duration::from_millis(300);
/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(25);

/// Polls `cond` until it holds (true) or `within` has passed (false). For every state a test
/// can observe; only a test asserting that something does NOT happen sleeps through a window.
pub async fn wait_until(mut cond: impl AsyncFnMut() -> bool, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The test app, with Reverb defaults.
pub fn app() -> App {
    App::new(APP_ID, KEY, SECRET)
}

/// A config holding just `app`.
pub fn config_with(app: App) -> Config {
    Config {
        apps: vec![app],
        dev_app: false,
        ..Config::default()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(config_with(app())).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = resound::server::state(config);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(resound::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Triggers graceful shutdown and returns the server task to await.
    pub fn shutdown(&mut self) -> JoinHandle<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap()
    }

    pub async fn connect(&self) -> Client {
        let c = self
            .connect_raw(&format!(
                "/app/{KEY}?protocol=7&client=js&version=8.4.0&flash=false"
            ))
            .await;
        c
    }

    /// Connects and reads `connection_established`, returning the client and its socket id.
    pub async fn connected(&self) -> Client {
        let mut c = self.connect().await;
        let ev = c.recv().await;
        assert_eq!(ev["event"], "pusher:connection_established", "{ev}");
        let data: Value = serde_json::from_str(ev["data"].as_str().unwrap()).unwrap();
        c.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        c
    }

    pub async fn connect_raw(&self, path_and_query: &str) -> Client {
        let url = format!("ws://{}{}", self.addr, path_and_query);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client {
            ws,
            socket_id: String::new(),
        }
    }

    pub fn http(&self) -> Api {
        Api {
            addr: self.addr,
            app_id: APP_ID.into(),
            key: KEY.into(),
            secret: SECRET.into(),
            prefix: String::new(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

/// What a client saw next.
#[derive(Debug)]
pub enum Seen {
    Frame(Value),
    Closed(Option<u16>, String),
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_owned())).await.unwrap();
    }

    /// The next raw text frame exactly as sent by the server.
    pub async fn recv_raw(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("frame within timeout");
            match msg {
                Some(Ok(Message::Text(t))) => return t.as_str().to_owned(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, saw {other:?}"),
            }
        }
    }

    /// The next frame as JSON.
    pub async fn recv(&mut self) -> Value {
        match self.next_seen(WAIT).await {
            Some(Seen::Frame(v)) => v,
            other => panic!("expected a frame, saw {other:?}"),
        }
    }

    /// Next frame or close within `within`; `None` when nothing came.
    pub async fn next_seen(&mut self, within: Duration) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(m) => m,
            };
            return Some(match msg {
                Some(Ok(Message::Text(t))) => {
                    Seen::Frame(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    Seen::Closed(Some(f.code.into()), f.reason.as_str().to_owned())
                }
                Some(Ok(Message::Close(None))) => Seen::Closed(None, String::new()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("server sent binary"),
                Some(Err(e)) => Seen::Closed(None, format!("error: {e}")),
                None => Seen::Closed(None, "stream ended".into()),
            });
        }
    }

    /// Asserts that nothing arrives for a short while.
    pub async fn expect_nothing(&mut self) {
        if let Some(s) = self.next_seen(QUIET).await {
            panic!("expected silence, saw {s:?}");
        }
    }

    /// Waits for a close frame and returns its code and reason.
    pub async fn expect_close(&mut self) -> (Option<u16>, String) {
        loop {
            match self.next_seen(WAIT).await {
                Some(Seen::Closed(code, reason)) => return (code, reason),
                Some(Seen::Frame(_)) => continue,
                None => panic!("expected a close within {WAIT:?}"),
            }
        }
    }

    pub async fn subscribe_public(&mut self, channel: &str) {
        self.send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":channel}}))
            .await;
        let v = self.recv().await;
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
        assert_eq!(v["channel"], channel);
    }

    /// Sends a correctly signed subscribe (presence when `channel_data` is given).
    pub async fn send_signed_subscribe(&mut self, channel: &str, channel_data: Option<&str>) {
        let auth = channel_auth(&self.socket_id, channel, channel_data);
        let mut data = json!({"auth": auth, "channel": channel});
        if let Some(cd) = channel_data {
            data["channel_data"] = Value::String(cd.to_owned());
        }
        self.send(json!({"event":"pusher:subscribe","data":data}))
            .await;
    }

    /// Subscribes with a valid signature and returns `subscription_succeeded`'s data, parsed.
    pub async fn subscribe_signed(&mut self, channel: &str, channel_data: Option<&str>) -> Value {
        self.send_signed_subscribe(channel, channel_data).await;
        let v = self.recv().await;
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
        assert_eq!(v["channel"], channel);
        serde_json::from_str(v["data"].as_str().unwrap()).unwrap()
    }

    /// Joins a presence channel as `user_id`.
    pub async fn join(&mut self, channel: &str, user_id: &str) -> Value {
        let cd = json!({"user_id": user_id, "user_info": {"name": format!("user {user_id}")}})
            .to_string();
        self.subscribe_signed(channel, Some(&cd)).await
    }
}

/// The auth token Laravel's /broadcasting/auth would return.
pub fn channel_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    format!(
        "{KEY}:{}",
        auth::sign(
            SECRET,
            &auth::channel_string_to_sign(socket_id, channel, channel_data)
        )
    )
}

/// Parses a `pusher:error` frame's data into (code, message).
pub fn error_of(v: &Value) -> (i64, String) {
    assert_eq!(v["event"], "pusher:error", "{v}");
    let d: Value =
        serde_json::from_str(v["data"].as_str().expect("error data is a string")).unwrap();
    (
        d["code"].as_i64().unwrap(),
        d["message"].as_str().unwrap().to_owned(),
    )
}

/// An HTTP API client that signs like the Pusher SDKs.
pub struct Api {
    pub addr: SocketAddr,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// Server path prefix; requests go to `{prefix}/apps/..`, the signature covers `/apps/..`.
    pub prefix: String,
}

pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Api {
    /// The signed query string for a request (`extra` are other params, unescaped values).
    pub fn signed_query(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &str,
        timestamp: u64,
    ) -> String {
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".into(), self.key.clone()),
            ("auth_timestamp".into(), timestamp.to_string()),
            ("auth_version".into(), "1.0".into()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".into(), auth::md5_hex(body.as_bytes())));
        }
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let sig = auth::sign(
            &self.secret,
            &auth::api_string_to_sign(method, path, &params),
        );
        params.push(("auth_signature".into(), sig));
        let enc: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        enc
    }

    /// A signed request to `/apps/{id}{tail}`.
    pub async fn signed(
        &self,
        method: &str,
        tail: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let path = format!("/apps/{}{}", self.app_id, tail);
        let q = self.signed_query(method, &path, extra, body, now());
        self.raw(method, &format!("{}{}?{}", self.prefix, path, q), body)
            .await
    }

    pub async fn post(&self, tail: &str, body: Value) -> Response {
        self.signed("POST", tail, &[], &body.to_string()).await
    }

    pub async fn get(&self, tail: &str, extra: &[(&str, &str)]) -> Response {
        self.signed("GET", tail, extra, "").await
    }

    pub async fn trigger(
        &self,
        channels: &[&str],
        name: &str,
        data: &str,
        socket_id: Option<&str>,
    ) -> Response {
        let mut body = json!({"name": name, "data": data, "channels": channels});
        if let Some(s) = socket_id {
            body["socket_id"] = json!(s);
        }
        let r = self.post("/events", body).await;
        assert_eq!(r.status, 200, "trigger failed: {}", r.body);
        r
    }

    /// Sends one HTTP/1.1 request and reads the whole response (`Connection: close`).
    pub async fn raw(&self, method: &str, target: &str, body: &str) -> Response {
        self.raw_with(method, target, &[], body).await
    }

    /// [`Self::raw`] with extra request headers.
    pub async fn raw_with(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Response {
            status,
            headers: head.to_owned(),
            body: body.to_owned(),
        }
    }
}

/// The resound binary, run in `cwd`, with none of this process's `REVERB_*`/`RESOUND_*`
/// settings leaking into it.
pub fn resound_command(cwd: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_resound"));
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("REVERB_") || k.starts_with("RESOUND_") {
            cmd.env_remove(k);
        }
    }
    cmd
}
