//! Configuration from, highest first: command-line flags, environment variables, a TOML
//! config file (`--config`), a `.env` file in the working directory, built-in defaults.
//!
//! Every setting has one name: its environment variable (`REVERB_*` where Reverb has one,
//! `RESOUND_*` for our own). Flags and config-file keys map onto those names, so precedence
//! is one lookup chain per name, and validation happens once, here, before anything binds.

mod apps;
mod layers;
mod redis;
mod settings;

use std::path::Path;
use std::time::Duration;

use clap::ArgMatches;

use self::apps::read_apps;
use self::layers::{read_config_file, read_dotenv, Layer, Layers, Origin};
use self::settings::Fallback;
use crate::apps::App;

pub use self::layers::command;
pub use self::redis::{redact, Scaling};

/// Credentials of the development app used when no app is configured anywhere.
pub const DEV_APP: (&str, &str, &str) = ("resound-dev", "resound-dev-key", "resound-dev-secret");

/// The validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Route prefix, either empty or `/segment[/segment]` with no trailing slash.
    pub path: String,
    /// Largest HTTP request (head and body) in bytes; bigger ones get 413.
    pub max_request_size: usize,
    /// Largest `data` of one HTTP API event in bytes (413 beyond).
    pub max_event_size: usize,
    /// Most channels one HTTP trigger may name.
    pub max_channels_per_event: usize,
    /// Most events in one batch request; 0 is unlimited.
    pub max_batch_size: usize,
    /// Allowed clock skew of `auth_timestamp`; `None` disables the check.
    pub api_timestamp_window: Option<Duration>,
    /// Outbound messages queued for one connection before it counts as too slow.
    pub outbound_queue: usize,
    /// How long cache channels keep their last event.
    pub cache_ttl: Duration,
    /// Time allowed for closing connections on shutdown.
    pub shutdown_timeout: Duration,
    /// Channels one connection may be subscribed to at once (bounds per-connection memory).
    pub max_channels_per_connection: usize,
    /// Runtime worker threads; 0 is one per CPU core, 1 runs everything on one thread.
    pub workers: usize,
    pub debug: bool,
    pub apps: Vec<App>,
    /// True when no app was configured and the built-in development app is used.
    pub dev_app: bool,
    /// Multi-node scaling over Redis pub/sub; `None` runs a single node.
    pub scaling: Option<Scaling>,
    /// Settings that were taken but are probably not what was meant, for the startup log.
    pub warnings: Vec<String>,
}

impl Default for Config {
    /// What loading with nothing set gives: every setting's default from the settings table,
    /// and the development app. Tests start from this.
    fn default() -> Config {
        from_layers(&Layers(Vec::new()), &[]).expect("the settings table's defaults are valid")
    }
}

/// A setting that could not be accepted: names the field and the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads the configuration: `matches` holds flags and environment (clap merges those),
/// `cwd` is where `.env` is looked for.
pub fn load(matches: &ArgMatches, cwd: &Path) -> Result<Config, ConfigError> {
    let cli = layers::from_matches(matches);
    let (file_server, file_apps) = match matches.get_one::<String>("config") {
        Some(path) => read_config_file(Path::new(path))?,
        None => (Layer::new(), Vec::new()),
    };
    let dotenv = read_dotenv(&cwd.join(".env"))?;
    let first_app = file_apps.first().cloned().unwrap_or_default();
    let primary = Layers(vec![
        (&cli, Origin::Cli),
        (&file_server, Origin::File),
        (&first_app, Origin::File),
        (&dotenv, Origin::DotEnv),
    ]);
    let more_apps = file_apps.get(1..).unwrap_or_default();
    Ok(Config {
        debug: matches.get_flag("debug"),
        ..from_layers(&primary, more_apps)?
    })
}

/// The configuration the layers describe: `primary` holds the server settings and the
/// first app, `more_apps` one layer per further `[[apps]]` table.
fn from_layers(primary: &Layers, more_apps: &[Layer]) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let (apps, dev_app) = read_apps(primary, more_apps, &mut warnings)?;
    let l = primary;
    const HOST: &str = "REVERB_SERVER_HOST";
    let host = match (l.get(HOST), settings::find(HOST).map(|s| s.default)) {
        (None, Some(Fallback::DevApp { dev_app: host, .. })) if dev_app => host.to_owned(),
        _ => l.text(HOST)?,
    };
    Ok(Config {
        host,
        port: l.parse("REVERB_SERVER_PORT", "a port number (0-65535)", |v| {
            v.parse().ok()
        })?,
        path: normalize_path(
            &l.value("REVERB_SERVER_PATH")
                .map_or_else(String::new, |(v, _)| v),
        ),
        max_request_size: l.positive("REVERB_MAX_REQUEST_SIZE")?,
        max_event_size: l.positive("RESOUND_MAX_EVENT_SIZE")?,
        max_channels_per_event: l.positive("RESOUND_MAX_CHANNELS_PER_EVENT")?,
        max_batch_size: l.number("RESOUND_MAX_BATCH_SIZE")?,
        api_timestamp_window: match l.number("RESOUND_API_TIMESTAMP_WINDOW")? {
            0 => None,
            n => Some(Duration::from_secs(n as u64)),
        },
        outbound_queue: l.positive("RESOUND_OUTBOUND_QUEUE")?,
        cache_ttl: l.seconds("RESOUND_CACHE_TTL")?,
        shutdown_timeout: l.seconds("RESOUND_SHUTDOWN_TIMEOUT")?,
        max_channels_per_connection: l.positive("RESOUND_MAX_CHANNELS_PER_CONNECTION")?,
        workers: l.number("RESOUND_WORKERS")?,
        debug: false,
        apps,
        dev_app,
        scaling: self::redis::scaling(l)?,
        warnings,
    })
}

fn normalize_path(p: &str) -> String {
    let trimmed = p.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn load_args(args: &[&str], cwd: &Path) -> Result<Config, ConfigError> {
        let mut argv = vec!["resound"];
        argv.extend_from_slice(args);
        let m = command().try_get_matches_from(argv).expect("args parse");
        load(&m, cwd)
    }

    /// A scratch directory, removed when dropped.
    pub(crate) fn tmpdir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("resound-cfg-{name}-"))
            .tempdir()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{load_args, tmpdir};
    use super::*;
    use crate::apps::RateLimit;

    // These tests avoid names that the test process environment could carry.

    #[test]
    fn defaults_are_what_loading_with_nothing_set_gives() {
        let d = tmpdir("defaults");
        assert_eq!(load_args(&[], d.path()).unwrap(), Config::default());
    }

    /// The defaults themselves, pinned: the settings table is their one source, so changing
    /// one there should be a decision that shows up here.
    #[test]
    fn defaults_are_the_documented_ones() {
        let secs = Duration::from_secs;
        let c = Config::default();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("127.0.0.1", 8080, "")
        );
        assert_eq!(
            (
                c.max_request_size,
                c.max_event_size,
                c.max_channels_per_event
            ),
            (10_000, 10_240, 100)
        );
        assert_eq!(
            (c.max_batch_size, c.api_timestamp_window, c.outbound_queue),
            (0, Some(secs(600)), 1024)
        );
        assert_eq!(
            (
                c.cache_ttl,
                c.shutdown_timeout,
                c.max_channels_per_connection,
                c.workers
            ),
            (secs(1800), secs(10), 1000, 0)
        );
        assert!(!c.debug && c.dev_app && c.scaling.is_none() && c.warnings.is_empty());
        assert_eq!(
            c.apps,
            vec![App::new(DEV_APP.0, DEV_APP.1, DEV_APP.2)],
            "App::new agrees with the settings table"
        );
        // The settings read only once something is switched on.
        let d = tmpdir("defaults-on");
        let c = load_args(&["--scaling", "true", "--rate-limiting", "true"], d.path()).unwrap();
        let limit = RateLimit {
            max_attempts: 60,
            decay: secs(60),
            terminate: false,
        };
        assert_eq!(c.apps[0].rate_limit, Some(limit));
        let s = c.scaling.unwrap();
        assert_eq!(
            (s.url.as_str(), s.channel.as_str(), s.timeout, s.ca.clone()),
            ("redis://127.0.0.1:6379/0", "reverb", secs(60), None)
        );
        assert_eq!(
            (s.beat_every, s.peer_timeout, s.query_wait),
            (secs(3), secs(10), secs(3))
        );
        assert_eq!(s, Scaling::new("redis://127.0.0.1:6379/0", "reverb"));
    }

    #[test]
    fn dev_app_when_nothing_configured() {
        let d = tmpdir("dev");
        let c = load_args(&[], d.path()).unwrap();
        assert!(c.dev_app);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.apps[0].key, DEV_APP.1);
    }

    #[test]
    fn precedence_cli_over_file_over_dotenv() {
        let d = tmpdir("prec");
        std::fs::write(d.path().join(".env"), "REVERB_APP_ID=1\nREVERB_APP_KEY=envkey\nREVERB_APP_SECRET=\"s\"\nREVERB_SERVER_PORT=7000\nREVERB_APP_PING_INTERVAL=5\n").unwrap();
        let c = load_args(&[], d.path()).unwrap();
        assert_eq!(
            (c.port, c.apps[0].key.as_str(), c.dev_app),
            (7000, "envkey", false)
        );
        assert_eq!(c.host, "0.0.0.0");
        std::fs::write(d.path().join("c.toml"), "[server]\nport = 7100\npath = \"reverb/\"\n[[apps]]\nid = \"1\"\nkey = \"filekey\"\nsecret = \"s\"\nallowed_origins = [\"a.com\", \"*.b.com\"]\n[apps.rate_limiting]\nenabled = true\nmax_attempts = 3\n[[apps]]\napp_id = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\n").unwrap();
        let cfg = d.path().join("c.toml");
        let c = load_args(&["--config", cfg.to_str().unwrap()], d.path()).unwrap();
        assert_eq!(
            (c.port, c.path.as_str(), c.apps[0].key.as_str()),
            (7100, "/reverb", "filekey")
        );
        assert_eq!(
            c.apps[0].ping_interval,
            Duration::from_secs(5),
            ".env still fills what the file lacks"
        );
        assert_eq!(c.apps[0].allowed_origins, vec!["a.com", "*.b.com"]);
        assert_eq!(c.apps[0].rate_limit.as_ref().unwrap().max_attempts, 3);
        assert_eq!(c.apps.len(), 2);
        let c = load_args(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--port",
                "7200",
                "--app-key",
                "clikey",
            ],
            d.path(),
        )
        .unwrap();
        assert_eq!((c.port, c.apps[0].key.as_str()), (7200, "clikey"));
    }

    #[test]
    fn bad_values_name_field_and_value() {
        let d = tmpdir("bad");
        let e = load_args(&["--port", "eighty"], d.path()).unwrap_err().0;
        assert_eq!(e, "invalid value 'eighty' for REVERB_SERVER_PORT (--port): expected a port number (0-65535)");
        let e = load_args(&["--app-id", "1"], d.path()).unwrap_err().0;
        assert!(e.contains("REVERB_APP_KEY"), "{e}");
        std::fs::write(d.path().join("c.toml"), "[server]\nprot = 1\n").unwrap();
        let e = load_args(
            &["--config", d.path().join("c.toml").to_str().unwrap()],
            d.path(),
        )
        .unwrap_err()
        .0;
        assert!(e.contains("unknown key 'prot'"), "{e}");
    }

    #[test]
    fn laravel_env_null_and_empty_are_unset() {
        let d = tmpdir("laravel-null");
        std::fs::write(
            d.path().join(".env"),
            "REVERB_SCALING_ENABLED=(true)\nREDIS_HOST=127.0.0.1\nREDIS_PASSWORD=null\nREDIS_USERNAME=(null)\nREDIS_PORT=6379\nREVERB_APP_MAX_CONNECTIONS=null\nREVERB_SERVER_PATH=empty\n",
        )
        .unwrap();
        let c = load_args(&[], d.path()).unwrap();
        assert_eq!(
            c.scaling.unwrap().url,
            "redis://127.0.0.1:6379/0",
            "no password 'null'"
        );
        assert_eq!(c.apps[0].max_connections, None);
        assert_eq!(c.path, "");
        // An explicit null hides the lower layers, as in Laravel.
        std::fs::write(d.path().join(".env"), "REVERB_APP_MAX_CONNECTIONS=5\n").unwrap();
        let c = load_args(&["--max-connections", "null"], d.path()).unwrap();
        assert_eq!(c.apps[0].max_connections, None);
    }
}
