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
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tracing::{debug, Instrument};

use error::{json_response, ApiError};
use signature::parse_query;

use crate::connection::Pending;
use crate::state::{AppRuntime, State};
use crate::stats::{ApiStats, Endpoint};

/// Time allowed for a request body to arrive once the headers are read.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Entry point for every HTTP request on the listener.
pub(crate) async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // For the log: a method and a URI clone are reference counts, not copies. The path
    // only: the query holds the request's signature.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let path = uri.path();
    // A debug span (free unless debug logging is on); an API request records its app in it.
    let span = tracing::debug_span!("request", app_id = tracing::field::Empty);
    let routed = route(req, &state).instrument(span.clone()).await;
    let _in_span = span.enter();
    let resp = match routed {
        Ok(resp) => {
            debug!(%method, path, status = resp.status().as_u16(), "request");
            resp
        }
        Err(e) => {
            debug!(%method, path, status = e.status.as_u16(), error = e.message, "request failed");
            e.into_response()
        }
    };
    Ok(resp)
}

/// Prometheus' text exposition format.
pub(crate) fn metrics_response(text: String) -> Response<Full<Bytes>> {
    Response::builder()
        .header(
            hyper::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(Full::new(Bytes::from(text)))
        .expect("a valid response")
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
#[derive(Clone, Copy)]
struct Target<'a> {
    rest: &'a str,
    full_path: &'a str,
    query: &'a str,
}

/// A signed API request for `app`; `tail` is the path after `/apps/{id}`. The method and the
/// query's signature are checked before the body is read, so only a request signed with the
/// app's secret gets its body buffered.
async fn api_call<'a>(
    state: &State,
    app: &AppRuntime,
    tail: &[&str],
    req: Request<Incoming>,
    target: Target<'a>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let method = req.method().clone();
    tracing::Span::current().record("app_id", app.app.id.as_str());
    api_method(&method, tail)?;
    let params = verify_query(state, app, &method, &target)?;
    // A timer only for a body still on its way: most arrive with their head.
    let mut reading = std::pin::pin!(read_body(req, RequestLimit::of(&state.config)));
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
    api_answer(state, app, tail, &params, &body).await
}

/// Refuses a method the API endpoint `tail` does not take, or an unknown endpoint, before
/// anything else is looked at.
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

/// The query's parameters, once its signature (over method, path and query) is verified.
fn verify_query<'a>(
    state: &State,
    app: &AppRuntime,
    method: &Method,
    target: &Target<'a>,
) -> Result<signature::Params<'a>, ApiError> {
    let Target {
        rest,
        full_path,
        query,
    } = *target;
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
        state.config.api_timestamp_window,
    )?;
    Ok(params)
}

/// A request whose method and query signature were accepted and whose body has been read:
/// the body's signed hash, then the endpoint.
async fn api_answer(
    state: &State,
    app: &AppRuntime,
    tail: &[&str],
    params: &signature::Params<'_>,
    body: &Bytes,
) -> Result<Response<Full<Bytes>>, ApiError> {
    signature::verify_body(params, body)?;
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
        ["channels"] => ok(channels::list(app, params).await?),
        ["channels", name] => ok(channels::show(app, name, params).await?),
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
    // A plugin's pages (the debug console) own every path under their mount.
    if let Some((pages, tail)) = seg
        .split_first()
        .and_then(|(first, tail)| Some((state.pages(first)?, tail)))
    {
        let tail = tail.iter().map(|s| (*s).to_owned()).collect();
        return Ok(pages.clone().serve(state.clone(), req, tail).await);
    }
    match seg.as_slice() {
        ["up"] => {
            // HEAD as GET, as HTTP asks and Reverb's router does: some uptime monitors and
            // load balancers check with HEAD (hyper sends the head without the body).
            if method != Method::HEAD {
                only(&method, Method::GET, "GET, HEAD")?;
            }
            ok(serde_json::json!({ "health": "OK" }))
        }
        ["app", key] => {
            only(&method, Method::GET, "GET")?;
            websocket::upgrade(state, key, req)
        }
        ["apps", app_id, tail @ ..] => {
            let started = Instant::now();
            let unmatched = &state.stats.api_unmatched;
            let app = counted(unmatched, tail, started, || {
                state.app_by_id(app_id).cloned().ok_or_else(|| {
                    ApiError::not_found(format!("No matching application for ID [{app_id}]."))
                })
            })?;
            timed(
                &app.stats.api,
                tail,
                started,
                api_call(state, &app, tail, req, target),
            )
            .await
        }
        // The Python SDK's terminate path has no app id: the app is found by its key.
        ["users", _, "terminate_connections"] => {
            let started = Instant::now();
            let unmatched = &state.stats.api_unmatched;
            let params = parse_query(query);
            let app = counted(unmatched, &seg, started, || {
                let key = signature::param(&params, "auth_key")
                    .ok_or_else(|| ApiError::unauthorized("Missing auth_key"))?;
                state.app_by_key(key).cloned().ok_or_else(|| {
                    ApiError::not_found(format!("No matching application for key [{key}]."))
                })
            })?;
            timed(
                &app.stats.api,
                &seg,
                started,
                api_call(state, &app, &seg, req, target),
            )
            .await
        }
        _ => Err(ApiError::not_found("Not found.")),
    }
}

/// `find`'s answer; an error is counted in `stats` as a request to `tail` (answered with its
/// status, `started` ago).
fn counted<T>(
    stats: &ApiStats,
    tail: &[&str],
    started: Instant,
    find: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    find().inspect_err(|e| stats.record(Endpoint::of(tail), e.status.as_u16(), started.elapsed()))
}

/// `answer`, counted in `stats` as a request to `tail` with its status and latency.
async fn timed(
    stats: &ApiStats,
    tail: &[&str],
    started: Instant,
    answer: impl Future<Output = Result<Response<Full<Bytes>>, ApiError>>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let answer = answer.await;
    let status = match &answer {
        Ok(resp) => resp.status(),
        Err(e) => e.status,
    };
    stats.record(Endpoint::of(tail), status.as_u16(), started.elapsed());
    answer
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
        let params = verify_query(state, app, method, &target)?;
        api_answer(state, app, tail, &params, body).await
    };
    match answer.await {
        Ok(resp) => resp.status(),
        Err(e) => e.into_response().status(),
    }
}

/// How large a request may be (413 beyond).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestLimit {
    /// `REVERB_MAX_REQUEST_SIZE` as set: head and body together, as Reverb counts them.
    Whole(usize),
    /// Not set: the body alone, with room for the largest trigger or batch that passes the
    /// event checks, so every request Pusher admits is read (the head is bounded by hyper).
    Body(usize),
}

/// Bytes of one event's JSON around its `data`, beyond its name: one channel (valid names
/// need no escapes), `socket_id`, `info`, field names and whitespace.
const EVENT_ROOM: usize = 4096;
/// The most a JSON string escape takes for one byte of text (a control character is
/// written `\u0000`): event data and names are limited once decoded.
const ESCAPED: usize = 6;
/// Pusher's batch size, which the body is sized for when batches are unlimited.
const PUSHER_BATCH: usize = 10;

impl RequestLimit {
    fn of(config: &crate::config::Config) -> RequestLimit {
        if let Some(n) = config.max_request_size {
            return RequestLimit::Whole(n);
        }
        let batch = match config.max_batch_size {
            0 => PUSHER_BATCH,
            n => n,
        };
        let event = config
            .max_event_size
            .saturating_add(config.max_event_name_length)
            .saturating_mul(ESCAPED)
            .saturating_add(EVENT_ROOM);
        // A trigger names up to `max_channels_per_event` channels, each quoted and separated.
        let channels = config
            .max_channels_per_event
            .saturating_mul(crate::protocol::names::MAX_CHANNEL_NAME + 3);
        RequestLimit::Body(batch.saturating_mul(event).saturating_add(channels))
    }
}

/// Reads a request body within the API's size limit and `BODY_TIMEOUT`: for plugin pages
/// that take a body the API would (the console's test event).
pub(crate) async fn read_api_body(
    req: Request<Incoming>,
    config: &crate::config::Config,
) -> Result<Bytes, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, read_body(req, RequestLimit::of(config)))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive in time",
            )
        })?
}

/// Reads the body, refusing requests over `limit`.
async fn read_body(req: Request<Incoming>, limit: RequestLimit) -> Result<Bytes, ApiError> {
    let (room, too_large) = match limit {
        RequestLimit::Whole(limit) => {
            let room = limit.checked_sub(head_size(&req));
            let message = format!(
                "The request is larger than the {limit} bytes allowed (REVERB_MAX_REQUEST_SIZE)"
            );
            (room, message)
        }
        RequestLimit::Body(limit) => {
            let message = format!(
                "The request body is larger than the {limit} bytes allowed; \
                 set REVERB_MAX_REQUEST_SIZE to change the limit"
            );
            (Some(limit), message)
        }
    };
    let too_large = || ApiError::too_large(too_large.clone());
    let room = room.ok_or_else(too_large)?;
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

/// The request head's size on the wire, near enough: request line, `Host`, headers.
fn head_size(req: &Request<Incoming>) -> usize {
    let uri = req.uri();
    uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
        + 16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn unset_request_size_fits_a_full_batch_of_the_largest_events() {
        let config = Config::default();
        let RequestLimit::Body(limit) = RequestLimit::of(&config) else {
            panic!("unset is a body limit");
        };
        // Ten events of 10,240 bytes of data, each written with the worst escaping.
        assert!(limit >= 10 * 10_240 * ESCAPED, "{limit}");
        assert_eq!(limit, 687_660, "the documented figure");
        let config = Config {
            max_request_size: Some(10_000),
            ..Config::default()
        };
        assert_eq!(RequestLimit::of(&config), RequestLimit::Whole(10_000));
    }
}
