//! Presence membership: who is in a presence channel, counted per user rather than per socket.
//! Decides when `member_added` / `member_removed` happen; sends nothing itself.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

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
    pub fn from_channel_data(data: &str) -> Result<PresenceMember, PusherError> {
        #[derive(Deserialize)]
        struct ChannelData {
            user_id: Box<RawValue>,
            #[serde(default)]
            user_info: Option<Box<RawValue>>,
        }
        let cd: ChannelData =
            serde_json::from_str(data).map_err(|_| PusherError::InvalidMessage)?;
        let id = match serde_json::from_str::<serde_json::Value>(cd.user_id.get()) {
            Ok(serde_json::Value::String(s)) if !s.is_empty() => s,
            Ok(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(PusherError::InvalidMessage),
        };
        Ok(PresenceMember {
            id,
            user_id: cd.user_id,
            user_info: cd.user_info,
        })
    }

    /// A member taken from a signed-in user (presence joined without `channel_data`).
    pub fn from_user(id: &str, user_info: Option<Box<RawValue>>) -> PresenceMember {
        let user_id = serde_json::value::to_raw_value(id).expect("a string serializes");
        PresenceMember {
            id: id.to_owned(),
            user_id,
            user_info,
        }
    }
}

/// The members of one presence channel.
#[derive(Debug, Default)]
pub struct Presence {
    /// member id -> (member, number of this channel's sockets that belong to the user)
    members: HashMap<String, (PresenceMember, u32)>,
}

impl Presence {
    /// Adds one socket of `member`; true when it is the user's first (announce `member_added`).
    pub fn join(&mut self, member: PresenceMember) -> bool {
        let entry = self.members.entry(member.id.clone()).or_insert((member, 0));
        entry.1 += 1;
        entry.1 == 1
    }

    /// Removes one socket of user `id`; returns the member when it was the user's last
    /// (announce `member_removed`).
    pub fn leave(&mut self, id: &str) -> Option<PresenceMember> {
        let entry = self.members.get_mut(id)?;
        entry.1 -= 1;
        if entry.1 == 0 {
            self.members.remove(id).map(|(m, _)| m)
        } else {
            None
        }
    }

    /// Unique users.
    pub fn count(&self) -> usize {
        self.members.len()
    }

    /// String ids of all users.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// The `subscription_succeeded` payload: `{"presence":{"count":..,"ids":[..],"hash":{..}}}`.
    pub fn snapshot_json(&self) -> String {
        // user_info goes out as the exact bytes received: no re-parsing per join.
        let mut ids = Vec::with_capacity(self.members.len());
        let mut hash = std::collections::BTreeMap::new();
        for (id, (m, _)) in &self.members {
            ids.push(&*m.user_id);
            hash.insert(id.as_str(), m.user_info.as_deref());
        }
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            count: usize,
            ids: Vec<&'a RawValue>,
            hash: std::collections::BTreeMap<&'a str, Option<&'a RawValue>>,
        }
        #[derive(serde::Serialize)]
        struct Outer<'a> {
            presence: Inner<'a>,
        }
        serde_json::to_string(&Outer {
            presence: Inner {
                count: self.members.len(),
                ids,
                hash,
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
        assert!(p.join(member(r#"{"user_id":"1","user_info":{"name":"Taylor"}}"#)));
        assert!(
            !p.join(member(r#"{"user_id":1}"#)),
            "1 and \"1\" are the same member"
        );
        assert_eq!(p.count(), 1);
        assert!(p.leave("1").is_none());
        assert_eq!(p.leave("1").unwrap().id, "1");
        assert_eq!(p.count(), 0);
        assert_eq!(
            p.snapshot_json(),
            r#"{"presence":{"count":0,"ids":[],"hash":{}}}"#
        );
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
    fn bad_channel_data() {
        for bad in [
            "",
            "[]",
            r#"{"user_info":{}}"#,
            r#"{"user_id":""}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":{}}"#,
        ] {
            assert!(PresenceMember::from_channel_data(bad).is_err(), "{bad}");
        }
    }
}
