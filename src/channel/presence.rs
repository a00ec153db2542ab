//! Presence membership: who is in a presence channel, counted per user rather than per socket.
//! Decides when `member_added` / `member_removed` happen; sends nothing itself.
//!
//! Beside the bookkeeping, the present members are kept in a persistent map ([`Members`]):
//! taking a copy for a joiner's `subscription_succeeded` is O(1) under the channel's entry,
//! and the copy is serialized after the entry is released, however large the channel.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::message::from_object;
use crate::protocol::PusherError;

/// A user as announced in `channel_data`.
#[derive(Debug, Clone)]
pub struct PresenceMember {
    /// The string form of `user_id` (`"1"` and `1` are the same member).
    pub id: String,
    /// `user_id` exactly as the app sent it, echoed back to clients.
    pub user_id: Box<RawValue>,
    pub user_info: Option<Box<RawValue>>,
}

impl PresenceMember {
    /// Reads `{"user_id": .., "user_info": ..}`. `user_id` must be a non-empty string or a number.
    pub(crate) fn from_channel_data(data: &str) -> Result<PresenceMember, PusherError> {
        #[derive(Deserialize)]
        struct ChannelData {
            user_id: Box<RawValue>,
            #[serde(default)]
            user_info: Option<Box<RawValue>>,
        }
        let cd: ChannelData = from_object(data).ok_or(PusherError::InvalidMessage)?;
        PresenceMember::from_parts(cd.user_id, cd.user_info).ok_or(PusherError::InvalidMessage)
    }

    /// A member from its two JSON parts, `None` unless `user_id` is a non-empty string or a
    /// number.
    pub(crate) fn from_parts(
        user_id: Box<RawValue>,
        user_info: Option<Box<RawValue>>,
    ) -> Option<PresenceMember> {
        let id = match serde_json::from_str::<serde_json::Value>(user_id.get()).ok()? {
            serde_json::Value::String(s) if !s.is_empty() => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(PresenceMember {
            id,
            user_id,
            user_info,
        })
    }

    /// A member taken from a signed-in user (presence joined without `channel_data`).
    pub(crate) fn from_user(id: &str, user_info: Option<Box<RawValue>>) -> PresenceMember {
        let user_id = serde_json::value::to_raw_value(id).expect("a string serializes");
        PresenceMember {
            id: id.to_owned(),
            user_id,
            user_info,
        }
    }
}

/// The members of one presence channel, across the cluster: a user is present while it has
/// a socket here or another node reports it (see `cluster`).
#[derive(Debug, Default)]
pub(crate) struct Presence {
    members: HashMap<String, Entry>,
    /// The present members again, in a persistent map shared with the copies taken.
    view: Members,
}

/// The present members at one moment, by string id: a copy that costs O(1) to take.
#[derive(Debug, Default, Clone)]
pub(crate) struct Members(imbl::OrdMap<String, Arc<PresenceMember>>);

#[derive(Debug)]
struct Entry {
    member: Arc<PresenceMember>,
    /// This node's sockets in the channel that belong to the user.
    local: u32,
    /// Other nodes that report the user in the channel.
    nodes: Vec<String>,
}

impl Entry {
    fn present(&self) -> bool {
        self.local > 0 || !self.nodes.is_empty()
    }
}

/// What a local join changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The user's first socket on this node (tell the other nodes).
    pub first_local: bool,
    /// The user was not present anywhere before (announce `member_added`).
    pub added: bool,
}

/// What a local leave changed.
#[derive(Debug)]
pub(crate) struct Left {
    /// The user's last socket on this node left (tell the other nodes).
    pub last_local: bool,
    /// The user is gone everywhere (announce `member_removed`).
    pub removed: Option<Arc<PresenceMember>>,
}

impl Presence {
    /// Adds one local socket of `member`.
    pub(crate) fn join(&mut self, member: PresenceMember) -> Joined {
        let entry = self.entry(member);
        entry.local += 1;
        let joined = Joined {
            first_local: entry.local == 1,
            added: entry.local == 1 && entry.nodes.is_empty(),
        };
        if joined.added {
            let m = entry.member.clone();
            self.view.0.insert(m.id.clone(), m);
        }
        joined
    }

    /// The user's entry, made absent (no socket, no node) when new.
    fn entry(&mut self, member: PresenceMember) -> &mut Entry {
        self.members.entry(member.id.clone()).or_insert(Entry {
            member: Arc::new(member),
            local: 0,
            nodes: Vec::new(),
        })
    }

    /// Removes one local socket of user `id`.
    pub(crate) fn leave(&mut self, id: &str) -> Left {
        let Some(entry) = self.members.get_mut(id).filter(|e| e.local > 0) else {
            return Left {
                last_local: false,
                removed: None,
            };
        };
        entry.local -= 1;
        Left {
            last_local: entry.local == 0,
            removed: self.remove_if_absent(id),
        }
    }

    /// Another node reports `member`; true when the user was not present before.
    pub(crate) fn remote_join(&mut self, node: &str, member: PresenceMember) -> bool {
        let entry = self.entry(member);
        let added = !entry.present();
        if !entry.nodes.iter().any(|n| n == node) {
            entry.nodes.push(node.to_owned());
        }
        if added {
            let m = entry.member.clone();
            self.view.0.insert(m.id.clone(), m);
        }
        added
    }

    /// Another node no longer has user `id`; the member when it is now gone everywhere.
    pub(crate) fn remote_leave(&mut self, node: &str, id: &str) -> Option<Arc<PresenceMember>> {
        self.members.get_mut(id)?.nodes.retain(|n| n != node);
        self.remove_if_absent(id)
    }

    /// Ids of the users `node` reports.
    pub(crate) fn ids_on(&self, node: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, e)| e.nodes.iter().any(|n| n == node))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Members with a socket on this node.
    pub(crate) fn local_members(&self) -> impl Iterator<Item = &PresenceMember> {
        self.members
            .values()
            .filter(|e| e.local > 0)
            .map(|e| &*e.member)
    }

    fn remove_if_absent(&mut self, id: &str) -> Option<Arc<PresenceMember>> {
        match self.members.get(id) {
            Some(e) if !e.present() => {
                self.view.0.remove(id);
                self.members.remove(id).map(|e| e.member)
            }
            _ => None,
        }
    }

    /// Whether user `id` is present (here or on another node).
    pub(crate) fn has(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    /// Unique users.
    pub(crate) fn count(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// String ids of all users.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// The present members, as a copy that costs O(1) to take (see the module notes).
    pub(crate) fn members(&self) -> Members {
        self.view.clone()
    }

    /// The `subscription_succeeded` payload for the members present now.
    #[cfg(test)]
    pub(crate) fn snapshot_json(&self) -> String {
        self.members().to_json()
    }
}

impl Members {
    /// The members, in string order of their ids.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<PresenceMember>> {
        self.0.values()
    }

    /// The `subscription_succeeded` payload: `{"presence":{"count":..,"ids":[..],"hash":{..}}}`,
    /// ids in string order. `user_id` and `user_info` go out as the exact bytes received.
    pub(crate) fn to_json(&self) -> String {
        struct Ids<'a>(&'a Members);
        impl serde::Serialize for Ids<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0 .0.values().map(|m| &*m.user_id))
            }
        }
        struct Hash<'a>(&'a Members);
        impl serde::Serialize for Hash<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0 .0.iter().map(|(id, m)| (id, m.user_info.as_deref())))
            }
        }
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            count: usize,
            ids: Ids<'a>,
            hash: Hash<'a>,
        }
        #[derive(serde::Serialize)]
        struct Outer<'a> {
            presence: Inner<'a>,
        }
        serde_json::to_string(&Outer {
            presence: Inner {
                count: self.0.len(),
                ids: Ids(self),
                hash: Hash(self),
            },
        })
        .expect("presence serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(data: &str) -> PresenceMember {
        PresenceMember::from_channel_data(data).unwrap()
    }

    #[test]
    fn one_user_two_sockets_counts_once() {
        let mut p = Presence::default();
        assert!(
            p.join(member(r#"{"user_id":"1","user_info":{"name":"Taylor"}}"#))
                .added
        );
        assert!(
            !p.join(member(r#"{"user_id":1}"#)).added,
            "1 and \"1\" are the same member"
        );
        assert_eq!(p.count(), 1);
        assert!(p.leave("1").removed.is_none());
        assert_eq!(p.leave("1").removed.unwrap().id, "1");
        assert!(!p.leave("1").last_local, "an unknown user leaves nothing");
        assert_eq!(p.count(), 0);
        assert_eq!(
            p.snapshot_json(),
            r#"{"presence":{"count":0,"ids":[],"hash":{}}}"#
        );
    }

    #[test]
    fn a_user_on_two_nodes_stays_until_gone_from_both() {
        let mut p = Presence::default();
        assert!(p.remote_join("b", member(r#"{"user_id":"1"}"#)));
        assert!(
            !p.remote_join("b", member(r#"{"user_id":"1"}"#)),
            "repeats are idempotent"
        );
        let j = p.join(member(r#"{"user_id":"1"}"#));
        assert_eq!(
            j,
            Joined {
                first_local: true,
                added: false
            }
        );
        assert_eq!(p.ids_on("b"), vec!["1".to_owned()]);
        let l = p.leave("1");
        assert!(
            l.last_local && l.removed.is_none(),
            "node b still has the user"
        );
        assert_eq!(p.local_members().count(), 0);
        assert_eq!(p.remote_leave("b", "1").unwrap().id, "1");
        assert!(p.is_empty());
        assert!(p.remote_leave("b", "1").is_none());
    }

    #[test]
    fn snapshot_echoes_ids_and_info() {
        let mut p = Presence::default();
        p.join(member(
            r#"{"user_id":"7","user_info":{"avatar":"https:\/\/x"}}"#,
        ));
        assert_eq!(
            p.snapshot_json(),
            r#"{"presence":{"count":1,"ids":["7"],"hash":{"7":{"avatar":"https:\/\/x"}}}}"#
        );
    }

    #[test]
    fn a_copy_of_the_members_keeps_its_moment() {
        let mut p = Presence::default();
        p.join(member(r#"{"user_id":"b","user_info":{"n":2}}"#));
        p.remote_join("n2", member(r#"{"user_id":"a"}"#));
        let before = p.members();
        p.join(member(r#"{"user_id":"c"}"#));
        p.leave("b");
        p.join(member(r#"{"user_id":"a"}"#));
        assert_eq!(
            before.to_json(),
            r#"{"presence":{"count":2,"ids":["a","b"],"hash":{"a":null,"b":{"n":2}}}}"#
        );
        assert_eq!(
            p.snapshot_json(),
            r#"{"presence":{"count":2,"ids":["a","c"],"hash":{"a":null,"c":null}}}"#
        );
    }

    #[test]
    fn bad_channel_data() {
        for bad in [
            "",
            "[]",
            r#"{"user_info":{}}"#,
            r#"{"user_id":""}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":{}}"#,
            r#"["5"]"#,
            r#"["5",{"name":"x"}]"#,
        ] {
            assert!(PresenceMember::from_channel_data(bad).is_err(), "{bad}");
        }
    }
}
