//! How a connection ends: the close reasons and every close code resound picks itself. The
//! codes that answer a protocol error come from [`PusherError::close_code`]; the few that are
//! not an error's own are named here, so no other file writes a close code as a number.

use crate::protocol::{server, PusherError};

/// Close code for a client whose outbound queue is full (pusher-js backs off 1 s and
/// reconnects).
pub(crate) const SLOW_CONSUMER: u16 = 4100;
/// Close code when the rate limit terminates a connection (pusher-js backs off, reconnects).
pub(crate) const RATE_LIMITED: u16 = 4100;
/// Close code and text for a message over `max_message_size` (as Reverb).
pub(crate) const MESSAGE_TOO_BIG: (u16, &str) = (1009, "Maximum message size exceeded");

/// How the writer ends the connection.
#[derive(Debug, Clone)]
pub(crate) struct CloseReason {
    /// A frame written just before the close frame (usually a `pusher:error`).
    pub last_frame: Option<String>,
    /// Close code and reason; `None` closes without a code (the client closed first).
    pub code: Option<(u16, String)>,
    /// Deliver what is already queued before closing (not for a client that is too slow).
    pub flush_queue: bool,
    /// The Pusher code of the error in `last_frame`, if it is a `pusher:error`.
    pub error_code: Option<u16>,
}

impl CloseReason {
    /// `pusher:error` for `err`, then a close frame with the error's own close code (its
    /// Pusher code when it has none), after what is queued.
    pub(crate) fn for_error(err: &PusherError) -> CloseReason {
        let code = err.close_code().unwrap_or(err.code());
        CloseReason::with_code(err, code)
    }

    /// `pusher:error` for `err`, then a close frame with `code`, after what is queued.
    pub(crate) fn with_code(err: &PusherError, code: u16) -> CloseReason {
        CloseReason {
            last_frame: Some(server::error(err)),
            code: Some((code, err.to_string())),
            flush_queue: true,
            error_code: Some(err.code()),
        }
    }

    /// A close frame with `code` and `text` and no `pusher:error` before it.
    pub(crate) fn bare(code: u16, text: &str, flush_queue: bool) -> CloseReason {
        CloseReason {
            last_frame: None,
            code: Some((code, text.to_owned())),
            flush_queue,
            error_code: None,
        }
    }

    /// No close frame: the client closed first, or the socket failed (`flush_queue` false:
    /// nothing more can be written).
    pub(crate) fn silent(flush_queue: bool) -> CloseReason {
        CloseReason {
            last_frame: None,
            code: None,
            flush_queue,
            error_code: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_close_with_their_own_code() {
        let r = CloseReason::for_error(&PusherError::ShuttingDown);
        assert_eq!(r.code.as_ref().unwrap().0, 4200);
        let r = CloseReason::for_error(&PusherError::Terminated);
        assert_eq!(r.code.unwrap().0, 4009);
        assert!(r.last_frame.unwrap().contains("4009"));
        let r = CloseReason::with_code(&PusherError::RateLimited, RATE_LIMITED);
        assert_eq!(r.code.unwrap().0, 4100);
    }
}
