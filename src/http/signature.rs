//! HTTP API request authentication (docs/protocol.md §6.2): the signature over method, path and
//! sorted query, the `auth_key` check, the timestamp window and the `body_md5` rules that
//! accept the PHP, Node and Python SDKs alike.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::ApiError;
use crate::apps::App;
use crate::auth;

/// Decoded query parameters of a request, in order; borrowed from the query unless
/// decoding changed them.
pub(crate) type Params<'q> = Vec<(Cow<'q, str>, Cow<'q, str>)>;

/// Percent-decodes a query string (`+` is a space).
pub(crate) fn parse_query(query: &str) -> Params<'_> {
    if memchr::memchr2(b'%', b'+', query.as_bytes()).is_some() {
        return form_urlencoded::parse(query.as_bytes()).collect();
    }
    // Nothing to decode (the usual signed API query): split it in place, as
    // `form_urlencoded` would, without its byte-by-byte decoding passes.
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (Cow::Borrowed(k), Cow::Borrowed(v))
        })
        .collect()
}

pub(crate) fn param<'a>(params: &'a Params<'_>, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
}

/// Checks a request's query against `app`: key, timestamp, and the signature over method,
/// path and parameters. `paths` are the paths a client may have signed: without the server's
/// path prefix (PHP SDK) and, when there is one, with it. The body is checked afterwards
/// against the signed `body_md5` by [`verify_body`].
pub(crate) fn verify(
    app: &App,
    method: &str,
    paths: &[&str],
    params: &Params<'_>,
    window: Option<Duration>,
) -> Result<(), ApiError> {
    let key =
        param(params, "auth_key").ok_or_else(|| ApiError::unauthorized("Missing auth_key"))?;
    if key != app.key {
        return Err(ApiError::unauthorized("auth_key does not match the app"));
    }
    let signature = param(params, "auth_signature")
        .ok_or_else(|| ApiError::unauthorized("Missing auth_signature"))?;
    let timestamp = param(params, "auth_timestamp")
        .ok_or_else(|| ApiError::unauthorized("Missing auth_timestamp"))?;
    if let Some(window) = window {
        let ts: i64 = timestamp
            .parse()
            .map_err(|_| ApiError::unauthorized("auth_timestamp is not a number"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if now.abs_diff(ts) > window.as_secs() {
            return Err(ApiError::unauthorized(format!(
                "auth_timestamp {ts} is more than {} s away from the server time {now}",
                window.as_secs()
            )));
        }
    }
    check_unambiguous(params)?;
    let signed = paths.iter().any(|path| {
        auth::verify(
            &app.secret,
            &auth::api_string_to_sign(method, path, params),
            signature,
        )
    });
    if signed {
        Ok(())
    } else {
        Err(ApiError::unauthorized("Authentication signature invalid."))
    }
}

/// A non-empty body must match the signed `body_md5`. An empty one is not checked: the
/// Python SDK signs the MD5 of the empty body on GETs, the others send none.
pub(crate) fn verify_body(params: &Params<'_>, body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    let md5 = param(params, "body_md5")
        .ok_or_else(|| ApiError::unauthorized("Missing body_md5 for a request with a body"))?;
    if !auth::md5_matches(body, md5) {
        return Err(ApiError::unauthorized("body_md5 does not match the body"));
    }
    Ok(())
}

/// Refuses parameters that the string to sign cannot tell apart from others. That string
/// joins the decoded `name=value` pairs, lower-cased and sorted, with `&`: a value holding
/// `&` (`auth_version=1.0%26filter_by_prefix%3Dpresence-`) signs the same as two parameters,
/// a name holding `=` as a different split, an upper-case name as its lower-case form (which
/// the handlers would not find), and a repeated name in any order (the handlers read the
/// first). With none of these, the signed string determines exactly the parameters the
/// handlers read. No SDK sends any of them. (`=` inside a value is unambiguous once names
/// cannot hold it, and channel names may contain `=`, so `filter_by_prefix` may too.)
fn check_unambiguous(params: &Params<'_>) -> Result<(), ApiError> {
    for (i, (name, value)) in params.iter().enumerate() {
        let refuse = |why: &str| {
            Err(ApiError::unauthorized(format!(
                "Query parameter {name:?} {why}: the signature cannot tell it apart"
            )))
        };
        if name.contains(['&', '=']) || value.contains('&') {
            return refuse("contains & or = once decoded");
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return refuse("is not lower case");
        }
        if params[..i].iter().any(|(earlier, _)| earlier == name) {
            return refuse("is repeated");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_matches_form_urlencoded() {
        for q in [
            "",
            "a=1&b=2",
            "a=1&&b=&c&=d&e==f&",
            "auth_key=k&auth_timestamp=1700000000&auth_version=1.0&info=user_count,subscription_count",
            "a=%20x&b=y+z",
            "filter_by_prefix=presence-&info=user_count",
        ] {
            let ours: Vec<(String, String)> = parse_query(q)
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let theirs: Vec<(String, String)> =
                form_urlencoded::parse(q.as_bytes()).into_owned().collect();
            assert_eq!(ours, theirs, "query {q:?}");
        }
    }

    fn app() -> App {
        App::new("558412", "q7h2x9v4m1n8b3c6z5k0", "w3e8r1t6y9u4i2o7p5a0")
    }

    const T9_BODY: &str = r#"{"name":"App\\Events\\RoomMessageEvent","data":"{\"message\":\"Hello\",\"slug\":\"my-room\"}","channel":"private-Rooms.my-room","socket_id":"734123587.198273645"}"#;
    const T9_QUERY: &str = "auth_key=q7h2x9v4m1n8b3c6z5k0&auth_timestamp=1700000000&auth_version=1.0&body_md5=1879246904b5e7e6ac85d7a2e4ade058&auth_signature=8e37b0d85cd4d35a2a8e442d6e4493404ab082407e4d6c10326eeedcf2bd71a4";

    #[test]
    fn t9_accepted_with_or_without_prefix_signed() {
        let p = parse_query(T9_QUERY);
        verify(&app(), "POST", &["/apps/558412/events"], &p, None).unwrap();
        verify_body(&p, T9_BODY.as_bytes()).unwrap();
        let paths = ["/apps/558412/events", "/reverb/apps/558412/events"];
        verify(&app(), "POST", &paths, &p, None).unwrap();
    }

    #[test]
    fn t9_failures() {
        let p = parse_query(T9_QUERY);
        let e = verify_body(&p, b"{}").unwrap_err();
        assert_eq!(e.message, "body_md5 does not match the body");
        let path = ["/apps/558412/events"];
        let e = verify(&app(), "POST", &path, &p, Some(Duration::from_secs(600))).unwrap_err();
        assert!(e.message.contains("auth_timestamp"), "{}", e.message);
        let e = verify(&app(), "POST", &["/apps/558413/events"], &p, None).unwrap_err();
        assert_eq!(e.status, 401);
        let mut other = app();
        other.key = "other".into();
        assert!(verify(&other, "POST", &path, &p, None).is_err());
    }

    /// Signed GETs as the SDKs send them: (path, query with signature).
    const GETS: &[(&str, &str)] = &[
        // T11: the Python SDK signs body_md5 of the empty body.
        ("/apps/558412/channels", "auth_key=q7h2x9v4m1n8b3c6z5k0&auth_timestamp=1700000000&auth_version=1.0&body_md5=d41d8cd98f00b204e9800998ecf8427e&filter_by_prefix=presence-&info=user_count&auth_signature=2791ad14585c33af39b5fd19ec6161216b7ca0f969b1f93fca1ad7d85a1bfde2"),
        // T12
        ("/apps/558412/channels/private-Rooms.my-room", "auth_key=q7h2x9v4m1n8b3c6z5k0&auth_timestamp=1700000000&auth_version=1.0&body_md5=d41d8cd98f00b204e9800998ecf8427e&info=subscription_count&auth_signature=12c0c6c360c24020fa81a0c66bf22724cbcb44fba68ba48c4d20ee4c0656ea03"),
        // T13, signature first in the query
        ("/apps/558412/channels/presence-Rooms.lobby/users", "auth_signature=f5b0baf4f7d08c679283e9080de92a56854d9c75d58ee17f81cce1aa7cb9c1e5&auth_key=q7h2x9v4m1n8b3c6z5k0&auth_timestamp=1700000000&auth_version=1.0"),
        // T10 with URL-encoded values (Guzzle): decoded before signing
        ("/apps/558412/channels", "auth_key=q7h2x9v4m1n8b3c6z5k0&auth_timestamp=1700000000&auth_version=1.0&filter_by_prefix=presence%2D&info=user%5Fcount&auth_signature=bcaf196e43713162bf30223cb49a670e055d987bc60ecbc66909b9981a22c994"),
    ];

    #[test]
    fn t10_to_t13_sdk_gets_are_accepted() {
        for (path, query) in GETS {
            let r = verify(&app(), "GET", &[path], &parse_query(query), None);
            assert!(r.is_ok(), "{path}?{query}: {:?}", r.err());
        }
    }

    /// T11, with its filter folded into `body_md5` (the parameter before it) or its name
    /// upper-cased (both still match the signature), or a parameter repeated: refused.
    #[test]
    fn parameters_the_signature_cannot_tell_apart_are_refused() {
        let (path, query) = GETS[0];
        let forged = [
            query.replace(
                "e&filter_by_prefix=presence-&info=user_count",
                "e%26filter_by_prefix%3Dpresence-%26info%3Duser_count",
            ),
            query.replace("filter_by_prefix=", "FILTER_BY_PREFIX="),
            query.replace("info=user_count", "info=user_count&info=user_count"),
        ];
        for q in &forged {
            assert_ne!(q, query);
            let e = verify(&app(), "GET", &[path], &parse_query(q), None).unwrap_err();
            assert_eq!(e.status, 401, "{q}");
            assert!(e.message.starts_with("Query parameter"), "{}", e.message);
        }
        // Names are checked as decoded: `%3D` in a name is an `=`.
        let q = format!("{query}&a%3Db=c");
        assert!(verify(&app(), "GET", &[path], &parse_query(&q), None).is_err());
        // An `=` inside a value is unambiguous (channel names may hold one).
        let p: Params<'_> = vec![("filter_by_prefix".into(), "private-a=".into())];
        assert!(check_unambiguous(&p).is_ok());
    }
}
