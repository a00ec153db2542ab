//! Webhooks against a real HTTP receiver on 127.0.0.1:0: exact bodies and signatures, the
//! order of one channel's events, the leave delay (a reload or a second tab sends nothing),
//! client events, cache misses, counts, filters, retries after failures and timeouts, and
//! the flush at shutdown.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use resound::apps::WebhookTarget;
use resound::Config;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::*;

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Ok,
    Fail(u16),
    /// Answers nothing for this long (longer than the server's webhook timeout).
    Stall(Duration),
}

/// One request as received.
#[derive(Debug)]
pub struct Hook {
    pub content_type: String,
    pub key: String,
    pub signature: String,
    pub body: String,
    pub custom: Option<String>,
    /// What the receiver answered.
    pub answer: String,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// The events' JSON, each as compact text.
    pub fn events(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// Checks Pusher's headers and signature.
    pub fn assert_signed(&self) {
        assert_eq!(self.content_type, "application/json");
        assert_eq!(self.key, KEY);
        assert_eq!(self.signature, resound::auth::sign(SECRET, &self.body));
    }
}

/// A real HTTP receiver: answers as its plan says (then 200), and hands every request over.
pub struct Receiver {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Hook>,
}

impl Receiver {
    pub async fn start(plan: Vec<Answer>) -> Receiver {
        Receiver::start_with(plan, None).await
    }

    /// A receiver behind TLS, with `tls`'s certificate, at `https://localhost:{port}`.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::start_with(Vec::new(), Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(plan: Vec<Answer>, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/pusher/webhooks"),
            None => format!("http://127.0.0.1:{port}/pusher/webhooks"),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let plan = Arc::new(Mutex::new(VecDeque::from(plan)));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, plan, tls) = (tx.clone(), plan.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                serve(stream, tx, plan).await;
                            }
                        }
                        None => serve(stream, tx, plan).await,
                    }
                });
            }
        });
        Receiver { url, rx }
    }

    /// The next request, within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Hook> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn next(&mut self) -> Hook {
        self.next_within(WAIT).await.expect("a webhook")
    }

    /// The events of the next requests, until `n` events have arrived; each request is
    /// checked for Pusher's headers and signature.
    pub async fn events(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let hook = self.next().await;
            hook.assert_signed();
            out.extend(hook.events());
        }
        assert_eq!(out.len(), n, "{out:?}");
        out
    }

    /// Asserts no request arrives within `within`.
    pub async fn expect_none(&mut self, within: Duration) {
        if let Some(h) = self.next_within(within).await {
            panic!("unexpected webhook {}", h.body);
        }
    }
}

/// Serves one connection: records each request, answers as the plan says (then 200).
async fn serve<S>(stream: S, tx: mpsc::UnboundedSender<Hook>, plan: Arc<Mutex<VecDeque<Answer>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let (tx, plan) = (tx.clone(), plan.clone());
        async move {
            let header = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
            let (content_type, key, signature, custom) = (
                header("content-type").unwrap_or_default(),
                header("x-pusher-key").unwrap_or_default(),
                header("x-pusher-signature").unwrap_or_default(),
                header("x-custom"),
            );
            assert_eq!(req.uri().path(), "/pusher/webhooks");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let answer = plan.lock().pop_front().unwrap_or(Answer::Ok);
            let _ = tx.send(Hook {
                content_type,
                key,
                signature,
                body: String::from_utf8(body.to_vec()).unwrap(),
                custom,
                answer: format!("{answer:?}"),
            });
            let status = match answer {
                Answer::Ok => 200,
                Answer::Fail(s) => s,
                Answer::Stall(d) => {
                    tokio::time::sleep(d).await;
                    200
                }
            };
            let resp = Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// The channel and member transitions.
pub(crate) const LIFECYCLE: &[&str] = &[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
];

/// A target for `url` wanting `events` (all when empty).
pub fn target(url: &str, events: &[&str]) -> WebhookTarget {
    WebhookTarget {
        url: url.to_owned(),
        events: events.iter().map(|e| e.to_string()).collect(),
        headers: Vec::new(),
    }
}

/// The test app with `targets`, leave delay `delay`, and no batch delay.
pub fn config(targets: Vec<WebhookTarget>, delay: Duration) -> Config {
    let mut app = app();
    app.webhooks = targets;
    let mut c = config_with(app);
    c.webhooks.leave_delay = delay;
    c.webhooks.batch_delay = Duration::ZERO;
    c
}

pub(crate) fn ev(v: Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn bodies_are_pushers_exactly_and_signed_with_the_app_secret() {
    let mut rx = Receiver::start(vec![]).await;
    let server = TestServer::start_with(config(
        vec![target(&rx.url, LIFECYCLE)],
        Duration::from_millis(200),
    ))
    .await;
    let mut a = server.connected().await;
    let before = now() * 1000;
    a.subscribe_signed("private-Rooms.my-room", None).await;
    let hook = rx.next().await;
    hook.assert_signed();
    let time_ms = hook.json()["time_ms"].as_u64().unwrap();
    assert!(
        time_ms >= before && time_ms <= (now() + 1) * 1000,
        "{time_ms}"
    );
    assert_eq!(
        hook.body,
        format!(
            r#"{{"time_ms":{time_ms},"events":[{{"name":"channel_occupied","channel":"private-Rooms.my-room"}}]}}"#
        )
    );
    a.send(json!({"event":"pusher:unsubscribe","data":{"channel":"private-Rooms.my-room"}}))
        .await;
    assert_eq!(
        rx.events(1).await,
        [r#"{"channel":"private-Rooms.my-room","name":"channel_vacated"}"#]
    );
}

#[tokio::test]
async fn a_presence_channels_events_arrive_in_order() {
    let mut rx = Receiver::start(vec![]).await;
    let server = TestServer::start_with(config(
        vec![target(&rx.url, LIFECYCLE)],
        Duration::from_millis(200),
    ))
    .await;
    let mut a = server.connected().await;
    a.join("presence-room", "1").await;
    let mut b = server.connected().await;
    b.join("presence-room", "2").await;
    drop(a);
    drop(b);
    let ch = "presence-room";
    assert_eq!(
        rx.events(6).await,
        [
            ev(json!({"name":"channel_occupied","channel":ch})),
            ev(json!({"name":"member_added","channel":ch,"user_id":"1"})),
            ev(json!({"name":"member_added","channel":ch,"user_id":"2"})),
            ev(json!({"name":"member_removed","channel":ch,"user_id":"1"})),
            ev(json!({"name":"member_removed","channel":ch,"user_id":"2"})),
            ev(json!({"name":"channel_vacated","channel":ch})),
        ]
    );
    rx.expect_none(QUIET).await;
}

#[tokio::test]
async fn a_reload_within_the_delay_sends_nothing_and_two_tabs_are_one_member() {
    let mut rx = Receiver::start(vec![]).await;
    let delay = Duration::from_millis(1500);
    let server = TestServer::start_with(config(vec![target(&rx.url, LIFECYCLE)], delay)).await;
    let ch = "presence-lobby";
    let mut tab1 = server.connected().await;
    tab1.join(ch, "7").await;
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"channel_occupied","channel":ch})),
            ev(json!({"name":"member_added","channel":ch,"user_id":"7"})),
        ]
    );
    // A second tab of the same user: no webhook.
    let mut tab2 = server.connected().await;
    tab2.join(ch, "7").await;
    // A reload of both: gone, and back well within the delay.
    drop(tab1);
    drop(tab2);
    let mut again = server.connected().await;
    again.join(ch, "7").await;
    rx.expect_none(delay + Duration::from_millis(500)).await;
    // Leaving for good: removed and vacated once each, after the delay.
    let left = tokio::time::Instant::now();
    drop(again);
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"member_removed","channel":ch,"user_id":"7"})),
            ev(json!({"name":"channel_vacated","channel":ch})),
        ]
    );
    assert!(left.elapsed() >= delay, "sent before the delay");
}

#[tokio::test]
async fn client_events_cache_misses_and_counts() {
    let mut rx = Receiver::start(vec![]).await;
    let wanted = ["client_event", "cache_miss", "subscription_count"];
    let server =
        TestServer::start_with(config(vec![target(&rx.url, &wanted)], Duration::ZERO)).await;
    let mut a = server.connected().await;
    let mut b = server.connected().await;
    a.join("presence-chat", "1").await;
    b.join("presence-chat", "2").await;
    assert_eq!(a.recv().await["event"], "pusher_internal:member_added");
    a.send(json!({"event":"client-typing","data":{"name":"Taylor"},"channel":"presence-chat"}))
        .await;
    let got = rx.events(1).await;
    assert_eq!(
        got,
        [ev(json!({
            "name":"client_event","channel":"presence-chat","event":"client-typing",
            "data":"{\"name\":\"Taylor\"}","socket_id":a.socket_id,"user_id":"1"
        }))]
    );
    assert_eq!(b.recv().await["event"], "client-typing");
    a.subscribe_signed("private-x", None).await;
    b.subscribe_signed("private-x", None).await;
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"subscription_count","channel":"private-x","subscription_count":1})),
            ev(json!({"name":"subscription_count","channel":"private-x","subscription_count":2})),
        ]
    );
    b.send(json!({"event":"client-typing","data":"plain","channel":"private-x"}))
        .await;
    assert_eq!(
        rx.events(1).await,
        [ev(json!({
            "name":"client_event","channel":"private-x","event":"client-typing",
            "data":"plain","socket_id":b.socket_id
        }))]
    );
    assert_eq!(a.recv().await["event"], "client-typing");
    a.send(json!({"event":"pusher:subscribe","data":{"channel":"cache-ticker"}}))
        .await;
    assert_eq!(
        rx.events(2).await,
        [
            ev(json!({"name":"cache_miss","channel":"cache-ticker"})),
            ev(
                json!({"name":"subscription_count","channel":"cache-ticker","subscription_count":1})
            ),
        ]
    );
    rx.expect_none(QUIET).await;
}

#[tokio::test]
async fn each_target_gets_only_its_events_and_its_headers() {
    let mut occupied = Receiver::start(vec![]).await;
    let mut all = Receiver::start(vec![]).await;
    let mut only = target(&occupied.url, &["channel_occupied"]);
    only.headers = vec![("X-Custom".into(), "yes".into())];
    let server = TestServer::start_with(config(
        vec![only, target(&all.url, LIFECYCLE)],
        Duration::from_millis(100),
    ))
    .await;
    let mut a = server.connected().await;
    a.subscribe_public("news").await;
    drop(a);
    let hook = occupied.next().await;
    hook.assert_signed();
    assert_eq!(hook.custom.as_deref(), Some("yes"));
    assert_eq!(
        hook.events(),
        [ev(json!({"name":"channel_occupied","channel":"news"}))]
    );
    assert_eq!(all.events(2).await.len(), 2);
    assert!(all.next_within(QUIET).await.is_none());
    occupied.expect_none(QUIET).await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_webhook_again_until_it_accepts() {
    let mut rx = Receiver::start(vec![
        Answer::Fail(500),
        Answer::Stall(Duration::from_secs(2)),
        Answer::Fail(503),
    ])
    .await;
    let mut c = config(vec![target(&rx.url, LIFECYCLE)], Duration::ZERO);
    c.webhooks.timeout = Duration::from_millis(500);
    let server = TestServer::start_with(c).await;
    let mut a = server.connected().await;
    a.subscribe_public("retry-me").await;
    let first = rx.next().await;
    first.assert_signed();
    assert_eq!(first.answer, "Fail(500)");
    let start = tokio::time::Instant::now();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let h = rx
            .next_within(Duration::from_secs(10))
            .await
            .expect("a retry");
        assert_eq!(h.body, first.body, "a retry sends the same body");
        assert_eq!(h.signature, first.signature);
        answers.push(h.answer);
    }
    assert_eq!(answers, ["Stall(2s)", "Fail(503)", "Ok"]);
    assert!(start.elapsed() < Duration::from_secs(10));
    // Accepted: not sent again.
    rx.expect_none(Duration::from_millis(1500)).await;
    // And the next event comes after it.
    drop(a);
    assert_eq!(
        rx.events(1).await,
        [ev(json!({"name":"channel_vacated","channel":"retry-me"}))]
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    // A port nobody listens on yet: the first tries are refused.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/pusher/webhooks");
    let server =
        TestServer::start_with(config(vec![target(&url, LIFECYCLE)], Duration::ZERO)).await;
    let mut a = server.connected().await;
    a.subscribe_public("later").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("retried")
        .unwrap();
    let (tx, mut got) = mpsc::unbounded_channel();
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let _ = tx.send(String::from_utf8(body.to_vec()).unwrap());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc),
    );
    let body = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        body.contains(r#"{"name":"channel_occupied","channel":"later"}"#),
        "{body}"
    );
}

#[tokio::test]
async fn events_ready_together_share_a_request_up_to_the_batch_size() {
    let mut rx = Receiver::start(vec![]).await;
    let mut c = config(vec![target(&rx.url, &["channel_occupied"])], Duration::ZERO);
    c.webhooks.batch_delay = Duration::from_millis(300);
    c.webhooks.batch_size = 3;
    let server = TestServer::start_with(c).await;
    let mut a = server.connected().await;
    for ch in ["b1", "b2", "b3", "b4"] {
        a.subscribe_public(ch).await;
    }
    let first = rx.next().await;
    first.assert_signed();
    assert_eq!(
        first.events(),
        ["b1", "b2", "b3"].map(|ch| ev(json!({"name":"channel_occupied","channel":ch})))
    );
    let second = rx.next().await;
    assert_eq!(
        second.events(),
        [ev(json!({"name":"channel_occupied","channel":"b4"}))]
    );
}

#[tokio::test]
async fn shutdown_sends_what_is_still_delayed_and_the_departures() {
    let mut rx = Receiver::start(vec![]).await;
    // Delayed far beyond the test: only the shutdown flush can send it in time. The drain
    // closes `b` at some instant in its 1 s window; its departure is sent after it.
    let server = TestServer::start_with(Config {
        drain: Duration::from_secs(1),
        ..config(vec![target(&rx.url, LIFECYCLE)], Duration::from_secs(60))
    })
    .await;
    shutdown_sends_the_delayed_and_the_departures(server, &mut rx).await;
}

/// With a leave delay far beyond the test: a channel left before the shutdown, and one still
/// open (closed by the drain), are both reported vacated by the shutdown's flush.
pub(crate) async fn shutdown_sends_the_delayed_and_the_departures(
    mut server: TestServer,
    rx: &mut Receiver,
) {
    let mut a = server.connected().await;
    a.subscribe_public("left-before").await;
    let mut b = server.connected().await;
    b.subscribe_public("open-at-shutdown").await;
    assert_eq!(rx.events(2).await.len(), 2);
    a.send(json!({"event":"pusher:unsubscribe","data":{"channel":"left-before"}}))
        .await;
    rx.expect_none(QUIET).await;
    let stopped = server.shutdown();
    let mut got = rx.events(2).await;
    got.sort();
    assert_eq!(
        got,
        [
            ev(json!({"name":"channel_vacated","channel":"left-before"})),
            ev(json!({"name":"channel_vacated","channel":"open-at-shutdown"})),
        ]
    );
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("shutdown ends")
        .unwrap();
    rx.expect_none(QUIET).await;
}

#[tokio::test]
async fn beyond_the_queue_bound_events_are_dropped_not_waited_for() {
    let mut rx = Receiver::start(vec![Answer::Stall(Duration::from_millis(1500))]).await;
    let mut c = config(vec![target(&rx.url, &["channel_occupied"])], Duration::ZERO);
    c.webhooks.queue = 1;
    c.webhooks.batch_size = 1;
    let server = TestServer::start_with(c).await;
    let mut a = server.connected().await;
    a.subscribe_public("q0").await;
    let first = rx.next().await;
    assert_eq!(
        first.events(),
        [ev(json!({"name":"channel_occupied","channel":"q0"}))]
    );
    // While the receiver stalls, the sender holds one event in its queue; the rest are
    // dropped, and the subscribes are answered at once all the same.
    for ch in ["q1", "q2", "q3", "q4"] {
        tokio::time::timeout(Duration::from_millis(500), a.subscribe_public(ch))
            .await
            .expect("subscribing never waits for webhooks");
    }
    let next = rx.next().await;
    assert_eq!(
        next.events(),
        [ev(json!({"name":"channel_occupied","channel":"q1"}))]
    );
    rx.expect_none(Duration::from_millis(800)).await;
}

#[tokio::test]
async fn https_receivers_are_reached_trusting_the_configured_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A CA, and a certificate for "localhost" signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key_der)
    .unwrap();
    let tls = Arc::new(tls);
    // Trusting only the system's roots, the receiver's certificate is refused: nothing
    // arrives.
    let mut untrusted = Receiver::start_tls(tls.clone()).await;
    let plain = config(vec![target(&untrusted.url, LIFECYCLE)], Duration::ZERO);
    let other = TestServer::start_with(plain).await;
    let mut b = other.connected().await;
    b.subscribe_public("secure").await;
    untrusted.expect_none(Duration::from_millis(1500)).await;

    let mut rx = Receiver::start_tls(tls).await;
    let mut c = config(vec![target(&rx.url, LIFECYCLE)], Duration::ZERO);
    c.webhooks.ca = Some(ca_cert.pem().into_bytes());
    let server = TestServer::start_with(c).await;
    let mut a = server.connected().await;
    a.subscribe_public("secure").await;
    assert_eq!(
        rx.events(1).await,
        [ev(json!({"name":"channel_occupied","channel":"secure"}))]
    );
}

#[tokio::test]
async fn shutdown_cuts_a_retry_wait_short_and_tries_once_more() {
    let fail = Answer::Fail(500);
    let mut rx = Receiver::start(vec![fail, fail, fail, fail]).await;
    // A 1 s drain: the default spreads the close (and so the vacate) over 8 s.
    let mut server = TestServer::start_with(Config {
        drain: Duration::from_secs(1),
        ..config(vec![target(&rx.url, LIFECYCLE)], Duration::ZERO)
    })
    .await;
    let mut a = server.connected().await;
    a.subscribe_public("retried-at-shutdown").await;
    for _ in 0..4 {
        let h = rx
            .next_within(Duration::from_secs(10))
            .await
            .expect("a try");
        assert_eq!(h.answer, "Fail(500)");
    }
    // The next try would come 4 to 8 s later; shutting down tries again at once, and the
    // vacate the shutdown causes follows it.
    let stopped = server.shutdown();
    let retried = rx
        .next_within(Duration::from_secs(3))
        .await
        .expect("a last try");
    assert_eq!(retried.answer, "Ok");
    assert_eq!(
        retried.events(),
        [ev(
            json!({"name":"channel_occupied","channel":"retried-at-shutdown"})
        )]
    );
    assert_eq!(
        rx.events(1).await,
        [ev(
            json!({"name":"channel_vacated","channel":"retried-at-shutdown"})
        )]
    );
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("shutdown ends")
        .unwrap();
}
