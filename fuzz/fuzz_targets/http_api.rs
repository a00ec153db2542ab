//! HTTP API requests: a first line `METHOD /path?query`, then the body. A query without
//! `auth_signature` is signed by the wrapper, so that the endpoints behind the signature
//! check are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let (method, target) = head.split_once(' ').unwrap_or((head, ""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    resound::fuzzing::http_request(method, path, query, body);
});
