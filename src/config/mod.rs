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

use self::apps::{app_options, check_unique, parse_app};
use self::layers::{read_config_file, read_dotenv, Layer, Layers, Origin};
use self::settings::SETTINGS;
use crate::apps::App;

pub use self::layers::command;
pub use self::redis::{redact, Scaling};

/// Credentials of the development app used when no app is configured anywhere.
pub const DEV_APP: (&str, &str, &str) = ("resound-dev", "resound-dev-key", "resound-dev-secret");

/// The validated server configuration.
#[derive(Debug, Clone)]
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
    /// Defaults with the development app; tests start from this.
    fn default() -> Config {
        Config {
            host: "127.0.0.1".into(),
            port: 8080,
            path: String::new(),
            max_request_size: 10_000,
            max_event_size: 10_240,
            max_channels_per_event: 100,
            max_batch_size: 0,
            api_timestamp_window: Some(Duration::from_secs(600)),
            outbound_queue: 1024,
            cache_ttl: Duration::from_secs(1800),
            shutdown_timeout: Duration::from_secs(10),
            max_channels_per_connection: 1000,
            workers: 0,
            debug: false,
            apps: vec![App::new(DEV_APP.0, DEV_APP.1, DEV_APP.2)],
            dev_app: true,
            scaling: None,
            warnings: Vec::new(),
        }
    }
}

/// A setting that could not be accepted: names the field and the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads the configuration: `matches` holds flags and environment (clap merges those),
/// `cwd` is where `.env` is looked for.
pub fn load(matches: &ArgMatches, cwd: &Path) -> Result<Config, ConfigError> {
    let cli: Layer = SETTINGS
        .iter()
        .filter_map(|st| {
            matches
                .get_one::<String>(st.env)
                .map(|v| (st.env.to_owned(), v.clone()))
        })
        .collect();
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

    let mut apps = Vec::new();
    let mut warnings = Vec::new();
    if let Some(app) = parse_app(&primary, &mut warnings)? {
        apps.push(app);
    }
    for table in file_apps.iter().skip(1) {
        let layers = Layers(vec![(table, Origin::File)]);
        apps.push(
            parse_app(&layers, &mut warnings)?.ok_or_else(|| {
                ConfigError("an [[apps]] entry has no app_id, key or secret".into())
            })?,
        );
    }
    check_unique(&apps)?;
    let dev_app = apps.is_empty();
    if dev_app {
        // The development app still honours every app option that is set.
        apps.push(app_options(
            &primary,
            App::new(DEV_APP.0, DEV_APP.1, DEV_APP.2),
            &mut warnings,
        )?);
    }

    let defaults = Config::default();
    let l = &primary;
    let default_host = if dev_app { "127.0.0.1" } else { "0.0.0.0" };
    Ok(Config {
        host: l
            .get("REVERB_SERVER_HOST")
            .map(|(v, _)| v)
            .unwrap_or_else(|| default_host.into()),
        port: l
            .parse("REVERB_SERVER_PORT", "a port number (0-65535)", |v| {
                v.parse().ok()
            })?
            .unwrap_or(8080),
        path: normalize_path(
            &l.get("REVERB_SERVER_PATH")
                .map(|(v, _)| v)
                .unwrap_or_default(),
        ),
        max_request_size: l
            .positive("REVERB_MAX_REQUEST_SIZE")?
            .unwrap_or(defaults.max_request_size),
        max_event_size: l
            .positive("RESOUND_MAX_EVENT_SIZE")?
            .unwrap_or(defaults.max_event_size),
        max_channels_per_event: l
            .positive("RESOUND_MAX_CHANNELS_PER_EVENT")?
            .unwrap_or(defaults.max_channels_per_event),
        max_batch_size: l.number("RESOUND_MAX_BATCH_SIZE")?.unwrap_or(0),
        api_timestamp_window: match l.number("RESOUND_API_TIMESTAMP_WINDOW")? {
            Some(0) => None,
            Some(n) => Some(Duration::from_secs(n as u64)),
            None => defaults.api_timestamp_window,
        },
        outbound_queue: l
            .positive("RESOUND_OUTBOUND_QUEUE")?
            .unwrap_or(defaults.outbound_queue),
        cache_ttl: l
            .seconds("RESOUND_CACHE_TTL")?
            .unwrap_or(defaults.cache_ttl),
        shutdown_timeout: l
            .seconds("RESOUND_SHUTDOWN_TIMEOUT")?
            .unwrap_or(defaults.shutdown_timeout),
        max_channels_per_connection: l
            .positive("RESOUND_MAX_CHANNELS_PER_CONNECTION")?
            .unwrap_or(defaults.max_channels_per_connection),
        workers: l.number("RESOUND_WORKERS")?.unwrap_or(0),
        debug: matches.get_flag("debug"),
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

    // These tests avoid names that the test process environment could carry.
}

#[cfg(test)]
mod tests {
    use super::testing::{load_args, tmpdir};
    use super::*;

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
