//! `PusherError`: every protocol-level failure a connection can meet, with its Pusher code,
//! its exact message text, and whether it ends the connection.
//!
//! The session decides between "send `pusher:error` and carry on" and "send `pusher:error`,
//! then close with the same code" from [`PusherError::close_code`] alone.

use thiserror::Error;

/// A protocol error as seen by a client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum PusherError {
    /// 4001: the key in `/app/{key}` names no configured app.
    #[error("Application does not exist")]
    AppNotFound,
    /// 4003: the app exists but is switched off.
    #[error("Application disabled")]
    AppDisabled,
    /// 4004: the app's `max_connections` is reached.
    #[error("Application is over connection quota")]
    OverQuota,
    /// 4007: a `protocol` query parameter we do not speak.
    #[error("Unsupported protocol version")]
    UnsupportedProtocol,
    /// 4009 at handshake: the Origin header matched none of `allowed_origins`.
    #[error("Origin not allowed")]
    OriginNotAllowed,
    /// 4009: a bad or missing channel signature (Reverb's exact text).
    #[error("Connection is unauthorized")]
    Unauthorized,
    /// 4009: a client event on a channel the sender is not subscribed to.
    #[error("The client is not a member of the specified channel.")]
    NotMember,
    /// 4009: the app terminated this user's connections (HTTP `terminate_connections`).
    #[error("You got disconnected by the app.")]
    Terminated,
    /// 4009: neither signed in nor subscribed to an authorized channel in time.
    #[error("Connection not authorized within timeout")]
    NotAuthorizedInTime,
    /// 4009: a channel name that is empty, too long or has characters outside the allowed set.
    #[error("Invalid channel name {0}")]
    InvalidChannelName(String),
    /// 4009: a presence join would take the channel past `max_presence_members` users.
    #[error("Presence channel is full: at most {0} members")]
    PresenceFull(usize),
    /// 4009: presence `user_info` bigger than `max_user_info_size` bytes.
    #[error("user_info is larger than the {0} bytes allowed")]
    UserInfoTooLarge(usize),
    /// 4200: anything we could not understand (Reverb's catch-all text).
    #[error("Invalid message format")]
    InvalidMessage,
    /// 4200: graceful server shutdown; pusher-js reconnects immediately.
    #[error("Server is shutting down")]
    ShuttingDown,
    /// 4201: the client did not answer our ping in time.
    #[error("Pong reply not received in time")]
    PongTimeout,
    /// 4301: client events are switched off for this app.
    #[error("The app does not have client messaging enabled.")]
    ClientEventsDisabled,
    /// 4301: the message rate limit was hit.
    #[error("Rate limit exceeded")]
    RateLimited,
    /// 4301: more client events than the app's `client_event_rate` per second (Pusher's text).
    #[error("Client event rejected due to rate limit")]
    ClientEventRateLimited,
    /// 4301: client events are not allowed on this kind of channel.
    #[error("Client events are not allowed on channel {0}")]
    ClientEventForbidden(String),
    /// 4301: a client event whose name is longer than the limit (Pusher's 200 by default).
    #[error("Client event name is longer than {0} characters")]
    ClientEventNameTooLong(usize),
    /// 4301: the connection is already subscribed to as many channels as allowed.
    #[error("Too many channels: at most {0} per connection")]
    TooManyChannels(usize),
    /// 4302: more than 100 ids in a sign-in watchlist (the first 100 are kept).
    #[error("Watchlist limit exceeded. Only the first 100 user IDs are accepted.")]
    WatchlistLimit,
}

impl PusherError {
    /// The Pusher error code carried in the `pusher:error` frame.
    pub(crate) fn code(&self) -> u16 {
        use PusherError::*;
        match self {
            AppNotFound => 4001,
            AppDisabled => 4003,
            OverQuota => 4004,
            UnsupportedProtocol => 4007,
            OriginNotAllowed
            | Unauthorized
            | NotMember
            | InvalidChannelName(_)
            | Terminated
            | NotAuthorizedInTime
            | PresenceFull(_)
            | UserInfoTooLarge(_) => 4009,
            InvalidMessage | ShuttingDown => 4200,
            PongTimeout => 4201,
            ClientEventsDisabled
            | RateLimited
            | ClientEventRateLimited
            | ClientEventForbidden(_)
            | ClientEventNameTooLong(_)
            | TooManyChannels(_) => 4301,
            WatchlistLimit => 4302,
        }
    }

    /// The WebSocket close code to end the connection with, or `None` when the connection
    /// must stay open. Errors about a single message never close: pusher-js treats 40xx and
    /// 43xx closes as "refused" and would never reconnect.
    pub(crate) fn close_code(&self) -> Option<u16> {
        use PusherError::*;
        match self {
            AppNotFound | AppDisabled | OverQuota | UnsupportedProtocol | OriginNotAllowed
            | ShuttingDown | PongTimeout | Terminated | NotAuthorizedInTime => Some(self.code()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_close_with_their_code() {
        assert_eq!(PusherError::AppNotFound.close_code(), Some(4001));
        assert_eq!(PusherError::OverQuota.close_code(), Some(4004));
        assert_eq!(PusherError::PongTimeout.close_code(), Some(4201));
    }

    #[test]
    fn message_errors_never_close() {
        for e in [
            PusherError::Unauthorized,
            PusherError::NotMember,
            PusherError::InvalidMessage,
            PusherError::RateLimited,
            PusherError::ClientEventsDisabled,
        ] {
            assert_eq!(e.close_code(), None, "{e:?} must keep the connection open");
        }
    }
}
