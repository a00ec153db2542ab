//! The metrics' own listener (`RESOUND_METRICS_ADDR`): `GET /metrics` and nothing else, until
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tracing::{info, warn};

use super::{answer, Plugin};
use crate::state::State;

pub(super) async fn run(listener: std::net::TcpListener, plugin: Arc<Plugin>, state: Arc<State>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "metrics listener unusable");
            return;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics: serving /metrics");
    }
    loop {
        let stream = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (plugin, state) = (plugin.clone(), state.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                // Only `/metrics`: any other path is not found.
                let answer = match req.uri().path().strip_prefix("/metrics") {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                        let rest: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
                        answer(&plugin, &state, req.method(), &rest)
                    }
                    _ => not_found(),
                };
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}

fn not_found() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}
