//! `Console`: the live debug console's settings (`RESOUND_CONSOLE_*`).

use super::layers::{ConfigError, Layers};

/// The debug console, when enabled.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Console {
    /// `RESOUND_CONSOLE_TOKEN`: a login accepted for any app instead of its secret.
    pub token: Option<String>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The console's settings, `None` unless `RESOUND_CONSOLE_ENABLED` is true.
pub(super) fn read(l: &Layers) -> Result<Option<Console>, ConfigError> {
    if !l.boolean("RESOUND_CONSOLE_ENABLED")? {
        return Ok(None);
    }
    let token = l.get("RESOUND_CONSOLE_TOKEN").map(|(v, _)| v);
    Ok(Some(Console { token }))
}
