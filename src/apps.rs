//! `App`: one tenant, with its id, key, secret and limits. Knows nothing of sockets or channels.

use std::time::Duration;

/// Who may send client events (`accept_client_events_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvents {
    /// Any connection subscribed to the channel (Reverb `members`, the default).
    Members,
    /// Any connection, subscribed or not (Reverb `all`).
    All,
    /// Client events are refused with 4301.
    None,
}

/// Reverb's message rate limit: at most `max_attempts` inbound messages per `decay` window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub max_attempts: u32,
    pub decay: Duration,
    /// Close the connection (code 4100, pusher-js backs off and reconnects) instead of only
    /// answering `pusher:error` 4301.
    pub terminate: bool,
}

/// The webhook events a target may ask for (Pusher's names).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// Where one app's webhooks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Names from [`WEBHOOK_EVENTS`]; empty is every event.
    pub events: Vec<String>,
    /// Extra request headers (name, value), sent before the signature headers.
    pub headers: Vec<(String, String)>,
}

impl WebhookTarget {
    /// Whether this target wants events named `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == name)
    }
}

/// One configured application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: bool,
    /// Silence after which the server pings a connection.
    pub ping_interval: Duration,
    /// Time a pinged connection has to send anything before it is closed with 4201.
    pub pong_timeout: Duration,
    /// Seconds announced in `connection_established`.
    pub activity_timeout: u64,
    /// Open connections allowed at once; `None` is unlimited.
    pub max_connections: Option<usize>,
    /// Largest inbound WebSocket message in bytes; bigger ones close with 1009.
    pub max_message_size: usize,
    /// Origin host patterns (`*` wildcards); `["*"]` allows every origin.
    pub allowed_origins: Vec<String>,
    pub client_events: ClientEvents,
    /// Relay client events on public channels (`cache-` ones included) too, as Reverb does;
    /// `false` keeps them to private and presence channels, as Pusher does.
    pub public_client_events: bool,
    pub rate_limit: Option<RateLimit>,
    /// Pusher's "authorized connections": a connection that neither signs in nor subscribes
    /// to a private or presence channel within this time is closed with 4009. Off when `None`.
    pub authorized_timeout: Option<Duration>,
    /// Send `pusher_internal:subscription_count` to subscribers of non-presence channels.
    pub subscription_count: bool,
    /// Client events one connection may send per second (a token bucket of this many);
    /// 0 is unlimited.
    pub client_event_rate: u32,
    /// Users one presence channel may hold; 0 is unlimited.
    pub max_presence_members: usize,
    /// Largest presence `user_info` in bytes (as received); 0 is unlimited.
    pub max_user_info_size: usize,
    /// Where webhooks go; none sends none.
    pub webhooks: Vec<WebhookTarget>,
}

impl App {
    /// An app with Reverb's defaults for everything but its identity.
    pub fn new(id: &str, key: &str, secret: &str) -> App {
        App {
            id: id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
            enabled: true,
            ping_interval: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(30),
            activity_timeout: 30,
            max_connections: None,
            max_message_size: 10_000,
            allowed_origins: vec!["*".to_owned()],
            client_events: ClientEvents::Members,
            public_client_events: true,
            rate_limit: None,
            authorized_timeout: None,
            subscription_count: false,
            client_event_rate: 10,
            max_presence_members: 1000,
            max_user_info_size: 1024,
            webhooks: Vec::new(),
        }
    }

    /// Whether a handshake carrying this `Origin` header may connect.
    pub fn is_origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.iter().any(|p| p == "*") {
            return true;
        }
        let Some(origin) = origin else { return false };
        let host = origin_host(origin);
        self.allowed_origins
            .iter()
            .any(|p| wildcard_match(&p.to_ascii_lowercase(), &host))
    }
}

/// The host part of an Origin header: `https://app.example.com:8443` -> `app.example.com`.
fn origin_host(origin: &str) -> String {
    let rest = origin.split_once("://").map(|(_, r)| r).unwrap_or(origin);
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or(host_port)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    host.to_ascii_lowercase()
}

/// `*` matches any run of characters (including none).
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(origins: &[&str]) -> App {
        let mut a = App::new("1", "k", "s");
        a.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        a
    }

    #[test]
    fn origins() {
        assert!(app_with(&["*"]).is_origin_allowed(None));
        let a = app_with(&["*.example.com", "localhost"]);
        assert!(a.is_origin_allowed(Some("https://app.example.com")));
        assert!(a.is_origin_allowed(Some("http://localhost:5173")));
        assert!(a.is_origin_allowed(Some("https://A.Example.com:8443/path")));
        assert!(!a.is_origin_allowed(Some("https://example.com.evil.org")));
        assert!(!a.is_origin_allowed(Some("https://evil.org")));
        assert!(!a.is_origin_allowed(None));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("a*c", "abc"));
        assert!(wildcard_match("a*c", "ac"));
        assert!(!wildcard_match("a*c", "ab"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXbYc"));
        assert!(!wildcard_match("a*b*c", "aXc"));
    }
}
