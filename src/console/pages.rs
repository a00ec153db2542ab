//! The console's HTTP side, under `{path}/console`: the page and its script and style, login
//! and logout, the session check, a snapshot of the app (`overview`), the live stream (a
//! WebSocket), and the test-event form (`events`, the HTTP API's own trigger).
//!
//! Everything but the page, its assets and the login answers 401 without a live session.
//! Requests that change something or open the stream must come from the console's own origin
//! when the browser names one (the session cookie is `SameSite=Strict` as well).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info};

use super::session::{same_secret, token_in, COOKIE, SESSION_TTL};
use super::{stream, Console};
use crate::connection::Pending;
use crate::http::error::{json_response, ApiError};
use crate::http::{events, read_api_body};
use crate::state::{AppRuntime, State};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// Connections listed by id in the overview (the count is always whole).
const LISTED_CONNECTIONS: usize = 100;
/// Presence members listed per channel in the overview.
const LISTED_MEMBERS: usize = 100;
/// Channels listed in the overview.
const LISTED_CHANNELS: usize = 500;

/// Answers a request under the console's mount; `rest` is the path after it.
pub(super) async fn serve(
    console: &Arc<Console>,
    state: &Arc<State>,
    req: Request<Incoming>,
    rest: &[String],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let base = format!("{}/console", state.config.path);
    match rest.as_slice() {
        [] | [""] => {
            only(&method, Method::GET)?;
            Ok(asset(
                INDEX.replace("{{BASE}}", &html_escape(&base)),
                "text/html",
            ))
        }
        ["console.js"] => {
            only(&method, Method::GET)?;
            Ok(asset(SCRIPT.to_owned(), "text/javascript"))
        }
        ["console.css"] => {
            only(&method, Method::GET)?;
            Ok(asset(STYLE.to_owned(), "text/css"))
        }
        ["login"] => {
            only(&method, Method::POST)?;
            same_origin(&req)?;
            login(console, state, req, &base).await
        }
        ["logout"] => {
            only(&method, Method::POST)?;
            same_origin(&req)?;
            if let Some(token) = cookie_token(&req) {
                console.sessions.close(token);
            }
            let mut resp = json_ok(json!({}));
            set_cookie(&mut resp, &format!("{COOKIE}=; Path={base}; Max-Age=0"));
            Ok(resp)
        }
        ["session"] => {
            only(&method, Method::GET)?;
            let app = session(console, state, &req)?;
            Ok(json_ok(json!({ "app_id": app.app.id })))
        }
        ["overview"] => {
            only(&method, Method::GET)?;
            let app = session(console, state, &req)?;
            Ok(json_ok(overview(console, &app)))
        }
        ["events"] => {
            only(&method, Method::POST)?;
            let app = session(console, state, &req)?;
            same_origin(&req)?;
            send_event(state, &app, req).await
        }
        ["stream"] => {
            only(&method, Method::GET)?;
            let app = session(console, state, &req)?;
            same_origin(&req)?;
            open_stream(console, state, &app, req)
        }
        _ => Err(ApiError::not_found("Not found.")),
    }
}

fn only(method: &Method, allowed: Method) -> Result<(), ApiError> {
    match *method == allowed {
        true => Ok(()),
        false if allowed == Method::GET => Err(ApiError::method_not_allowed("GET")),
        false => Err(ApiError::method_not_allowed("POST")),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page or asset: never cached, never framed, scripts only from this origin.
fn asset(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    let h = resp.headers_mut();
    let ct = format!("{content_type}; charset=utf-8");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).expect("ascii"),
    );
    secure_headers(h);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    resp
}

fn secure_headers(h: &mut hyper::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn json_ok(body: Value) -> Response<Full<Bytes>> {
    let mut resp = json_response(StatusCode::OK, body.to_string());
    secure_headers(resp.headers_mut());
    resp
}

fn set_cookie(resp: &mut Response<Full<Bytes>>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie_token(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(token_in)
}

/// The app of the request's live session, or 401.
fn session(
    console: &Console,
    state: &State,
    req: &Request<Incoming>,
) -> Result<Arc<AppRuntime>, ApiError> {
    cookie_token(req)
        .and_then(|t| console.sessions.app_of(t))
        .and_then(|id| state.app_by_id(&id).cloned())
        .ok_or_else(|| ApiError::unauthorized("Log in to the console first"))
}

/// Refuses a request whose `Origin` (when the browser sends one) is not this host.
fn same_origin(req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The console only answers its own page",
        )),
    }
}

#[derive(Deserialize)]
struct Login {
    app_id: String,
    secret: String,
}

/// `POST login` with `{"app_id":..,"secret":..}`: the app's secret or the console token
/// opens a session (the cookie); anything else is 401.
async fn login(
    console: &Console,
    state: &State,
    req: Request<Incoming>,
    base: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // Served over TLS (in process, or behind a TLS-terminating proxy), the cookie is kept
    // to HTTPS.
    let secure = state.config.tls.is_some()
        || req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let body = read_api_body(req, &state.config).await?;
    let Login { app_id, secret } = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request("The body must be {\"app_id\": string, \"secret\": string}")
    })?;
    let app = state.app_by_id(&app_id);
    let by_secret = app.is_some_and(|a| same_secret(&secret, &a.app.secret));
    let by_token = console
        .token
        .as_deref()
        .is_some_and(|t| same_secret(&secret, t));
    if app.is_none() || !(by_secret || by_token) {
        debug!(app_id, "console login refused");
        return Err(ApiError::unauthorized("Wrong app id or secret"));
    }
    info!(app_id, "console login");
    let token = console.sessions.open(&app_id);
    let mut resp = json_ok(json!({ "app_id": app_id }));
    let ttl = SESSION_TTL.as_secs();
    let secure = if secure { "; Secure" } else { "" };
    set_cookie(
        &mut resp,
        &format!("{COOKIE}={token}; Path={base}; Max-Age={ttl}; HttpOnly; SameSite=Strict{secure}"),
    );
    Ok(resp)
}

/// This node's view of the app: connections, occupied channels with their subscriber counts
/// and presence members, and the console's own viewers and drops.
fn overview(console: &Console, app: &AppRuntime) -> Value {
    let connections: Vec<String> = app
        .connections
        .iter()
        .take(LISTED_CONNECTIONS)
        .map(|c| c.key().to_string())
        .collect();
    let mut occupied = app.channels.occupied("");
    occupied.sort_by(|a, b| a.name.cmp(&b.name));
    let channel_count = occupied.len();
    let channels: Vec<Value> = occupied
        .into_iter()
        .take(LISTED_CHANNELS)
        .map(|c| {
            let mut v = json!({ "name": c.name, "subscribers": c.subscription_count });
            if crate::channel::ChannelKind::from_name(&c.name).presence {
                let members: Vec<Value> = app
                    .channels
                    .members(&c.name, LISTED_MEMBERS)
                    .into_iter()
                    .map(|m| json!({ "id": m.id, "info": m.user_info }))
                    .collect();
                v["user_count"] = app.channels.user_count(&c.name).into();
                v["members"] = members.into();
            }
            v
        })
        .collect();
    let (viewers, dropped) = console.viewers.stats(&app.app.id);
    json!({
        "app_id": app.app.id,
        "connections": { "count": app.connections.len(), "listed": connections },
        "channels": channels,
        "channel_count": channel_count,
        "stream": { "viewers": viewers, "dropped": dropped, "buffer": stream::VIEWER_BUFFER },
    })
}

/// `POST events`: a test event, in the body of an HTTP API trigger
/// (`{"name":..,"channel":..,"data":..}`), validated and published by the API's own
/// `events::trigger` with the same limits.
async fn send_event(
    state: &State,
    app: &AppRuntime,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if !app.app.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The app is disabled (RESOUND_APP_ENABLED=false)",
        ));
    }
    let body = read_api_body(req, &state.config).await?;
    let mut out = Pending::new();
    let report = events::trigger(app, &state.config, &body, &mut out)?;
    out.flush();
    info!(app_id = app.app.id, "console sent a test event");
    Ok(json_ok(report.into_json(app).await))
}

/// `GET stream`: upgrades to a WebSocket that carries the app's activities as JSON text.
fn open_stream(
    console: &Arc<Console>,
    state: &Arc<State>,
    app: &AppRuntime,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let upgrade = has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket");
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY);
    let (true, Some(b"13"), Some(key)) = (upgrade, version.map(|v| v.as_bytes()), key) else {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "The console stream is a WebSocket (version 13)",
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let sub = console.viewers.add(&app.app.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The app has {} console viewers open already",
                stream::MAX_VIEWERS
            ),
        )
    })?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (console, stop) = (console.clone(), state.shutdown.clone());
    state.tasks.spawn(async move {
        let (app_id, id) = (sub.app_id.clone(), sub.id);
        match on_upgrade.await {
            Ok(upgraded) => {
                // The viewer sends nothing but control frames.
                let config = WebSocketConfig::default().max_message_size(Some(4096));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                stream::pump(ws, sub, stop).await;
            }
            Err(e) => debug!(error = %e, "console stream upgrade failed"),
        }
        console.viewers.remove(&app_id, id);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Full::new(Bytes::new()))
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "upgrade failed"))
}
