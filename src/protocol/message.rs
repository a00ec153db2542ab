//! Inbound frames parsed once into [`ClientMessage`], and the builders of every outbound frame.
//!
//! Handlers never touch raw JSON: the session parses a text frame here and matches on the
//! result. Outbound frames are serialized into a `String` once and shared as-is by every
//! recipient (see `dispatch`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::PusherError;

/// One inbound WebSocket text frame, understood. Client events borrow from the frame's text:
/// relaying a whisper allocates nothing until its outbound frame is built.
#[derive(Debug)]
pub(crate) enum ClientMessage<'a> {
    Ping,
    Pong,
    Subscribe(Subscribe),
    Unsubscribe {
        channel: String,
    },
    Signin {
        auth: String,
        user_data: String,
    },
    /// A `client-*` event to relay to the other subscribers of `channel`.
    ClientEvent {
        event: Cow<'a, str>,
        channel: Cow<'a, str>,
        data: Option<&'a RawValue>,
    },
    /// An event that is neither `pusher:` nor `client-`: ignored, as Reverb does.
    Ignored,
}

/// The payload of `pusher:subscribe`.
#[derive(Debug, Deserialize)]
pub(crate) struct Subscribe {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    /// Kept as the exact string received: the presence signature covers these bytes.
    #[serde(default)]
    pub channel_data: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow)]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// The string a raw JSON value holds, borrowed when it has no escapes; `None` when the value
/// is not a string.
pub(crate) fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        // A valid JSON string without escapes is exactly the text between its quotes.
        Some(Cow::Borrowed(inner))
    }
}

/// Deserializes `text` into `T` only when it is a JSON object. serde reads a JSON array into
/// a struct field by field (`["5"]` as `{"user_id":"5"}`), which no peer means: frames,
/// their `data`, `channel_data` and `user_data` are objects or nothing.
pub(crate) fn from_object<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    if text.trim_ascii_start().starts_with('{') {
        serde_json::from_str(text).ok()
    } else {
        None
    }
}

#[derive(Deserialize)]
struct Unsubscribe {
    channel: String,
}

#[derive(Deserialize)]
struct Signin {
    auth: String,
    user_data: String,
}

impl<'a> ClientMessage<'a> {
    /// The event name, for logs (`other` for an ignored event).
    pub(crate) fn event(&self) -> &str {
        match self {
            ClientMessage::Ping => "pusher:ping",
            ClientMessage::Pong => "pusher:pong",
            ClientMessage::Subscribe(_) => "pusher:subscribe",
            ClientMessage::Unsubscribe { .. } => "pusher:unsubscribe",
            ClientMessage::Signin { .. } => "pusher:signin",
            ClientMessage::ClientEvent { event, .. } => event,
            ClientMessage::Ignored => "other",
        }
    }

    /// The channel the message names, for logs.
    pub(crate) fn channel(&self) -> Option<&str> {
        match self {
            ClientMessage::Subscribe(sub) => Some(&sub.channel),
            ClientMessage::Unsubscribe { channel } => Some(channel),
            ClientMessage::ClientEvent { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// Parses one text frame. Anything malformed is `InvalidMessage` (4200), which never
    /// closes the connection.
    pub(crate) fn parse(text: &'a str) -> Result<ClientMessage<'a>, PusherError> {
        let env: Envelope = from_object(text).ok_or(PusherError::InvalidMessage)?;
        match &*env.event {
            "pusher:ping" => Ok(ClientMessage::Ping),
            "pusher:pong" => Ok(ClientMessage::Pong),
            "pusher:subscribe" => Ok(ClientMessage::Subscribe(decode_data(env.data)?)),
            "pusher:unsubscribe" => {
                let u: Unsubscribe = decode_data(env.data)?;
                Ok(ClientMessage::Unsubscribe { channel: u.channel })
            }
            "pusher:signin" => {
                let s: Signin = decode_data(env.data)?;
                Ok(ClientMessage::Signin {
                    auth: s.auth,
                    user_data: s.user_data,
                })
            }
            e if e.starts_with("pusher:") || e.starts_with("pusher_internal:") => {
                Err(PusherError::InvalidMessage)
            }
            e if e.starts_with("client-") => match env.channel.and_then(raw_str) {
                Some(channel) => Ok(ClientMessage::ClientEvent {
                    event: env.event,
                    channel,
                    data: env.data,
                }),
                _ => Err(PusherError::InvalidMessage),
            },
            _ => Ok(ClientMessage::Ignored),
        }
    }
}

/// Decodes a `data` field that peers send either as an object (pusher-js) or as a string
/// holding JSON (other clients).
fn decode_data<T: for<'de> Deserialize<'de>>(data: Option<&RawValue>) -> Result<T, PusherError> {
    let raw = data.ok_or(PusherError::InvalidMessage)?;
    let text = raw.get();
    let parsed = if text.starts_with('"') {
        let inner = raw_str(raw).ok_or(PusherError::InvalidMessage)?;
        from_object(&inner)
    } else {
        from_object(text)
    };
    parsed.ok_or(PusherError::InvalidMessage)
}

#[derive(Serialize)]
struct Frame<'a, D: Serialize> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a RawValue>,
}

fn frame<D: Serialize>(event: &str, channel: Option<&str>, data: Option<D>) -> String {
    let f = Frame {
        event,
        channel,
        data,
        user_id: None,
    };
    serde_json::to_string(&f).expect("frames always serialize")
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("values always serialize")
}

/// Outbound frame builders. Each returns the exact text of one frame.
pub(crate) mod server {
    use super::*;

    pub(crate) fn connection_established(socket_id: &str, activity_timeout: u64) -> String {
        #[derive(Serialize)]
        struct D<'a> {
            socket_id: &'a str,
            activity_timeout: u64,
        }
        frame(
            "pusher:connection_established",
            None,
            Some(json(&D {
                socket_id,
                activity_timeout,
            })),
        )
    }

    pub(crate) fn error(err: &PusherError) -> String {
        #[derive(Serialize)]
        struct D {
            code: u16,
            message: String,
        }
        frame(
            "pusher:error",
            None,
            Some(json(&D {
                code: err.code(),
                message: err.to_string(),
            })),
        )
    }

    pub(crate) const PONG: &str = r#"{"event":"pusher:pong"}"#;
    pub(crate) const PING: &str = r#"{"event":"pusher:ping"}"#;

    /// `subscription_succeeded`, with `data` being the JSON text of the payload (`{}` or the
    /// presence block). Field order matches Reverb's bytes.
    pub(crate) fn subscription_succeeded(channel: &str, data: &str) -> String {
        #[derive(Serialize)]
        struct F<'a> {
            event: &'a str,
            data: &'a str,
            channel: &'a str,
        }
        json(&F {
            event: "pusher_internal:subscription_succeeded",
            data,
            channel,
        })
    }

    pub(crate) fn member_added(
        channel: &str,
        user_id: &RawValue,
        user_info: Option<&RawValue>,
    ) -> String {
        #[derive(Serialize)]
        struct D<'a> {
            user_id: &'a RawValue,
            user_info: Option<&'a RawValue>,
        }
        frame(
            "pusher_internal:member_added",
            Some(channel),
            Some(json(&D { user_id, user_info })),
        )
    }

    pub(crate) fn member_removed(channel: &str, user_id: &RawValue) -> String {
        #[derive(Serialize)]
        struct D<'a> {
            user_id: &'a RawValue,
        }
        frame(
            "pusher_internal:member_removed",
            Some(channel),
            Some(json(&D { user_id })),
        )
    }

    /// `signin_success`: echoes the signed `user_data` string.
    pub(crate) fn signin_success(user_data: &str) -> String {
        #[derive(Serialize)]
        struct D<'a> {
            user_data: &'a str,
        }
        frame("pusher:signin_success", None, Some(json(&D { user_data })))
    }

    /// `watchlist_events` with one entry per non-empty list.
    pub(crate) fn watchlist_events(online: &[&str], offline: &[&str]) -> String {
        #[derive(Serialize)]
        struct E<'a> {
            name: &'a str,
            user_ids: &'a [&'a str],
        }
        #[derive(Serialize)]
        struct D<'a> {
            events: Vec<E<'a>>,
        }
        let mut events = Vec::new();
        if !online.is_empty() {
            events.push(E {
                name: "online",
                user_ids: online,
            });
        }
        if !offline.is_empty() {
            events.push(E {
                name: "offline",
                user_ids: offline,
            });
        }
        frame(
            "pusher_internal:watchlist_events",
            None,
            Some(json(&D { events })),
        )
    }

    /// `subscription_count` for non-presence channels.
    pub(crate) fn subscription_count(channel: &str, count: usize) -> String {
        #[derive(Serialize)]
        struct D {
            subscription_count: usize,
        }
        frame(
            "pusher_internal:subscription_count",
            Some(channel),
            Some(json(&D {
                subscription_count: count,
            })),
        )
    }

    pub(crate) fn cache_miss(channel: &str) -> String {
        frame::<()>("pusher:cache_miss", Some(channel), None)
    }

    /// An event from the HTTP API: `data` is the string received, forwarded verbatim.
    pub(crate) fn channel_event(event: &str, channel: &str, data: &str) -> String {
        frame(event, Some(channel), Some(data))
    }

    /// A relayed client event: rebuilt from its parts so a client cannot forge other fields;
    /// `data` goes through as received (object stays object, string stays string).
    pub(crate) fn client_event(
        event: &str,
        channel: &str,
        data: Option<&RawValue>,
        user_id: Option<&RawValue>,
    ) -> String {
        let f = Frame {
            event,
            channel: Some(channel),
            data,
            user_id,
        };
        json(&f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_accepts_object_and_string_data() {
        let a = ClientMessage::parse(
            r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"a"}}"#,
        );
        let b =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#);
        for m in [a, b] {
            match m.unwrap() {
                ClientMessage::Subscribe(s) => assert_eq!(s.channel, "a"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn channel_data_is_kept_verbatim() {
        let m = ClientMessage::parse(
            r#"{"event":"pusher:subscribe","data":{"channel":"presence-x","auth":"k:s","channel_data":"{\"user_id\": \"1\"}"}}"#,
        )
        .unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!()
        };
        assert_eq!(s.channel_data.as_deref(), Some(r#"{"user_id": "1"}"#));
    }

    #[test]
    fn malformed_frames_are_invalid_message() {
        for text in [
            "not json",
            "[]",
            r#"{"data":{}}"#,
            r#"{"event":5}"#,
            r#"{"event":"pusher:subscribe"}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"p","channel_data":{"user_id":1}}}"#,
            r#"{"event":"pusher:bogus","data":{}}"#,
            r#"{"event":"client-x","data":{}}"#,
            r#"{"event":"client-x","channel":7,"data":{}}"#,
            // Arrays are not objects, though serde would read them into the structs.
            r#"["pusher:ping"]"#,
            r#"{"event":"pusher:subscribe","data":["p"]}"#,
            r#"{"event":"pusher:subscribe","data":"[\"p\"]"}"#,
            r#"{"event":"pusher:signin","data":["a:b","{}"]}"#,
        ] {
            assert_eq!(
                ClientMessage::parse(text).unwrap_err(),
                PusherError::InvalidMessage,
                "{text}"
            );
        }
    }

    #[test]
    fn client_events_borrow_or_decode_their_channel() {
        for (text, want) in [
            (
                r#"{"event":"client-x","channel":"private-a","data":{"k":1}}"#,
                "private-a",
            ),
            (
                r#"{ "event" : "client-x" , "channel" :  "private-a" , "data" : {"k":1} }"#,
                "private-a",
            ),
            (
                r#"{"event":"client-x","channel":"private-\u0061\"b","data":{"k":1}}"#,
                "private-a\"b",
            ),
        ] {
            let Ok(ClientMessage::ClientEvent {
                event,
                channel,
                data,
            }) = ClientMessage::parse(text)
            else {
                panic!("{text}");
            };
            assert_eq!((&*event, &*channel), ("client-x", want), "{text}");
            assert_eq!(data.map(RawValue::get), Some(r#"{"k":1}"#), "{text}");
        }
    }

    #[test]
    fn other_events_are_ignored() {
        assert!(matches!(
            ClientMessage::parse(r#"{"event":"hello"}"#),
            Ok(ClientMessage::Ignored)
        ));
    }

    #[test]
    fn golden_frames() {
        assert_eq!(
            server::subscription_succeeded("my-channel", "{}"),
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"my-channel"}"#
        );
        assert_eq!(
            server::error(&PusherError::Unauthorized),
            r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Connection is unauthorized\"}"}"#
        );
        assert_eq!(
            server::connection_established("1.2", 30),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":30}"}"#
        );
        assert_eq!(
            server::signin_success(r#"{"id":"42"}"#),
            r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"{\\\"id\\\":\\\"42\\\"}\"}"}"#
        );
        assert_eq!(
            server::watchlist_events(&["7"], &["9"]),
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"7\"]},{\"name\":\"offline\",\"user_ids\":[\"9\"]}]}"}"#
        );
        assert_eq!(
            server::subscription_count("c", 3),
            r#"{"event":"pusher_internal:subscription_count","channel":"c","data":"{\"subscription_count\":3}"}"#
        );
        assert_eq!(
            server::cache_miss("cache-a"),
            r#"{"event":"pusher:cache_miss","channel":"cache-a"}"#
        );
        assert_eq!(
            server::channel_event(
                "App\\Events\\RoomMessageEvent",
                "private-Rooms.my-room",
                r#"{"message":"Hello"}"#
            ),
            r#"{"event":"App\\Events\\RoomMessageEvent","channel":"private-Rooms.my-room","data":"{\"message\":\"Hello\"}"}"#
        );
    }
}
