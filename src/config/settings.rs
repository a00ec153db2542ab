//! The settings table: every setting's variable, flag, config-file key and help text.

/// One setting: its variable name, flag, config-file key, and help text.
pub(super) struct Setting {
    pub(super) env: &'static str,
    pub(super) flag: &'static str,
    /// Key in the config file: `server.<key>` for server settings, `<key>` in an `[[apps]]` table.
    pub(super) file_key: &'static str,
    pub(super) app: bool,
    pub(super) help: &'static str,
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

pub(super) const SETTINGS: &[Setting] = &[
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
