//! The serving settings of issue 16: TLS in process, the drain at shutdown and sharing the
//! port with the next process (`SO_REUSEPORT`).

use std::path::PathBuf;
use std::time::Duration;

use super::layers::{place, ConfigError, Layers};
use crate::tls::TlsFiles;

/// `RESOUND_TLS_CERT` and `RESOUND_TLS_KEY`, both or neither; read and checked now so a bad
/// certificate or key stops start-up.
pub(super) fn tls(l: &Layers) -> Result<Option<TlsFiles>, ConfigError> {
    const CERT: &str = "RESOUND_TLS_CERT";
    const KEY: &str = "RESOUND_TLS_KEY";
    let files = match (l.get(CERT), l.get(KEY)) {
        (None, None) => match herd_or_valet(l, std::env::var_os("HOME").map(PathBuf::from))? {
            Some(files) => files,
            None => return Ok(None),
        },
        (Some((cert, _)), Some((key, _))) => TlsFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            poll_every: l.fractional_seconds("RESOUND_TLS_RELOAD_INTERVAL")?,
        },
        (Some((_, origin)), None) => {
            return Err(ConfigError(format!(
                "{} is set but {KEY} is not: TLS needs both the certificate and its key",
                place(CERT, origin)
            )))
        }
        (None, Some((_, origin))) => {
            return Err(ConfigError(format!(
                "{} is set but {CERT} is not: TLS needs both the certificate and its key",
                place(KEY, origin)
            )))
        }
    };
    crate::tls::load(&files).map_err(ConfigError)?;
    Ok(Some(files))
}

/// With no TLS files set, the certificate Laravel Herd or Valet made for the site named by
/// `REVERB_HOST` (or `--hostname`), as `reverb:start` serves it: `{host}.crt` and
/// `{host}.key` in Herd's certificate folder, then in Valet's, under `home`.
pub(super) fn herd_or_valet(
    l: &Layers,
    home: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let (Some((name, _)), Some(home)) = (l.get("REVERB_HOST"), home) else {
        return Ok(None);
    };
    // A URL names its host; anything else is taken as the host itself, as Reverb does.
    let host = match name.split_once("://") {
        Some((_, rest)) => rest.split(['/', ':']).next().unwrap_or(rest),
        None => name.as_str(),
    };
    if host.is_empty() || host.contains(['/', '\\']) {
        return Ok(None);
    }
    let folders = [
        home.join("Library/Application Support/Herd/config/valet/Certificates"),
        home.join(".config/valet/Certificates"),
    ];
    for folder in folders {
        let (cert, key) = (
            folder.join(format!("{host}.crt")),
            folder.join(format!("{host}.key")),
        );
        if cert.is_file() && key.is_file() {
            return Ok(Some(TlsFiles {
                cert,
                key,
                poll_every: l.fractional_seconds("RESOUND_TLS_RELOAD_INTERVAL")?,
            }));
        }
    }
    Ok(None)
}

/// `RESOUND_DRAIN_SECONDS`: 0 closes every connection at once.
pub(super) fn drain(l: &Layers) -> Result<Duration, ConfigError> {
    l.parse(
        "RESOUND_DRAIN_SECONDS",
        "a number of seconds from 0 to 3600, e.g. 10 or 0.5",
        |v| {
            let secs = v.parse::<f64>().ok()?;
            (0.0..=3600.0)
                .contains(&secs)
                .then(|| Duration::from_secs_f64(secs))
        },
    )
}
