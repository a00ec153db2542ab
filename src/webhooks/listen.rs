//! The listener on the core's seam: turns the activities webhooks are made of into owned
//! [`Note`]s and queues them for the worker. It never waits: when the queue is full the note
//! is dropped, counted and logged (`Stats`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Kind, Stats};
use crate::apps::App;
use crate::hooks::{Activity, Listener};

/// Something a webhook may be made of, copied out of an [`Activity`].
#[derive(Debug)]
pub(super) struct Note {
    pub(super) app: Arc<str>,
    pub(super) kind: Kind,
    pub(super) channel: String,
    /// `member_*` and `client_event` (presence) user id, in its string form.
    pub(super) user_id: Option<String>,
    /// `client_event`: the event name, `data` as a string, the sender.
    pub(super) client: Option<ClientEvent>,
    /// `subscription_count`.
    pub(super) count: usize,
}

#[derive(Debug)]
pub(super) struct ClientEvent {
    pub(super) event: String,
    pub(super) data: Option<String>,
    pub(super) socket_id: String,
}

/// One app as the listener sees it: its id, shared, and the kinds of note its targets need.
struct Heard {
    id: Arc<str>,
    kinds: u8,
}

pub(super) struct Tap {
    apps: HashMap<String, Heard>,
    tx: mpsc::Sender<Note>,
    stats: Arc<Stats>,
}

impl Tap {
    /// A tap for the apps with webhook targets.
    pub(super) fn new(apps: &[App], tx: mpsc::Sender<Note>, stats: Arc<Stats>) -> Tap {
        let apps = apps
            .iter()
            .filter(|a| !a.webhooks.is_empty())
            .map(|a| {
                let heard = Heard {
                    id: a.id.as_str().into(),
                    kinds: super::needed(&a.webhooks),
                };
                (a.id.clone(), heard)
            })
            .collect();
        Tap { apps, tx, stats }
    }
}

/// `user_id` as sent (a JSON string or number) in its string form.
fn id_text(raw: &RawValue) -> String {
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => s,
        Err(_) => raw.get().to_owned(),
    }
}

/// Client event `data` as Pusher's webhook carries it: a string as the string itself,
/// anything else as the JSON the client sent.
fn data_text(raw: &RawValue) -> String {
    serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
}

impl Listener for Tap {
    fn on(&self, app_id: &str, activity: &Activity<'_>) {
        let Some(app) = self.apps.get(app_id) else {
            return;
        };
        // Nothing is copied for what no target needs.
        let kind = match activity {
            Activity::ClusterOccupied { .. } => Kind::Occupied,
            Activity::ClusterVacated { .. } => Kind::Vacated,
            Activity::ClusterMemberAdded { .. } => Kind::MemberAdded,
            Activity::ClusterMemberRemoved { .. } => Kind::MemberRemoved,
            Activity::CacheMiss { .. } => Kind::CacheMiss,
            Activity::ClusterSubscriptionCount { .. } => Kind::Count,
            Activity::ClientEvent { .. } => Kind::ClientEvent,
            _ => return,
        };
        if app.kinds & kind.bit() == 0 {
            return;
        }
        let note = |kind: Kind, channel: &str| Note {
            app: app.id.clone(),
            kind,
            channel: channel.to_owned(),
            user_id: None,
            client: None,
            count: 0,
        };
        let n = match *activity {
            Activity::ClusterOccupied { channel } => note(Kind::Occupied, channel),
            Activity::ClusterVacated { channel } => note(Kind::Vacated, channel),
            Activity::ClusterMemberAdded { channel, user_id } => Note {
                user_id: Some(user_id.to_owned()),
                ..note(Kind::MemberAdded, channel)
            },
            Activity::ClusterMemberRemoved { channel, user_id } => Note {
                user_id: Some(user_id.to_owned()),
                ..note(Kind::MemberRemoved, channel)
            },
            Activity::CacheMiss { channel, .. } => note(Kind::CacheMiss, channel),
            Activity::ClusterSubscriptionCount { channel, count } => Note {
                count,
                ..note(Kind::Count, channel)
            },
            Activity::ClientEvent {
                channel,
                event,
                data,
                user_id,
                socket_id,
            } => Note {
                user_id: user_id.map(id_text),
                client: Some(ClientEvent {
                    event: event.to_owned(),
                    data: data.map(data_text),
                    socket_id: socket_id.to_string(),
                }),
                ..note(Kind::ClientEvent, channel)
            },
            _ => return,
        };
        if self.tx.try_send(n).is_err() {
            self.stats.dropped(1, "the node's webhook queue is full");
        }
    }
}
