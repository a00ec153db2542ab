//! The metrics' own listener (`RESOUND_METRICS_ADDR`): `GET /metrics` and nothing else, until
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tracing::{info, warn};

use super::Plugin;
use crate::http::metrics_response;
use crate::state::{Scrape, State};

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
                let answer = answer(&req, &plugin, &state);
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

fn answer<B>(req: &Request<B>, plugin: &Plugin, state: &State) -> Response<Full<Bytes>> {
    let status = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => return metrics_response(plugin.scrape(state)),
        (_, "/metrics") => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(b"")));
    *resp.status_mut() = status;
    resp
}
