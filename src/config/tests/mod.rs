//! The loader end to end: flags, environment, config file and `.env` in, `Config` out.
//! These tests avoid names that the test process environment could carry.

mod apps;
mod console;
mod dotenv;
mod scaling;
mod serving;

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::apps::RateLimit;

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
        (None, 10_240, 100)
    );
    assert_eq!(
        (c.max_batch_size, c.api_timestamp_window, c.outbound_queue),
        (10, Some(secs(600)), 1024)
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
    assert_eq!(
        e,
        "invalid value 'eighty' for REVERB_SERVER_PORT (--port): expected a port number (0-65535)"
    );
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

/// `REVERB_MAX_REQUEST_SIZE` unset stays unset (the HTTP layer sizes the body for a full
/// batch); a Laravel `.env` value is taken as Reverb takes it.
#[test]
fn max_request_size_is_a_number_when_set() {
    let d = tmpdir("request-size");
    std::fs::write(
        d.path().join(".env"),
        "REVERB_MAX_REQUEST_SIZE=10000
",
    )
    .unwrap();
    assert_eq!(
        load_args(&[], d.path()).unwrap().max_request_size,
        Some(10_000)
    );
    let e = load_args(&["--max-request-size", "0"], d.path())
        .unwrap_err()
        .0;
    assert!(e.contains("REVERB_MAX_REQUEST_SIZE"), "{e}");
    let c = load_args(&["--max-request-size", "null"], d.path()).unwrap();
    assert_eq!(c.max_request_size, None);
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
fn bare_boolean_flags_switch_settings_on() {
    let d = tmpdir("bare-bool");
    let c = load_args(
        &["--scaling", "--rate-limiting", "--rate-limit-terminate"],
        d.path(),
    );
    let c = c.unwrap();
    assert!(c.scaling.is_some());
    assert!(c.apps[0].rate_limit.as_ref().unwrap().terminate);
    let c = load_args(&["--subscription-count", "--app-enabled=false"], d.path()).unwrap();
    assert!(c.apps[0].subscription_count && !c.apps[0].enabled);
    let c = load_args(
        &["--public-client-events=false", "--scaling=false"],
        d.path(),
    )
    .unwrap();
    assert!(!c.apps[0].public_client_events && c.scaling.is_none());
}
