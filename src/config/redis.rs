//! `Scaling`: the multi-node settings and the Redis URL built from them.

use std::time::Duration;

use super::layers::{bad, Layers};
use super::ConfigError;

/// `REVERB_SCALING_*` and the `REDIS_*` connection.
#[derive(Clone)]
pub struct Scaling {
    /// The pub/sub channel every node of the cluster shares.
    pub channel: String,
    /// `redis://[user:password@]host:port/db`, the password included.
    pub url: String,
    /// How long connecting may take.
    pub timeout: Duration,
    /// PEM certificates to trust for `rediss://` instead of the system's roots.
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaling")
            .field("channel", &self.channel)
            .field("url", &redact(&self.url))
            .field("timeout", &self.timeout)
            .field("ca", &self.ca.as_ref().map(|_| "PEM"))
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
    if !l.boolean("REVERB_SCALING_ENABLED")?.unwrap_or(false) {
        return Ok(None);
    }
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let url = match l.get("REDIS_URL") {
        // As Laravel reads it: `tcp://`/`tls://` are `redis://`/`rediss://`, and credentials
        // the URL lacks come from REDIS_USERNAME/REDIS_PASSWORD.
        Some((url, _)) => {
            let url = match url.split_once("://") {
                Some(("tcp", rest)) => format!("redis://{rest}"),
                Some(("tls", rest)) => format!("rediss://{rest}"),
                _ => url,
            };
            let user = l.get("REDIS_USERNAME").map(|(v, _)| enc(&v));
            let password = l.get("REDIS_PASSWORD").map(|(v, _)| enc(&v));
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
        None => {
            let host = l.get("REDIS_HOST").map_or("127.0.0.1".into(), |(v, _)| v);
            let port = l
                .parse("REDIS_PORT", "a port number (1-65535)", |v| {
                    v.parse::<u16>().ok().filter(|p| *p > 0)
                })?
                .unwrap_or(6379);
            let db = l.number("REDIS_DB")?.unwrap_or(0);
            let user = l.get("REDIS_USERNAME").map(|(v, _)| enc(&v));
            let password = l.get("REDIS_PASSWORD").map(|(v, _)| enc(&v));
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
            let scheme = match l.get("REDIS_SCHEME") {
                None => "redis",
                Some((v, origin)) => match v.to_ascii_lowercase().as_str() {
                    "tcp" | "redis" => "redis",
                    "tls" | "rediss" => "rediss",
                    _ => return Err(bad("REDIS_SCHEME", &v, origin, "tcp or tls")),
                },
            };
            format!("{scheme}://{auth}{host}:{port}/{db}")
        }
    };
    let refuse = |why: String| {
        ConfigError(format!(
            "invalid Redis URL '{}' for scaling: {why}",
            redact(&url)
        ))
    };
    match ::redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
        Err(e) => return Err(refuse(e.to_string())),
        Ok(info) => match info.addr() {
            ::redis::ConnectionAddr::Tcp(..) => {}
            ::redis::ConnectionAddr::TcpTls {
                insecure: false, ..
            } => {}
            ::redis::ConnectionAddr::TcpTls { .. } => {
                return Err(refuse(
                    "#insecure (no certificate check) is not supported".into(),
                ))
            }
            _ => return Err(refuse("only redis:// and rediss:// are supported".into())),
        },
    }
    let ca = match l.get("RESOUND_REDIS_CA_FILE") {
        None => None,
        Some((path, origin)) => {
            let pem = std::fs::read(&path).map_err(|e| {
                bad(
                    "RESOUND_REDIS_CA_FILE",
                    &path,
                    origin,
                    &format!("a readable PEM file ({e})"),
                )
            })?;
            if crate::cluster::tls::certificates(&pem).is_err() {
                return Err(bad(
                    "RESOUND_REDIS_CA_FILE",
                    &path,
                    origin,
                    "a PEM file with certificates",
                ));
            }
            Some(pem)
        }
    };
    Ok(Some(Scaling {
        channel: l
            .get("REVERB_SCALING_CHANNEL")
            .map_or("reverb".into(), |(v, _)| v),
        url,
        timeout: l
            .seconds("REDIS_TIMEOUT")?
            .unwrap_or(Duration::from_secs(60)),
        ca,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{load_args, tmpdir};

    #[test]
    fn scaling_is_off_unless_enabled_and_ignores_the_apps_redis_settings_then() {
        let d = tmpdir("scaling-off");
        std::fs::write(d.path().join(".env"), "REDIS_PORT=not-a-port\n").unwrap();
        let c = load_args(&["--redis-db", "x"], d.path()).unwrap();
        assert!(c.scaling.is_none());
    }

    #[test]
    fn redis_url_takes_laravel_schemes_and_missing_credentials() {
        let d = tmpdir("redis-url");
        let url = |args: &[&str]| {
            let mut all = vec!["--scaling", "true"];
            all.extend_from_slice(args);
            load_args(&all, d.path()).unwrap().scaling.unwrap().url
        };
        assert_eq!(url(&["--redis-url", "tcp://h:1/2"]), "redis://h:1/2");
        assert_eq!(url(&["--redis-url", "tls://h:1"]), "rediss://h:1");
        assert_eq!(
            url(&["--redis-url", "redis://h:1/0", "--redis-password", "p w"]),
            "redis://:p%20w@h:1/0"
        );
        assert_eq!(
            url(&[
                "--redis-url",
                "redis://u:x@h:1/0",
                "--redis-password",
                "other"
            ]),
            "redis://u:x@h:1/0",
            "the URL's own credentials win"
        );
        for refused in ["unix:///run/redis.sock", "rediss://h:1/#insecure"] {
            let e = load_args(&["--scaling", "true", "--redis-url", refused], d.path())
                .unwrap_err()
                .0;
            assert!(e.contains("invalid Redis URL"), "{e}");
        }
    }

    #[test]
    fn scaling_url_from_parts_with_the_password_encoded_and_redacted() {
        let d = tmpdir("scaling-parts");
        let c = load_args(
            &[
                "--scaling",
                "true",
                "--redis-host",
                "cache.internal",
                "--redis-port",
                "6380",
                "--redis-db",
                "2",
                "--redis-username",
                "app",
                "--redis-password",
                "p@ss:w/rd",
                "--redis-timeout",
                "3",
            ],
            d.path(),
        )
        .unwrap();
        let s = c.scaling.unwrap();
        assert_eq!(s.url, "redis://app:p%40ss%3Aw%2Frd@cache.internal:6380/2");
        assert_eq!(
            (s.channel.as_str(), s.timeout),
            ("reverb", Duration::from_secs(3))
        );
        let shown = format!("{s:?}");
        assert!(
            shown.contains("app:***@cache.internal") && !shown.contains("p%40ss"),
            "{shown}"
        );
    }

    #[test]
    fn scaling_url_overrides_parts_and_bad_values_are_named() {
        let d = tmpdir("scaling-url");
        let c = load_args(
            &[
                "--scaling",
                "on",
                "--redis-url",
                "redis://10.0.0.5:7000/1",
                "--redis-port",
                "1",
                "--scaling-channel",
                "chat",
            ],
            d.path(),
        )
        .unwrap();
        let s = c.scaling.unwrap();
        assert_eq!(
            (s.url.as_str(), s.channel.as_str()),
            ("redis://10.0.0.5:7000/1", "chat")
        );
        let e = load_args(&["--scaling", "true", "--redis-port", "99999"], d.path())
            .unwrap_err()
            .0;
        assert!(e.contains("REDIS_PORT") && e.contains("99999"), "{e}");
        let e = load_args(&["--scaling", "true", "--redis-url", "http://x"], d.path())
            .unwrap_err()
            .0;
        assert!(e.contains("invalid Redis URL"), "{e}");
        let e = load_args(&["--scaling", "maybe"], d.path()).unwrap_err().0;
        assert!(e.contains("REVERB_SCALING_ENABLED"), "{e}");
        let c = load_args(&["--scaling", "true", "--redis-scheme", "tls"], d.path()).unwrap();
        assert_eq!(c.scaling.unwrap().url, "rediss://127.0.0.1:6379/0");
        let e = load_args(&["--scaling", "true", "--redis-scheme", "udp"], d.path())
            .unwrap_err()
            .0;
        assert!(
            e.contains("REDIS_SCHEME") && e.contains("tcp or tls"),
            "{e}"
        );
        let missing = d.path().join("missing.pem");
        let e = load_args(
            &[
                "--scaling",
                "true",
                "--redis-ca-file",
                missing.to_str().unwrap(),
            ],
            d.path(),
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("RESOUND_REDIS_CA_FILE") && e.contains("readable"),
            "{e}"
        );
        std::fs::write(d.path().join("junk.pem"), "not a certificate").unwrap();
        let junk = d.path().join("junk.pem");
        let e = load_args(
            &[
                "--scaling",
                "true",
                "--redis-ca-file",
                junk.to_str().unwrap(),
            ],
            d.path(),
        )
        .unwrap_err()
        .0;
        assert!(e.contains("with certificates"), "{e}");
    }
}
