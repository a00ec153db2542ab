//! Read-only queries: channel lists, one channel, presence users, connection counts.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::error::ApiError;
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

/// Subscribers of `channel` (or of every occupied channel starting with `prefix`) and open
/// connections, on this node plus every other node (see `hooks::Peers`).
async fn counts(
    app: &AppRuntime,
    channel: Option<&str>,
    prefix: &str,
) -> (BTreeMap<String, usize>, usize) {
    let mut channels = BTreeMap::new();
    let mut add = |list: Vec<(String, usize)>| {
        for (name, n) in list {
            *channels.entry(name).or_insert(0) += n;
        }
    };
    add(app.channels.local_counts(channel, prefix));
    let mut connections = app.connections.len();
    if let Some(peers) = &app.peers {
        let others = peers.counts(&app.app.id, channel, prefix).await;
        add(others.channels);
        connections += others.connections;
    }
    (channels, connections)
}

/// The attributes `info` asks for, for one channel (Reverb leniency: what does not apply is
/// left out).
pub(crate) fn channel_attributes(
    app: &AppRuntime,
    channel: &str,
    subscriptions: usize,
    info: &[String],
) -> Map<String, Value> {
    let kind = ChannelKind::from_name(channel);
    let mut attrs = Map::new();
    if subscriptions == 0 {
        // Unoccupied channels carry no attributes (docs/protocol.md §6.4).
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

/// Subscribers of `name` on every node.
pub(crate) async fn subscriptions(app: &AppRuntime, name: &str) -> usize {
    counts(app, Some(name), "").await.0.values().sum()
}

/// `GET /channels`: occupied channels, optionally filtered by prefix. Always an object.
pub(crate) async fn list(app: &AppRuntime, params: &Params<'_>) -> Result<Value, ApiError> {
    let prefix = param(params, "filter_by_prefix").unwrap_or("");
    let info = info_list(params);
    let mut channels = Map::new();
    for (name, n) in counts(app, None, prefix).await.0 {
        let attrs = channel_attributes(app, &name, n, &info);
        channels.insert(name, Value::Object(attrs));
    }
    Ok(json!({ "channels": channels }))
}

/// `GET /channels/{name}`: `occupied` plus the requested attributes.
pub(crate) async fn show(
    app: &AppRuntime,
    name: &str,
    params: &Params<'_>,
) -> Result<Value, ApiError> {
    checked_name(name)?;
    let info = info_list(params);
    let subscriptions = subscriptions(app, name).await;
    let mut out = Map::new();
    out.insert("occupied".into(), (subscriptions > 0).into());
    out.extend(channel_attributes(app, name, subscriptions, &info));
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
pub(crate) fn users(app: &AppRuntime, name: &str) -> Result<Value, ApiError> {
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

/// `GET /connections`: every open connection of the app (on every node).
pub(crate) async fn connections(app: &AppRuntime) -> Value {
    // No channel has an empty name: only the connection counts come back.
    json!({ "connections": counts(app, Some(""), "").await.1 })
}
