//! Read-only queries: channel lists, one channel, presence users, connection counts.

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::events::channel_attributes;
use super::signature::{param, Params};
use crate::channel::ChannelKind;
use crate::protocol::names::validate_channel_name;
use crate::state::AppRuntime;

fn info_list(params: &Params) -> Vec<String> {
    param(params, "info")
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    validate_channel_name(name)
        .map_err(|e| ApiError::bad_request(format!("channel name {name:?} {e}")))
}

/// `GET /channels`: occupied channels, optionally filtered by prefix. Always an object.
pub fn list(app: &AppRuntime, params: &Params) -> Result<Value, ApiError> {
    let prefix = param(params, "filter_by_prefix").unwrap_or("");
    let info = info_list(params);
    let mut channels = Map::new();
    for c in app.channels.occupied(prefix) {
        let attrs = channel_attributes(app, &c.name, &info);
        channels.insert(c.name, Value::Object(attrs));
    }
    Ok(json!({ "channels": channels }))
}

/// `GET /channels/{name}`: `occupied` plus the requested attributes.
pub fn show(app: &AppRuntime, name: &str, params: &Params) -> Result<Value, ApiError> {
    checked_name(name)?;
    let info = info_list(params);
    let mut out = Map::new();
    out.insert(
        "occupied".into(),
        (app.channels.subscription_count(name) > 0).into(),
    );
    out.extend(channel_attributes(app, name, &info));
    if info.iter().any(|i| i == "cache") && ChannelKind::from_name(name).cache {
        let cache = app.channels.cached(name).map(|(text, ttl)| {
            let data = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|f| f.get("data").cloned());
            json!({ "data": data, "ttl": ttl.as_secs() })
        });
        out.insert("cache".into(), cache.unwrap_or(Value::Null));
    }
    Ok(Value::Object(out))
}

/// `GET /channels/{name}/users`: presence channels only.
pub fn users(app: &AppRuntime, name: &str) -> Result<Value, ApiError> {
    checked_name(name)?;
    if !ChannelKind::from_name(name).presence {
        return Err(ApiError::bad_request(format!(
            "{name} is not a presence channel"
        )));
    }
    let users: Vec<Value> = app
        .channels
        .user_ids(name)
        .into_iter()
        .map(|id| json!({ "id": id }))
        .collect();
    Ok(json!({ "users": users }))
}

/// `GET /connections`: every open connection of the app.
pub fn connections(app: &AppRuntime) -> Value {
    json!({ "connections": app.connections.len() })
}
