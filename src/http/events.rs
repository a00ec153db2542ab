//! `POST /apps/{id}/events` and `/batch_events`: validate every field, then publish through
//! the one delivery path. Never writes to a socket itself.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::channel::ChannelKind;
use crate::config::Config;
use crate::connection::{Flushes, SocketId};
use crate::dispatch;
use crate::protocol::names::{is_valid_socket_id, validate_channel_name, MAX_EVENT_NAME};
use crate::state::AppRuntime;

/// One validated event, ready to publish.
struct Event {
    name: String,
    data: String,
    channels: Vec<String>,
    except: Option<SocketId>,
    info: Vec<String>,
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("The body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "The body is not valid JSON: {e}"
        ))),
    }
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!(
            "{at}{field} must be a string"
        ))),
    }
}

/// Validates one event object. `single_channel` is true for batch items (`channel` only).
fn parse_event(
    obj: &Map<String, Value>,
    config: &Config,
    at: &str,
    single_channel: bool,
) -> Result<Event, ApiError> {
    let name = string_field(obj, "name", at)?
        .ok_or_else(|| ApiError::bad_request(format!("{at}name is required")))?;
    if name.is_empty() || name.len() > MAX_EVENT_NAME {
        return Err(ApiError::bad_request(format!(
            "{at}name must be 1 to {MAX_EVENT_NAME} characters"
        )));
    }
    let data = string_field(obj, "data", at)?
        .ok_or_else(|| ApiError::bad_request(format!("{at}data is required (a string)")))?;
    if data.len() > config.max_event_size {
        return Err(ApiError::too_large(format!(
            "{at}data is {} bytes; at most {} are allowed",
            data.len(),
            config.max_event_size
        )));
    }
    let channels = match (obj.get("channels"), string_field(obj, "channel", at)?) {
        (Some(Value::Array(list)), _) if !single_channel => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::bad_request(format!("{at}channels must be an array of strings"))
            })?,
        (Some(_), _) if !single_channel => {
            return Err(ApiError::bad_request(format!(
                "{at}channels must be an array of strings"
            )))
        }
        (_, Some(c)) => vec![c.to_owned()],
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
    let except = match string_field(obj, "socket_id", at)? {
        None => None,
        Some(s) if is_valid_socket_id(s) => SocketId::parse(s),
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "{at}socket_id {s:?} is not of the form 123.456"
            )))
        }
    };
    let info = string_field(obj, "info", at)?
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Event {
        name: name.to_owned(),
        data: data.to_owned(),
        channels,
        except,
        info,
    })
}

/// The attributes `info` asks for, for one channel (Reverb leniency: what does not apply is
/// left out).
pub fn channel_attributes(
    app: &AppRuntime,
    channel: &str,
    subscriptions: usize,
    info: &[String],
) -> Map<String, Value> {
    let kind = ChannelKind::from_name(channel);
    let mut attrs = Map::new();
    if subscriptions == 0 {
        // Unoccupied channels carry no attributes (PROTOCOL.md 5.3).
        return attrs;
    }
    for item in info {
        match item.as_str() {
            "user_count" if kind.presence => {
                attrs.insert("user_count".into(), app.channels.user_count(channel).into());
            }
            "subscription_count" if !kind.presence => {
                attrs.insert("subscription_count".into(), subscriptions.into());
            }
            _ => {}
        }
    }
    attrs
}

fn publish(app: &AppRuntime, ev: &Event, out: &mut Flushes) -> Map<String, Value> {
    dispatch::publish(app, &ev.channels, &ev.name, &ev.data, ev.except, out);
    let mut out = Map::new();
    if !ev.info.is_empty() {
        for c in &ev.channels {
            out.insert(
                c.clone(),
                // This node's count: a trigger does not wait for the other nodes.
                Value::Object(channel_attributes(
                    app,
                    c,
                    app.channels.subscription_count(c),
                    &ev.info,
                )),
            );
        }
    }
    out
}

/// Handles a trigger; the response is `{}` or `{"channels":{..}}` when `info` was asked.
/// The sockets are written by `out`, after this returns.
pub fn trigger(
    app: &AppRuntime,
    config: &Config,
    body: &[u8],
    out: &mut Flushes,
) -> Result<Value, ApiError> {
    let ev = parse_event(&parse_body(body)?, config, "", false)?;
    let channels = publish(app, &ev, out);
    Ok(if ev.info.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::json!({ "channels": channels })
    })
}

/// Handles a batch: every item is validated before any is published. The sockets are
/// written by `out`, after this returns.
pub fn batch(
    app: &AppRuntime,
    config: &Config,
    body: &[u8],
    out: &mut Flushes,
) -> Result<Value, ApiError> {
    let obj = parse_body(body)?;
    let items = match obj.get("batch") {
        Some(Value::Array(items)) => items,
        _ => {
            return Err(ApiError::bad_request(
                "batch is required (an array of events)",
            ))
        }
    };
    if config.max_batch_size > 0 && items.len() > config.max_batch_size {
        return Err(ApiError::bad_request(format!(
            "batch has {} events; at most {} are allowed",
            items.len(),
            config.max_batch_size
        )));
    }
    let events = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(o) => parse_event(o, config, &format!("batch[{i}].").to_string(), true),
            _ => Err(ApiError::bad_request(format!(
                "batch[{i}] must be an object"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let any_info = events.iter().any(|e| !e.info.is_empty());
    let results: Vec<Value> = events
        .iter()
        .map(|ev| {
            let mut attrs = publish(app, ev, out);
            attrs
                .remove(&ev.channels[0])
                .unwrap_or_else(|| Value::Object(Map::new()))
        })
        .collect();
    Ok(if any_info {
        serde_json::json!({ "batch": results })
    } else {
        serde_json::json!({ "batch": {} })
    })
}
