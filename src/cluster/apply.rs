//! Applying what other nodes say to this node's core: their events are delivered to the
//! sockets here, their presence members, signed-in users and counts join the local
//! registries under their node id, and their questions are answered. Every socket write goes
//! to flush jobs (`Pending::all_to_jobs`): the link task only queues frames.

use std::collections::HashMap;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use tracing::debug;

use super::bus::Bus;
use super::wire::{Msg, StateMember};
use crate::channel::presence::PresenceMember;
use crate::connection::{Pending, SocketId};
use crate::dispatch;
use crate::protocol::server;
use crate::state::{AppRuntime, State};

/// Queues this node's whole state for the others, read while no reported change is in
/// progress (`hooks::Hooks::snapshot`), so it agrees with the changes queued around it.
pub(super) fn queue_state(state: &State, bus: &Bus) {
    state.hooks.snapshot(|| bus.send(local_state(state, bus)));
}

/// Every presence member, signed-in user and (with `subscription_count`) channel count with
/// a socket on this node, for a `State` message.
fn local_state(state: &State, bus: &Bus) -> Msg {
    let mut members = Vec::new();
    let mut users = Vec::new();
    let mut counts = Vec::new();
    let mut occupied = Vec::new();
    let mut cached = Vec::new();
    for app in state.apps() {
        let id = &app.app.id;
        let events = app.channels.cached_events().into_iter();
        cached.extend(events.map(|(c, text, left)| (id.clone(), c, text, left)));
        if bus.shares_occupancy(id) {
            let local = app.channels.occupied("").into_iter();
            occupied.extend(local.map(|c| (id.clone(), c.name)));
        }
        for (channel, m) in app.channels.local_presence() {
            members.push(StateMember {
                app: id.clone(),
                channel,
                user_id: m.user_id,
                user_info: m.user_info,
            });
        }
        let local = app.users.local_users().into_iter();
        users.extend(local.map(|u| (id.clone(), u)));
        if bus.counts(id) {
            let counted = app.channels.counted_channels().into_iter();
            counts.extend(counted.map(|(c, n)| (id.clone(), c, n)));
        }
    }
    Msg::State {
        members,
        users,
        counts,
        occupied,
        cached: newest_cached(cached),
    }
}

/// Most bytes of cached events one `State` carries: every node answers each hello with its
/// state, so a node with many large cache channels sends the newest ones up to this much.
const CACHED_BYTES: usize = 1 << 20;

/// `cached` (app, channel, event, time left) newest first, up to [`CACHED_BYTES`] of events.
fn newest_cached(
    mut cached: Vec<(String, String, Utf8Bytes, Duration)>,
) -> Vec<(String, String, String, u64)> {
    cached.sort_by_key(|c| std::cmp::Reverse(c.3));
    let mut budget = CACHED_BYTES;
    let mut out = Vec::new();
    for (app, channel, text, left) in cached {
        let Some(rest) = budget.checked_sub(text.len()) else {
            continue;
        };
        budget = rest;
        let left = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        out.push((app, channel, text.as_str().to_owned(), left));
    }
    out
}

/// Applies one message from the bus. Our own messages come back too and are skipped.
/// Nothing that fails verification is applied, answered, or counts as a node heard from.
pub(super) fn receive(state: &State, bus: &Bus, payload: &[u8]) {
    let Some(env) = bus.key().open(payload) else {
        bus.rejected();
        return;
    };
    if env.node == bus.node() {
        return;
    }
    let node = env.node.as_str();
    let Some(new_peer) = bus.heard(node, env.seq) else {
        debug!(
            node,
            seq = env.seq,
            "scaling: skipped a message published twice"
        );
        return;
    };
    if new_peer
        && !matches!(
            env.msg,
            Msg::Hello | Msg::Bye | Msg::Draining | Msg::State { .. }
        )
        && bus.ask_hello()
    {
        // A node we did not know, or had given up on, that neither said hello nor gave its
        // state (we missed them, say while reconnecting): ask for everybody's state again,
        // at most once a beat (`bus::Gate`).
        bus.send(Msg::Hello);
    }
    let mut out = Pending::all_to_jobs();
    apply(state, bus, node, env.msg, &mut out);
    out.flush();
}

fn apply(state: &State, bus: &Bus, node: &str, msg: Msg, out: &mut Pending) {
    let app_of = |id: &str| state.app_by_id(id).cloned();
    match msg {
        Msg::Event {
            app,
            channels,
            event,
            data,
            except,
        } => {
            if let Some(app) = app_of(&app) {
                let except = except.as_deref().and_then(SocketId::parse);
                dispatch::deliver(&app, &channels, &event, &data, except, out);
            }
        }
        Msg::Client {
            app,
            channel,
            event,
            data,
            user_id,
        } => {
            if let Some(app) = app_of(&app) {
                let text =
                    || server::client_event(&event, &channel, data.as_deref(), user_id.as_deref());
                app.channels
                    .publish(&channel, false, || text().into(), None, out);
            }
        }
        Msg::Join {
            app,
            channel,
            user_id,
            user_info,
        } => {
            let member = PresenceMember::from_parts(user_id, user_info);
            if let (Some(app), Some(m)) = (app_of(&app), member) {
                app.channels.remote_join(node, &channel, m, out);
            }
        }
        Msg::Leave { app, channel, id } => {
            if let Some(app) = app_of(&app) {
                app.channels.remote_leave(node, &channel, &id, out);
            }
        }
        Msg::State {
            members,
            users,
            counts,
            occupied,
            cached,
        } => {
            bus.first_sync.state_from(node);
            replace_node(state, node, members, users, counts, out);
            replace_node_channels(state, node, occupied);
            for (app, channel, text, left) in cached {
                if let Some(app) = app_of(&app) {
                    let left = Duration::from_millis(left);
                    app.channels.adopt_cached(&channel, text.into(), left);
                }
            }
        }
        Msg::Occupied {
            app,
            channel,
            occupied,
        } => {
            if let Some(app) = app_of(&app) {
                app.channels.remote_occupied(node, &channel, occupied);
            }
        }
        Msg::Count {
            app,
            channel,
            subscribers,
        } => {
            if let Some(app) = app_of(&app) {
                app.channels.remote_count(node, &channel, subscribers, out);
            }
        }
        Msg::Online {
            app,
            user_id,
            online,
        } => {
            if let Some(app) = app_of(&app) {
                app.users.remote(node, &user_id, online, out);
            }
        }
        Msg::Hello => {
            // One state answers every hello of a beat (`bus::Gate`).
            if bus.ask_state() {
                queue_state(state, bus);
            }
        }
        Msg::Beat => {}
        Msg::Draining => bus.draining(node),
        Msg::Bye => {
            bus.forget(node);
            drop_node(state, node, out);
        }
        Msg::Terminate { app, user_id } => {
            if let Some(app) = app_of(&app) {
                app.close_user(&user_id);
            }
        }
        Msg::Query {
            id,
            app,
            channel,
            prefix,
        } => {
            let (channels, connections) = match app_of(&app) {
                Some(app) => answer(&app, channel.as_deref(), &prefix),
                None => (Vec::new(), 0),
            };
            bus.send(Msg::Reply {
                id,
                to: node.to_owned(),
                channels,
                connections,
            });
        }
        Msg::Reply {
            id,
            to,
            channels,
            connections,
        } => {
            if to == bus.node() {
                bus.replied(id, node, channels, connections);
            }
        }
    }
}

/// This node's answer to a count query.
fn answer(app: &AppRuntime, channel: Option<&str>, prefix: &str) -> (Vec<(String, usize)>, usize) {
    let channels = app.channels.local_counts(channel, prefix);
    (channels, app.connections.len())
}

/// Makes what `node` reports in its `State` the whole of what this node keeps for it, per
/// app; an app it does not mention has none of it.
fn replace_node(
    state: &State,
    node: &str,
    members: Vec<StateMember>,
    users: Vec<(String, String)>,
    counts: Vec<(String, String, usize)>,
    out: &mut Pending,
) {
    #[derive(Default)]
    struct Reported {
        members: Vec<(String, PresenceMember)>,
        users: Vec<String>,
        counts: Vec<(String, usize)>,
    }
    let mut by_app: HashMap<String, Reported> = HashMap::new();
    for m in members {
        if let Some(pm) = PresenceMember::from_parts(m.user_id, m.user_info) {
            let r = by_app.entry(m.app).or_default();
            r.members.push((m.channel, pm));
        }
    }
    for (app, user) in users {
        by_app.entry(app).or_default().users.push(user);
    }
    for (app, channel, n) in counts {
        by_app.entry(app).or_default().counts.push((channel, n));
    }
    for app in state.apps() {
        let r = by_app.remove(&app.app.id).unwrap_or_default();
        app.channels.replace_node(node, r.members, out);
        app.users.replace_node(node, &r.users, out);
        app.channels.replace_node_counts(node, r.counts, out);
    }
}

/// Makes `occupied` (app, channel) the whole of the channels `node` reports occupied.
fn replace_node_channels(state: &State, node: &str, occupied: Vec<(String, String)>) {
    let mut by_app: HashMap<String, Vec<String>> = HashMap::new();
    for (app, channel) in occupied {
        by_app.entry(app).or_default().push(channel);
    }
    for app in state.apps() {
        let channels = by_app.remove(&app.app.id).unwrap_or_default();
        app.channels.replace_node_channels(node, &channels);
    }
}

/// Forgets everything `node` reported: it said goodbye or went silent.
pub(super) fn drop_node(state: &State, node: &str, out: &mut Pending) {
    debug!(node, "scaling: node gone; dropping its presence members");
    for app in state.apps() {
        app.channels.replace_node(node, Vec::new(), out);
        app.users.replace_node(node, &[], out);
        app.channels.replace_node_counts(node, Vec::new(), out);
        app.channels.replace_node_channels(node, &[]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::cluster::wire::{encode, Key};
    use crate::config::{Config, Scaling};

    fn node() -> (State, Arc<Bus>, tokio::sync::mpsc::Receiver<String>) {
        let config = Config::default();
        let key = Key::new(Some("k"), &config.apps, "reverb");
        let bus = Bus::new(
            Scaling::new("redis://x", "reverb"),
            key,
            HashSet::new(),
            HashSet::new(),
        );
        let outbox = bus.inbox_for_link.lock().take().unwrap();
        (State::new(config), bus, outbox)
    }

    /// What `bus` queued for the other nodes, by message kind.
    fn sent(outbox: &mut tokio::sync::mpsc::Receiver<String>) -> Vec<String> {
        std::iter::from_fn(|| outbox.try_recv().ok())
            .map(|text| {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                match v {
                    serde_json::Value::String(kind) => kind,
                    serde_json::Value::Object(o) => o.keys().next().unwrap().clone(),
                    other => panic!("{other}"),
                }
            })
            .collect()
    }

    #[test]
    fn messages_that_fail_verification_are_counted_and_never_answered() {
        let (state, bus, mut outbox) = node();
        let forged = Key::new(Some("not the key"), &[], "reverb");
        let hello = encode(&Msg::Hello);
        for text in [
            forged.seal("intruder", 1, &hello),
            r#"{"resound":2,"node":"intruder","seq":1,"msg":"hello"}"#.to_owned(),
            r#"{"resound":1,"node":"intruder","seq":1,"msg":"hello"}"#.to_owned(),
            "not json".to_owned(),
        ] {
            receive(&state, &bus, text.as_bytes());
        }
        assert_eq!(bus.rejected_count(), 4);
        assert_eq!(sent(&mut outbox), Vec::<String>::new());
        assert_eq!(bus.live_peers(), HashSet::new(), "nobody was heard from");
        receive(&state, &bus, bus.key().seal("peer", 1, &hello).as_bytes());
        assert_eq!(sent(&mut outbox), ["state"]);
        assert_eq!(bus.live_peers(), HashSet::from(["peer".to_owned()]));
    }

    #[test]
    fn many_new_nodes_in_one_beat_cause_one_hello_and_one_state_then_one_more_at_the_beat() {
        let (state, bus, mut outbox) = node();
        for i in 0..50 {
            let (beat, hello) = (encode(&Msg::Beat), encode(&Msg::Hello));
            receive(
                &state,
                &bus,
                bus.key().seal(&format!("b{i}"), 1, &beat).as_bytes(),
            );
            receive(
                &state,
                &bus,
                bus.key().seal(&format!("h{i}"), 1, &hello).as_bytes(),
            );
        }
        assert_eq!(sent(&mut outbox), ["hello", "state"]);
        assert_eq!(
            bus.due(),
            (true, true),
            "the rest are owed at the next beat, as one"
        );
        assert_eq!(bus.due(), (false, false));
        // A reconnection says hello anyway; the next hello from a node is answered at once.
        bus.resynced();
        receive(
            &state,
            &bus,
            bus.key().seal("late", 1, &encode(&Msg::Hello)).as_bytes(),
        );
        assert_eq!(sent(&mut outbox), ["state"]);
    }
}
