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
        (None, None) => return Ok(None),
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
