//! The text exposition format, written by hand: `# HELP` and `# TYPE` once per family, then
//! one line per series. Label values are escaped as the format says.

use std::fmt::{Display, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{process, AppCounts, Plugin, CLOSE_CODES, ERROR_CODES, KINDS};
use crate::state::{AppRuntime, State};
use crate::stats::{ApiStats, Endpoint, LATENCY_BUCKETS, STATUSES};

/// The text being built.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// One family with one series per app, valued by `value`.
    fn per_app(
        &mut self,
        apps: &[(&AppRuntime, &AppCounts)],
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&AppRuntime, &AppCounts) -> u64,
    ) {
        self.family(name, kind, help);
        for (rt, counts) in apps {
            self.sample(name, &[("app", &rt.app.id)], value(rt, counts));
        }
    }
}

/// Every metric of the node, in the text exposition format.
pub(super) fn render(plugin: &Plugin, state: &State) -> String {
    let mut apps: Vec<(&AppRuntime, &AppCounts)> = state
        .apps()
        .filter_map(|rt| Some((&**rt, plugin.apps.get(&rt.app.id)?)))
        .collect();
    apps.sort_by(|a, b| a.0.app.id.cmp(&b.0.app.id));
    let mut out = Out(String::with_capacity(8192));
    connections(&mut out, &apps);
    client_errors(&mut out, &apps);
    channels(&mut out, &apps);
    traffic(&mut out, &apps);
    api(&mut out, &apps, state);
    redis(&mut out, state);
    webhooks(&mut out, state);
    node(&mut out, state);
    out.0
}

fn connections(out: &mut Out, apps: &[(&AppRuntime, &AppCounts)]) {
    out.per_app(
        apps,
        "resound_connections",
        "gauge",
        "WebSocket connections open now.",
        |rt, _| rt.connections.len() as u64,
    );
    out.per_app(
        apps,
        "resound_connections_opened_total",
        "counter",
        "WebSocket connections accepted.",
        |_, c| c.opened.get(),
    );
    let name = "resound_connections_closed_total";
    out.family(
        name,
        "counter",
        "WebSocket connections ended, by the close code the server sent (none: the client closed first or the socket failed).",
    );
    for (rt, counts) in apps {
        for (slot, counter) in counts.closed.iter().enumerate() {
            let code = match CLOSE_CODES.get(slot) {
                Some(code) => code.to_string(),
                None if slot == CLOSE_CODES.len() => "none".to_owned(),
                None => "other".to_owned(),
            };
            let n = counter.get();
            if n > 0 {
                out.sample(name, &[("app", &rt.app.id), ("code", &code)], n);
            }
        }
    }
}

fn client_errors(out: &mut Out, apps: &[(&AppRuntime, &AppCounts)]) {
    let name = "resound_client_errors_total";
    out.family(
        name,
        "counter",
        "pusher:error messages sent to clients, by Pusher error code (with those that end the connection).",
    );
    for (rt, counts) in apps {
        for (slot, counter) in counts.errors.iter().enumerate() {
            let code = ERROR_CODES
                .get(slot)
                .map_or_else(|| "other".to_owned(), u16::to_string);
            let n = counter.get();
            if n > 0 {
                out.sample(name, &[("app", &rt.app.id), ("code", &code)], n);
            }
        }
    }
}

fn channels(out: &mut Out, apps: &[(&AppRuntime, &AppCounts)]) {
    let families: [(&str, &str, &str); 3] = [
        (
            "resound_subscriptions",
            "gauge",
            "Channel subscriptions of this node's connections now, by channel kind.",
        ),
        (
            "resound_subscriptions_total",
            "counter",
            "Channel subscriptions made, by channel kind.",
        ),
        (
            "resound_channels_occupied",
            "gauge",
            "Channels with at least one subscriber on this node now, by channel kind.",
        ),
    ];
    for (i, (name, kind, help)) in families.into_iter().enumerate() {
        out.family(name, kind, help);
        for (rt, counts) in apps {
            for (k, label) in KINDS.iter().enumerate() {
                let value = match i {
                    0 => counts.subscriptions[k].load(Relaxed).max(0) as u64,
                    1 => counts.subscribed[k].get(),
                    _ => counts.occupied[k].load(Relaxed).max(0) as u64,
                };
                out.sample(name, &[("app", &rt.app.id), ("kind", label)], value);
            }
        }
    }
}

fn traffic(out: &mut Out, apps: &[(&AppRuntime, &AppCounts)]) {
    out.per_app(
        apps,
        "resound_messages_received_total",
        "counter",
        "WebSocket text messages received from clients.",
        |rt, _| rt.stats.received.read().0,
    );
    out.per_app(
        apps,
        "resound_received_bytes_total",
        "counter",
        "Payload bytes of the WebSocket messages received from clients.",
        |rt, _| rt.stats.received.read().1,
    );
    out.per_app(
        apps,
        "resound_messages_sent_total",
        "counter",
        "WebSocket frames written to clients (messages, pings and close frames).",
        |rt, _| rt.stats.sent.read().0,
    );
    out.per_app(
        apps,
        "resound_sent_bytes_total",
        "counter",
        "Bytes written to clients' sockets, WebSocket framing included.",
        |rt, _| rt.stats.sent.read().1,
    );
    out.per_app(
        apps,
        "resound_client_events_total",
        "counter",
        "Client events (whispers) relayed to a channel.",
        |_, c| c.client_events.get(),
    );
    out.per_app(
        apps,
        "resound_client_events_refused_total",
        "counter",
        "Client events refused with a pusher:error.",
        |rt, _| rt.stats.client_events_refused.get(),
    );
    out.per_app(
        apps,
        "resound_api_events_total",
        "counter",
        "HTTP API events published, one per channel named.",
        |_, c| c.api_events.get(),
    );
    out.per_app(
        apps,
        "resound_slow_consumer_disconnects_total",
        "counter",
        "Connections closed with 4100 because their outbound queue was full.",
        |rt, _| rt.stats.slow_consumers.get(),
    );
    out.per_app(
        apps,
        "resound_outbound_dropped_total",
        "counter",
        "Frames never written: refused by a full outbound queue, or left queued by a connection closed for being too slow.",
        |rt, _| rt.stats.frames_dropped.get(),
    );
}

fn api(out: &mut Out, apps: &[(&AppRuntime, &AppCounts)], state: &State) {
    let all: Vec<(Option<&str>, &ApiStats)> = apps
        .iter()
        .map(|(rt, _)| (Some(rt.app.id.as_str()), &rt.stats.api))
        .chain([(None, &state.stats.api_unmatched)])
        .collect();
    let name = "resound_http_requests_total";
    out.family(
        name,
        "counter",
        "HTTP API requests, by endpoint and status (no app label: the request named no configured app).",
    );
    for (app, stats) in &all {
        for endpoint in Endpoint::ALL {
            for slot in 0..=STATUSES.len() {
                let n = stats.requests(endpoint, slot);
                if n == 0 {
                    continue;
                }
                let status = STATUSES
                    .get(slot)
                    .map_or("other".to_owned(), u16::to_string);
                let mut labels = vec![("endpoint", endpoint.label()), ("status", &status)];
                if let Some(app) = app {
                    labels.insert(0, ("app", app));
                }
                out.sample(name, &labels, n);
            }
        }
    }
    let name = "resound_http_request_duration_seconds";
    out.family(
        name,
        "histogram",
        "Time from routing an HTTP API request to its answer, by endpoint.",
    );
    let bounds: Vec<String> = LATENCY_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_owned()])
        .collect();
    for (app, stats) in &all {
        for endpoint in Endpoint::ALL {
            let (buckets, sum) = stats.latency(endpoint).read();
            let count = buckets[LATENCY_BUCKETS.len()];
            if count == 0 {
                continue;
            }
            let mut labels = vec![("endpoint", endpoint.label())];
            if let Some(app) = app {
                labels.insert(0, ("app", *app));
            }
            for (le, n) in bounds.iter().zip(buckets) {
                let mut with_le = labels.clone();
                with_le.push(("le", le));
                out.sample(&format!("{name}_bucket"), &with_le, n);
            }
            out.sample(&format!("{name}_sum"), &labels, sum);
            out.sample(&format!("{name}_count"), &labels, count);
        }
    }
}

fn redis(out: &mut Out, state: &State) {
    let r = &state.stats.redis;
    if !r.enabled.load(Relaxed) {
        return;
    }
    out.family(
        "resound_redis_link_up",
        "gauge",
        "1 while the scaling link to Redis is connected.",
    );
    out.sample("resound_redis_link_up", &[], u8::from(r.up.load(Relaxed)));
    let families: [(&str, &str, u64); 4] = [
        (
            "resound_redis_reconnects_total",
            "Connections to Redis made after the first.",
            r.connects.get().saturating_sub(1),
        ),
        (
            "resound_redis_link_failures_total",
            "Redis connections lost, and attempts that failed.",
            r.failures.get(),
        ),
        (
            "resound_redis_messages_published_total",
            "Messages published to the other nodes (events, presence, beats).",
            r.published.get(),
        ),
        (
            "resound_redis_messages_received_total",
            "Messages read from the scaling channel (this node's own echoes included).",
            r.received.get(),
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }
}

/// Counted by the webhooks plugin; left out when no app has a webhook target.
fn webhooks(out: &mut Out, state: &State) {
    let Some(counts) = state.stats.webhooks.get() else {
        return;
    };
    let (dropped, delivered, retried) = counts.counts();
    for (name, help, value) in [
        (
            "resound_webhook_requests_total",
            "Webhook requests a receiver accepted (2xx).",
            delivered,
        ),
        (
            "resound_webhook_retries_total",
            "Webhook requests sent again after a failure.",
            retried,
        ),
        (
            "resound_webhook_events_dropped_total",
            "Webhook events given up on: a queue was full, or a request's retries ran out.",
            dropped,
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }
}

fn node(out: &mut Out, state: &State) {
    out.family(
        "resound_outbound_backlog_bytes",
        "gauge",
        "Bytes queued by connections that fell behind, as charged to RESOUND_OUTBOUND_BUDGET.",
    );
    out.sample(
        "resound_outbound_backlog_bytes",
        &[],
        state.outbound_backlog(),
    );
    if let Some(rss) = process::resident_bytes() {
        out.family(
            "resound_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
        );
        out.sample("resound_process_resident_memory_bytes", &[], rss);
    }
    if let Some(fds) = process::open_fds() {
        out.family(
            "resound_process_open_fds",
            "gauge",
            "Open file descriptors of the process.",
        );
        out.sample("resound_process_open_fds", &[], fds);
    }
    let started = state.stats.started;
    let since_epoch = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    out.family(
        "resound_start_time_seconds",
        "gauge",
        "When the server started, in seconds since the Unix epoch.",
    );
    out.sample("resound_start_time_seconds", &[], since_epoch);
    out.family(
        "resound_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let up = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default()
        .as_secs_f64();
    out.sample("resound_uptime_seconds", &[], up);
    out.family(
        "resound_build_info",
        "gauge",
        "Always 1; the version in a label.",
    );
    out.sample(
        "resound_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
}
