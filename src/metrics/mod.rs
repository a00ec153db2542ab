//! Prometheus metrics, a plugin (`RESOUND_METRICS_ENABLED`, `RESOUND_METRICS_ADDR`). It
//! counts what the seam reports (connections, subscriptions, occupied channels, client and
//! API events) as a [`Listener`], and at scrape time reads the counters the core keeps for
//! what the seam does not carry (`crate::stats`: traffic, HTTP API, slow consumers, the Redis
//! link) and the process's own figures from `/proc`. Rendered by hand in the text exposition
//! format (`render.rs`): each family is a few lines over atomics, so counting costs the core
//! a relaxed add and nothing else, and no registry or lock sits on the reporting path.
//!
//! Served at `{path}/metrics` on the main port, or on a listener of its own (`serve.rs`).
//! docs/metrics.md lists every metric.

mod process;
mod render;
mod serve;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::channel::ChannelKind;
use crate::config::{Config, Metrics};
use crate::hooks::{Activity, Answer, Listener};
use crate::state::{Pages, Plugins, State};
use crate::stats::Counter;

/// Channel kinds as labelled, each channel in the first that applies (so a
/// `private-encrypted-cache-` channel is `encrypted`, a `presence-cache-` one `presence`,
/// and `cache` is the public `cache-` channels).
pub(crate) const KINDS: [&str; 6] = [
    "public",
    "private",
    "presence",
    "encrypted",
    "cache",
    "server_to_user",
];

fn kind_of(channel: &str) -> usize {
    let k = ChannelKind::from_name(channel);
    if k.encrypted {
        3
    } else if k.presence {
        2
    } else if k.private {
        1
    } else if k.cache {
        4
    } else if k.server_to_user {
        5
    } else {
        0
    }
}

/// The close codes counted on their own; others are counted as `other`, and a connection
/// closed without a code (the client closed first, or the socket failed) as `none`.
pub(crate) const CLOSE_CODES: [u16; 11] = [
    1009, 4001, 4003, 4004, 4007, 4009, 4100, 4200, 4201, 4202, 4301,
];

/// The `pusher:error` codes counted on their own (every code resound sends); others are
/// counted as `other`.
pub(crate) const ERROR_CODES: [u16; 9] = [4001, 4003, 4004, 4007, 4009, 4200, 4201, 4301, 4302];

/// What one app's activities added up to.
#[derive(Default)]
pub(crate) struct AppCounts {
    opened: Counter,
    /// By [`CLOSE_CODES`], then `none`, then `other`.
    closed: [Counter; CLOSE_CODES.len() + 2],
    /// By [`KINDS`].
    subscriptions: [AtomicI64; KINDS.len()],
    subscribed: [Counter; KINDS.len()],
    occupied: [AtomicI64; KINDS.len()],
    client_events: Counter,
    api_events: Counter,
    /// `pusher:error`s sent, by [`ERROR_CODES`], then `other`.
    errors: [Counter; ERROR_CODES.len() + 1],
}

impl AppCounts {
    fn closed_slot(code: Option<u16>) -> usize {
        match code {
            None => CLOSE_CODES.len(),
            Some(c) => CLOSE_CODES
                .iter()
                .position(|&x| x == c)
                .unwrap_or(CLOSE_CODES.len() + 1),
        }
    }

    fn hear(&self, activity: &Activity<'_>) {
        match activity {
            Activity::ConnectionOpened { .. } => self.opened.add(1),
            Activity::ConnectionClosed { code, .. } => {
                self.closed[Self::closed_slot(*code)].add(1);
            }
            Activity::Subscribed { channel, .. } => {
                let k = kind_of(channel);
                self.subscriptions[k].fetch_add(1, Relaxed);
                self.subscribed[k].add(1);
            }
            Activity::Unsubscribed { channel, .. } => {
                self.subscriptions[kind_of(channel)].fetch_sub(1, Relaxed);
            }
            Activity::ChannelOccupied { channel } => {
                self.occupied[kind_of(channel)].fetch_add(1, Relaxed);
            }
            Activity::ChannelVacated { channel } => {
                self.occupied[kind_of(channel)].fetch_sub(1, Relaxed);
            }
            Activity::ClientEvent { .. } => self.client_events.add(1),
            Activity::ApiEvent { channels, .. } => self.api_events.add(channels.len() as u64),
            Activity::ClientError { code, .. } => {
                let slot = ERROR_CODES.iter().position(|c| c == code);
                self.errors[slot.unwrap_or(ERROR_CODES.len())].add(1);
            }
            _ => {}
        }
    }
}

/// The plugin: a listener with a counter set per configured app (fixed at startup, so it is
/// read without a lock), and the renderer.
pub(crate) struct Plugin {
    apps: HashMap<String, AppCounts>,
}

impl Listener for Plugin {
    fn on(&self, app_id: &str, activity: &Activity<'_>) {
        if let Some(counts) = self.apps.get(app_id) {
            counts.hear(activity);
        }
    }
}

impl Plugin {
    /// Every metric of the node, in the text exposition format.
    fn render(&self, state: &State) -> String {
        render::render(self, state)
    }
}

/// `GET /metrics` and nothing else: on the main port under the prefix (as the plugin's
/// pages), or on the metrics' own listener.
fn answer(plugin: &Plugin, state: &State, method: &Method, rest: &[&str]) -> Response<Full<Bytes>> {
    let status = match (method, rest) {
        (&Method::GET, []) => return crate::http::metrics_response(plugin.render(state)),
        (_, []) => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

impl Pages for Plugin {
    fn mount(&self) -> &'static str {
        "metrics"
    }

    fn serve(
        self: Arc<Self>,
        state: Arc<State>,
        req: Request<Incoming>,
        rest: Vec<String>,
    ) -> Answer<'static, Response<Full<Bytes>>> {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let resp = answer(&self, &state, req.method(), &rest);
        Box::pin(std::future::ready(resp))
    }
}

/// The metrics as plugins, as `config` asks (`None` when they are off): a listener, and
/// `/metrics` as pages on the main port or on a listener of its own, bound now (so a taken
/// port fails at startup).
pub(crate) fn plug(config: &Config) -> Result<Option<Plugins>, String> {
    let own = match &config.metrics {
        Metrics::Off => return Ok(None),
        Metrics::MainPort => None,
        Metrics::Own(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
        ),
    };
    let plugin = Arc::new(Plugin {
        apps: config
            .apps
            .iter()
            .map(|a| (a.id.clone(), AppCounts::default()))
            .collect(),
    });
    let mut plugins = Plugins {
        listeners: vec![plugin.clone()],
        ..Plugins::default()
    };
    match own {
        None => plugins.pages.push(plugin),
        Some(listener) => plugins.background.push(Box::new(move |state| {
            Box::pin(serve::run(listener, plugin, state))
        })),
    }
    Ok(Some(plugins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_count_in_the_first_kind_that_applies() {
        let kind = |name| KINDS[kind_of(name)];
        assert_eq!(kind("news"), "public");
        assert_eq!(kind("private-chat"), "private");
        assert_eq!(kind("private-cache-chat"), "private");
        assert_eq!(kind("presence-room"), "presence");
        assert_eq!(kind("presence-cache-room"), "presence");
        assert_eq!(kind("private-encrypted-x"), "encrypted");
        assert_eq!(kind("private-encrypted-cache-x"), "encrypted");
        assert_eq!(kind("cache-prices"), "cache");
        assert_eq!(kind("#server-to-user-42"), "server_to_user");
    }

    #[test]
    fn closes_are_counted_by_code_with_none_and_other() {
        assert_eq!(CLOSE_CODES[AppCounts::closed_slot(Some(4100))], 4100);
        assert_eq!(AppCounts::closed_slot(None), CLOSE_CODES.len());
        assert_eq!(AppCounts::closed_slot(Some(3999)), CLOSE_CODES.len() + 1);
    }
}
