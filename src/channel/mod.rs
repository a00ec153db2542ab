//! Channel kinds, decided from the name in exactly one place, and the per-app registry.

pub(crate) mod presence;
pub(crate) mod registry;

use crate::protocol::names::SERVER_TO_USER_PREFIX;

/// What a channel name says about it (docs/protocol.md §2.2; first matching prefix wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelKind {
    /// Subscribing needs a `{socket_id}:{channel}` signature.
    pub private: bool,
    /// Subscribing needs `channel_data`, signed too; members are tracked.
    pub presence: bool,
    /// End-to-end encrypted: payloads opaque, client events refused.
    pub encrypted: bool,
    /// The last event is kept and replayed to new subscribers.
    pub cache: bool,
    /// `#server-to-user-{id}`: only that signed-in user may subscribe.
    pub server_to_user: bool,
}

impl ChannelKind {
    /// The one classifier: every other module asks it.
    pub(crate) fn from_name(name: &str) -> ChannelKind {
        let mut k = ChannelKind {
            private: false,
            presence: false,
            encrypted: false,
            cache: false,
            server_to_user: false,
        };
        if let Some(rest) = name.strip_prefix("private-encrypted-") {
            k.private = true;
            k.encrypted = true;
            k.cache = rest.starts_with("cache-");
        } else if let Some(rest) = name.strip_prefix("private-") {
            k.private = true;
            k.cache = rest.starts_with("cache-");
        } else if let Some(rest) = name.strip_prefix("presence-") {
            k.presence = true;
            k.cache = rest.starts_with("cache-");
        } else if name.starts_with("cache-") {
            k.cache = true;
        } else if name.starts_with(SERVER_TO_USER_PREFIX) {
            k.server_to_user = true;
        }
        k
    }

    /// Needs a signature to subscribe.
    pub(crate) fn needs_auth(&self) -> bool {
        self.private || self.presence
    }

    /// Client events may be relayed here: private and presence channels, and public ones
    /// (`cache-` included) when `public` (Reverb's rule) is on; never encrypted channels (the server
    /// cannot see their content, and pusher-js does not send them) nor a user's own
    /// `#server-to-user-` channel.
    pub(crate) fn allows_client_events(&self, public: bool) -> bool {
        if self.encrypted || self.server_to_user {
            return false;
        }
        self.private || self.presence || public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let k = ChannelKind::from_name;
        assert!(k("private-encrypted-cache-x").encrypted && k("private-encrypted-cache-x").cache);
        assert!(k("private-encrypted-x").encrypted && !k("private-encrypted-x").cache);
        assert!(k("private-cache-x").private && k("private-cache-x").cache);
        assert!(k("presence-cache-x").presence && k("presence-cache-x").cache);
        assert!(k("presence-x").presence && !k("presence-x").private);
        assert!(k("cache-x").cache && !k("cache-x").needs_auth());
        assert!(k("#server-to-user-1").server_to_user);
        assert!(!k("privatefoo").private, "only dashed prefixes count");
        for public in [true, false] {
            assert!(k("private-Rooms.a").allows_client_events(public));
            assert!(k("presence-cache-x").allows_client_events(public));
            assert!(!k("private-encrypted-a").allows_client_events(public));
            assert!(!k("#server-to-user-1").allows_client_events(public));
            assert_eq!(k("public").allows_client_events(public), public);
            assert_eq!(k("cache-x").allows_client_events(public), public);
        }
    }
}
