//! `SocketId`: the `"123456789.987654321"` identity of one connection.

use std::fmt;

/// Two random numbers in `1..=999_999_999`, shown as `"{a}.{b}"` (the form the SDKs check).
/// Kept as one integer so comparisons on the fan-out path cost nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u64);

const MAX_PART: u32 = 999_999_999;

impl SocketId {
    /// A fresh random id (uniqueness is checked by the caller against live connections).
    pub(crate) fn random() -> SocketId {
        let a = rand::random_range(1..=MAX_PART);
        let b = rand::random_range(1..=MAX_PART);
        SocketId(((a as u64) << 32) | b as u64)
    }

    /// Parses `"{a}.{b}"`; anything else (including ids this server cannot have issued) is `None`.
    pub(crate) fn parse(s: &str) -> Option<SocketId> {
        let (a, b) = s.split_once('.')?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 10 && p.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return None;
        }
        Some(SocketId(
            ((a.parse::<u32>().ok()? as u64) << 32) | b.parse::<u32>().ok()? as u64,
        ))
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::names::is_valid_socket_id;

    #[test]
    fn random_ids_have_the_sdk_form_and_round_trip() {
        for _ in 0..1000 {
            let id = SocketId::random();
            let s = id.to_string();
            assert!(is_valid_socket_id(&s), "{s}");
            assert_eq!(SocketId::parse(&s), Some(id));
        }
    }

    #[test]
    fn parse_rejects_other_forms() {
        for bad in ["", "1", "a.b", "1.2.3", "99999999999.1", "1.-2"] {
            assert_eq!(SocketId::parse(bad), None, "{bad}");
        }
    }
}
