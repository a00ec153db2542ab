//! Per-app settings as Reverb reads them.

use super::{load_args, tmpdir};
use crate::config::DEV_APP;

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
        let (mode, warnings) = from_dotenv(&format!("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM={off}"));
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
fn webhook_targets_from_flags_and_from_the_config_file() {
    use crate::apps::WebhookTarget;
    let d = tmpdir("webhooks");
    let c = load_args(
        &[
            "--webhook-url",
            "http://127.0.0.1:9000/pusher/webhooks",
            "--webhook-events",
            "channel_occupied, member_added",
        ],
        d.path(),
    )
    .unwrap();
    assert_eq!(
        c.apps[0].webhooks,
        [WebhookTarget {
            url: "http://127.0.0.1:9000/pusher/webhooks".into(),
            events: vec!["channel_occupied".into(), "member_added".into()],
            headers: Vec::new(),
        }]
    );
    assert!(c.apps[0].webhooks[0].wants("member_added"));
    assert!(!c.apps[0].webhooks[0].wants("client_event"));
    let file = d.path().join("hooks.toml");
    std::fs::write(
        &file,
        r#"
[server]
webhook_batch_size = 1
webhook_leave_delay = 0.5

[[apps]]
app_id = "1"
key = "k1"
secret = "s1"
webhook_url = "https://example.com/all"

[[apps.webhooks]]
url = "http://hooks.internal/pusher"
events = ["client_event"]
headers = { Authorization = "Bearer t" }

[[apps.webhooks]]
url = "http://hooks.internal/other"
events = "cache_miss,subscription_count"
"#,
    )
    .unwrap();
    let c = load_args(&["--config", file.to_str().unwrap()], d.path()).unwrap();
    let hooks = &c.apps[0].webhooks;
    assert_eq!(hooks.len(), 3);
    assert_eq!(
        (hooks[0].url.as_str(), hooks[0].events.len()),
        ("https://example.com/all", 0)
    );
    assert_eq!(
        hooks[1].headers,
        [("Authorization".into(), "Bearer t".into())]
    );
    assert_eq!(hooks[1].events, ["client_event"]);
    assert_eq!(hooks[2].events, ["cache_miss", "subscription_count"]);
    assert_eq!(c.webhooks.batch_size, 1);
    assert_eq!(
        c.webhooks.leave_delay,
        std::time::Duration::from_millis(500)
    );

    // Mistakes are refused at start-up, naming what is wrong.
    for (args, says) in [
        (vec!["--webhook-url", "ftp://x/y"], "http:// or https://"),
        (
            vec![
                "--webhook-url",
                "http://x/",
                "--webhook-events",
                "channel_created",
            ],
            "unknown event 'channel_created'",
        ),
        (
            vec!["--webhook-events", "cache_miss"],
            "RESOUND_APP_WEBHOOK_URL is not",
        ),
        (
            vec![
                "--webhooks",
                r#"[{"url":"http://x/","headers":{"X-Pusher-Key":"k"}}]"#,
            ],
            "set by the server",
        ),
        (
            vec!["--webhooks", r#"[{"uri":"http://x/"}]"#],
            "invalid webhooks",
        ),
        (
            vec!["--webhook-batch-size", "0"],
            "RESOUND_WEBHOOK_BATCH_SIZE",
        ),
        (
            vec!["--webhook-ca-file", "/nonexistent/ca.pem"],
            "RESOUND_WEBHOOK_CA_FILE",
        ),
        (
            vec!["--webhook-url", "https://hooks:s3cr3t-pw@x.example/in"],
            "credentials in the URL are not supported",
        ),
        (
            vec!["--webhook-url", "ftp://x.example/in?token=s3cr3t-pw"],
            "expected an http:// or https:// URL",
        ),
    ] {
        let e = load_args(&args, d.path()).unwrap_err();
        assert!(e.0.contains(says), "{args:?}: {e}");
        assert!(!e.0.contains("s3cr3t-pw"), "the error shows a secret: {e}");
    }
}

#[test]
fn webhook_defaults_are_the_documented_ones() {
    use std::time::Duration;
    let w = crate::config::Config::default().webhooks;
    assert_eq!(
        w,
        crate::config::WebhookSettings {
            batch_size: 50,
            batch_delay: Duration::from_millis(100),
            leave_delay: Duration::from_secs(3),
            retry_window: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
            queue: 10_000,
            ca: None,
        }
    );
}

#[test]
fn the_env_apps_webhook_from_dotenv_and_an_empty_event_list_is_every_event() {
    let d = tmpdir("webhooks-dotenv");
    std::fs::write(
        d.path().join(".env"),
        "RESOUND_APP_WEBHOOK_URL=http://127.0.0.1:9000/hooks\nRESOUND_APP_WEBHOOK_EVENTS=\n",
    )
    .unwrap();
    let c = load_args(&[], d.path()).unwrap();
    let hooks = &c.apps[0].webhooks;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].url, "http://127.0.0.1:9000/hooks");
    for name in crate::apps::WEBHOOK_EVENTS {
        assert!(hooks[0].wants(name), "{name}");
    }
    std::fs::write(
        d.path().join(".env"),
        "RESOUND_APP_WEBHOOK_URL=http://127.0.0.1:9000/hooks\nRESOUND_APP_WEBHOOK_EVENTS=member_added,member_removed\n",
    )
    .unwrap();
    let c = load_args(&[], d.path()).unwrap();
    assert_eq!(
        c.apps[0].webhooks[0].events,
        ["member_added", "member_removed"]
    );
    assert!(!c.apps[0].webhooks[0].wants("channel_occupied"));
}
