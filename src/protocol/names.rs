//! Name rules for channels and events (docs/protocol.md §2.1 and §8).

/// Longest channel name accepted (the Node and Python SDKs allow 200; Pusher's docs say 164).
pub(crate) const MAX_CHANNEL_NAME: usize = 200;
/// The one `#` channel family that exists.
pub(crate) const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// Why a channel name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameError {
    Empty,
    TooLong,
    BadCharacter,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameError::Empty => "is empty",
            NameError::TooLong => "is longer than 200 characters",
            NameError::BadCharacter => "may only contain A-Z, a-z, 0-9 and _ - = @ , . ;",
        })
    }
}

/// Checks a channel name: 1 to 200 characters out of `A-Za-z0-9_-=@,.;`, with `#` allowed
/// only as the `#server-to-user-` prefix.
pub(crate) fn validate_channel_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_CHANNEL_NAME {
        return Err(NameError::TooLong);
    }
    let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
    if body.is_empty() || !body.bytes().all(is_channel_byte) {
        return Err(NameError::BadCharacter);
    }
    Ok(())
}

fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// Characters of a refused name that an error message repeats.
const EXCERPT_CHARS: usize = 32;

/// A refused name as an error message shows it: at most [`EXCERPT_CHARS`] characters with
/// control characters as `?`, and the full length when cut. An error reply never grows with
/// what the client sent (the reply is queued for a client that may not be reading).
pub(crate) fn excerpt(name: &str) -> String {
    let shown: String = name
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    match name.chars().nth(EXCERPT_CHARS) {
        None => shown,
        Some(_) => format!("{shown}… ({} bytes)", name.len()),
    }
}

/// Whether an event name is longer than `max` characters (characters, not bytes, as the SDKs
/// count them; the byte length is an upper bound, so most names are never counted).
pub(crate) fn is_event_name_too_long(name: &str, max: usize) -> bool {
    name.len() > max && name.chars().count() > max
}

/// A socket id as the SDKs produce and check it: digits, one dot, digits.
pub(crate) fn is_valid_socket_id(s: &str) -> bool {
    match s.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_stay_short_whatever_the_name() {
        assert_eq!(excerpt("private-x"), "private-x");
        assert_eq!(excerpt("a\u{7f}b"), "a?b");
        let long = "\u{7f}".repeat(9_950);
        let e = excerpt(&long);
        assert!(e.len() < 60, "{e}");
        assert!(e.ends_with("(9950 bytes)"), "{e}");
    }

    #[test]
    fn channel_names() {
        for ok in [
            "a",
            "private-Rooms.my-room",
            "presence-x_y=z@a,b;c",
            "#server-to-user-42",
            &"a".repeat(200),
        ] {
            assert_eq!(validate_channel_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_channel_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_channel_name(&"a".repeat(201)),
            Err(NameError::TooLong)
        );
        for bad in ["a b", "a/b", "#foo", "ü", "a:b", "#server-to-user-"] {
            assert_eq!(
                validate_channel_name(bad),
                Err(NameError::BadCharacter),
                "{bad}"
            );
        }
    }

    #[test]
    fn event_names_are_counted_in_characters() {
        assert!(!is_event_name_too_long(&"a".repeat(200), 200));
        assert!(is_event_name_too_long(&"a".repeat(201), 200));
        // 200 two-byte characters: 400 bytes, still 200 characters.
        assert!(!is_event_name_too_long(&"é".repeat(200), 200));
        assert!(is_event_name_too_long(&"é".repeat(201), 200));
    }

    #[test]
    fn socket_ids() {
        assert!(is_valid_socket_id("734123587.198273645"));
        for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "1.2 "] {
            assert!(!is_valid_socket_id(bad), "{bad}");
        }
    }
}
