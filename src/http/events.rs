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

/// What a trigger or batch reports once it is published: per event, its channels and the
/// attributes (`info`) it asked for. Read after the sockets are written, and with scaling the
/// counts are the cluster's.
pub struct Report {
    batch: bool,
    asked: Vec<(Vec<String>, Vec<String>)>,
}

impl Report {
    /// The response body: `{}` or `{"channels":{..}}` for a trigger, `{"batch":{}}` or
    /// `{"batch":[..]}` (one entry per event, its first channel) for a batch.
    pub async fn into_json(self, app: &AppRuntime) -> Value {
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
                let counts = futures_util::future::join_all(
                    shown.iter().map(|c| super::channels::subscriptions(app, c)),
                )
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

/// Handles a trigger. The sockets are written by `out`, after this returns; the response
/// comes from the [`Report`].
pub fn trigger(
    app: &AppRuntime,
    config: &Config,
    body: &[u8],
    out: &mut Flushes,
) -> Result<Report, ApiError> {
    let ev = parse_event(&parse_body(body)?, config, "", false)?;
    dispatch::publish(app, &ev.channels, &ev.name, &ev.data, ev.except, out);
    Ok(Report {
        batch: false,
        asked: vec![(ev.channels, ev.info)],
    })
}

/// Handles a batch: every item is validated before any is published. The sockets are
/// written by `out`, after this returns; the response comes from the [`Report`].
pub fn batch(
    app: &AppRuntime,
    config: &Config,
    body: &[u8],
    out: &mut Flushes,
) -> Result<Report, ApiError> {
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
    for ev in &events {
        dispatch::publish(app, &ev.channels, &ev.name, &ev.data, ev.except, out);
    }
    Ok(Report {
        batch: true,
        asked: events.into_iter().map(|e| (e.channels, e.info)).collect(),
    })
}
