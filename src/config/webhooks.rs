//! Webhook settings: the server's batching, delay, retry and queue settings, and each app's
//! targets (`RESOUND_APP_WEBHOOK_URL`/`_EVENTS`, and `[[apps.webhooks]]` tables, which reach
//! us as `RESOUND_APP_WEBHOOKS` JSON).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::layers::{bad, ConfigError, Layers};
use crate::apps::{WebhookTarget, WEBHOOK_EVENTS};

/// How webhooks are sent (the same for every app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Most events in one request.
    pub batch_size: usize,
    /// How long a ready event waits for others to share its request.
    pub batch_delay: Duration,
    /// How long `channel_vacated` and `member_removed` wait for the channel or member to
    /// come back.
    pub leave_delay: Duration,
    /// How long a failing request is retried.
    pub retry_window: Duration,
    /// How long a receiver has to answer one request.
    pub timeout: Duration,
    /// Events waiting per receiver (and on the node's queue in front of them).
    pub queue: usize,
    /// PEM certificates to trust for `https://` receivers instead of the system's roots.
    pub ca: Option<Vec<u8>>,
}

/// Seconds with an optional fraction, 0 allowed.
fn seconds_or_zero(l: &Layers, name: &str) -> Result<Duration, ConfigError> {
    let expected = "a number of seconds from 0 up to 31536000, e.g. 3 or 0.5";
    l.parse(name, expected, |v| {
        let secs = v.parse::<f64>().ok()?;
        (0.0..=31_536_000.0)
            .contains(&secs)
            .then(|| Duration::from_secs_f64(secs))
    })
}

pub(super) fn settings(l: &Layers) -> Result<WebhookSettings, ConfigError> {
    Ok(WebhookSettings {
        batch_size: l.positive("RESOUND_WEBHOOK_BATCH_SIZE")?,
        batch_delay: seconds_or_zero(l, "RESOUND_WEBHOOK_BATCH_DELAY")?,
        leave_delay: seconds_or_zero(l, "RESOUND_WEBHOOK_LEAVE_DELAY")?,
        retry_window: l.seconds("RESOUND_WEBHOOK_RETRY_WINDOW")?,
        timeout: l.fractional_seconds("RESOUND_WEBHOOK_TIMEOUT")?,
        queue: l.positive("RESOUND_WEBHOOK_QUEUE")?,
        ca: ca_file(l)?,
    })
}

/// `RESOUND_WEBHOOK_CA_FILE`, read and checked now so a bad file stops start-up.
fn ca_file(l: &Layers) -> Result<Option<Vec<u8>>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    const NAME: &str = "RESOUND_WEBHOOK_CA_FILE";
    let Some((path, origin)) = l.get(NAME) else {
        return Ok(None);
    };
    let pem = std::fs::read(&path)
        .map_err(|e| bad(NAME, &path, origin, &format!("a readable PEM file ({e})")))?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
    if !certs.is_ok_and(|c| !c.is_empty()) {
        return Err(bad(NAME, &path, origin, "a PEM file with certificates"));
    }
    Ok(Some(pem))
}

/// One target as written in the config file (or `RESOUND_APP_WEBHOOKS`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    url: String,
    #[serde(default)]
    events: Events,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// `events` as a list, or as one comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Events {
    List(Vec<String>),
    Text(String),
}

impl Default for Events {
    fn default() -> Events {
        Events::List(Vec::new())
    }
}

impl Events {
    fn names(self) -> Vec<String> {
        match self {
            Events::List(l) => l,
            Events::Text(t) => t.split(',').map(str::to_owned).collect(),
        }
    }
}

/// The app's webhook targets: `RESOUND_APP_WEBHOOK_URL` (with `RESOUND_APP_WEBHOOK_EVENTS`)
/// first, then every entry of `RESOUND_APP_WEBHOOKS`.
pub(super) fn targets(l: &Layers, app_id: &str) -> Result<Vec<WebhookTarget>, ConfigError> {
    let mut out = Vec::new();
    if let Some((url, _)) = l.get("RESOUND_APP_WEBHOOK_URL") {
        let events = l
            .get("RESOUND_APP_WEBHOOK_EVENTS")
            .map(|(v, _)| Events::Text(v).names())
            .unwrap_or_default();
        out.push(target(app_id, url, events, BTreeMap::new())?);
    } else if l.get("RESOUND_APP_WEBHOOK_EVENTS").is_some() {
        return Err(ConfigError(format!(
            "app {app_id}: RESOUND_APP_WEBHOOK_EVENTS is set but RESOUND_APP_WEBHOOK_URL is not"
        )));
    }
    if let Some((json, _)) = l.get("RESOUND_APP_WEBHOOKS") {
        let written: Vec<Written> = serde_json::from_str(&json).map_err(|e| {
            ConfigError(format!(
                "app {app_id}: invalid webhooks ({e}); expected [[apps.webhooks]] tables with \
                 url, and optional events and headers"
            ))
        })?;
        for w in written {
            out.push(target(app_id, w.url, w.events.names(), w.headers)?);
        }
    }
    Ok(out)
}

/// Headers every webhook carries, which a target's own headers may not replace.
const OURS: &[&str] = &["content-type", "x-pusher-key", "x-pusher-signature"];

fn target(
    app_id: &str,
    url: String,
    events: Vec<String>,
    headers: BTreeMap<String, String>,
) -> Result<WebhookTarget, ConfigError> {
    // Shown without its query string, which may hold a token.
    let shown = url.split(['?', '#']).next().unwrap_or(&url);
    let bad = |what: String| ConfigError(format!("app {app_id}: webhook {shown}: {what}"));
    let uri: hyper::Uri = url.parse().map_err(|e| bad(format!("not a URL ({e})")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(bad("expected an http:// or https:// URL with a host".into()));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(ConfigError(format!(
            "app {app_id}: webhook URL: credentials in the URL are not supported; give them as a header (e.g. Authorization) in the target's headers"
        )));
    }
    let mut names = Vec::new();
    for e in events {
        let e = e.trim();
        if e.is_empty() {
            continue;
        }
        if !WEBHOOK_EVENTS.contains(&e) {
            return Err(bad(format!(
                "unknown event '{e}' (expected one of {})",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        names.push(e.to_owned());
    }
    let mut list = Vec::new();
    for (name, value) in headers {
        let valid = hyper::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && hyper::header::HeaderValue::from_str(&value).is_ok();
        if !valid {
            return Err(bad(format!("invalid header '{name}'")));
        }
        if OURS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(bad(format!("header '{name}' is set by the server")));
        }
        list.push((name, value));
    }
    Ok(WebhookTarget {
        url,
        events: names,
        headers: list,
    })
}
