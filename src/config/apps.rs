//! Per-app settings, read from the layers into `crate::apps::App`.

use std::time::Duration;

use super::layers::{place, ConfigError, Layer, Layers, Origin};
use crate::apps::{App, ClientEvents, RateLimit};

/// Credentials of the development app used when no app is configured anywhere.
pub const DEV_APP: (&str, &str, &str) = ("resound-dev", "resound-dev-key", "resound-dev-secret");

/// `REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM` read as Reverb reads it: unset is
/// config/reverb.php's default, `members`; `null` reaches Reverb as PHP null, which it turns
/// into `all`; `members` and `all` turn client events on, and any other value, the empty one
/// included (Laravel's `env()` returns `X=` as an empty string), turns them off. A value that
/// is not one of the usual ways of saying "off" is probably a typo, so it is named in a
/// startup warning rather than refused: Reverb starts with it.
fn client_events(l: &Layers, app_id: &str, warnings: &mut Vec<String>) -> ClientEvents {
    const NAME: &str = "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM";
    let Some((value, origin)) = l.present(NAME).or_else(|| l.value(NAME)) else {
        return ClientEvents::None;
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

/// Every configured app: the one `primary` describes (flags, environment, the first
/// `[[apps]]` table, `.env`), then one per further table. With none anywhere, the development
/// app, which still honours every app option that is set; the `bool` says it is that one.
pub(super) fn read_apps(
    primary: &Layers,
    more_apps: &[Layer],
    warnings: &mut Vec<String>,
) -> Result<(Vec<App>, bool), ConfigError> {
    let mut apps = Vec::new();
    if let Some(app) = parse_app(primary, warnings)? {
        apps.push(app);
    }
    for table in more_apps {
        let layers = Layers(vec![(table, Origin::File)]);
        apps.push(
            parse_app(&layers, warnings)?.ok_or_else(|| {
                ConfigError("an [[apps]] entry has no app_id, key or secret".into())
            })?,
        );
    }
    check_unique(&apps)?;
    if !apps.is_empty() {
        return Ok((apps, false));
    }
    let dev = App::new(DEV_APP.0, DEV_APP.1, DEV_APP.2);
    Ok((vec![app_options(primary, dev, warnings)?], true))
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
    app.enabled = l.boolean("RESOUND_APP_ENABLED")?;
    app.ping_interval = l.seconds("REVERB_APP_PING_INTERVAL")?;
    app.pong_timeout = l.seconds("RESOUND_APP_PONG_TIMEOUT")?;
    app.activity_timeout = l.positive("REVERB_APP_ACTIVITY_TIMEOUT")? as u64;
    // `null` (Reverb's "unlimited") counts as unset, see `Layers::get`.
    app.max_connections = l.parse_opt(
        "REVERB_APP_MAX_CONNECTIONS",
        "a whole number or null",
        |v| v.parse().ok(),
    )?;
    app.max_message_size = l.positive("REVERB_APP_MAX_MESSAGE_SIZE")?;
    app.allowed_origins = l
        .text("REVERB_APP_ALLOWED_ORIGINS")?
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    app.client_events = client_events(l, &app.id, warnings);
    let authorized_timeout = l.parse(
        "RESOUND_APP_AUTHORIZED_TIMEOUT",
        "0 (off) or seconds up to 31536000",
        |v| v.parse::<u64>().ok().filter(|n| *n <= 31_536_000),
    )?;
    app.authorized_timeout =
        (authorized_timeout > 0).then(|| Duration::from_secs(authorized_timeout));
    app.public_client_events = l.boolean("RESOUND_APP_PUBLIC_CLIENT_EVENTS")?;
    app.subscription_count = l.boolean("RESOUND_APP_SUBSCRIPTION_COUNT")?;
    app.client_event_rate = l
        .number("RESOUND_APP_CLIENT_EVENT_RATE")?
        .min(u32::MAX as usize) as u32;
    app.max_presence_members = l.number("RESOUND_APP_MAX_PRESENCE_MEMBERS")?;
    app.max_user_info_size = l.number("RESOUND_APP_MAX_USER_INFO_SIZE")?;
    app.webhooks = super::webhooks::targets(l, &app.id)?;
    app.rate_limit = match l.boolean("REVERB_APP_RATE_LIMITING_ENABLED")? {
        false => None,
        true => Some(RateLimit {
            max_attempts: l.positive("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS")? as u32,
            decay: l.seconds("REVERB_APP_RATE_LIMIT_DECAY_SECONDS")?,
            terminate: l.boolean("REVERB_APP_RATE_LIMIT_TERMINATE")?,
        }),
    };
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
