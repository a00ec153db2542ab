//! `Scaling`: the multi-node settings and the Redis URL built from them.

use std::time::Duration;

use super::layers::{bad, ConfigError, Layers};

/// `REVERB_SCALING_*` and the `REDIS_*` connection.
#[derive(Clone, PartialEq, Eq)]
pub struct Scaling {
    /// The pub/sub channel every node of the cluster shares.
    pub channel: String,
    /// `redis://[user:password@]host:port/db`, the password included.
    pub url: String,
    /// How long connecting may take.
    pub timeout: Duration,
    /// PEM certificates to trust for `rediss://` instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// How often a node says it is alive.
    pub beat_every: Duration,
    /// A node not heard from for this long is gone, and so are its presence members. Always
    /// longer than `beat_every`, or a live node would be declared gone between two beats.
    pub peer_timeout: Duration,
    /// The longest an HTTP API query waits for the other nodes' counts.
    pub query_wait: Duration,
    /// `RESOUND_SCALING_SECRET`: the key every node signs its messages to the others with.
    /// `None` derives one from the apps' ids and secrets (see the cluster's `wire::derive_key`),
    /// so nodes with the same apps agree without one.
    pub secret: Option<String>,
}

impl Scaling {
    /// Scaling over `url` on `channel` with every other setting at its default: for tests and
    /// embedders, who then change what they need with `Scaling { .., ..Scaling::new(..) }`.
    /// The URL is taken as it is (loading checks it).
    pub fn new(url: impl Into<String>, channel: impl Into<String>) -> Scaling {
        let defaults =
            read(&Layers(Vec::new()), url.into()).expect("the settings table's defaults are valid");
        Scaling {
            channel: channel.into(),
            ..defaults
        }
    }
}

impl std::fmt::Debug for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaling")
            .field("channel", &self.channel)
            .field("url", &redact(&self.url))
            .field("timeout", &self.timeout)
            .field("ca", &self.ca.as_ref().map(|_| "PEM"))
            .field("beat_every", &self.beat_every)
            .field("peer_timeout", &self.peer_timeout)
            .field("query_wait", &self.query_wait)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The URL with any password replaced, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The scaling settings, read only when `REVERB_SCALING_ENABLED` is on (a Laravel `.env`
/// has `REDIS_*` values for the app's own use too).
pub(super) fn scaling(l: &Layers) -> Result<Option<Scaling>, ConfigError> {
    if !l.boolean("REVERB_SCALING_ENABLED")? {
        return Ok(None);
    }
    let url = match l.get("REDIS_URL") {
        Some((url, _)) => url_as_laravel_reads_it(l, url),
        None => url_from_parts(l)?,
    };
    check_url(&url)?;
    read(l, url).map(Some)
}

/// Everything but the URL, which the caller has built.
fn read(l: &Layers, url: String) -> Result<Scaling, ConfigError> {
    const BEAT: &str = "RESOUND_SCALING_BEAT_INTERVAL";
    const PEER: &str = "RESOUND_SCALING_PEER_TIMEOUT";
    let beat_every = l.fractional_seconds(BEAT)?;
    let peer_timeout = l.fractional_seconds(PEER)?;
    if peer_timeout <= beat_every {
        let (beat, _) = l.value(BEAT).unwrap_or_default();
        let (peer, origin) = l.value(PEER).unwrap_or_default();
        let expected = format!("more seconds than {BEAT} ({beat}), or live nodes would count as gone between two beats");
        return Err(bad(PEER, &peer, origin, &expected));
    }
    Ok(Scaling {
        channel: l.text("REVERB_SCALING_CHANNEL")?,
        url,
        timeout: l.fractional_seconds("REDIS_TIMEOUT")?,
        ca: ca_file(l)?,
        beat_every,
        peer_timeout,
        query_wait: l.fractional_seconds("RESOUND_SCALING_QUERY_TIMEOUT")?,
        secret: l.get("RESOUND_SCALING_SECRET").map(|(v, _)| v),
    })
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `REDIS_URL` as Laravel reads it: `tcp://`/`tls://` are `redis://`/`rediss://`, and
/// credentials the URL lacks come from `REDIS_USERNAME`/`REDIS_PASSWORD`.
fn url_as_laravel_reads_it(l: &Layers, url: String) -> String {
    let url = match url.split_once("://") {
        Some(("tcp", rest)) => format!("redis://{rest}"),
        Some(("tls", rest)) => format!("rediss://{rest}"),
        _ => url,
    };
    let user = l.get("REDIS_USERNAME").map(|(v, _)| encode(&v));
    let password = l.get("REDIS_PASSWORD").map(|(v, _)| encode(&v));
    match url.split_once("://") {
        Some((scheme @ ("redis" | "rediss"), rest))
            if !rest.split('/').next().unwrap_or("").contains('@')
                && (user.is_some() || password.is_some()) =>
        {
            let (user, password) = (user.unwrap_or_default(), password.unwrap_or_default());
            format!("{scheme}://{user}:{password}@{rest}")
        }
        _ => url,
    }
}

/// The URL from `REDIS_SCHEME`, `REDIS_HOST`, `REDIS_PORT`, `REDIS_DB` and the credentials.
fn url_from_parts(l: &Layers) -> Result<String, ConfigError> {
    let host = l.text("REDIS_HOST")?;
    let port = l.parse("REDIS_PORT", "a port number (1-65535)", |v| {
        v.parse::<u16>().ok().filter(|p| *p > 0)
    })?;
    let db = l.number("REDIS_DB")?;
    let user = l.get("REDIS_USERNAME").map(|(v, _)| encode(&v));
    let password = l.get("REDIS_PASSWORD").map(|(v, _)| encode(&v));
    let auth = match (user, password) {
        (None, None) => String::new(),
        (user, password) => format!(
            "{}:{}@",
            user.unwrap_or_default(),
            password.unwrap_or_default()
        ),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let scheme = l.parse("REDIS_SCHEME", "tcp or tls", |v| {
        match v.to_ascii_lowercase().as_str() {
            "tcp" | "redis" => Some("redis"),
            "tls" | "rediss" => Some("rediss"),
            _ => None,
        }
    })?;
    Ok(format!("{scheme}://{auth}{host}:{port}/{db}"))
}

/// Refuses what the cluster link cannot use: Unix sockets, and TLS without a certificate check.
fn check_url(url: &str) -> Result<(), ConfigError> {
    let refuse = |why: String| {
        ConfigError(format!(
            "invalid Redis URL '{}' for scaling: {why}",
            redact(url)
        ))
    };
    let info = ::redis::IntoConnectionInfo::into_connection_info(url)
        .map_err(|e| refuse(e.to_string()))?;
    match info.addr() {
        ::redis::ConnectionAddr::Tcp(..) => Ok(()),
        ::redis::ConnectionAddr::TcpTls {
            insecure: false, ..
        } => Ok(()),
        ::redis::ConnectionAddr::TcpTls { .. } => Err(refuse(
            "#insecure (no certificate check) is not supported".into(),
        )),
        _ => Err(refuse("only redis:// and rediss:// are supported".into())),
    }
}

/// `RESOUND_REDIS_CA_FILE`, read and checked now so a bad file stops start-up.
fn ca_file(l: &Layers) -> Result<Option<Vec<u8>>, ConfigError> {
    const NAME: &str = "RESOUND_REDIS_CA_FILE";
    let Some((path, origin)) = l.get(NAME) else {
        return Ok(None);
    };
    let pem = std::fs::read(&path)
        .map_err(|e| bad(NAME, &path, origin, &format!("a readable PEM file ({e})")))?;
    if crate::cluster::tls::certificates(&pem).is_err() {
        return Err(bad(NAME, &path, origin, "a PEM file with certificates"));
    }
    Ok(Some(pem))
}
