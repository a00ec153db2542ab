//! Where values come from: flags and environment (clap), the TOML config file and `./.env`,
//! stacked in precedence order, with each value's origin kept for error messages.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use clap::{Arg, ArgMatches, Command};

use super::settings::{self, Setting, SETTINGS};

/// A setting that could not be accepted: names the field and the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

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
                .global(true)
                .env("RESOUND_CONFIG")
                .value_name("FILE")
                .help("TOML config file (server settings and any number of [[apps]])"),
        )
        .arg(
            Arg::new("debug")
                .long("debug")
                .global(true)
                .env("RESOUND_DEBUG")
                .action(clap::ArgAction::SetTrue)
                .help("Log every connection, subscription and message"),
        )
        .subcommand(Command::new("health").about(
            "Ask the server this configuration describes for /up (over TLS when configured): \
             exit 0 when it answers 200, 1 otherwise",
        ));
    for st in SETTINGS {
        cmd = cmd.arg(setting_arg(st));
    }
    cmd
}

/// One setting's flag, bound to its variable. A boolean's flag may be given bare, as
/// `--debug` is, meaning true; `--scaling=false` and `--scaling false` still say false.
fn setting_arg(st: &Setting) -> Arg {
    // Global, so `resound health --port 9000` takes the server's flags too.
    let arg = Arg::new(st.env)
        .long(st.flag)
        .env(st.env)
        .global(true)
        .help(st.help_line());
    if st.boolean {
        arg.value_name("BOOL")
            .num_args(0..=1)
            .default_missing_value("true")
    } else {
        arg.value_name("VALUE")
    }
}

/// The flags and environment variables clap found, keyed by variable name.
pub(super) fn from_matches(matches: &ArgMatches) -> Layer {
    SETTINGS
        .iter()
        .filter_map(|st| {
            let value = matches.get_one::<String>(st.env)?;
            Some((st.env.to_owned(), value.clone()))
        })
        .collect()
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy, Default)]
pub(super) enum Origin {
    Cli,
    File,
    DotEnv,
    /// The settings table's default.
    #[default]
    Default,
}

pub(super) type Layer = HashMap<String, String>;

/// `v` without one pair of matching surrounding quotes, as Laravel's `env()` reads a value;
/// the config file's values as they are.
fn unquote(v: &str, origin: Origin) -> &str {
    let b = v.as_bytes();
    let quoted = b.len() >= 2 && matches!(b[0], b'"' | b'\'') && b[b.len() - 1] == b[0];
    if quoted && !matches!(origin, Origin::File) {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// The sources of one app's (and the server's) settings, highest precedence first; below
/// them all sits the settings table's default.
pub(super) struct Layers<'a>(pub(super) Vec<(&'a Layer, Origin)>);

impl Layers<'_> {
    /// The first layer's value; an empty value (`X=`) counts as unset there. As Laravel's
    /// `env()` reads them, `null`/`(null)`/`empty`/`(empty)` mean unset (a Laravel `.env` has
    /// `REDIS_PASSWORD=null`) and hide the lower layers, and `(true)`/`(false)` are booleans.
    /// Laravel's `env()` also drops one pair of matching quotes around a value (a variable
    /// set to `"8080"` by `docker run --env-file` or Compose reads as `8080`); the config
    /// file's values are TOML and keep theirs.
    pub(super) fn get(&self, name: &str) -> Option<(String, Origin)> {
        let (raw, v, origin) = self.0.iter().find_map(|(layer, origin)| {
            let raw = layer.get(name)?.trim();
            let v = unquote(raw, *origin);
            (!v.is_empty()).then_some((raw, v, *origin))
        })?;
        match raw.to_ascii_lowercase().as_str() {
            "null" | "(null)" | "empty" | "(empty)" => None,
            "(true)" => Some(("true".to_owned(), origin)),
            "(false)" => Some(("false".to_owned(), origin)),
            _ => Some((v.to_owned(), origin)),
        }
    }

    /// The first layer that names `name` at all, with its trimmed value even when that is
    /// empty: for the one setting where Laravel's `X=` (an empty string) means something.
    pub(super) fn present(&self, name: &str) -> Option<(String, Origin)> {
        self.0.iter().find_map(|(layer, origin)| {
            let v = unquote(layer.get(name)?.trim(), *origin);
            Some((v.to_owned(), *origin))
        })
    }

    /// `get`, or else the settings table's default (`None` only for a setting whose default
    /// is no value).
    pub(super) fn value(&self, name: &str) -> Option<(String, Origin)> {
        self.get(name).or_else(|| {
            let default = settings::find(name)?.default.value()?;
            Some((default.to_owned(), Origin::Default))
        })
    }

    /// The value (or default) through `f`; `None` when there is neither.
    pub(super) fn parse_opt<T>(
        &self,
        name: &str,
        expected: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.value(name) {
            None => Ok(None),
            Some((v, origin)) => f(&v)
                .map(Some)
                .ok_or_else(|| bad(name, &v, origin, expected)),
        }
    }

    /// The value (or default) through `f`, for a setting whose default is a value.
    pub(super) fn parse<T>(
        &self,
        name: &str,
        expected: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        self.parse_opt(name, expected, f)?
            .ok_or_else(|| ConfigError(format!("{name} is not set and has no default")))
    }

    pub(super) fn text(&self, name: &str) -> Result<String, ConfigError> {
        self.parse(name, "text", |v| Some(v.to_owned()))
    }

    pub(super) fn number(&self, name: &str) -> Result<usize, ConfigError> {
        self.parse(name, "a whole number", |v| v.parse().ok())
    }

    pub(super) fn positive(&self, name: &str) -> Result<usize, ConfigError> {
        self.parse(name, "a whole number above 0", |v| {
            v.parse().ok().filter(|n| *n > 0)
        })
    }

    /// A positive number of seconds, at most a year (larger values are typos, and would
    /// overflow timer arithmetic).
    pub(super) fn seconds(&self, name: &str) -> Result<Duration, ConfigError> {
        self.parse(name, "a whole number of seconds from 1 to 31536000", |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=31_536_000).contains(n))
                .map(Duration::from_secs)
        })
    }

    /// Like `seconds`, but with an optional fraction (`0.2`), for timings tests shorten.
    pub(super) fn fractional_seconds(&self, name: &str) -> Result<Duration, ConfigError> {
        let expected = "a number of seconds above 0 and up to 31536000, e.g. 3 or 0.5";
        self.parse(name, expected, |v| {
            let secs = v.parse::<f64>().ok()?;
            let duration =
                (secs > 0.0 && secs <= 31_536_000.0).then(|| Duration::from_secs_f64(secs))?;
            (!duration.is_zero()).then_some(duration)
        })
    }

    pub(super) fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
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
pub(super) fn place(name: &str, origin: Origin) -> String {
    match (origin, settings::find(name)) {
        (Origin::Cli, Some(st)) => format!("{name} (--{})", st.flag),
        (Origin::File, Some(st)) => format!("{} in the config file", st.file_key),
        (Origin::DotEnv, _) => format!("{name} in .env"),
        (Origin::Default, _) => format!("the default of {name}"),
        _ => name.to_owned(),
    }
}

pub(super) fn bad(name: &str, value: &str, origin: Origin, expected: &str) -> ConfigError {
    ConfigError(format!(
        "invalid value '{value}' for {}: expected {expected}",
        place(name, origin)
    ))
}

/// Reads the TOML file into the server layer and one layer per `[[apps]]` entry, keyed by
/// variable name. Unknown keys are errors, so a typo never goes unnoticed.
pub(super) fn read_config_file(path: &Path) -> Result<(Layer, Vec<Layer>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "invalid value '{}' for --config: {e}",
            path.display()
        ))
    })?;
    config_file_layers(&text, path)
}

/// The config file's `text` as layers (see [`read_config_file`]); `path` is for messages.
pub(super) fn config_file_layers(
    text: &str,
    path: &Path,
) -> Result<(Layer, Vec<Layer>), ConfigError> {
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
            // An array of tables (`[[apps.webhooks]]`) is read as JSON by its setting.
            toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
                serde_json::to_string(items).map_err(|e| ConfigError(format!("{key}: {e}")))?
            }
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
/// environment, as Laravel reads the file (see `dotenv.rs`). A missing file is fine.
pub(super) fn read_dotenv(path: &Path) -> Result<Layer, ConfigError> {
    if !path.is_file() {
        return Ok(Layer::new());
    }
    let file = std::fs::File::open(path)
        .map_err(|e| ConfigError(format!("invalid .env file '{}': {e}", path.display())))?;
    dotenv_layer(file, path)
}

/// The `.env` lines `reader` gives as a layer (see [`read_dotenv`]); `path` is for messages.
pub(super) fn dotenv_layer(
    mut reader: impl std::io::Read,
    path: &Path,
) -> Result<Layer, ConfigError> {
    let bad = |e: String| ConfigError(format!("invalid .env file '{}': {e}", path.display()));
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    // Laravel reads a file saved in another encoding (an `APP_NAME=Café` in Latin-1), its
    // stray bytes replaced; so does resound, rather than refusing to start.
    let text = String::from_utf8_lossy(&bytes);
    let values = super::dotenv::parse(&text, |name| std::env::var(name).ok()).map_err(bad)?;
    Ok(values
        .into_iter()
        .filter(|(k, _)| SETTINGS.iter().any(|s| s.env == k))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::settings::Fallback::{DevApp, Unset, Value};
    use super::*;

    fn flag_value(args: &[&str], env: &str) -> Result<Option<String>, clap::Error> {
        let argv = std::iter::once("resound").chain(args.iter().copied());
        let m = command().try_get_matches_from(argv)?;
        Ok(m.get_one::<String>(env).cloned())
    }

    #[test]
    fn boolean_flags_may_be_bare_and_others_need_a_value() {
        for st in SETTINGS {
            let bare = flag_value(&[&format!("--{}", st.flag)], st.env);
            if st.boolean {
                assert_eq!(bare.unwrap().as_deref(), Some("true"), "--{}", st.flag);
                let off = flag_value(&[&format!("--{}=false", st.flag)], st.env);
                assert_eq!(
                    off.unwrap().as_deref(),
                    Some("false"),
                    "--{}=false",
                    st.flag
                );
            } else {
                assert!(bare.is_err(), "--{} without a value", st.flag);
            }
        }
        // A bare flag does not swallow the next flag, and the spaced form still takes a value.
        let m = command()
            .try_get_matches_from(["resound", "--scaling", "--scaling-channel", "c"])
            .unwrap();
        assert_eq!(
            m.get_one::<String>("REVERB_SCALING_ENABLED").unwrap(),
            "true"
        );
        assert_eq!(m.get_one::<String>("REVERB_SCALING_CHANNEL").unwrap(), "c");
        let off = flag_value(
            &["--rate-limiting", "false"],
            "REVERB_APP_RATE_LIMITING_ENABLED",
        );
        assert_eq!(off.unwrap().as_deref(), Some("false"));
        let e = command()
            .try_get_matches_from(["resound", "--port"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{e}");
    }

    /// The variable form is untouched by the bare-flag support: clap hands its text over as
    /// it is. A made-up variable, so no other test sees it.
    #[test]
    fn boolean_variables_still_take_true_and_false() {
        let name = format!("RESOUND_TEST_BARE_BOOLEAN_{}", std::process::id());
        let name: &'static str = Box::leak(name.into_boxed_str());
        let st = Setting {
            env: name,
            ..*settings::find("REVERB_SCALING_ENABLED").unwrap()
        };
        for value in ["true", "false"] {
            std::env::set_var(name, value);
            let m = Command::new("t")
                .arg(setting_arg(&st))
                .try_get_matches_from(["t"])
                .unwrap();
            assert_eq!(m.get_one::<String>(name).unwrap(), value);
        }
        std::env::remove_var(name);
    }

    #[test]
    fn every_help_line_shows_the_default_loading_uses() {
        let cmd = command();
        for st in SETTINGS {
            let arg = cmd.get_arguments().find(|a| a.get_id() == st.env).unwrap();
            let help = arg.get_help().unwrap().to_string();
            let shown = match st.default {
                Value(v) | DevApp { value: v, .. } => format!("[default: {v}"),
                Unset(text) => format!("[default: {text}]"),
            };
            assert!(help.contains(&shown), "{}: {help}", st.env);
        }
        let help = cmd.clone().render_help().to_string();
        assert!(help.contains("[default: 1024]"), "{help}");
        assert!(help.contains("[default: 0.0.0.0; 127.0.0.1 with the development app]"));
    }
}
