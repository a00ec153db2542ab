//! Configuration from, highest first: command-line flags, environment variables, a TOML
//! config file (`--config`), a `.env` file in the working directory, built-in defaults.
//!
//! Every setting has one name: its environment variable (`REVERB_*` where Reverb has one,
//! `RESOUND_*` for our own). Flags and config-file keys map onto those names, so precedence
//! is one lookup chain per name, and validation happens once, here, before anything binds.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use clap::{Arg, ArgMatches, Command};

use crate::apps::{App, ClientEvents, RateLimit};

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

/// One setting: its variable name, flag, config-file key, and help text.
struct Setting {
    env: &'static str,
    flag: &'static str,
    /// Key in the config file: `server.<key>` for server settings, `<key>` in an `[[apps]]` table.
    file_key: &'static str,
    app: bool,
    help: &'static str,
}

const fn s(
    env: &'static str,
    flag: &'static str,
    file_key: &'static str,
    app: bool,
    help: &'static str,
) -> Setting {
    Setting {
        env,
        flag,
        file_key,
        app,
        help,
    }
}

const SETTINGS: &[Setting] = &[
    s("REVERB_SERVER_HOST", "host", "host", false, "Address to bind [default: 0.0.0.0; 127.0.0.1 with the development app]"),
    s("REVERB_SERVER_PORT", "port", "port", false, "Port for WebSocket, HTTP API and /up [default: 8080]"),
    s("REVERB_SERVER_PATH", "path", "path", false, "Prefix for every route, e.g. /reverb [default: none]"),
    s("REVERB_MAX_REQUEST_SIZE", "max-request-size", "max_request_size", false, "Largest HTTP request in bytes, head and body [default: 10000]"),
    s("RESOUND_MAX_EVENT_SIZE", "max-event-size", "max_event_size", false, "Largest event data on the HTTP API in bytes [default: 10240]"),
    s("RESOUND_MAX_CHANNELS_PER_EVENT", "max-channels-per-event", "max_channels_per_event", false, "Most channels in one trigger [default: 100]"),
    s("RESOUND_MAX_BATCH_SIZE", "max-batch-size", "max_batch_size", false, "Most events in one batch, 0 = unlimited [default: 0]"),
    s("RESOUND_API_TIMESTAMP_WINDOW", "api-timestamp-window", "api_timestamp_window", false, "Allowed auth_timestamp skew in seconds, 0 = unchecked [default: 600]"),
    s("RESOUND_OUTBOUND_QUEUE", "outbound-queue", "outbound_queue", false, "Messages queued per connection before it is dropped as too slow [default: 1024]"),
    s("RESOUND_CACHE_TTL", "cache-ttl", "cache_ttl", false, "Seconds a cache channel keeps its last event [default: 1800]"),
    s("RESOUND_SHUTDOWN_TIMEOUT", "shutdown-timeout", "shutdown_timeout", false, "Seconds allowed for a graceful shutdown [default: 10]"),
    s("RESOUND_MAX_CHANNELS_PER_CONNECTION", "max-channels-per-connection", "max_channels_per_connection", false, "Channels one connection may be subscribed to at once [default: 1000]"),
    s("RESOUND_WORKERS", "workers", "workers", false, "Worker threads, 0 = one per CPU core [default: 0]"),
    s("REVERB_SCALING_ENABLED", "scaling", "scaling_enabled", false, "Share events, presence and queries with other nodes over Redis pub/sub [default: false]"),
    s("REVERB_SCALING_CHANNEL", "scaling-channel", "scaling_channel", false, "Redis pub/sub channel shared by the nodes [default: reverb]"),
    s("REDIS_URL", "redis-url", "redis_url", false, "Redis for scaling, redis://[user:password@]host:port/db; overrides the REDIS_* parts"),
    s("REDIS_HOST", "redis-host", "redis_host", false, "Redis host for scaling [default: 127.0.0.1]"),
    s("REDIS_PORT", "redis-port", "redis_port", false, "Redis port for scaling [default: 6379]"),
    s("REDIS_USERNAME", "redis-username", "redis_username", false, "Redis ACL user for scaling [default: none]"),
    s("REDIS_PASSWORD", "redis-password", "redis_password", false, "Redis password for scaling [default: none]"),
    s("REDIS_DB", "redis-db", "redis_db", false, "Redis database number for scaling [default: 0]"),
    s("REDIS_TIMEOUT", "redis-timeout", "redis_timeout", false, "Seconds allowed to connect to Redis [default: 60]"),
    s("REDIS_SCHEME", "redis-scheme", "redis_scheme", false, "tcp, or tls (also rediss) for Redis over TLS [default: tcp]"),
    s("RESOUND_REDIS_CA_FILE", "redis-ca-file", "redis_ca_file", false, "PEM file of the CA certificates to trust for Redis over TLS [default: the system's roots]"),
    s("REVERB_APP_ID", "app-id", "app_id", true, "App id (used in HTTP API paths)"),
    s("REVERB_APP_KEY", "app-key", "key", true, "App key (used by clients in /app/{key})"),
    s("REVERB_APP_SECRET", "app-secret", "secret", true, "App secret (signs channel auth and API requests)"),
    s("RESOUND_APP_ENABLED", "app-enabled", "enabled", true, "false refuses connections with 4003 [default: true]"),
    s("REVERB_APP_PING_INTERVAL", "ping-interval", "ping_interval", true, "Seconds of silence before the server pings [default: 60]"),
    s("RESOUND_APP_PONG_TIMEOUT", "pong-timeout", "pong_timeout", true, "Seconds a pinged client has to answer before close 4201 [default: 30]"),
    s("REVERB_APP_ACTIVITY_TIMEOUT", "activity-timeout", "activity_timeout", true, "activity_timeout sent to clients, seconds [default: 30]"),
    s("REVERB_APP_MAX_CONNECTIONS", "max-connections", "max_connections", true, "Connections allowed at once, empty = unlimited [default: unlimited]"),
    s("REVERB_APP_MAX_MESSAGE_SIZE", "max-message-size", "max_message_size", true, "Largest client message in bytes; bigger closes with 1009 [default: 10000]"),
    s("REVERB_APP_ALLOWED_ORIGINS", "allowed-origins", "allowed_origins", true, "Comma-separated origin host patterns [default: *]"),
    s("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "accept-client-events-from", "accept_client_events_from", true, "members or all; any other value (none, empty, ...) turns client events off [default: members]"),
    s("RESOUND_APP_PUBLIC_CLIENT_EVENTS", "public-client-events", "public_client_events", true, "Relay client events on public channels (cache- ones included) too, as Reverb does; false = private and presence only, as Pusher [default: true]"),
    s("RESOUND_APP_AUTHORIZED_TIMEOUT", "authorized-timeout", "authorized_timeout", true, "Seconds a connection has to sign in or join a private/presence channel, 0 = off [default: 0]"),
    s("RESOUND_APP_SUBSCRIPTION_COUNT", "subscription-count", "subscription_count", true, "Send pusher_internal:subscription_count to subscribers [default: false]"),
    s("REVERB_APP_RATE_LIMITING_ENABLED", "rate-limiting", "rate_limiting.enabled", true, "Limit inbound messages per connection [default: false]"),
    s("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", "rate-limit-max-attempts", "rate_limiting.max_attempts", true, "Messages allowed per window [default: 60]"),
    s("REVERB_APP_RATE_LIMIT_DECAY_SECONDS", "rate-limit-decay-seconds", "rate_limiting.decay_seconds", true, "Window length in seconds [default: 60]"),
    s("REVERB_APP_RATE_LIMIT_TERMINATE", "rate-limit-terminate", "rate_limiting.terminate_on_limit", true, "Close the connection when the limit is hit [default: false]"),
];

/// The clap command: every setting as a flag bound to its variable, plus `--config` and `--debug`.
pub fn command() -> Command {
    let mut cmd = Command::new("resound")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A Pusher Channels protocol 7 server: a drop-in for Laravel Reverb")
        .after_help(
            "Precedence: flags > environment > --config file > ./.env > defaults.\n\
             With no app configured anywhere, a development app is used and printed.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .env("RESOUND_CONFIG")
                .value_name("FILE")
                .help("TOML config file (server settings and any number of [[apps]])"),
        )
        .arg(
            Arg::new("debug")
                .long("debug")
                .env("RESOUND_DEBUG")
                .action(clap::ArgAction::SetTrue)
                .help("Log every connection, subscription and message"),
        )
        .arg(
            Arg::new("hostname")
                .long("hostname")
                .value_name("HOST")
                .help("Accepted for reverb:start compatibility; unused"),
        );
    for st in SETTINGS {
        cmd = cmd.arg(
            Arg::new(st.env)
                .long(st.flag)
                .env(st.env)
                .value_name("VALUE")
                .help(st.help),
        );
    }
    cmd
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
enum Origin {
    Cli,
    File,
    DotEnv,
}

type Layer = HashMap<String, String>;

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
        scaling: scaling(l)?,
        warnings,
    })
}

/// The scaling settings, read only when `REVERB_SCALING_ENABLED` is on (a Laravel `.env`
/// has `REDIS_*` values for the app's own use too).
fn scaling(l: &Layers) -> Result<Option<Scaling>, ConfigError> {
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
    match redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
        Err(e) => return Err(refuse(e.to_string())),
        Ok(info) => match info.addr() {
            redis::ConnectionAddr::Tcp(..) => {}
            redis::ConnectionAddr::TcpTls {
                insecure: false, ..
            } => {}
            redis::ConnectionAddr::TcpTls { .. } => {
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

fn normalize_path(p: &str) -> String {
    let trimmed = p.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

struct Layers<'a>(Vec<(&'a Layer, Origin)>);

impl Layers<'_> {
    /// The first layer's value; an empty value (`X=`) counts as unset there. As Laravel's
    /// `env()` reads them, `null`/`(null)`/`empty`/`(empty)` mean unset (a Laravel `.env` has
    /// `REDIS_PASSWORD=null`) and hide the lower layers, and `(true)`/`(false)` are booleans.
    fn get(&self, name: &str) -> Option<(String, Origin)> {
        let (v, origin) = self.0.iter().find_map(|(layer, origin)| {
            let v = layer.get(name)?.trim();
            (!v.is_empty()).then_some((v, *origin))
        })?;
        match v.to_ascii_lowercase().as_str() {
            "null" | "(null)" | "empty" | "(empty)" => None,
            "(true)" => Some(("true".to_owned(), origin)),
            "(false)" => Some(("false".to_owned(), origin)),
            _ => Some((v.to_owned(), origin)),
        }
    }

    /// The first layer that names `name` at all, with its trimmed value even when that is
    /// empty: for the one setting where Laravel's `X=` (an empty string) means something.
    fn present(&self, name: &str) -> Option<(String, Origin)> {
        self.0
            .iter()
            .find_map(|(layer, origin)| Some((layer.get(name)?.trim().to_owned(), *origin)))
    }

    fn parse<T>(
        &self,
        name: &str,
        expected: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some((v, origin)) => f(&v)
                .map(Some)
                .ok_or_else(|| bad(name, &v, origin, expected)),
        }
    }

    fn number(&self, name: &str) -> Result<Option<usize>, ConfigError> {
        self.parse(name, "a whole number", |v| v.parse().ok())
    }

    fn positive(&self, name: &str) -> Result<Option<usize>, ConfigError> {
        self.parse(name, "a whole number above 0", |v| {
            v.parse().ok().filter(|n| *n > 0)
        })
    }

    /// A positive number of seconds, at most a year (larger values are typos, and would
    /// overflow timer arithmetic).
    fn seconds(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        self.parse(name, "a whole number of seconds from 1 to 31536000", |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=31_536_000).contains(n))
                .map(Duration::from_secs)
        })
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        self.parse(name, "true or false", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            }
        })
    }
}

/// Where a setting came from, for messages: `NAME (--flag)`, `key in the config file`, ...
fn place(name: &str, origin: Origin) -> String {
    let flag = SETTINGS.iter().find(|s| s.env == name);
    match (origin, flag) {
        (Origin::Cli, Some(st)) => format!("{name} (--{})", st.flag),
        (Origin::File, Some(st)) => format!("{} in the config file", st.file_key),
        (Origin::DotEnv, _) => format!("{name} in .env"),
        _ => name.to_owned(),
    }
}

fn bad(name: &str, value: &str, origin: Origin, expected: &str) -> ConfigError {
    ConfigError(format!(
        "invalid value '{value}' for {}: expected {expected}",
        place(name, origin)
    ))
}

/// `REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM` read as Reverb reads it: unset is
/// config/reverb.php's default, `members`; `null` reaches Reverb as PHP null, which it turns
/// into `all`; `members` and `all` turn client events on, and any other value, the empty one
/// included (Laravel's `env()` returns `X=` as an empty string), turns them off. A value that
/// is not one of the usual ways of saying "off" is probably a typo, so it is named in a
/// startup warning rather than refused: Reverb starts with it.
fn client_events(l: &Layers, app_id: &str, warnings: &mut Vec<String>) -> ClientEvents {
    const NAME: &str = "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM";
    let Some((value, origin)) = l.present(NAME) else {
        return ClientEvents::Members;
    };
    match value.to_ascii_lowercase().as_str() {
        "members" => ClientEvents::Members,
        "all" | "null" | "(null)" => ClientEvents::All,
        "" | "empty" | "(empty)" | "none" | "disabled" | "nobody" | "false" | "(false)" | "off"
        | "no" | "0" => ClientEvents::None,
        _ => {
            warnings.push(format!(
                "app {app_id}: {}: '{value}' is neither members nor all, so client events are off (as in Reverb)",
                place(NAME, origin)
            ));
            ClientEvents::None
        }
    }
}

/// Reads one app from the layers; `None` when no identity field is set anywhere.
fn parse_app(l: &Layers, warnings: &mut Vec<String>) -> Result<Option<App>, ConfigError> {
    let id = l.get("REVERB_APP_ID").map(|(v, _)| v);
    let key = l.get("REVERB_APP_KEY").map(|(v, _)| v);
    let secret = l.get("REVERB_APP_SECRET").map(|(v, _)| v);
    let (id, key, secret) = match (id, key, secret) {
        (None, None, None) => return Ok(None),
        (Some(i), Some(k), Some(s)) => (i, k, s),
        (i, k, _) => {
            let missing = if i.is_none() {
                "REVERB_APP_ID (app_id)"
            } else if k.is_none() {
                "REVERB_APP_KEY (key)"
            } else {
                "REVERB_APP_SECRET (secret)"
            };
            return Err(ConfigError(format!(
                "incomplete app: {missing} is not set (an app needs id, key and secret)"
            )));
        }
    };
    if key.contains(':') || key.contains('/') {
        return Err(ConfigError(format!(
            "invalid value '{key}' for REVERB_APP_KEY: must not contain ':' or '/'"
        )));
    }
    app_options(l, App::new(&id, &key, &secret), warnings).map(Some)
}

/// Applies the per-app options from the layers to `app`.
fn app_options(l: &Layers, mut app: App, warnings: &mut Vec<String>) -> Result<App, ConfigError> {
    app.enabled = l.boolean("RESOUND_APP_ENABLED")?.unwrap_or(true);
    app.ping_interval = l
        .seconds("REVERB_APP_PING_INTERVAL")?
        .unwrap_or(app.ping_interval);
    app.pong_timeout = l
        .seconds("RESOUND_APP_PONG_TIMEOUT")?
        .unwrap_or(app.pong_timeout);
    app.activity_timeout = l
        .positive("REVERB_APP_ACTIVITY_TIMEOUT")?
        .map(|n| n as u64)
        .unwrap_or(app.activity_timeout);
    // `null` (Reverb's "unlimited") counts as unset, see `Layers::get`.
    app.max_connections = l.parse(
        "REVERB_APP_MAX_CONNECTIONS",
        "a whole number or null",
        |v| v.parse().ok(),
    )?;
    app.max_message_size = l
        .positive("REVERB_APP_MAX_MESSAGE_SIZE")?
        .unwrap_or(app.max_message_size);
    if let Some((v, _)) = l.get("REVERB_APP_ALLOWED_ORIGINS") {
        app.allowed_origins = v
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
    }
    app.client_events = client_events(l, &app.id, warnings);
    app.authorized_timeout = l
        .parse(
            "RESOUND_APP_AUTHORIZED_TIMEOUT",
            "0 (off) or seconds up to 31536000",
            |v| v.parse::<u64>().ok().filter(|n| *n <= 31_536_000),
        )?
        .filter(|n| *n > 0)
        .map(Duration::from_secs);
    app.public_client_events = l
        .boolean("RESOUND_APP_PUBLIC_CLIENT_EVENTS")?
        .unwrap_or(true);
    app.subscription_count = l
        .boolean("RESOUND_APP_SUBSCRIPTION_COUNT")?
        .unwrap_or(false);
    if l.boolean("REVERB_APP_RATE_LIMITING_ENABLED")?
        .unwrap_or(false)
    {
        app.rate_limit = Some(RateLimit {
            max_attempts: l
                .positive("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS")?
                .unwrap_or(60) as u32,
            decay: l
                .seconds("REVERB_APP_RATE_LIMIT_DECAY_SECONDS")?
                .unwrap_or(Duration::from_secs(60)),
            terminate: l
                .boolean("REVERB_APP_RATE_LIMIT_TERMINATE")?
                .unwrap_or(false),
        });
    }
    Ok(app)
}

fn check_unique(apps: &[App]) -> Result<(), ConfigError> {
    for (i, a) in apps.iter().enumerate() {
        for b in &apps[..i] {
            if a.id == b.id {
                return Err(ConfigError(format!(
                    "invalid value '{}' for app_id: two apps share it",
                    a.id
                )));
            }
            if a.key == b.key {
                return Err(ConfigError(format!(
                    "invalid value '{}' for key: two apps share it",
                    a.key
                )));
            }
        }
    }
    Ok(())
}

/// Reads the TOML file into the server layer and one layer per `[[apps]]` entry, keyed by
/// variable name. Unknown keys are errors, so a typo never goes unnoticed.
fn read_config_file(path: &Path) -> Result<(Layer, Vec<Layer>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "invalid value '{}' for --config: {e}",
            path.display()
        ))
    })?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError(format!(
            "invalid config file '{}': {}",
            path.display(),
            e.message()
        ))
    })?;
    let mut server = Layer::new();
    let mut apps = Vec::new();
    for (k, v) in doc {
        match (k.as_str(), v) {
            ("server", toml::Value::Table(t)) => flatten_into(&t, "", false, &mut server)?,
            ("apps", toml::Value::Array(list)) => {
                for item in list {
                    let toml::Value::Table(t) = item else {
                        return Err(ConfigError(
                            "invalid value for apps in the config file: expected [[apps]] tables"
                                .into(),
                        ));
                    };
                    let mut layer = Layer::new();
                    flatten_into(&t, "", true, &mut layer)?;
                    apps.push(layer);
                }
            }
            (other, _) => {
                return Err(ConfigError(format!(
                    "unknown key '{other}' in the config file (expected [server] or [[apps]])"
                )))
            }
        }
    }
    Ok((server, apps))
}

fn flatten_into(
    table: &toml::Table,
    prefix: &str,
    app: bool,
    out: &mut Layer,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = format!("{prefix}{k}");
        let key = if app && key == "id" {
            "app_id".to_owned()
        } else {
            key
        };
        let text = match v {
            toml::Value::Table(t) => {
                flatten_into(t, &format!("{key}."), app, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        let st = SETTINGS
            .iter()
            .find(|s| s.app == app && s.file_key == key)
            .ok_or_else(|| ConfigError(format!("unknown key '{key}' in the config file")))?;
        out.insert(st.env.to_owned(), text);
    }
    Ok(())
}

/// Reads `REVERB_*`/`RESOUND_*` values from a `.env` file without touching the process
/// environment. A missing file is fine.
fn read_dotenv(path: &Path) -> Result<Layer, ConfigError> {
    if !path.is_file() {
        return Ok(Layer::new());
    }
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| ConfigError(format!("invalid .env file '{}': {e}", path.display())))?;
    let mut layer = Layer::new();
    for item in iter {
        let (k, v) =
            item.map_err(|e| ConfigError(format!("invalid .env file '{}': {e}", path.display())))?;
        if SETTINGS.iter().any(|s| s.env == k) {
            layer.insert(k, v);
        }
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_args(args: &[&str], cwd: &Path) -> Result<Config, ConfigError> {
        let mut argv = vec!["resound"];
        argv.extend_from_slice(args);
        let m = command().try_get_matches_from(argv).expect("args parse");
        load(&m, cwd)
    }

    /// A scratch directory, removed when dropped.
    fn tmpdir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("resound-cfg-{name}-"))
            .tempdir()
            .unwrap()
    }

    // These tests avoid names that the test process environment could carry.

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

    #[test]
    fn client_events_follow_reverb_every_other_value_is_off() {
        use crate::apps::ClientEvents::{All, Members, None as Off};
        let d = tmpdir("client-events");
        let from_dotenv = |line: &str| {
            std::fs::write(d.path().join(".env"), format!("{line}\n")).unwrap();
            let c = load_args(&[], d.path()).unwrap();
            (c.apps[0].client_events, c.warnings)
        };
        // Unset takes config/reverb.php's default; null reaches Reverb as PHP null, which its
        // app provider turns into `all`.
        assert_eq!(from_dotenv("# nothing").0, Members);
        assert_eq!(
            from_dotenv("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=null").0,
            All
        );
        assert_eq!(
            from_dotenv("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=ALL").0,
            All
        );
        // Laravel reads `X=` as an empty string, which Reverb's check turns into "off".
        for off in ["", "none", "false", "off", "(empty)"] {
            let (mode, warnings) =
                from_dotenv(&format!("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM={off}"));
            assert_eq!((mode, warnings.len()), (Off, 0), "{off:?}");
        }
        // A typo starts, with client events off as in Reverb, and is named in a warning.
        let (mode, warnings) = from_dotenv("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=memebrs");
        assert_eq!(mode, Off);
        assert!(
            warnings.len() == 1
                && warnings[0].contains("'memebrs'")
                && warnings[0].starts_with(&format!("app {}: ", DEV_APP.0))
                && warnings[0].contains("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM in .env"),
            "{warnings:?}"
        );
        // The flag's empty value beats .env, and an app table's empty value counts too.
        std::fs::write(
            d.path().join(".env"),
            "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=all\n",
        )
        .unwrap();
        let c = load_args(&["--accept-client-events-from", ""], d.path()).unwrap();
        assert_eq!(c.apps[0].client_events, Off);
        let file = d.path().join("apps.toml");
        std::fs::write(
            &file,
            "[[apps]]\napp_id = \"1\"\nkey = \"k1\"\nsecret = \"s1\"\n\n[[apps]]\napp_id = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\naccept_client_events_from = \"\"\n",
        )
        .unwrap();
        let c = load_args(&["--config", file.to_str().unwrap()], d.path()).unwrap();
        assert_eq!(c.apps[1].client_events, Off);
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
