//! The `resound` binary: help text, configuration errors, `.env` pickup, dev app, SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, resound_command};

/// A scratch directory, removed when dropped.
fn tmpdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("resound-cli-{name}-"))
        .tempdir()
        .unwrap()
}

/// Reads stdout lines until one contains `needle`; returns all lines read.
fn wait_for_line(child: &mut Child, needle: &str) -> Vec<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        let done = line.contains(needle);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("no line with {needle:?}; got {lines:?}");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Waits up to `within` for `child` to exit, polling; `None` if it still runs.
fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Kills `child` (its own `Child`: std never signals a pid it has already reaped) and reaps it.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGTERM to `child` and returns its exit code.
fn terminate(child: &mut Child) -> i32 {
    // Only while `try_wait` says it runs: a child we have not reaped keeps its pid, so the
    // signal cannot reach a process that reused it.
    if let Some(status) = child.try_wait().unwrap() {
        panic!("server exited before SIGTERM: {status}");
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    match wait_exit(child, Duration::from_secs(10)) {
        Some(status) => status.code().unwrap_or(-1),
        None => {
            kill(child);
            panic!("server did not exit after SIGTERM");
        }
    }
}

/// The binary with logs on stderr, captured: started with `setup` applied to its command,
/// serving the test app on a free loopback port. `logs.finish()` stops it (SIGTERM, exit 0
/// asserted) and returns everything it logged.
struct Logged {
    child: Child,
    port: u16,
    log: std::thread::JoinHandle<String>,
    _dir: tempfile::TempDir,
}

impl Logged {
    fn start(name: &str, setup: impl FnOnce(&mut Command)) -> Logged {
        use crate::support::{APP_ID, KEY, SECRET};
        let dir = tmpdir(name);
        let port = free_port();
        let mut command = resound_command(dir.path());
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--app-id", APP_ID, "--app-key", KEY, "--app-secret", SECRET])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        setup(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            BufReader::new(stderr).read_to_string(&mut text).unwrap();
            text
        });
        wait_for_line(&mut child, "listening");
        Logged {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// A WebSocket client of the app, with its socket id.
    async fn connect(&self) -> crate::support::Client {
        let url = format!(
            "ws://127.0.0.1:{}/app/{}?protocol=7",
            self.port,
            crate::support::KEY
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = crate::support::Client {
            ws,
            socket_id: String::new(),
        };
        let hello = c.recv().await;
        let data: serde_json::Value =
            serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
        c.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        c
    }

    fn finish(mut self) -> String {
        assert_eq!(terminate(&mut self.child), 0);
        self.log.join().unwrap()
    }
}

#[test]
fn help_documents_every_setting() {
    let out = resound_command(tmpdir("help").path())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--host",
        "REVERB_SERVER_HOST",
        "--port",
        "REVERB_SERVER_PORT",
        "--path",
        "REVERB_SERVER_PATH",
        "REVERB_MAX_REQUEST_SIZE",
        "REVERB_APP_ID",
        "REVERB_APP_KEY",
        "REVERB_APP_SECRET",
        "REVERB_APP_PING_INTERVAL",
        "REVERB_APP_ACTIVITY_TIMEOUT",
        "REVERB_APP_MAX_CONNECTIONS",
        "REVERB_APP_MAX_MESSAGE_SIZE",
        "REVERB_APP_ALLOWED_ORIGINS",
        "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
        "REVERB_APP_RATE_LIMITING_ENABLED",
        "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS",
        "REVERB_APP_RATE_LIMIT_DECAY_SECONDS",
        "REVERB_APP_RATE_LIMIT_TERMINATE",
        "--config",
        "--debug",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn bad_setting_is_one_line_exit_2_before_binding() {
    let port = free_port();
    let dir = tmpdir("bad");
    let mut child = resound_command(dir.path())
        .args(["--port", &port.to_string()])
        .env("REVERB_APP_ACTIVITY_TIMEOUT", "soon")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // If the bad value were accepted the server would run: stop it after a while.
    let Some(status) = wait_exit(&mut child, Duration::from_secs(10)) else {
        kill(&mut child);
        panic!("the server accepted the bad value and kept running");
    };
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("REVERB_APP_ACTIVITY_TIMEOUT") && err.contains("'soon'"),
        "{err}"
    );
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(out.is_empty(), "nothing printed as listening");
}

#[test]
fn runs_from_a_laravel_dotenv_and_stops_on_sigterm() {
    let dir = tmpdir("dotenv");
    let port = free_port();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "APP_NAME=Laravel\nBROADCAST_CONNECTION=reverb\nREVERB_APP_ID=558412\nREVERB_APP_KEY=\"q7h2x9v4m1n8b3c6z5k0\"\n\
             REVERB_APP_SECRET=w3e8r1t6y9u4i2o7p5a0\nREVERB_HOST=\"localhost\"\nREVERB_PORT=443\nREVERB_SCHEME=https\n\
             REVERB_SERVER_HOST=127.0.0.1\nREVERB_SERVER_PORT={port}\nVITE_REVERB_APP_KEY=\"${{REVERB_APP_KEY}}\"\n"
        ),
    )
    .unwrap();
    let mut child = resound_command(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = wait_for_line(&mut child, "app id=558412");
    assert!(lines[0].contains(&format!("127.0.0.1:{port}")), "{lines:?}");
    assert!(http_get(port, "/up").ends_with(r#"{"health":"OK"}"#));
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn dev_app_is_printed_with_a_warning_on_loopback() {
    let dir = tmpdir("dev");
    let port = free_port();
    let mut child = resound_command(dir.path())
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = wait_for_line(&mut child, "REVERB_APP_SECRET=");
    let all = lines.join("\n");
    assert!(all.contains(&format!("http://127.0.0.1:{port}")), "{all}");
    assert!(
        all.contains("WARNING") && all.contains("REVERB_APP_KEY=resound-dev-key"),
        "{all}"
    );
    assert_eq!(terminate(&mut child), 0);
}

/// `--debug` logs what happened (events, channels, sizes, socket ids), never what was sent:
/// no channel or sign-in signature, no `user_data` or `user_info`, no event data from a
/// client or the HTTP API, no API query signature. A server run with `--debug` is driven
/// through every path that carries one, and its stderr is searched for each.
#[tokio::test]
async fn debug_logs_carry_no_secrets_or_data() {
    use crate::support::{channel_auth, Api, APP_ID, KEY, SECRET, WAIT};
    use resound::auth;
    use serde_json::json;

    let server = Logged::start("debug", |c| {
        c.env_remove("RUST_LOG").arg("--debug");
    });
    let port = server.port;
    let (mut a, mut b) = (server.connect().await, server.connect().await);
    let mut secrets = Vec::new();

    let user_data = r#"{"id":"42","user_info":{"email":"ada.secret@example.com"}}"#;
    let signin = auth::sign(
        SECRET,
        &auth::signin_string_to_sign(&a.socket_id, user_data),
    );
    a.send(json!({"event":"pusher:signin","data":{"auth":format!("{KEY}:{signin}"),"user_data":user_data}}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:signin_success");
    secrets.extend([signin, "ada.secret@example.com".to_owned()]);

    for c in [&mut a, &mut b] {
        let token = channel_auth(&c.socket_id, "private-room", None);
        c.subscribe_signed("private-room", None).await;
        secrets.push(token.split_once(':').unwrap().1.to_owned());
    }
    let channel_data = r#"{"user_id":"7","user_info":{"email":"bob.secret@example.com"}}"#;
    let token = channel_auth(&a.socket_id, "presence-room", Some(channel_data));
    a.subscribe_signed("presence-room", Some(channel_data))
        .await;
    secrets.extend([
        token.split_once(':').unwrap().1.to_owned(),
        "bob.secret@example.com".to_owned(),
    ]);
    // A refused subscription: its (wrong) signature is not logged either.
    let wrong = "f00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeed";
    a.send(json!({"event":"pusher:subscribe","data":{"channel":"private-other","auth":format!("{KEY}:{wrong}")}}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    secrets.push(wrong.to_owned());

    a.send(json!({"event":"client-typing","channel":"private-room","data":{"draft":"whisper-data-5u8q"}}))
        .await;
    assert_eq!(b.recv().await["event"], "client-typing");
    secrets.push("whisper-data-5u8q".to_owned());

    let api = Api {
        addr: ([127, 0, 0, 1], port).into(),
        app_id: APP_ID.into(),
        key: KEY.into(),
        secret: SECRET.into(),
        prefix: String::new(),
    };
    let body = json!({"name":"App\\Events\\Reply","data":"api-data-7k2w","channel":"private-room"})
        .to_string();
    let path = format!("/apps/{APP_ID}/events");
    let query = api.signed_query("POST", &path, &[], &body, crate::support::now());
    assert_eq!(
        api.raw("POST", &format!("{path}?{query}"), &body)
            .await
            .status,
        200
    );
    assert_eq!(b.recv().await["data"], "api-data-7k2w");
    secrets.push("api-data-7k2w".to_owned());
    // A refused API request: its query (and signature) is not logged.
    let bad = query.replace("auth_signature=", "auth_signature=abad1dea");
    assert_eq!(
        api.raw("POST", &format!("{path}?{bad}"), &body)
            .await
            .status,
        401
    );
    let signature = query.rsplit_once("auth_signature=").unwrap().1;
    secrets.extend([signature.to_owned(), format!("abad1dea{signature}")]);

    let _ = tokio::time::timeout(WAIT, a.ws.close(None)).await;
    let log = server.finish();
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret:?} is in the log:\n{log}"
        );
    }
    // Debug logging was on, and said what happened.
    for expected in [
        r#"received event="pusher:signin""#,
        r#"received event="client-typing" channel="private-room""#,
        r#"request method=POST path="/apps/558412/events" status=200"#,
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
}

/// `--log-format json` with `--debug`: every stderr line is one JSON object, a connection's
/// lines carry `socket_id` and `app_id` (and `channel` where one applies), API requests
/// carry `app_id`, and no secret, signature, user data or event data is in any line.
#[tokio::test]
async fn json_logs_are_one_object_a_line_with_fields_and_no_secrets() {
    use crate::support::{channel_auth, Api, APP_ID, KEY, SECRET, WAIT};
    use serde_json::{json, Value};

    let server = Logged::start("json", |c| {
        c.env_remove("RUST_LOG")
            .env("RESOUND_LOG_FORMAT", "json")
            .arg("--debug");
    });
    let port = server.port;
    let (mut a, mut b) = (server.connect().await, server.connect().await);
    let mut secrets = vec![SECRET.to_owned()];
    for c in [&mut a, &mut b] {
        let token = channel_auth(&c.socket_id, "private-room", None);
        c.subscribe_signed("private-room", None).await;
        secrets.push(token.split_once(':').unwrap().1.to_owned());
    }
    let channel_data = r#"{"user_id":"7","user_info":{"email":"carol.secret@example.com"}}"#;
    let token = channel_auth(&a.socket_id, "presence-room", Some(channel_data));
    a.subscribe_signed("presence-room", Some(channel_data))
        .await;
    secrets.extend([
        token.split_once(':').unwrap().1.to_owned(),
        "carol.secret@example.com".to_owned(),
    ]);
    a.send(json!({"event":"client-typing","channel":"private-room","data":{"draft":"json-whisper-3j9d"}}))
        .await;
    assert_eq!(b.recv().await["event"], "client-typing");
    secrets.push("json-whisper-3j9d".to_owned());
    let api = Api {
        addr: ([127, 0, 0, 1], port).into(),
        app_id: APP_ID.into(),
        key: KEY.into(),
        secret: SECRET.into(),
        prefix: String::new(),
    };
    let body = json!({"name":"e","data":"json-api-data-8h1x","channel":"private-room"}).to_string();
    let path = format!("/apps/{APP_ID}/events");
    let query = api.signed_query("POST", &path, &[], &body, crate::support::now());
    let sent = api.raw("POST", &format!("{path}?{query}"), &body).await;
    assert_eq!(sent.status, 200);
    assert_eq!(b.recv().await["data"], "json-api-data-8h1x");
    let forged = query.replace("auth_signature=", "auth_signature=0ddba11");
    let refused = api.raw("POST", &format!("{path}?{forged}"), &body).await;
    assert_eq!(refused.status, 401);
    let signature = query.rsplit_once("auth_signature=").unwrap().1;
    secrets.extend([
        "json-api-data-8h1x".to_owned(),
        signature.to_owned(),
        format!("0ddba11{signature}"),
    ]);

    let _ = tokio::time::timeout(WAIT, a.ws.close(None)).await;
    let log = server.finish();
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret:?} is in the log:\n{log}"
        );
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(o @ Value::Object(_)) => o,
            _ => panic!("not a JSON object: {line:?}"),
        })
        .collect();
    assert!(lines.len() > 10, "{log}");
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(line.get(key).is_some(), "no {key} in {line:?}");
        }
    }
    let with = |message: &str, keys: &[&str]| {
        lines.iter().any(|l| {
            l["message"] == message && keys.iter().all(|k| l.get(*k).is_some_and(|v| !v.is_null()))
        })
    };
    assert!(
        with("received", &["socket_id", "app_id", "channel", "event"]),
        "a received frame with its connection and channel:\n{log}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "subscribed"
            && l["channel"] == "presence-room"
            && l["socket_id"] == a.socket_id.as_str()
            && l["app_id"] == APP_ID),
        "{log}"
    );
    assert!(
        with("client event relayed", &["socket_id", "app_id", "channel"]),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "request"
            && l["app_id"] == APP_ID
            && l["status"] == 200
            && l["path"] == path.as_str()),
        "an API request with its app:\n{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "request failed" && l["status"] == 401),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "api event published"
            && l["app_id"] == APP_ID
            && l["channel"] == "private-room"
            && l["event"] == "e"),
        "an API event with its app and channel:
{log}"
    );
}

/// `RUST_LOG=trace` turns on every crate's trace output, and the WebSocket library's traces
/// print whole frames; resound keeps that library at `info` whatever `RUST_LOG` says, so a
/// channel signature and event data stay out of the log at every level.
#[tokio::test]
async fn trace_logs_of_every_crate_carry_no_signatures_or_data() {
    use crate::support::{channel_auth, WAIT};
    use serde_json::json;

    let server = Logged::start("trace", |c| {
        c.env("RUST_LOG", "trace,tungstenite=trace");
    });

    let (mut a, mut b) = (server.connect().await, server.connect().await);
    let mut secrets = Vec::new();
    for c in [&mut a, &mut b] {
        let token = channel_auth(&c.socket_id, "private-room", None);
        c.subscribe_signed("private-room", None).await;
        secrets.push(token.split_once(':').unwrap().1.to_owned());
    }
    a.send(json!({"event":"client-typing","channel":"private-room","data":{"draft":"trace-whisper-6t1w"}}))
        .await;
    assert_eq!(b.recv().await["event"], "client-typing");
    secrets.push("trace-whisper-6t1w".to_owned());
    let _ = tokio::time::timeout(WAIT, a.ws.close(None)).await;
    let _ = tokio::time::timeout(WAIT, b.ws.close(None)).await;
    let log = server.finish();
    assert!(
        log.contains(r#"received event="pusher:subscribe""#),
        "resound's own debug lines are on:\n{log}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret:?} is in the log:\n{log}"
        );
    }
}
