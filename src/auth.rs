//! Signatures: the strings to sign and HMAC-SHA256 signing and verification for channel
//! auth, user sign-in and HTTP API requests.
//!
//! Pure functions: they take the secret and the exact bytes, do no lookups, and compare with
//! the MAC's constant-time check, never with `==`.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length")
}

/// Lower-case hex HMAC-SHA256 of `message` under `secret`.
pub fn sign(secret: &str, message: &str) -> String {
    let mut m = mac(secret);
    m.update(message.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Constant-time check that `signature_hex` is the HMAC of `message` under `secret`.
/// (Hex digits of either case.)
pub fn verify(secret: &str, message: &str, signature_hex: &str) -> bool {
    let mut sig = [0u8; 32];
    if hex::decode_to_slice(signature_hex, &mut sig).is_err() {
        return false;
    }
    let mut m = mac(secret);
    m.update(message.as_bytes());
    m.verify_slice(&sig).is_ok()
}

/// The string a channel subscription signs: `{socket_id}:{channel}` plus `:{channel_data}`
/// for presence channels, `channel_data` byte for byte as received.
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string a user sign-in signs.
pub fn signin_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Verifies an auth string `"{app_key}:{hex}"` as sent in `pusher:subscribe` or
/// `pusher:signin`. The key part must be this app's key.
pub fn verify_auth_token(app_key: &str, secret: &str, string_to_sign: &str, auth: &str) -> bool {
    match auth.split_once(':') {
        Some((key, sig)) if key == app_key => verify(secret, string_to_sign, sig),
        _ => false,
    }
}

/// Lower-case hex MD5, as the SDKs send in `body_md5`.
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Whether `md5_hex` (either case) is the MD5 of `body`: compared as bytes, without
/// formatting the digest.
pub fn md5_matches(body: &[u8], md5_hex: &str) -> bool {
    let mut given = [0u8; 16];
    hex::decode_to_slice(md5_hex, &mut given).is_ok() && given[..] == Md5::digest(body)[..]
}

/// The HTTP API string to sign: method, path, and every query parameter except
/// `auth_signature`, names lower-cased, sorted by name, joined `name=value` with `&`,
/// values not re-escaped (`params` must already be percent-decoded).
pub fn api_string_to_sign<K, V>(method: &str, path: &str, params: &[(K, V)]) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut sorted: Vec<(Cow<'_, str>, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != "auth_signature")
        .map(|(k, v)| {
            let k = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(k.to_ascii_lowercase())
            } else {
                Cow::Borrowed(k)
            };
            (k, v)
        })
        .collect();
    sorted.sort_unstable();
    let len = sorted
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = String::with_capacity(method.len() + path.len() + 2 + len);
    out.extend(method.chars().map(|c| c.to_ascii_uppercase()));
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_KEY: &str = "278d425bdf160c739803";
    const A_SECRET: &str = "7ad3773142a6692b25b8";
    const B_KEY: &str = "q7h2x9v4m1n8b3c6z5k0";
    const B_SECRET: &str = "w3e8r1t6y9u4i2o7p5a0";
    const B_SOCKET: &str = "734123587.198273645";

    fn token(key: &str, secret: &str, s: &str) -> String {
        format!("{key}:{}", sign(secret, s))
    }

    #[test]
    fn t1_private_channel() {
        let s = channel_string_to_sign("1234.1234", "private-foobar", None);
        let expected =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(token(A_KEY, A_SECRET, &s), expected);
        assert!(verify_auth_token(A_KEY, A_SECRET, &s, expected));
    }

    #[test]
    fn t2_presence_docs_data() {
        let s = channel_string_to_sign(
            "1234.1234",
            "presence-foobar",
            Some(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#),
        );
        assert_eq!(
            token(A_KEY, A_SECRET, &s),
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    #[test]
    fn t3_presence_laravel_shape() {
        let s = channel_string_to_sign(
            B_SOCKET,
            "presence-Rooms.lobby",
            Some(r#"{"user_id":"1","user_info":{"id":1,"name":"Taylor"}}"#),
        );
        let t =
            "q7h2x9v4m1n8b3c6z5k0:09f6dd63fa0dd12cbe6073a66ba548ccee25ac8bf30e504e517ed80c606ba53d";
        assert!(verify_auth_token(B_KEY, B_SECRET, &s, t));
    }

    #[test]
    fn t4_php_escaped_slashes_are_signed_verbatim() {
        let data = r#"{"user_id":"7","user_info":{"avatar":"https:\/\/example.com\/a.png"}}"#;
        let s = channel_string_to_sign(B_SOCKET, "presence-Rooms.lobby", Some(data));
        let good =
            "q7h2x9v4m1n8b3c6z5k0:800b546f180335f11f35114a17c4113c5ed1c0c56bd6f55e288c40f6d6d33621";
        let reserialized =
            "q7h2x9v4m1n8b3c6z5k0:1a166fcc9cdc215f4d52d677c31551046aac64f952c077763bb849027d8658f1";
        assert!(verify_auth_token(B_KEY, B_SECRET, &s, good));
        assert!(!verify_auth_token(B_KEY, B_SECRET, &s, reserialized));
    }

    #[test]
    fn t5_python_spacing() {
        let data = r#"{"user_id": "1", "user_info": {"id": 1, "name": "Taylor"}}"#;
        let s = channel_string_to_sign(B_SOCKET, "presence-Rooms.lobby", Some(data));
        let t =
            "q7h2x9v4m1n8b3c6z5k0:98ad044c165f398835e7047a2381f1e6ade8e9754f1dfb3b87a1fc863076b687";
        assert!(verify_auth_token(B_KEY, B_SECRET, &s, t));
    }

    #[test]
    fn t6_t7_signin() {
        let s = signin_string_to_sign("1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            token(A_KEY, A_SECRET, &s),
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        let s = signin_string_to_sign(
            B_SOCKET,
            r#"{"id":"42","user_info":{"name":"Ada"},"watchlist":["7","9"]}"#,
        );
        assert_eq!(
            token(B_KEY, B_SECRET, &s),
            "q7h2x9v4m1n8b3c6z5k0:412e18ac5fb1201a3bdf81595ec7329fe21a32f4bbfa5e27bdc87e5811fede87"
        );
    }

    #[test]
    fn t17_encrypted_channel_uses_the_private_rule() {
        let s = channel_string_to_sign(B_SOCKET, "private-encrypted-Rooms.vault", None);
        let t =
            "q7h2x9v4m1n8b3c6z5k0:9bef3132f4dae44ee9fad9d6168d87c03a2be3ebc442952bc95eefaef3430933";
        assert!(verify_auth_token(B_KEY, B_SECRET, &s, t));
    }

    #[test]
    fn wrong_key_part_bad_hex_and_other_socket_fail() {
        let s = channel_string_to_sign("1234.1234", "private-foobar", None);
        let sig = sign(A_SECRET, &s);
        assert!(!verify_auth_token(
            A_KEY,
            A_SECRET,
            &s,
            &format!("otherkey:{sig}")
        ));
        assert!(!verify_auth_token(
            A_KEY,
            A_SECRET,
            &s,
            "278d425bdf160c739803:zz"
        ));
        assert!(!verify_auth_token(A_KEY, A_SECRET, &s, &sig));
        let other = channel_string_to_sign("1234.1235", "private-foobar", None);
        assert!(!verify_auth_token(
            A_KEY,
            A_SECRET,
            &other,
            &format!("{A_KEY}:{sig}")
        ));
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn t8_docs_events() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(md5_hex(body.as_bytes()), "ec365a775a4cd0599faeb73354201b6f");
        let s = api_string_to_sign(
            "POST",
            "/apps/3/events",
            &params(&[
                ("auth_key", A_KEY),
                ("auth_timestamp", "1353088179"),
                ("auth_version", "1.0"),
                ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
                ("auth_signature", "ignored"),
            ]),
        );
        assert_eq!(
            sign(A_SECRET, &s),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn t9_laravel_trigger() {
        let body = r#"{"name":"App\\Events\\RoomMessageEvent","data":"{\"message\":\"Hello\",\"slug\":\"my-room\"}","channel":"private-Rooms.my-room","socket_id":"734123587.198273645"}"#;
        let md5 = md5_hex(body.as_bytes());
        assert_eq!(md5, "1879246904b5e7e6ac85d7a2e4ade058");
        let s = api_string_to_sign(
            "post",
            "/apps/558412/events",
            &params(&[
                ("body_md5", &md5),
                ("auth_version", "1.0"),
                ("auth_timestamp", "1700000000"),
                ("auth_key", B_KEY),
            ]),
        );
        assert_eq!(
            sign(B_SECRET, &s),
            "8e37b0d85cd4d35a2a8e442d6e4493404ab082407e4d6c10326eeedcf2bd71a4"
        );
    }

    #[test]
    fn t10_to_t13_gets() {
        let base = [
            ("auth_key", B_KEY),
            ("auth_timestamp", "1700000000"),
            ("auth_version", "1.0"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            params(&v)
        };
        let empty_md5 = md5_hex(b"");
        assert_eq!(empty_md5, "d41d8cd98f00b204e9800998ecf8427e");
        let cases = [
            (
                "/apps/558412/channels",
                with(&[("filter_by_prefix", "presence-"), ("info", "user_count")]),
                "bcaf196e43713162bf30223cb49a670e055d987bc60ecbc66909b9981a22c994",
            ),
            (
                "/apps/558412/channels",
                with(&[
                    ("filter_by_prefix", "presence-"),
                    ("info", "user_count"),
                    ("body_md5", "d41d8cd98f00b204e9800998ecf8427e"),
                ]),
                "2791ad14585c33af39b5fd19ec6161216b7ca0f969b1f93fca1ad7d85a1bfde2",
            ),
            (
                "/apps/558412/channels/private-Rooms.my-room",
                with(&[
                    ("info", "subscription_count"),
                    ("body_md5", "d41d8cd98f00b204e9800998ecf8427e"),
                ]),
                "12c0c6c360c24020fa81a0c66bf22724cbcb44fba68ba48c4d20ee4c0656ea03",
            ),
            (
                "/apps/558412/channels/presence-Rooms.lobby/users",
                with(&[]),
                "f5b0baf4f7d08c679283e9080de92a56854d9c75d58ee17f81cce1aa7cb9c1e5",
            ),
        ];
        for (path, p, expected) in cases {
            assert_eq!(
                sign(B_SECRET, &api_string_to_sign("GET", path, &p)),
                expected,
                "{path}"
            );
        }
    }

    #[test]
    fn t14_t15_posts() {
        assert_eq!(md5_hex(b"{}"), "99914b932bd37a50b983c5e7c90ae93b");
        assert!(md5_matches(b"{}", "99914b932bd37a50b983c5e7c90ae93b"));
        assert!(md5_matches(b"{}", "99914B932BD37A50B983C5E7C90AE93B"));
        assert!(!md5_matches(b"{} ", "99914b932bd37a50b983c5e7c90ae93b"));
        assert!(!md5_matches(b"{}", "99914b932bd37a50b983c5e7c90ae93"));
        assert!(!md5_matches(b"{}", ""));
        let p = |md5: &str| {
            params(&[
                ("auth_key", B_KEY),
                ("auth_timestamp", "1700000000"),
                ("auth_version", "1.0"),
                ("body_md5", md5),
            ])
        };
        let s = api_string_to_sign(
            "POST",
            "/apps/558412/users/42/terminate_connections",
            &p("99914b932bd37a50b983c5e7c90ae93b"),
        );
        assert_eq!(
            sign(B_SECRET, &s),
            "e73aa278e7b9b99e7d71de3ccbf8c948c01775ea5f7df523606bdd2f6a7159d5"
        );
        let s = api_string_to_sign(
            "POST",
            "/users/42/terminate_connections",
            &p("99914b932bd37a50b983c5e7c90ae93b"),
        );
        assert_eq!(
            sign(B_SECRET, &s),
            "018301bc213d0461a8dca4d7f7bf3e9b26a987ac434692d1debe0d005859abab"
        );
        let body = r#"{"batch":[{"channel":"presence-Rooms.lobby","name":"a","data":"{}","info":"user_count"},{"channel":"cache-ticker","name":"b","data":"1"}]}"#;
        let md5 = md5_hex(body.as_bytes());
        assert_eq!(md5, "d746f215ecdc266897cb700121f6150a");
        let s = api_string_to_sign("POST", "/apps/558412/batch_events", &p(&md5));
        assert_eq!(
            sign(B_SECRET, &s),
            "5e7532163e9180d06d8cecc003f3caf1a2a1f7d74fe1aaf3bbef77d2d0f617cd"
        );
    }
}
