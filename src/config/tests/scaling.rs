//! Scaling: off unless switched on, the Redis URL, the cluster timings.

use std::time::Duration;

use super::{load_args, tmpdir};

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

#[test]
fn cluster_timings_take_fractions_and_peer_timeout_outlasts_the_beat() {
    let d = tmpdir("timings");
    let timings = |args: &[&str]| {
        let mut all = vec!["--scaling"];
        all.extend_from_slice(args);
        load_args(&all, d.path()).map(|c| {
            let s = c.scaling.unwrap();
            (s.beat_every, s.peer_timeout, s.query_wait)
        })
    };
    let ms = Duration::from_millis;
    assert_eq!(
        timings(&[
            "--scaling-beat-interval",
            "0.2",
            "--scaling-peer-timeout",
            "0.5",
            "--scaling-query-timeout",
            ".3"
        ])
        .unwrap(),
        (ms(200), ms(500), ms(300))
    );
    for bad in ["0", "-1", "soon", "NaN", "inf", "1e-12", "31536001"] {
        let flag = format!("--scaling-query-timeout={bad}");
        let e = timings(&[&flag]).unwrap_err().0;
        assert!(
            e.contains("RESOUND_SCALING_QUERY_TIMEOUT (--scaling-query-timeout)")
                && e.contains(&format!("'{bad}'")),
            "{e}"
        );
    }
    let e = timings(&["--scaling-peer-timeout", "2"]).unwrap_err().0;
    assert_eq!(
        e,
        "invalid value '2' for RESOUND_SCALING_PEER_TIMEOUT (--scaling-peer-timeout): expected more seconds than RESOUND_SCALING_BEAT_INTERVAL (3), or live nodes would count as gone between two beats"
    );
    let e = timings(&["--scaling-beat-interval", "10"]).unwrap_err().0;
    assert!(
        e.contains("RESOUND_SCALING_PEER_TIMEOUT") && e.contains("(10)"),
        "{e}"
    );
    // The config file's keys, and .env, as for every setting.
    std::fs::write(
        d.path().join(".env"),
        "RESOUND_SCALING_QUERY_TIMEOUT=0.25\n",
    )
    .unwrap();
    let file = d.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nscaling_beat_interval = 1\nscaling_peer_timeout = 2.5\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        timings(&["--config", file]).unwrap(),
        (ms(1000), ms(2500), ms(250))
    );
}

#[test]
fn scaling_secret_from_any_source_hidden_in_logs_and_a_warning_for_the_dev_app() {
    let d = tmpdir("scaling-secret");
    let secret = |args: &[&str]| {
        let mut all = vec!["--scaling"];
        all.extend_from_slice(args);
        load_args(&all, d.path()).unwrap()
    };
    let c = secret(&[]);
    assert_eq!(c.scaling.as_ref().unwrap().secret, None);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("RESOUND_SCALING_SECRET")),
        "the development app's key is public: {:?}",
        c.warnings
    );
    let c = secret(&["--scaling-secret", "s3cret-of-the-cluster"]);
    let s = c.scaling.unwrap();
    assert_eq!(s.secret.as_deref(), Some("s3cret-of-the-cluster"));
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("secret: Some(\"***\")"),
        "{shown}"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let file = d.path().join("c.toml");
    std::fs::write(&file, "[server]\nscaling_secret = \"from-the-file\"\n").unwrap();
    let c = secret(&["--config", file.to_str().unwrap()]);
    assert_eq!(c.scaling.unwrap().secret.as_deref(), Some("from-the-file"));
    // Laravel's `null` is no secret: the derived key.
    std::fs::write(d.path().join(".env"), "RESOUND_SCALING_SECRET=null\n").unwrap();
    assert_eq!(secret(&[]).scaling.unwrap().secret, None);
}

#[test]
fn redis_timeout_takes_a_fraction_as_laravels_redis_settings_do() {
    // phpredis and Predis take float timeouts, so a Laravel .env may hold `REDIS_TIMEOUT=2.5`;
    // refusing it would stop a node that Reverb starts with the same .env.
    let d = tmpdir("redis-timeout");
    std::fs::write(d.path().join(".env"), "REDIS_TIMEOUT=2.5\n").unwrap();
    let c = load_args(&["--scaling"], d.path()).unwrap();
    assert_eq!(c.scaling.unwrap().timeout, Duration::from_millis(2500));
    let c = load_args(&["--scaling", "--redis-timeout", "0.5"], d.path()).unwrap();
    assert_eq!(c.scaling.unwrap().timeout, Duration::from_millis(500));
    let e = load_args(&["--scaling", "--redis-timeout", "0"], d.path())
        .unwrap_err()
        .0;
    assert!(
        e.contains("REDIS_TIMEOUT (--redis-timeout)") && e.contains("'0'"),
        "{e}"
    );
}
