//! The settings table: every setting's variable, flag, config-file key, default and help
//! text. The default is written here once: loading falls back to it (parsed like any other
//! value, so it is validated the same way) and `--help` shows it, so the two cannot drift.

use Fallback::{DevApp, Unset, Value};

/// What a setting is when no source gives it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Fallback {
    /// A value, read exactly as if a source had given it.
    Value(&'static str),
    /// `value`, except that the development app (no app configured anywhere) uses `dev_app`.
    DevApp {
        value: &'static str,
        dev_app: &'static str,
    },
    /// No value; the text says what that means, for `--help`.
    Unset(&'static str),
}

impl Fallback {
    /// The value loading falls back to, if there is one.
    pub(super) fn value(self) -> Option<&'static str> {
        match self {
            Value(v) | DevApp { value: v, .. } => Some(v),
            Unset(_) => None,
        }
    }

    fn shown(self) -> String {
        match self {
            Value(v) | Unset(v) => v.to_owned(),
            DevApp { value, dev_app } => format!("{value}; {dev_app} with the development app"),
        }
    }
}

/// One setting: its variable name, flag, config-file key, default and help text.
pub(super) struct Setting {
    pub(super) env: &'static str,
    pub(super) flag: &'static str,
    /// Key in the config file: `server.<key>` for server settings, `<key>` in an `[[apps]]` table.
    pub(super) file_key: &'static str,
    pub(super) app: bool,
    /// A boolean: its flag may be given bare (`--scaling` is `--scaling=true`).
    pub(super) boolean: bool,
    pub(super) default: Fallback,
    pub(super) help: &'static str,
}

impl Setting {
    /// The `--help` line: the description and the default it falls back to.
    pub(super) fn help_line(&self) -> String {
        format!("{} [default: {}]", self.help, self.default.shown())
    }
}

/// The setting named by its variable.
pub(super) fn find(env: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.env == env)
}

const fn server(
    env: &'static str,
    flag: &'static str,
    file_key: &'static str,
    default: Fallback,
    help: &'static str,
) -> Setting {
    Setting {
        env,
        flag,
        file_key,
        app: false,
        boolean: false,
        default,
        help,
    }
}

const fn app(
    env: &'static str,
    flag: &'static str,
    file_key: &'static str,
    default: Fallback,
    help: &'static str,
) -> Setting {
    Setting {
        env,
        flag,
        file_key,
        app: true,
        boolean: false,
        default,
        help,
    }
}

const fn server_bool(
    env: &'static str,
    flag: &'static str,
    file_key: &'static str,
    default: bool,
    help: &'static str,
) -> Setting {
    Setting {
        boolean: true,
        default: Value(if default { "true" } else { "false" }),
        ..server(env, flag, file_key, Unset(""), help)
    }
}

const fn app_bool(
    env: &'static str,
    flag: &'static str,
    file_key: &'static str,
    default: bool,
    help: &'static str,
) -> Setting {
    Setting {
        boolean: true,
        default: Value(if default { "true" } else { "false" }),
        ..app(env, flag, file_key, Unset(""), help)
    }
}

#[rustfmt::skip]
pub(super) const SETTINGS: &[Setting] = &[
    server("REVERB_SERVER_HOST", "host", "host", DevApp { value: "0.0.0.0", dev_app: "127.0.0.1" }, "Address to bind"),
    server("REVERB_SERVER_PORT", "port", "port", Value("8080"), "Port for WebSocket, HTTP API and /up"),
    server("REVERB_SERVER_PATH", "path", "path", Unset("none"), "Prefix for every route, e.g. /reverb"),
    server("REVERB_MAX_REQUEST_SIZE", "max-request-size", "max_request_size", Unset("unset: the body alone, room for a full batch of the largest events"), "Largest HTTP request in bytes, head and body, as Reverb counts"),
    server("RESOUND_MAX_EVENT_SIZE", "max-event-size", "max_event_size", Value("10240"), "Largest event data on the HTTP API in bytes"),
    server("RESOUND_MAX_EVENT_NAME_LENGTH", "max-event-name-length", "max_event_name_length", Value("200"), "Longest event name in characters, for client events and the HTTP API"),
    server("RESOUND_MAX_CHANNELS_PER_EVENT", "max-channels-per-event", "max_channels_per_event", Value("100"), "Most channels in one trigger"),
    server("RESOUND_MAX_BATCH_SIZE", "max-batch-size", "max_batch_size", Value("10"), "Most events in one batch (Pusher's limit), 0 = unlimited"),
    server("RESOUND_API_TIMESTAMP_WINDOW", "api-timestamp-window", "api_timestamp_window", Value("600"), "Allowed auth_timestamp skew in seconds, 0 = unchecked"),
    server("RESOUND_OUTBOUND_QUEUE", "outbound-queue", "outbound_queue", Value("1024"), "Messages queued per connection before it is dropped as too slow"),
    server("RESOUND_OUTBOUND_BYTES", "outbound-bytes", "outbound_bytes", Value("1048576"), "Bytes queued per connection before it is dropped as too slow (4100)"),
    server("RESOUND_OUTBOUND_BUDGET", "outbound-budget", "outbound_budget", Value("536870912"), "Bytes all connections' backlogs may hold together; past it a connection that is behind is dropped (4100), 0 = unlimited"),
    server("RESOUND_CACHE_TTL", "cache-ttl", "cache_ttl", Value("1800"), "Seconds a cache channel keeps its last event"),
    server("RESOUND_SHUTDOWN_TIMEOUT", "shutdown-timeout", "shutdown_timeout", Value("10"), "Seconds allowed for a graceful shutdown"),
    server("RESOUND_MAX_CHANNELS_PER_CONNECTION", "max-channels-per-connection", "max_channels_per_connection", Value("1000"), "Channels one connection may be subscribed to at once"),
    server("RESOUND_WORKERS", "workers", "workers", Value("0"), "Worker threads, 0 = one per CPU core"),
    server_bool("REVERB_SCALING_ENABLED", "scaling", "scaling_enabled", false, "Share events, presence and queries with other nodes over Redis pub/sub"),
    server("REVERB_SCALING_CHANNEL", "scaling-channel", "scaling_channel", Value("reverb"), "Redis pub/sub channel shared by the nodes"),
    server("RESOUND_SCALING_BEAT_INTERVAL", "scaling-beat-interval", "scaling_beat_interval", Value("3"), "Seconds between a node's heartbeats to the others, fractions allowed"),
    server("RESOUND_SCALING_PEER_TIMEOUT", "scaling-peer-timeout", "scaling_peer_timeout", Value("10"), "Seconds of silence after which a node counts as gone, more than the beat interval"),
    server("RESOUND_SCALING_SECRET", "scaling-secret", "scaling_secret", Unset("derived from the apps' ids and secrets"), "Key the nodes sign their messages to each other with; the same on every node"),
    server("RESOUND_SCALING_QUERY_TIMEOUT", "scaling-query-timeout", "scaling_query_timeout", Value("3"), "Longest an HTTP API query waits for the other nodes' counts, in seconds"),
    server("REDIS_URL", "redis-url", "redis_url", Unset("none"), "Redis for scaling, redis://[user:password@]host:port/db; overrides the REDIS_* parts"),
    server("REDIS_HOST", "redis-host", "redis_host", Value("127.0.0.1"), "Redis host for scaling"),
    server("REDIS_PORT", "redis-port", "redis_port", Value("6379"), "Redis port for scaling"),
    server("REDIS_USERNAME", "redis-username", "redis_username", Unset("none"), "Redis ACL user for scaling"),
    server("REDIS_PASSWORD", "redis-password", "redis_password", Unset("none"), "Redis password for scaling"),
    server("REDIS_DB", "redis-db", "redis_db", Value("0"), "Redis database number for scaling"),
    server("REDIS_TIMEOUT", "redis-timeout", "redis_timeout", Value("60"), "Seconds allowed to connect to Redis"),
    server("REDIS_SCHEME", "redis-scheme", "redis_scheme", Value("tcp"), "tcp, or tls (also rediss) for Redis over TLS"),
    server("RESOUND_REDIS_CA_FILE", "redis-ca-file", "redis_ca_file", Unset("the system's roots"), "PEM file of the CA certificates to trust for Redis over TLS"),
    // Serving (issue 16): TLS in process, the drain at shutdown, restarts on a shared port.
    server("RESOUND_TLS_CERT", "tls-cert", "tls_cert", Unset("none: plain HTTP and ws://"), "PEM file of the TLS certificate chain (server certificate first); with --tls-key serves https:// and wss:// on the port"),
    server("RESOUND_TLS_KEY", "tls-key", "tls_key", Unset("none"), "PEM file of the TLS certificate's private key"),
    server("RESOUND_TLS_RELOAD_INTERVAL", "tls-reload-interval", "tls_reload_interval", Value("5"), "Seconds between looks at the TLS files for a renewed certificate (SIGHUP reloads at once), fractions allowed"),
    server("RESOUND_DRAIN_SECONDS", "drain-seconds", "drain_seconds", Value("10"), "Seconds over which shutdown spreads closing the connections (4200), each at a random instant; 0 = all at once; cut to 80% of the shutdown timeout"),
    server_bool("RESOUND_REUSE_PORT", "reuse-port", "reuse_port", true, "Bind with SO_REUSEPORT so a new process can take over the port while this one drains"),
    server_bool("RESOUND_CONSOLE_ENABLED", "console", "console_enabled", false, "Serve the live debug console at {path}/console (log in with an app's id and secret)"),
    server("RESOUND_CONSOLE_TOKEN", "console-token", "console_token", Unset("none: only the app's secret logs in"), "A separate login token for the debug console, accepted for any app instead of its secret"),
    server("RESOUND_WEBHOOK_BATCH_SIZE", "webhook-batch-size", "webhook_batch_size", Value("50"), "Most events in one webhook request; 1 sends each event on its own, as Pusher's unbatched webhooks"),
    server("RESOUND_WEBHOOK_BATCH_DELAY", "webhook-batch-delay", "webhook_batch_delay", Value("0.1"), "Seconds a ready webhook event waits for others to share its request, fractions allowed, 0 = none"),
    server("RESOUND_WEBHOOK_LEAVE_DELAY", "webhook-leave-delay", "webhook_leave_delay", Value("3"), "Seconds channel_vacated and member_removed wait, dropped if the channel or member comes back meanwhile; fractions allowed, 0 = none"),
    server("RESOUND_WEBHOOK_RETRY_WINDOW", "webhook-retry-window", "webhook_retry_window", Value("300"), "Seconds a failing webhook request is retried (exponential backoff with jitter) before it is dropped"),
    server("RESOUND_WEBHOOK_TIMEOUT", "webhook-timeout", "webhook_timeout", Value("5"), "Seconds a webhook receiver has to answer before the request counts as failed; fractions allowed"),
    server("RESOUND_WEBHOOK_CA_FILE", "webhook-ca-file", "webhook_ca_file", Unset("the system's roots"), "PEM file of the CA certificates to trust for https:// webhook receivers"),
    server("RESOUND_WEBHOOK_QUEUE", "webhook-queue", "webhook_queue", Value("10000"), "Webhook events waiting to be sent, per receiver (and for the whole node before they are sorted); beyond it new ones are dropped, counted and logged"),
    server_bool("RESOUND_METRICS_ENABLED", "metrics", "metrics_enabled", false, "Serve Prometheus metrics at GET {path}/metrics on the main port"),
    server("RESOUND_METRICS_ADDR", "metrics-addr", "metrics_addr", Unset("none: on the main port when enabled"), "HOST:PORT of a listener of its own for /metrics (then not on the main port); setting it turns metrics on"),
    server("RESOUND_LOG_FORMAT", "log-format", "log_format", Value("text"), "Log lines on stderr: text, or json (one JSON object a line)"),
    app("REVERB_APP_ID", "app-id", "app_id", Unset("none"), "App id (used in HTTP API paths)"),
    app("REVERB_APP_KEY", "app-key", "key", Unset("none"), "App key (used by clients in /app/{key})"),
    app("REVERB_APP_SECRET", "app-secret", "secret", Unset("none"), "App secret (signs channel auth and API requests)"),
    app_bool("RESOUND_APP_ENABLED", "app-enabled", "enabled", true, "false refuses connections with 4003"),
    app("REVERB_APP_PING_INTERVAL", "ping-interval", "ping_interval", Value("60"), "Seconds of silence before the server pings"),
    app("RESOUND_APP_PONG_TIMEOUT", "pong-timeout", "pong_timeout", Value("30"), "Seconds a pinged client has to answer before close 4201"),
    app("REVERB_APP_ACTIVITY_TIMEOUT", "activity-timeout", "activity_timeout", Value("30"), "activity_timeout sent to clients, seconds"),
    app("REVERB_APP_MAX_CONNECTIONS", "max-connections", "max_connections", Unset("unlimited"), "Connections allowed at once, empty = unlimited"),
    app("REVERB_APP_MAX_MESSAGE_SIZE", "max-message-size", "max_message_size", Value("10000"), "Largest client message in bytes; bigger closes with 1009"),
    app("REVERB_APP_ALLOWED_ORIGINS", "allowed-origins", "allowed_origins", Value("*"), "Comma-separated origin host patterns"),
    app("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "accept-client-events-from", "accept_client_events_from", Value("members"), "members or all; any other value (none, empty, ...) turns client events off"),
    app_bool("RESOUND_APP_PUBLIC_CLIENT_EVENTS", "public-client-events", "public_client_events", true, "Relay client events on public channels (cache- ones included) too, as Reverb does; false = private and presence only, as Pusher"),
    app("RESOUND_APP_AUTHORIZED_TIMEOUT", "authorized-timeout", "authorized_timeout", Value("0"), "Seconds a connection has to sign in or join a private/presence channel, 0 = off"),
    app_bool("RESOUND_APP_SUBSCRIPTION_COUNT", "subscription-count", "subscription_count", false, "Send pusher_internal:subscription_count to subscribers"),
    app("RESOUND_APP_CLIENT_EVENT_RATE", "client-event-rate", "client_event_rate", Value("10"), "Client events one connection may send per second, as Pusher; more are refused with 4301, 0 = unlimited"),
    app("RESOUND_APP_MAX_PRESENCE_MEMBERS", "max-presence-members", "max_presence_members", Value("1000"), "Users one presence channel may hold; a join beyond it is refused with 4009, 0 = unlimited"),
    app("RESOUND_APP_MAX_USER_INFO_SIZE", "max-user-info-size", "max_user_info_size", Value("1024"), "Largest presence user_info in bytes, as Pusher; a bigger one is refused with 4009, 0 = unlimited"),
    app("RESOUND_APP_WEBHOOK_URL", "webhook-url", "webhook_url", Unset("none"), "URL webhooks are POSTed to (http:// or https://)"),
    app("RESOUND_APP_WEBHOOK_EVENTS", "webhook-events", "webhook_events", Unset("every event"), "Comma-separated webhook events sent to RESOUND_APP_WEBHOOK_URL: channel_occupied, channel_vacated, member_added, member_removed, client_event, cache_miss, subscription_count; empty = all"),
    app("RESOUND_APP_WEBHOOKS", "webhooks", "webhooks", Unset("none"), "More webhook targets as JSON: [{\"url\": .., \"events\": [..], \"headers\": {..}}]; in the config file, [[apps.webhooks]] tables"),
    app_bool("REVERB_APP_RATE_LIMITING_ENABLED", "rate-limiting", "rate_limiting.enabled", false, "Limit inbound messages per connection"),
    app("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", "rate-limit-max-attempts", "rate_limiting.max_attempts", Value("60"), "Messages allowed per window"),
    app("REVERB_APP_RATE_LIMIT_DECAY_SECONDS", "rate-limit-decay-seconds", "rate_limiting.decay_seconds", Value("60"), "Window length in seconds"),
    app_bool("REVERB_APP_RATE_LIMIT_TERMINATE", "rate-limit-terminate", "rate_limiting.terminate_on_limit", false, "Close the connection when the limit is hit"),
    // reverb:start --hostname, or REVERB_HOST: finds a Herd or Valet certificate (serving.rs).
    server("REVERB_HOST", "hostname", "hostname", Unset("none"), "The site's host name, as reverb:start --hostname: with no --tls-cert, the Herd or Valet certificate made for it is served when there is one"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[..i] {
                assert!(a.env != b.env && a.flag != b.flag, "{}", a.env);
                assert!(a.app != b.app || a.file_key != b.file_key, "{}", a.env);
            }
        }
    }
}
