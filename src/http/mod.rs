//! The HTTP side of the single listener: routing by (method, path) under the optional prefix,
//! the request size limit, API authentication, and the upgrade hand-off to sessions.

pub(crate) mod channels;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod signature;
pub(crate) mod users;
mod websocket;

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tracing::debug;

use error::{json_response, ApiError};
use signature::parse_query;

use crate::connection::Pending;
use crate::state::{AppRuntime, State};

/// Time allowed for a request body to arrive once the headers are read.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Entry point for every HTTP request on the listener.
pub(crate) async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // For the failure log: a method and a URI clone are reference counts, not copies.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let resp = route(req, &state).await.unwrap_or_else(|e| {
        let path = uri.path();
        debug!(%method, path, status = e.status.as_u16(), error = e.message, "request failed");
        e.into_response()
    });
    Ok(resp)
}

fn ok(body: Value) -> Result<Response<Full<Bytes>>, ApiError> {
    Ok(json_response(StatusCode::OK, body.to_string()))
}

fn only(method: &Method, allowed: Method, allow: &'static str) -> Result<(), ApiError> {
    if *method == allowed {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

/// Where an API request went, as received: the path without the server's prefix, the whole
/// path, and the query.
struct Target<'a> {
    rest: &'a str,
    full_path: &'a str,
    query: &'a str,
}

/// A signed API request for `app`; `tail` is the path after `/apps/{id}`.
async fn api_call(
    state: &State,
    app: &AppRuntime,
    tail: &[&str],
    req: Request<Incoming>,
    target: Target<'_>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let method = req.method().clone();
    api_method(&method, tail)?;
    // A timer only for a body still on its way: most arrive with their head.
    let mut reading = std::pin::pin!(read_body(req, state.config.max_request_size));
    let body = match std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
        Poll::Ready(body) => body?,
        Poll::Pending => tokio::time::timeout(BODY_TIMEOUT, reading)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body did not arrive in time",
                )
            })??,
    };
    api_answer(state, app, tail, &method, target, &body).await
}

/// Refuses a method the API endpoint `tail` does not take, or an unknown endpoint, before
/// its body is read.
fn api_method(method: &Method, tail: &[&str]) -> Result<(), ApiError> {
    let (allowed, allow) = match tail {
        ["events"] | ["batch_events"] | ["users", _, "terminate_connections"] => {
            (Method::POST, "POST")
        }
        ["channels"] | ["channels", _] | ["channels", _, "users"] | ["connections"] => {
            (Method::GET, "GET")
        }
        _ => return Err(ApiError::not_found("Not found.")),
    };
    only(method, allowed, allow)
}

/// An API request whose method was accepted and whose body has been read: the signature,
/// then the endpoint.
async fn api_answer<'a>(
    state: &State,
    app: &AppRuntime,
    tail: &[&str],
    method: &Method,
    target: Target<'a>,
    body: &Bytes,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let Target {
        rest,
        full_path,
        query,
    } = target;
    let params = parse_query(query);
    let decode = |s: &'a str| match s.contains('%') {
        true => percent_decode_str(s).decode_utf8_lossy(),
        false => Cow::Borrowed(s),
    };
    let (decoded_rest, decoded_full) = (decode(rest), decode(full_path));
    // Clients sign the decoded path without the prefix (PHP SDK) or with it; accept
    // the raw form too for clients that sign what they send.
    let mut paths = vec![&*decoded_rest, &*decoded_full, rest, full_path];
    paths.sort_unstable();
    paths.dedup();
    signature::verify(
        &app.app,
        method.as_str(),
        &paths,
        &params,
        body,
        state.config.api_timestamp_window,
    )?;
    // As Pusher answers for a disabled app (the PHP SDK, and so Laravel, raises on it).
    if !app.app.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The app is disabled (RESOUND_APP_ENABLED=false)",
        ));
    }
    let config = &state.config;
    match tail {
        // The sockets are written (or handed to flush jobs) before the response is built.
        ["events"] => {
            let mut out = Pending::new();
            let report = events::trigger(app, config, body, &mut out)?;
            out.flush();
            ok(report.into_json(app).await)
        }
        ["batch_events"] => {
            let mut out = Pending::new();
            let report = events::batch(app, config, body, &mut out)?;
            out.flush();
            ok(report.into_json(app).await)
        }
        ["channels"] => ok(channels::list(app, &params).await?),
        ["channels", name] => ok(channels::show(app, name, &params).await?),
        ["channels", name, "users"] => ok(channels::users(app, name)?),
        ["users", user_id, "terminate_connections"] => ok(users::terminate(app, user_id)),
        _ => ok(channels::connections(app).await),
    }
}

async fn route(
    req: Request<Incoming>,
    state: &Arc<State>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let prefix = state.config.path.as_str();
    // Cloning the URI counts references to its bytes: the path and query are borrowed from
    // the clone while the request moves on to its handler.
    let uri = req.uri().clone();
    let (full_path, query) = (uri.path(), uri.query().unwrap_or(""));
    let (rest, segments) = split_path(prefix, full_path)?;
    let seg: Vec<&str> = segments.iter().map(|s| &**s).collect();
    let method = req.method().clone();
    let target = Target {
        rest,
        full_path,
        query,
    };
    match seg.as_slice() {
        ["up"] => {
            only(&method, Method::GET, "GET")?;
            ok(serde_json::json!({ "health": "OK" }))
        }
        ["app", key] => {
            only(&method, Method::GET, "GET")?;
            websocket::upgrade(state, key, req)
        }
        ["apps", app_id, tail @ ..] => {
            let app = state
                .app_by_id(app_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!("No matching application for ID [{app_id}]."))
                })?
                .clone();
            api_call(state, &app, tail, req, target).await
        }
        // The Python SDK's terminate path has no app id: the app is found by its key.
        ["users", _, "terminate_connections"] => {
            let params = parse_query(query);
            let key = signature::param(&params, "auth_key")
                .ok_or_else(|| ApiError::unauthorized("Missing auth_key"))?;
            let app = state
                .app_by_key(key)
                .ok_or_else(|| {
                    ApiError::not_found(format!("No matching application for key [{key}]."))
                })?
                .clone();
            api_call(state, &app, &seg, req, target).await
        }
        _ => Err(ApiError::not_found("Not found.")),
    }
}

/// The path without the server's `prefix`, and its segments percent-decoded; not found
/// outside the prefix.
fn split_path<'a>(
    prefix: &str,
    full_path: &'a str,
) -> Result<(&'a str, Vec<Cow<'a, str>>), ApiError> {
    let rest = full_path
        .strip_prefix(prefix)
        .filter(|r| r.starts_with('/'))
        .ok_or_else(|| ApiError::not_found("Not found."))?;
    let segments = rest[1..]
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy())
        .collect();
    Ok((rest, segments))
}

/// For the fuzz target `http_api` (`crate::fuzzing`): the status of an API request to
/// `/apps/{id}/..` as `route` and `api_call` answer it, from its parts, the body read.
#[cfg(fuzzing)]
pub(crate) async fn api_request(
    state: &State,
    method: &Method,
    path: &str,
    query: &str,
    body: &Bytes,
) -> StatusCode {
    let answer = async {
        let (rest, segments) = split_path(&state.config.path, path)?;
        let seg: Vec<&str> = segments.iter().map(|s| &**s).collect();
        let ["apps", app_id, tail @ ..] = seg.as_slice() else {
            return Err(ApiError::not_found("Not found."));
        };
        let app = state
            .app_by_id(app_id)
            .ok_or_else(|| ApiError::not_found("No matching application."))?;
        api_method(method, tail)?;
        let target = Target {
            rest,
            full_path: path,
            query,
        };
        api_answer(state, app, tail, method, target, body).await
    };
    match answer.await {
        Ok(resp) => resp.status(),
        Err(e) => e.into_response().status(),
    }
}

/// Reads the body, refusing requests whose head and body together exceed `limit` bytes.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let uri = req.uri();
    let head: usize = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
        + 16;
    let too_large = || {
        ApiError::too_large(format!(
            "The request is larger than the {limit} bytes allowed (REVERB_MAX_REQUEST_SIZE)"
        ))
    };
    let room = limit.checked_sub(head).ok_or_else(too_large)?;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > room) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), room).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(_) => Err(ApiError::bad_request("The request body could not be read")),
    }
}
