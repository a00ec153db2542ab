//! The WebSocket handshake at `{path}/app/{key}`: checks app, protocol, origin and quota,
//! answers 101, and hands the upgraded stream to a session (or to `reject`, which delivers
//! the Pusher error in-band, where pusher-js can read it).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use super::error::ApiError;
use super::signature::{param, parse_query};
use crate::connection::session;
use crate::connection::socket::Accepted;
use crate::hooks::Activity;
use crate::protocol::PusherError;
use crate::state::{AppRuntime, ConnectionSlot, State};

/// Protocol versions accepted in `?protocol=`.
const PROTOCOLS: &[&str] = &["5", "6", "7"];
/// Initial read buffer per connection; it grows up to `max_message_size` when needed.
const READ_BUFFER: usize = 1024;

fn header_has(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// What the handshake decided, before the upgrade completes.
enum Outcome {
    Accept(Arc<AppRuntime>, ConnectionSlot),
    Reject(PusherError, usize),
}

fn decide(state: &State, key: &str, req: &Request<Incoming>) -> Outcome {
    let default_size = crate::apps::App::new("", "", "").max_message_size;
    let Some(app) = state.app_by_key(key) else {
        return Outcome::Reject(PusherError::AppNotFound, default_size);
    };
    let size = app.app.max_message_size;
    // A refusal for a known app is reported (console, metrics); an unknown key has no app.
    let refuse = |err: PusherError| {
        if app.hooks.is_heard() {
            let message = err.to_string();
            app.hooks.report(|| Activity::ClientError {
                socket_id: None,
                code: err.code(),
                message: &message,
                channel: None,
            });
        }
        Outcome::Reject(err, size)
    };
    if !app.app.enabled {
        return refuse(PusherError::AppDisabled);
    }
    let params = parse_query(req.uri().query().unwrap_or(""));
    if let Some(p) = param(&params, "protocol") {
        if !PROTOCOLS.contains(&p) {
            return refuse(PusherError::UnsupportedProtocol);
        }
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !app.app.is_origin_allowed(origin) {
        return refuse(PusherError::OriginNotAllowed);
    }
    match app.take_slot() {
        Some(slot) => Outcome::Accept(app.clone(), slot),
        None => refuse(PusherError::OverQuota),
    }
}

/// Answers an upgrade request for app `key`.
pub(super) fn upgrade(
    state: &Arc<State>,
    key: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let ws_key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let is_upgrade = header_has(&req, header::CONNECTION, "upgrade")
        && header_has(&req, header::UPGRADE, "websocket");
    let (true, Some(ws_key)) = (is_upgrade, ws_key) else {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "This endpoint only accepts WebSocket connections",
        ));
    };
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(ApiError::bad_request(
            "Unsupported WebSocket version (13 required)",
        ));
    }
    let outcome = decide(state, key, &req);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let st = state.clone();
    state.tasks.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let max = match &outcome {
            Outcome::Accept(app, _) => app.app.max_message_size,
            Outcome::Reject(_, size) => *size,
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        match outcome {
            Outcome::Accept(app, slot) => {
                // Accepted sessions write to the socket directly, so they need it back.
                let (socket, read_buf) = match upgraded.downcast::<TokioIo<TcpStream>>() {
                    Ok(parts) => (Accepted::Tcp(parts.io.into_inner()), parts.read_buf),
                    Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                        Ok(parts) => {
                            let (tcp, tls) = parts.io.into_inner().into_inner();
                            (Accepted::Tls(tcp, Box::new(tls)), parts.read_buf)
                        }
                        Err(_) => {
                            warn!("upgraded connection is neither TCP nor TLS; dropped");
                            return;
                        }
                    },
                };
                session::run(socket, read_buf, config, st, app, slot).await
            }
            Outcome::Reject(err, _) => {
                debug!(code = err.code(), reason = %err, "handshake refused");
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                session::reject(ws, err).await
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(ws_key.as_bytes()),
        )
        .header("X-Powered-By", "resound")
        .body(Full::new(Bytes::new()))
        .expect("static headers are valid"))
}
