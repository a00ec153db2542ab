//! Console logins: checking an app's secret (or the console token) in constant time, and the
//! sessions they open. A session is a random token the browser keeps in an `HttpOnly`,
//! `SameSite=Strict` cookie; the server keeps only its SHA-256 and the app it is for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngCore;
use sha2::digest::CtOutput;
use sha2::{Digest, Sha256};

/// The cookie that carries a session.
pub(super) const COOKIE: &str = "resound_console";
/// How long a session lasts from its login.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once; a login past it evicts the one closest to expiring.
const MAX_SESSIONS: usize = 1024;

/// True when `given` is `expected`, compared in time that depends on neither (both are hashed
/// first, and the digests compared with the digest crate's constant-time equality).
pub(super) fn same_secret(given: &str, expected: &str) -> bool {
    let digest = |s: &str| CtOutput::<Sha256>::new(Sha256::digest(s.as_bytes()));
    digest(given) == digest(expected)
}

struct Session {
    app_id: String,
    expires: Instant,
}

type TokenHash = [u8; 32];

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The open sessions.
#[derive(Default)]
pub(super) struct Sessions(Mutex<HashMap<TokenHash, Session>>);

impl Sessions {
    /// Opens a session for `app_id`; returns its token (64 hex digits).
    pub(super) fn open(&self, app_id: &str) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let now = Instant::now();
        let mut map = self.0.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            let soonest = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            if let Some(k) = soonest {
                map.remove(&k);
            }
        }
        map.insert(
            hash(&token),
            Session {
                app_id: app_id.to_owned(),
                expires: now + SESSION_TTL,
            },
        );
        token
    }

    /// The app of the live session `token`, if it is one.
    pub(super) fn app_of(&self, token: &str) -> Option<String> {
        let key = hash(token);
        let mut map = self.0.lock();
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.app_id.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends session `token`.
    pub(super) fn close(&self, token: &str) {
        self.0.lock().remove(&hash(token));
    }
}

/// The session token in a `Cookie` header's value, if it carries one.
pub(super) fn token_in(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_exactly() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cre"));
        assert!(!same_secret("s3cret\0", "s3cret"));
        assert!(!same_secret("", "s3cret"));
    }

    #[test]
    fn sessions_open_check_and_close() {
        let s = Sessions::default();
        let t = s.open("42");
        assert_eq!(t.len(), 64);
        assert_eq!(s.app_of(&t).as_deref(), Some("42"));
        assert_eq!(s.app_of("not-a-token"), None);
        assert_ne!(s.open("42"), t, "each login gets its own token");
        s.close(&t);
        assert_eq!(s.app_of(&t), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(token_in("a=1; resound_console=abc; b=2"), Some("abc"));
        assert_eq!(token_in("resound_console="), None);
        assert_eq!(token_in("other=x"), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let mut last = String::new();
        for _ in 0..MAX_SESSIONS + 5 {
            last = s.open("1");
        }
        assert_eq!(s.0.lock().len(), MAX_SESSIONS);
        assert_eq!(s.app_of(&last).as_deref(), Some("1"), "the newest is kept");
    }
}
