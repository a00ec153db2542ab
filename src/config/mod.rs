//! Configuration from, highest first: command-line flags, environment variables, a TOML
//! config file (`--config`), a `.env` file in the working directory, built-in defaults.
//!
//! Every setting has one name: its environment variable (`REVERB_*` where Reverb has one,
//! `RESOUND_*` for our own). Flags and config-file keys map onto those names, so precedence
//! is one lookup chain per name, and validation happens once, here, before anything binds.

mod apps;
mod console;
mod dotenv;
mod layers;
mod redis;
mod serving;
mod settings;
mod webhooks;

use std::path::Path;
use std::time::Duration;

use clap::ArgMatches;

use self::apps::read_apps;
use self::layers::{read_config_file, read_dotenv, Layer, Layers, Origin};
use self::settings::Fallback;
use crate::apps::App;

pub use self::apps::DEV_APP;
pub use self::console::Console;
pub use self::layers::{command, ConfigError};
pub use self::redis::{redact, Scaling};
pub use self::webhooks::WebhookSettings;

/// The validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Route prefix, either empty or `/segment[/segment]` with no trailing slash.
    pub path: String,
    /// Largest HTTP request (head and body) in bytes, bigger ones get 413, as Reverb
    /// counts; `None` (not set) limits the body alone, to what Pusher would admit (see
    /// `http::RequestLimit`).
    pub max_request_size: Option<usize>,
    /// Largest `data` of one HTTP API event in bytes (413 beyond).
    pub max_event_size: usize,
    /// Longest event name in characters, for client events and HTTP API events alike.
    pub max_event_name_length: usize,
    /// Most channels one HTTP trigger may name.
    pub max_channels_per_event: usize,
    /// Most events in one batch request; 0 is unlimited.
    pub max_batch_size: usize,
    /// Allowed clock skew of `auth_timestamp`; `None` disables the check.
    pub api_timestamp_window: Option<Duration>,
    /// Outbound messages queued for one connection before it counts as too slow.
    pub outbound_queue: usize,
    /// Outbound bytes queued for one connection before it counts as too slow.
    pub outbound_bytes: usize,
    /// Outbound bytes all connections' backlogs may hold together; 0 is unlimited.
    pub outbound_budget: usize,
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
    /// TLS in process: the certificate and key files; `None` serves plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Shutdown closes the connections spread over this window (bounded by
    /// `shutdown_timeout`); zero closes them all at once.
    pub drain: Duration,
    /// Bind with `SO_REUSEPORT` (a new process can take the port over while this one drains).
    pub reuse_port: bool,
    /// The live debug console; `None` (the default) serves none.
    pub console: Option<Console>,
    /// How webhooks are batched, delayed, retried and queued (the targets are per app).
    pub webhooks: WebhookSettings,
    /// Prometheus metrics: where they are served, if anywhere.
    pub metrics: Metrics,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// Where `/metrics` is served (`RESOUND_METRICS_ENABLED`, `RESOUND_METRICS_ADDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metrics {
    Off,
    /// At `{path}/metrics` on the main listener.
    MainPort,
    /// On a listener of its own at this `HOST:PORT`, and not on the main port.
    Own(String),
}

/// `RESOUND_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object a line.
    Json,
}

impl Default for Config {
    /// What loading with nothing set gives: every setting's default from the settings table,
    /// and the development app. Tests start from this.
    fn default() -> Config {
        from_layers(&Layers(Vec::new()), &[]).expect("the settings table's defaults are valid")
    }
}

/// Reads the configuration: `matches` holds flags and environment (clap merges those),
/// `cwd` is where `.env` is looked for.
pub fn load(matches: &ArgMatches, cwd: &Path) -> Result<Config, ConfigError> {
    let cli = layers::from_matches(matches);
    let file = match matches.get_one::<String>("config") {
        Some(path) => read_config_file(Path::new(path))?,
        None => (Layer::new(), Vec::new()),
    };
    let dotenv = read_dotenv(&cwd.join(".env"))?;
    Ok(Config {
        debug: matches.get_flag("debug"),
        ..from_sources(&cli, file, &dotenv)?
    })
}

/// The configuration of flags and environment (`cli`), the config file's server layer and
/// `[[apps]]` layers, and `.env`, stacked in that order.
fn from_sources(
    cli: &Layer,
    (file_server, file_apps): (Layer, Vec<Layer>),
    dotenv: &Layer,
) -> Result<Config, ConfigError> {
    let first_app = file_apps.first().cloned().unwrap_or_default();
    let primary = Layers(vec![
        (cli, Origin::Cli),
        (&file_server, Origin::File),
        (&first_app, Origin::File),
        (dotenv, Origin::DotEnv),
    ]);
    let more_apps = file_apps.get(1..).unwrap_or_default();
    from_layers(&primary, more_apps)
}

/// For the fuzz target `config` (`crate::fuzzing`): the configuration of a config file's
/// text and a `.env` file's text, with no flags or environment, as `load` reads them.
#[cfg(fuzzing)]
pub(crate) fn from_texts(file: &str, dotenv: &str) -> Result<Config, ConfigError> {
    let file = layers::config_file_layers(file, Path::new("fuzz.toml"))?;
    let dotenv = layers::dotenv_layer(dotenv.as_bytes(), Path::new(".env"))?;
    from_sources(&Layer::new(), file, &dotenv)
}

/// The configuration the layers describe: `primary` holds the server settings and the
/// first app, `more_apps` one layer per further `[[apps]]` table.
fn from_layers(primary: &Layers, more_apps: &[Layer]) -> Result<Config, ConfigError> {
    const HOST: &str = "REVERB_SERVER_HOST";
    let mut warnings = Vec::new();
    let (apps, dev_app) = read_apps(primary, more_apps, &mut warnings)?;
    let l = primary;
    // Unset, the development app binds to loopback only: its credentials are public.
    let host = match (l.get(HOST), settings::find(HOST).map(|s| s.default)) {
        (None, Some(Fallback::DevApp { dev_app: host, .. })) if dev_app => host.to_owned(),
        _ => l.text(HOST)?,
    };
    let scaling = self::redis::scaling(l)?;
    if dev_app && scaling.as_ref().is_some_and(|s| s.secret.is_none()) {
        warnings.push(
            "scaling with the development app and no RESOUND_SCALING_SECRET: the nodes' key \
             derives from the development app's published secret, so anyone who can publish \
             on the Redis channel can forge cluster messages"
                .to_owned(),
        );
    }
    Ok(Config {
        host,
        port: l.parse("REVERB_SERVER_PORT", "a port number (0-65535)", |v| {
            v.parse().ok()
        })?,
        path: normalize_path(
            &l.value("REVERB_SERVER_PATH")
                .map_or_else(String::new, |(v, _)| v),
        ),
        max_request_size: l.parse_opt(
            "REVERB_MAX_REQUEST_SIZE",
            "a whole number of bytes above 0",
            |v| v.parse().ok().filter(|n| *n > 0),
        )?,
        max_event_size: l.positive("RESOUND_MAX_EVENT_SIZE")?,
        max_event_name_length: l.positive("RESOUND_MAX_EVENT_NAME_LENGTH")?,
        max_channels_per_event: l.positive("RESOUND_MAX_CHANNELS_PER_EVENT")?,
        max_batch_size: l.number("RESOUND_MAX_BATCH_SIZE")?,
        api_timestamp_window: match l.number("RESOUND_API_TIMESTAMP_WINDOW")? {
            0 => None,
            n => Some(Duration::from_secs(n as u64)),
        },
        outbound_queue: l.positive("RESOUND_OUTBOUND_QUEUE")?,
        outbound_bytes: l.positive("RESOUND_OUTBOUND_BYTES")?,
        outbound_budget: l.number("RESOUND_OUTBOUND_BUDGET")?,
        cache_ttl: l.seconds("RESOUND_CACHE_TTL")?,
        shutdown_timeout: l.seconds("RESOUND_SHUTDOWN_TIMEOUT")?,
        max_channels_per_connection: l.positive("RESOUND_MAX_CHANNELS_PER_CONNECTION")?,
        workers: l.number("RESOUND_WORKERS")?,
        debug: false,
        apps,
        dev_app,
        scaling,
        warnings,
        tls: self::serving::tls(l)?,
        drain: self::serving::drain(l)?,
        reuse_port: l.boolean("RESOUND_REUSE_PORT")?,
        console: self::console::read(l)?,
        webhooks: self::webhooks::settings(l)?,
        metrics: metrics(l)?,
        log_format: l.parse("RESOUND_LOG_FORMAT", "text or json", |v| {
            match v.to_ascii_lowercase().as_str() {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => None,
            }
        })?,
    })
}

/// `RESOUND_METRICS_ADDR` (a `HOST:PORT`, which turns metrics on) or else
/// `RESOUND_METRICS_ENABLED`.
fn metrics(l: &Layers) -> Result<Metrics, ConfigError> {
    let addr = l.parse_opt(
        "RESOUND_METRICS_ADDR",
        "HOST:PORT, e.g. 127.0.0.1:9100",
        |v| {
            let (host, port) = v.trim().rsplit_once(':')?;
            port.parse::<u16>().ok()?;
            (!host.is_empty()).then(|| v.trim().to_owned())
        },
    )?;
    Ok(match addr {
        Some(addr) => Metrics::Own(addr),
        None if l.boolean("RESOUND_METRICS_ENABLED")? => Metrics::MainPort,
        None => Metrics::Off,
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
mod tests;
