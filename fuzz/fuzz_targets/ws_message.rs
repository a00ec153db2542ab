//! Inbound WebSocket text messages: the first byte picks the app (`'0'`, `'1'`, `'2'`); the
//! rest is parsed as one message, then split at newlines into the text frames of one whole
//! session (subscribe, sign in, client events, cleanup).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&app, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    resound::fuzzing::client_message(text);
    let frames: Vec<&str> = text.split('\n').collect();
    resound::fuzzing::client_session(app as usize, &frames);
});
