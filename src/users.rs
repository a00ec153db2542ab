//! Signed-in users (`pusher:signin`): who is online on which connections, and who watches whom.
//! Decides online/offline transitions and sends `watchlist_events` to watchers. With scaling,
//! a user is online while signed in here or on another node (see `cluster`).
//!
//! Lock order is always `transitions`, then `sockets`, then `watchers`, never the reverse, so
//! nothing can deadlock; nothing is held across an `.await` (sends never wait).

use std::collections::{HashMap, HashSet};

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connection::{ConnectionHandle, Outgoing, Pending, SocketId};
use crate::hooks::{Activity, AppHooks};
use crate::protocol::message::from_object;
use crate::protocol::{server, PusherError};

/// Most watchlist entries honoured per user.
pub(crate) const MAX_WATCHLIST: usize = 100;

/// A user as signed in on one connection, from the verified `user_data`.
#[derive(Debug, Clone)]
pub(crate) struct SignedInUser {
    pub id: String,
    pub user_info: Option<Box<RawValue>>,
    /// At most [`MAX_WATCHLIST`] ids.
    pub watchlist: Vec<String>,
    /// True when the client sent more than [`MAX_WATCHLIST`] ids.
    pub watchlist_truncated: bool,
}

impl SignedInUser {
    /// Reads `user_data`: an object with a non-empty string (or numeric) `id`, optional
    /// `user_info` and an optional `watchlist` array of ids.
    pub(crate) fn from_user_data(user_data: &str) -> Result<SignedInUser, PusherError> {
        #[derive(Deserialize)]
        struct UserData {
            id: serde_json::Value,
            #[serde(default)]
            user_info: Option<Box<RawValue>>,
            #[serde(default)]
            watchlist: Option<Vec<serde_json::Value>>,
        }
        let ud: UserData = from_object(user_data).ok_or(PusherError::Unauthorized)?;
        let id = id_string(&ud.id).ok_or(PusherError::Unauthorized)?;
        let mut watchlist = ud
            .watchlist
            .unwrap_or_default()
            .iter()
            .map(id_string)
            .collect::<Option<Vec<_>>>()
            .ok_or(PusherError::Unauthorized)?;
        let watchlist_truncated = watchlist.len() > MAX_WATCHLIST;
        watchlist.truncate(MAX_WATCHLIST);
        Ok(SignedInUser {
            id,
            user_info: ud.user_info,
            watchlist,
            watchlist_truncated,
        })
    }
}

fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

type Sockets = HashMap<SocketId, ConnectionHandle>;

/// Signed-in users and watchers of one app.
pub(crate) struct UserRegistry {
    /// user id -> that user's signed-in connections
    sockets: DashMap<String, Sockets>,
    /// watched user id -> connections watching it
    watchers: DashMap<String, Sockets>,
    /// Held for a whole sign-in or sign-out, so a new watcher's first report and the
    /// online/offline events of the users it watches reach it in the order they happened
    /// (and listeners hear `UserOnline`/`UserOffline` in that order: sign-ins are serialised
    /// per app). Sign-ins are rare next to messages; one lock per app costs nothing
    /// measurable. It also guards the users other nodes report online: user id -> those nodes.
    transitions: Mutex<HashMap<String, HashSet<String>>>,
    hooks: AppHooks,
}

impl UserRegistry {
    pub(crate) fn new(hooks: AppHooks) -> UserRegistry {
        UserRegistry {
            sockets: DashMap::new(),
            watchers: DashMap::new(),
            transitions: Mutex::default(),
            hooks,
        }
    }

    /// Another node reports `user_id` online (its first connection there) or offline (its
    /// last one): watchers here hear of it when that changes whether the user is online
    /// anywhere.
    pub(crate) fn remote(&self, node: &str, user_id: &str, online: bool, out: &mut Pending) {
        let mut remote = self.transitions.lock();
        self.remote_locked(&mut remote, node, user_id, online, out);
    }

    fn remote_locked(
        &self,
        remote: &mut HashMap<String, HashSet<String>>,
        node: &str,
        user_id: &str,
        online: bool,
        out: &mut Pending,
    ) {
        let was = self.is_online_locked(remote, user_id);
        if online {
            remote
                .entry(user_id.to_owned())
                .or_default()
                .insert(node.to_owned());
        } else if let Some(nodes) = remote.get_mut(user_id) {
            nodes.remove(node);
            if nodes.is_empty() {
                remote.remove(user_id);
            }
        }
        if was != self.is_online_locked(remote, user_id) {
            self.notify(user_id, online, out);
        }
    }

    /// Makes `users` the whole of who `node` reports online; an empty list drops the node.
    pub(crate) fn replace_node(&self, node: &str, users: &[String], out: &mut Pending) {
        let mut remote = self.transitions.lock();
        let reported: HashSet<&String> = users.iter().collect();
        let gone: Vec<String> = remote
            .iter()
            .filter(|(id, nodes)| nodes.contains(node) && !reported.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remote_locked(&mut remote, node, &id, false, out);
        }
        for id in users {
            self.remote_locked(&mut remote, node, id, true, out);
        }
    }

    /// Users signed in on this node.
    pub(crate) fn local_users(&self) -> Vec<String> {
        self.sockets.iter().map(|e| e.key().clone()).collect()
    }

    fn is_online_locked(&self, remote: &HashMap<String, HashSet<String>>, user_id: &str) -> bool {
        remote.contains_key(user_id) || self.sockets.get(user_id).is_some_and(|s| !s.is_empty())
    }

    /// Records `handle` as signed in as `user`, tells watchers when the user comes online,
    /// starts watching the user's watchlist and sends its current state to `handle`.
    pub(crate) fn sign_in(&self, user: &SignedInUser, handle: &ConnectionHandle) {
        let mut out = Pending::new();
        let ordered = self.hooks.ordered();
        let remote = self.transitions.lock();
        {
            let mut entry = self.sockets.entry(user.id.clone()).or_default();
            let first = entry.is_empty();
            entry.insert(handle.id(), handle.clone());
            self.hooks.report(|| Activity::SignedIn {
                user_id: &user.id,
                socket_id: handle.id(),
            });
            if first {
                self.hooks
                    .report(|| Activity::UserOnline { user_id: &user.id });
                if !remote.contains_key(&user.id) {
                    self.notify(&user.id, true, &mut out);
                }
            }
        }
        for w in &user.watchlist {
            self.watchers
                .entry(w.clone())
                .or_default()
                .insert(handle.id(), handle.clone());
        }
        if !user.watchlist.is_empty() {
            let (online, offline): (Vec<&str>, Vec<&str>) = user
                .watchlist
                .iter()
                .map(String::as_str)
                .partition(|w| self.is_online_locked(&remote, w));
            let text = server::watchlist_events(&online, &offline).into();
            out.send(handle, Outgoing::text(text));
        }
        drop(remote);
        drop(ordered);
        out.flush();
    }

    /// Undoes [`Self::sign_in`] for a closing connection; watchers hear `offline` when it was
    /// the user's last connection.
    pub(crate) fn sign_out(&self, user: &SignedInUser, id: SocketId) {
        let mut out = Pending::new();
        let ordered = self.hooks.ordered();
        let remote = self.transitions.lock();
        for w in &user.watchlist {
            self.watchers.remove_if_mut(w, |_, set| {
                set.remove(&id);
                set.is_empty()
            });
        }
        if let Some(mut entry) = self.sockets.get_mut(&user.id) {
            // Only a connection that signed in is removed (its socket id is unique).
            if entry.remove(&id).is_some() {
                self.hooks.report(|| Activity::SignedOut {
                    user_id: &user.id,
                    socket_id: id,
                });
                if entry.is_empty() {
                    self.hooks
                        .report(|| Activity::UserOffline { user_id: &user.id });
                    if !remote.contains_key(&user.id) {
                        self.notify(&user.id, false, &mut out);
                    }
                }
            }
        }
        self.sockets.remove_if(&user.id, |_, set| set.is_empty());
        drop(remote);
        drop(ordered);
        out.flush();
    }

    /// Queues `watchlist_events` for the watchers of `user_id`.
    fn notify(&self, user_id: &str, online: bool, out: &mut Pending) {
        if let Some(watchers) = self.watchers.get(user_id) {
            let ids = [user_id];
            let text = if online {
                server::watchlist_events(&ids, &[])
            } else {
                server::watchlist_events(&[], &ids)
            };
            let frame = Outgoing::text(text.into());
            for h in watchers.values() {
                out.send(h, frame.clone());
            }
        }
    }

    /// Every connection signed in as `user_id`.
    pub(crate) fn connections(&self, user_id: &str) -> Vec<ConnectionHandle> {
        self.sockets
            .get(user_id)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_rules() {
        let u = SignedInUser::from_user_data(
            r#"{"id":"42","user_info":{"name":"Ada"},"watchlist":["7",9]}"#,
        )
        .unwrap();
        assert_eq!(
            (u.id.as_str(), u.watchlist.clone()),
            ("42", vec!["7".to_owned(), "9".to_owned()])
        );
        assert_eq!(
            SignedInUser::from_user_data(r#"{"id":12}"#).unwrap().id,
            "12"
        );
        for bad in [
            "",
            "[]",
            r#"{"id":""}"#,
            r#"{"user_info":{}}"#,
            r#"{"id":null}"#,
            r#"{"id":"1","watchlist":"7"}"#,
            r#"["42"]"#,
        ] {
            assert!(SignedInUser::from_user_data(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..150).map(|i| i.to_string()).collect();
        let u = SignedInUser::from_user_data(
            &serde_json::json!({"id":"1","watchlist":many}).to_string(),
        )
        .unwrap();
        assert_eq!((u.watchlist.len(), u.watchlist_truncated), (100, true));
        assert_eq!(u.watchlist[99], "99");
    }
}
