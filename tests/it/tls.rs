//! TLS in process: `wss://` and `https://` on the one port, with a CA made here; a renewed
//! certificate reaches new handshakes while the connected clients stay; a reload that fails
//! keeps the old certificate; a bad certificate stops start-up with exit 2; SIGHUP reloads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use resound::tls::TlsFiles;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::*;

/// A CA, and a certificate for `localhost` and 127.0.0.1 it signed, as PEM.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub fn pki(name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca: ca.pem(),
        // The chain as a CA's bundle looks: the server's certificate, then the issuer's.
        cert: cert.pem() + &ca.pem(),
        key: key.serialize_pem(),
    }
}

/// Writes `pki`'s certificate and key into `dir` (replacing what is there, each in one
/// rename, as certbot does) and returns their paths.
pub fn install(dir: &Path, pki: &Pki) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    for (path, text) in [(&cert, &pki.cert), (&key, &pki.key)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (cert, key)
}

fn tls_config(dir: &Path, pki: &Pki, poll_every: Duration) -> resound::Config {
    let (cert, key) = install(dir, pki);
    resound::Config {
        tls: Some(TlsFiles {
            cert,
            key,
            poll_every,
        }),
        ..config_with(app())
    }
}

/// A client trusting only `ca` (PEM).
pub fn connector(ca: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

use rustls::pki_types::pem::PemObject;

pub async fn handshake(
    port: u16,
    tls: &TlsConnector,
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, tls.connect(name, tcp))
        .await
        .expect("handshake in time")
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A `wss://` client, past `connection_established`; returns it with its socket id.
pub async fn wss(port: u16, tls: &TlsConnector) -> (Wss, String) {
    let stream = handshake(port, tls).await.expect("TLS handshake");
    let url = format!("wss://localhost:{port}/app/{KEY}?protocol=7&client=js&version=8.4.0");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("WebSocket handshake over TLS");
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event"], "pusher:connection_established", "{ev}");
    let data: Value = serde_json::from_str(ev["data"].as_str().unwrap()).unwrap();
    let id = data["socket_id"].as_str().unwrap().to_owned();
    (ws, id)
}

pub async fn next_json(ws: &mut Wss) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, saw {other:?}"),
        }
    }
}

pub async fn subscribe(ws: &mut Wss, channel: &str) {
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    let ev = next_json(ws).await;
    assert_eq!(
        ev["event"], "pusher_internal:subscription_succeeded",
        "{ev}"
    );
}

/// One signed HTTP API request over TLS; returns the status and body.
async fn https(
    port: u16,
    tls: &TlsConnector,
    method: &str,
    tail: &str,
    body: &str,
) -> (u16, String) {
    let api = Api {
        addr: ([127, 0, 0, 1], port).into(),
        app_id: APP_ID.into(),
        key: KEY.into(),
        secret: SECRET.into(),
        prefix: String::new(),
    };
    let path = format!("/apps/{APP_ID}{tail}");
    let q = api.signed_query(method, &path, &[], body, now());
    let mut s = handshake(port, tls).await.expect("TLS handshake");
    let req = format!(
        "{method} {path}?{q} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("answer in time");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

pub async fn trigger(port: u16, tls: &TlsConnector, channel: &str, data: &str) {
    let body = json!({"name": "news", "data": data, "channel": channel}).to_string();
    let (status, answer) = https(port, tls, "POST", "/events", &body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn wss_and_https_share_the_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("test CA");
    let server =
        TestServer::start_with(tls_config(dir.path(), &pki, Duration::from_secs(60))).await;
    let port = server.addr.port();
    let tls = connector(&pki.ca);
    let (mut ws, _) = wss(port, &tls).await;
    subscribe(&mut ws, "news").await;
    trigger(port, &tls, "news", "over https").await;
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["event"].as_str(), ev["data"].as_str()),
        (Some("news"), Some("over https"))
    );
    let (status, body) = https(port, &tls, "GET", "/channels", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"channels": {"news": {}}})
    );
    // Plain HTTP on the TLS port gets no answer from the API.
    let plain = server.http().raw("GET", "/up", "").await;
    assert_ne!(plain.status, 200, "plain HTTP was served on the TLS port");
    // A client that does not trust the CA is refused by its own check.
    let other = connector(&crate::tls::pki("another CA").ca);
    assert!(handshake(port, &other).await.is_err());
}

#[tokio::test]
async fn a_renewed_certificate_reaches_new_handshakes_while_clients_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (pki("old CA"), pki("new CA"));
    let (cert, key) = install(dir.path(), &old);
    // A renewal written in place, each file renamed over the old one.
    crate::tls_renewal::renewal_is_picked_up(&cert, &key, &old, &new, || {
        install(dir.path(), &new);
    })
    .await;
}

#[tokio::test]
async fn a_failed_reload_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (pki("good CA"), pki("other CA"));
    let server =
        TestServer::start_with(tls_config(dir.path(), &good, Duration::from_millis(50))).await;
    let port = server.addr.port();
    // Up and serving before the files go wrong.
    let (mut first, _) = wss(port, &connector(&good.ca)).await;
    subscribe(&mut first, "first").await;
    // A renewal gone wrong: the new key does not belong to the certificate.
    std::fs::write(dir.path().join("key.pem"), &other.key).unwrap();
    // Several polls go by; the served certificate must not change (nor go away).
    tokio::time::sleep(QUIET).await;
    let (mut ws, _) = wss(port, &connector(&good.ca)).await;
    subscribe(&mut ws, "still").await;
    // And the direct reload says why.
    let files = server.state.config.tls.clone().unwrap();
    let err = resound::tls::Tls::new(&files)
        .err()
        .expect("mismatched key refused");
    assert!(err.contains("does not belong to the certificate"), "{err}");
}

/// A P-256 key encrypted with a passphrase (`openssl pkey -aes256`), as a key kept for
/// Reverb's `passphrase` option looks.
const ENCRYPTED_KEY: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAiXT1Czr7DqMgICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEB9QvS6RiCbBKJvehuY9TasEgZAq
PgoaaBkvNcyDWV1MGo4vzptHVbHOc0z7sVlNPmR0Y0uoieKaoIKW7ih9gbIa9E56
rLucMk6aqTcLUDqXXKHZpDxdMkhyYR7xbNfkMqwUuqPeItNNMYSS9IdjaaRew1NA
t0nqdFAlPPVTAUmo4ztBDMtystFl9OKPvOOzWtOMa0Vk2JPFzSqgX1Dm/f7WVC8=
-----END ENCRYPTED PRIVATE KEY-----
";

#[test]
fn a_bad_certificate_or_key_is_a_clear_startup_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (pki("one"), pki("two"));
    std::fs::write(dir.path().join("cert.pem"), &one.cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &one.key).unwrap();
    std::fs::write(dir.path().join("other-key.pem"), &two.key).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("encrypted-key.pem"), ENCRYPTED_KEY).unwrap();
    let port = free_port().to_string();
    for (cert, key, says) in [
        ("missing.pem", "key.pem", "cannot read the TLS certificate"),
        ("junk.pem", "key.pem", "no certificate in it"),
        ("cert.pem", "junk.pem", "no private key in it"),
        // Reverb's `passphrase` option has no counterpart: the message says what to do.
        ("cert.pem", "encrypted-key.pem", "protected by a passphrase"),
        (
            "cert.pem",
            "other-key.pem",
            "does not belong to the certificate",
        ),
    ] {
        let out = resound_command(dir.path())
            .args(["--port", &port, "--tls-cert", cert, "--tls-key", key])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cert} {key}: {err}");
        assert!(err.contains(says), "{cert} {key}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let out = resound_command(dir.path())
        .args(["--port", &port, "--tls-cert", "cert.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RESOUND_TLS_KEY is not"));
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (pki("old CA"), pki("new CA"));
    install(dir.path(), &old);
    let port = free_port();
    let mut child = resound_command(dir.path())
        .args([
            "--port",
            &port.to_string(),
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ])
        // Only SIGHUP may reload here: the files are not looked at for an hour.
        .env("RESOUND_TLS_RELOAD_INTERVAL", "3600")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = wait_until(
        async || handshake(port, &connector(&old.ca)).await.is_ok(),
        WAIT,
    )
    .await;
    assert!(up, "the server did not come up with TLS");
    install(dir.path(), &new);
    tokio::time::sleep(QUIET).await;
    assert!(
        handshake(port, &connector(&old.ca)).await.is_ok(),
        "reloaded before SIGHUP"
    );
    assert!(child.try_wait().unwrap().is_none());
    let pid = child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let reloaded = wait_until(
        async || handshake(port, &connector(&new.ca)).await.is_ok(),
        WAIT,
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(reloaded, "SIGHUP did not reload the certificate");
}

#[tokio::test]
async fn a_backlog_bigger_than_the_socket_buffer_arrives_whole_over_tls() {
    // Records the kernel cannot take at once wait with rustls until the writer task finishes
    // them: a client that reads only after 600 KB were sent still gets every event in order.
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("test CA");
    let server =
        TestServer::start_with(tls_config(dir.path(), &pki, Duration::from_secs(60))).await;
    let port = server.addr.port();
    let tls = connector(&pki.ca);
    let (mut ws, _) = wss(port, &tls).await;
    subscribe(&mut ws, "bulk").await;
    let filler = "x".repeat(10_000);
    for i in 0..60 {
        trigger(port, &tls, "bulk", &format!("{i:02}{filler}")).await;
    }
    for i in 0..60 {
        let ev = next_json(&mut ws).await;
        let data = ev["data"].as_str().unwrap();
        assert_eq!(&data[..2], format!("{i:02}"), "event {i} out of order");
        assert_eq!(data.len(), 10_002);
    }
}

#[tokio::test]
async fn a_burst_of_client_frames_over_tls_is_read_whole() {
    // 1,000 pings written at once (about 40 KB, more than rustls buffers as plaintext)
    // arrive as many TLS records in few reads; each is answered.
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("test CA");
    let server =
        TestServer::start_with(tls_config(dir.path(), &pki, Duration::from_secs(60))).await;
    let (mut ws, _) = wss(server.addr.port(), &connector(&pki.ca)).await;
    let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
    for _ in 0..1000 {
        ws.feed(Message::text(ping.clone())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..1000 {
        let ev = next_json(&mut ws).await;
        assert_eq!(ev["event"], "pusher:pong", "answer {i}: {ev}");
    }
}

#[test]
fn sighup_does_not_end_a_server_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = resound_command(dir.path())
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Answering /up means serving, and the handler is set up before the first answer.
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        use std::io::{Read, Write};
        let _ = s.write_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    });
    assert!(up, "the server did not come up");
    let pid = child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    std::thread::sleep(QUIET);
    let still = child.try_wait().unwrap().is_none();
    let serving = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still && serving, "SIGHUP ended the server");
}

#[tokio::test]
async fn the_drain_closes_tls_clients_with_4200() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("test CA");
    let mut server = TestServer::start_with(resound::Config {
        drain: Duration::from_millis(500),
        ..tls_config(dir.path(), &pki, Duration::from_secs(60))
    })
    .await;
    let tls = connector(&pki.ca);
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(wss(server.addr.port(), &tls).await.0);
    }
    let task = server.shutdown();
    for ws in &mut clients {
        let ev = next_json(ws).await;
        assert_eq!(error_of(&ev).0, 4200, "{ev}");
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4200),
            other => panic!("expected a close frame, saw {other:?}"),
        }
    }
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_console_cookie_is_secure_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("test CA");
    let config = resound::Config {
        console: Some(resound::config::Console { token: None }),
        ..tls_config(dir.path(), &pki, Duration::from_secs(60))
    };
    let server = TestServer::start_with(config).await;
    let tls = connector(&pki.ca);
    let mut s = handshake(server.addr.port(), &tls)
        .await
        .expect("TLS handshake");
    let body = json!({"app_id": APP_ID, "secret": SECRET}).to_string();
    let req = format!(
        "POST /console/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("answer in time");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let cookie = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {text}"));
    assert!(cookie.contains("; Secure"), "{cookie}");
}

/// Laravel Herd and Valet make a certificate for each secured site, and `reverb:start` serves
/// it when `REVERB_HOST` (or `--hostname`) names the site, so a Laravel `.env` with
/// `REVERB_HOST="myapp.test"` and `REVERB_SCHEME=https` gets `wss://` with no TLS setting.
/// The binary does the same, from the folders under `HOME`, and `resound health` follows.
#[tokio::test]
async fn a_herd_or_valet_certificate_for_reverb_host_is_served() {
    let (home, site) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = pki("valet CA");
    let port = free_port();
    std::fs::write(
        site.path().join(".env"),
        format!(
            "REVERB_APP_ID={APP_ID}\nREVERB_APP_KEY={KEY}\nREVERB_APP_SECRET={SECRET}\n\
             REVERB_HOST=\"myapp.test\"\nREVERB_SCHEME=https\nREVERB_SERVER_HOST=127.0.0.1\n\
             REVERB_SERVER_PORT={port}\n"
        ),
    )
    .unwrap();
    let (home_dir, site_dir) = (home.path().to_owned(), site.path().to_owned());
    let run = move |args: &[&str]| {
        let mut cmd = resound_command(&site_dir);
        cmd.env("HOME", &home_dir).args(args);
        cmd
    };
    // No certificate for the site: plain HTTP, as Reverb.
    let mut server = run(&[]).stdout(Stdio::null()).spawn().unwrap();
    let up = wait_until(
        async || {
            let api = Api {
                addr: ([127, 0, 0, 1], port).into(),
                app_id: APP_ID.into(),
                key: KEY.into(),
                secret: SECRET.into(),
                prefix: String::new(),
            };
            TcpStream::connect(api.addr).await.is_ok()
                && api.raw("GET", "/up", "").await.status == 200
        },
        WAIT,
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "plain /up without a certificate");

    let certs = home.path().join(".config/valet/Certificates");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("myapp.test.crt"), &pki.cert).unwrap();
    std::fs::write(certs.join("myapp.test.key"), &pki.key).unwrap();
    let mut server = run(&[]).stdout(Stdio::null()).spawn().unwrap();
    let tls = connector(&pki.ca);
    let served = wait_until(async || handshake(port, &tls).await.is_ok(), WAIT).await;
    let check = run.clone();
    let health = tokio::task::spawn_blocking(move || check(&["health"]).output().unwrap());
    let health = health.await.unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(served, "the Valet certificate was not served");
    assert_eq!(
        health.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
}
