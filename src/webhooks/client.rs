//! One receiver's HTTP/1.1 connection: opened on first use (TLS for `https://`, trusting
//! the system's roots), kept while the receiver keeps it alive, opened again after an
//! error. One request at a time, so a target's requests stay in order.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::apps::WebhookTarget;

/// The most of a receiver's answer that is read (and dropped) to keep its connection.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Why a request failed (for the log).
pub(super) type Failure = String;

/// How one request went wrong: no answer at all (the connection was closed or broke), or
/// an answer that is not a success (or a request that could not be built).
enum Sent {
    Unanswered(String),
    Answered(String),
}

impl From<Sent> for Failure {
    fn from(s: Sent) -> Failure {
        match s {
            Sent::Unanswered(e) => format!("no answer: {e}"),
            Sent::Answered(e) => e,
        }
    }
}

/// The TLS client configuration for `https://` receivers, or why there is none.
pub(super) type Tls = Result<Arc<rustls::ClientConfig>, Failure>;

pub(super) struct Client {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    conn: Option<SendRequest<Full<Bytes>>>,
    tls: Arc<OnceLock<Tls>>,
    ca: Option<Arc<[u8]>>,
}

impl Client {
    /// A client for `target`; `tls` is shared by every target (made on first use, from `ca`
    /// or the system's roots).
    pub(super) fn new(
        target: &WebhookTarget,
        tls: Arc<OnceLock<Tls>>,
        ca: Option<Arc<[u8]>>,
    ) -> Client {
        let uri: Uri = target.url.parse().expect("validated by config");
        let headers = target
            .headers
            .iter()
            .filter_map(|(n, v)| {
                Some((
                    HeaderName::from_bytes(n.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        Client {
            uri,
            headers,
            conn: None,
            tls,
            ca,
        }
    }

    /// POSTs `body` signed with `key`'s `signature`; Ok on a 2xx answer. The caller bounds
    /// the time this takes. A kept connection that turns out closed (the receiver's
    /// keep-alive ended as we sent) is replaced at once, not counted as a failure.
    pub(super) async fn post(
        &mut self,
        body: Bytes,
        key: &str,
        signature: &str,
    ) -> Result<(), Failure> {
        let kept = self.conn.take().filter(SendRequest::is_ready);
        let reused = kept.is_some();
        let conn = match kept {
            Some(c) => c,
            None => self.connect().await?,
        };
        match self.send(conn, body.clone(), key, signature).await {
            Err(Sent::Unanswered(_)) if reused => {
                let conn = self.connect().await?;
                self.send(conn, body, key, signature)
                    .await
                    .map_err(Sent::into)
            }
            other => other.map_err(Sent::into),
        }
    }

    async fn send(
        &mut self,
        mut conn: SendRequest<Full<Bytes>>,
        body: Bytes,
        key: &str,
        signature: &str,
    ) -> Result<(), Sent> {
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let host = self.uri.authority().map_or("", |a| a.as_str()).to_owned();
        let bad = |e: String| Sent::Answered(e);
        let mut req = Request::post(path)
            .header(HOST, host)
            .body(Full::new(body))
            .map_err(|e| bad(e.to_string()))?;
        let h = req.headers_mut();
        for (name, value) in &self.headers {
            h.append(name.clone(), value.clone());
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            "x-pusher-key",
            HeaderValue::from_str(key).map_err(|e| bad(e.to_string()))?,
        );
        h.insert(
            "x-pusher-signature",
            HeaderValue::from_str(signature).map_err(|e| bad(e.to_string()))?,
        );
        let unanswered = |e: hyper::Error| Sent::Unanswered(e.to_string());
        conn.ready().await.map_err(unanswered)?;
        let resp = conn.send_request(req).await.map_err(unanswered)?;
        let status = resp.status();
        // Read the answer to the end so the connection can carry the next request; a
        // receiver that answers more than a webhook answer needs loses the connection.
        let read = http_body_util::Limited::new(resp.into_body(), ANSWER_LIMIT)
            .collect()
            .await;
        if read.is_ok() {
            self.conn = Some(conn);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(bad(format!("answered {status}")))
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let host = self.uri.host().ok_or("no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = self.uri.scheme_str() == Some("https");
        let port = self.uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return handshake(tcp).await;
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("tls: {e}"))?;
        let config = self
            .tls
            .get_or_init(|| tls_config(self.ca.as_deref()))
            .clone()?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        handshake(stream).await
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    // Ends when the connection closes (or its `SendRequest` is dropped).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// The client TLS configuration for `https://` receivers: trusting the certificates of `ca`
/// (PEM, checked at start-up), or the system's roots.
fn tls_config(ca: Option<&[u8]>) -> Tls {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("webhook CA file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("webhook CA file: {e}"))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    if roots.is_empty() {
        return Err("no root certificates to trust (set RESOUND_WEBHOOK_CA_FILE)".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
