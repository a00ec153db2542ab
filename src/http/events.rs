//! `POST /apps/{id}/events` and `/batch_events`: validate every field, then publish through
//! the one delivery path. Never writes to a socket itself.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::channels::{channel_attributes, subscriptions};

use super::error::ApiError;
use crate::channel::ChannelKind;
use crate::config::Config;
use crate::connection::{Pending, SocketId};
use crate::dispatch;
use crate::protocol::message::raw_str;
use crate::protocol::names::{is_event_name_too_long, is_valid_socket_id, validate_channel_name};
use crate::state::AppRuntime;

/// One validated event, ready to publish.
struct Event {
    name: String,
    data: String,
    channels: Vec<String>,
    except: Option<SocketId>,
    info: Vec<String>,
}

/// One event object of a request body, each field as received: validated one by one
/// below, borrowed from the body (only a string with escapes is decoded).
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEvent<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    channels: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    socket_id: Option<&'a RawValue>,
    #[serde(borrow)]
    info: Option<&'a RawValue>,
}

/// A batch body: its `batch` field as received.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBatch<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
}

/// Parses a body that must be one JSON object into `T` (its fields as raw values).
fn parse_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let invalid =
        |e: serde_json::Error| ApiError::bad_request(format!("The body is not valid JSON: {e}"));
    // A struct would also accept an array; only an object is an event.
    if body.trim_ascii_start().first() != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(invalid)?;
        return Err(ApiError::bad_request("The body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(invalid)
}

/// A field that must be a string when present (`null` counts as absent).
fn string_field<'a>(
    raw: Option<&'a RawValue>,
    field: &str,
    at: &str,
) -> Result<Option<Cow<'a, str>>, ApiError> {
    match raw {
        None => Ok(None),
        Some(raw) => raw_str(raw)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{at}{field} must be a string"))),
    }
}

/// `channels`: an array of strings.
fn string_list(raw: &RawValue, at: &str) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::bad_request(format!("{at}channels must be an array of strings"));
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| bad())?;
    items
        .into_iter()
        .map(|item| raw_str(item).map(Cow::into_owned).ok_or_else(bad))
        .collect()
}

/// Validates one event object. `single_channel` is true for batch items (`channel` only).
fn parse_event(
    obj: &RawEvent<'_>,
    config: &Config,
    at: &str,
    single_channel: bool,
) -> Result<Event, ApiError> {
    let name = string_field(obj.name, "name", at)?
        .ok_or_else(|| ApiError::bad_request(format!("{at}name is required")))?;
    let max_name = config.max_event_name_length;
    if name.is_empty() || is_event_name_too_long(&name, max_name) {
        return Err(ApiError::bad_request(format!(
            "{at}name must be 1 to {max_name} characters"
        )));
    }
    let data = string_field(obj.data, "data", at)?
        .ok_or_else(|| ApiError::bad_request(format!("{at}data is required (a string)")))?;
    if data.len() > config.max_event_size {
        return Err(ApiError::too_large(format!(
            "{at}data is {} bytes; at most {} are allowed",
            data.len(),
            config.max_event_size
        )));
    }
    let channels = match (obj.channels, string_field(obj.channel, "channel", at)?) {
        (Some(list), _) if !single_channel => string_list(list, at)?,
        (_, Some(c)) => vec![c.into_owned()],
        _ if single_channel => {
            return Err(ApiError::bad_request(format!("{at}channel is required")))
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "{at}channels or channel is required"
            )))
        }
    };
    if channels.is_empty() || channels.len() > config.max_channels_per_event {
        return Err(ApiError::bad_request(format!(
            "{at}channels must name 1 to {} channels, not {}",
            config.max_channels_per_event,
            channels.len()
        )));
    }
    for c in &channels {
        validate_channel_name(c)
            .map_err(|e| ApiError::bad_request(format!("{at}channel name {c:?} {e}")))?;
    }
    let encrypted = channels
        .iter()
        .filter(|c| ChannelKind::from_name(c).encrypted)
        .count();
    if encrypted > 0 && encrypted < channels.len() {
        return Err(ApiError::bad_request(format!(
            "{at}encrypted and unencrypted channels cannot be mixed in one event"
        )));
    }
    let except = match string_field(obj.socket_id, "socket_id", at)? {
        None => None,
        Some(s) if is_valid_socket_id(&s) => SocketId::parse(&s),
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "{at}socket_id {s:?} is not of the form 123.456"
            )))
        }
    };
    let info = string_field(obj.info, "info", at)?
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Event {
        name: name.into_owned(),
        data: data.into_owned(),
        channels,
        except,
        info,
    })
}

/// What a trigger or batch reports once it is published: per event, its channels and the
/// attributes (`info`) it asked for. Read after the sockets are written, and with scaling the
/// counts are the cluster's.
pub(crate) struct Report {
    batch: bool,
    asked: Vec<(Vec<String>, Vec<String>)>,
}

impl Report {
    /// The response body: `{}` or `{"channels":{..}}` for a trigger, `{"batch":{}}` or
    /// `{"batch":[..]}` (one entry per event, its first channel) for a batch.
    pub(crate) async fn into_json(self, app: &AppRuntime) -> Value {
        let mut entries = Vec::with_capacity(self.asked.len());
        for (channels, info) in &self.asked {
            let mut attrs = Map::new();
            if !info.is_empty() {
                let shown = if self.batch {
                    &channels[..1]
                } else {
                    &channels[..]
                };
                // With scaling each count asks the other nodes: all at once.
                let counts =
                    futures_util::future::join_all(shown.iter().map(|c| subscriptions(app, c)))
                        .await;
                for (c, subscriptions) in shown.iter().zip(counts) {
                    let a = channel_attributes(app, c, subscriptions, info);
                    attrs.insert(c.clone(), Value::Object(a));
                }
            }
            entries.push(attrs);
        }
        let any_info = self.asked.iter().any(|(_, info)| !info.is_empty());
        match (self.batch, any_info) {
            (false, false) => Value::Object(Map::new()),
            (false, true) => serde_json::json!({ "channels": entries.pop().unwrap_or_default() }),
            (true, false) => serde_json::json!({ "batch": {} }),
            (true, true) => {
                let results: Vec<Value> = self
                    .asked
                    .iter()
                    .zip(entries)
                    .map(|((channels, _), mut attrs)| {
                        attrs
                            .remove(&channels[0])
                            .unwrap_or_else(|| Value::Object(Map::new()))
                    })
                    .collect();
                serde_json::json!({ "batch": results })
            }
        }
    }
}

/// Handles a trigger. The caller writes the sockets with `out.flush()` after this returns; the response
/// comes from the [`Report`].
pub(crate) fn trigger(
    app: &AppRuntime,
    config: &Config,
    body: &[u8],
    out: &mut Pending,
) -> Result<Report, ApiError> {
    let ev = parse_event(&parse_object::<RawEvent>(body)?, config, "", false)?;
    dispatch::publish(app, &ev.channels, &ev.name, &ev.data, ev.except, out);
    Ok(Report {
        batch: false,
        asked: vec![(ev.channels, ev.info)],
    })
}

/// Handles a batch: every item is validated before any is published. The caller writes the
/// sockets with `out.flush()` after this returns; the response comes from the [`Report`].
pub(crate) fn batch(
    app: &AppRuntime,
    config: &Config,
    body: &[u8],
    out: &mut Pending,
) -> Result<Report, ApiError> {
    let obj: RawBatch = parse_object(body)?;
    let missing = || ApiError::bad_request("batch is required (an array of events)");
    let items: Vec<&RawValue> = match obj.batch {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|_| missing())?,
        None => return Err(missing()),
    };
    if config.max_batch_size > 0 && items.len() > config.max_batch_size {
        return Err(ApiError::bad_request(format!(
            "batch has {} events; at most {} are allowed (RESOUND_MAX_BATCH_SIZE)",
            items.len(),
            config.max_batch_size
        )));
    }
    let events = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("batch[{i}].");
            match item.get().starts_with('{') {
                true => serde_json::from_str::<RawEvent>(item.get())
                    .map_err(|e| ApiError::bad_request(format!("{at} {e}")))
                    .and_then(|o| parse_event(&o, config, &at, true)),
                false => Err(ApiError::bad_request(format!(
                    "batch[{i}] must be an object"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    for ev in &events {
        dispatch::publish(app, &ev.channels, &ev.name, &ev.data, ev.except, out);
    }
    Ok(Report {
        batch: true,
        asked: events.into_iter().map(|e| (e.channels, e.info)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> Result<Event, ApiError> {
        parse_event(
            &parse_object::<RawEvent>(body.as_bytes())?,
            &Config::default(),
            "",
            false,
        )
    }

    fn error(body: &str) -> String {
        match event(body) {
            Ok(_) => panic!("{body} was accepted"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn fields_are_borrowed_or_decoded_as_received() {
        let ev = event(
            r#" {"name":"App\\Events\\E","data":"{\"k\":\"\u00e9\"}","channels":["a","b\u002dc"],
                "socket_id":null,"info":"user_count, subscription_count","extra":[1,{"x":2}]}"#,
        )
        .unwrap();
        assert_eq!(ev.name, r"App\Events\E");
        assert_eq!(ev.data, "{\"k\":\"é\"}");
        assert_eq!(ev.channels, ["a", "b-c"]);
        assert!(ev.except.is_none());
        assert_eq!(ev.info, ["user_count", "subscription_count"]);
        let ev = event(r#"{"name":"e","data":"d","channel":"c","socket_id":"1.2"}"#).unwrap();
        assert_eq!(ev.channels, ["c"]);
        assert_eq!(ev.except, SocketId::parse("1.2"));
    }

    #[test]
    fn bodies_that_are_not_one_object_are_refused() {
        assert_eq!(error(r#"["e","d","c"]"#), "The body must be a JSON object");
        assert_eq!(error("42"), "The body must be a JSON object");
        assert!(error("{not json").starts_with("The body is not valid JSON"));
        assert!(error(r#"["unclosed"#).starts_with("The body is not valid JSON"));
        assert!(error("").starts_with("The body is not valid JSON"));
        assert_eq!(
            error(r#"{"name":null,"data":"d","channel":"c"}"#),
            "name is required"
        );
        assert_eq!(
            error(r#"{"name":"e","data":"d","channels":["a",1]}"#),
            "channels must be an array of strings"
        );
        assert_eq!(
            error(r#"{"name":"e","data":"d","channel":["c"]}"#),
            "channel must be a string"
        );
    }

    #[test]
    fn batches_take_channel_per_item_and_refuse_other_shapes() {
        let config = Config::default();
        let app = crate::state::State::new(config.clone());
        let app = app.apps().next().expect("the default app");
        let batch_error =
            |body: &str| match batch(app, &config, body.as_bytes(), &mut Pending::new()) {
                Ok(_) => panic!("{body} was accepted"),
                Err(e) => e.message,
            };
        assert_eq!(
            batch_error(r#"{"batch":{"name":"e"}}"#),
            "batch is required (an array of events)"
        );
        assert_eq!(
            batch_error(r#"{"batch":null}"#),
            "batch is required (an array of events)"
        );
        assert_eq!(
            batch_error(r#"{"batch":[1]}"#),
            "batch[0] must be an object"
        );
        assert_eq!(
            batch_error(
                r#"{"batch":[{"name":"e","data":"d","channel":"c"},{"name":"e","data":"d","channels":["c"]}]}"#
            ),
            "batch[1].channel is required"
        );
    }
}
