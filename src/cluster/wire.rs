//! What nodes say to each other, and how it travels: one JSON message per Redis `PUBLISH`,
//! inside an envelope with our marker, the sending node's id, a sequence number and a MAC.
//!
//! The envelope is signed because whoever can `PUBLISH` on the channel could otherwise speak
//! for a node: deliver events on private channels, close users, rewrite presence. Every node
//! holds the cluster's [`Key`]; a message whose MAC does not verify is never applied.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::apps::App;

type HmacSha256 = Hmac<Sha256>;

/// Marks our messages on a channel other software may share. 2: signed envelopes (a node
/// of version 1 and one of version 2 ignore each other's messages).
const WIRE_VERSION: u32 = 2;

/// Most messages a node publishes in one pipeline, and so the most a lost connection makes it
/// publish twice (the receivers' dedup window, `peer::RECENT`, is sized from it).
pub(super) const BATCH: usize = 256;

/// What follows the signed part of every envelope: `,"mac":"`, 64 hex digits, `"}`.
const MAC_FIELD: &[u8] = b",\"mac\":\"";
const TAIL: usize = MAC_FIELD.len() + 64 + 2;

/// The HMAC key that turns the apps' ids and secrets into the cluster's key when
/// `RESOUND_SCALING_SECRET` is not set (docs/scaling.md says how, for operators).
const DERIVATION_LABEL: &str = "resound scaling key v2";

/// One message between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Msg {
    /// An HTTP API event: deliver `data` verbatim on each channel, skipping `except`.
    Event {
        app: String,
        channels: Vec<String>,
        event: String,
        data: String,
        except: Option<String>,
    },
    /// A client event relayed by the sender's node (the sender is not here).
    Client {
        app: String,
        channel: String,
        event: String,
        data: Option<Box<RawValue>>,
        user_id: Option<Box<RawValue>>,
    },
    /// A user's first socket on the sending node joined a presence channel.
    Join {
        app: String,
        channel: String,
        user_id: Box<RawValue>,
        user_info: Option<Box<RawValue>>,
    },
    /// A user's last socket on the sending node left a presence channel.
    Leave {
        app: String,
        channel: String,
        id: String,
    },
    /// A user's first connection on the sending node signed in (`online`), or its last one
    /// closed.
    Online {
        app: String,
        user_id: String,
        online: bool,
    },
    /// The sending node's subscriber count of a channel changed (sent only for apps with
    /// `subscription_count` on).
    Count {
        app: String,
        channel: String,
        subscribers: usize,
    },
    /// The sending node's first subscriber of a channel arrived (`occupied`), or its last
    /// one left (sent only for apps with webhooks, which need the cluster's occupancy).
    Occupied {
        app: String,
        channel: String,
        occupied: bool,
    },
    /// Every presence member, signed-in user and (with `subscription_count`) channel count of
    /// the sending node (replaces what it reported before).
    State {
        members: Vec<StateMember>,
        /// (app id, user id)
        #[serde(default)]
        users: Vec<(String, String)>,
        /// (app id, channel, subscribers)
        #[serde(default)]
        counts: Vec<(String, String, usize)>,
        /// (app id, channel) of the sending node's occupied channels, for apps with webhooks.
        #[serde(default)]
        occupied: Vec<(String, String)>,
        /// (app id, cache channel, its last event as delivered, milliseconds left of its
        /// time to live): so that a node that starts later replays it too.
        #[serde(default)]
        cached: Vec<(String, String, String, u64)>,
    },
    /// A node (re)joined: everybody answers with `State`.
    Hello,
    /// The sending node is alive.
    Beat,
    /// The sending node is draining (shutting down): it is alive, keeps its members and
    /// channels until its clients leave (it reports each departure as usual) and answers
    /// queries, but no longer leads. Sent at the start of the drain and then instead of
    /// each beat, so a node that joins meanwhile learns it too.
    Draining,
    /// The sending node is gone (its drain is over).
    Bye,
    /// Close every connection of a user.
    Terminate { app: String, user_id: String },
    /// Asks every node for its subscriber counts: one channel, or all with a prefix.
    Query {
        id: u64,
        app: String,
        channel: Option<String>,
        prefix: String,
    },
    /// The answer to `Query` `id`, for node `to`: occupied channels and their subscriber
    /// counts, and the node's open connections.
    Reply {
        id: u64,
        to: String,
        channels: Vec<(String, usize)>,
        connections: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StateMember {
    pub app: String,
    pub channel: String,
    pub user_id: Box<RawValue>,
    pub user_info: Option<Box<RawValue>>,
}

/// A message from the bus, once its MAC has been verified.
#[derive(Deserialize)]
pub(super) struct Envelope {
    resound: u32,
    pub node: String,
    /// Numbers the sending node's messages in the order it published them, so that what a
    /// lost connection makes it publish again is recognised.
    pub seq: u64,
    pub msg: Msg,
}

/// A message's JSON, without its envelope (added by the link, see [`Key::seal`]).
pub(super) fn encode(msg: &Msg) -> String {
    serde_json::to_string(msg).expect("cluster messages serialize")
}

/// The cluster's key, bound to its channel: signs what this node publishes and verifies what
/// it reads.
///
/// The MAC is HMAC-SHA256 under the key's bytes over the channel name, a zero byte, and the
/// envelope up to (not including) its `,"mac":"…"}` tail: the version, the node id, the
/// sequence number and the message. The channel is included so that a message recorded on
/// one cluster's channel cannot be replayed on another's that shares the key (same apps).
pub(super) struct Key {
    /// Keyed once; cloned for each message.
    keyed: HmacSha256,
    channel: String,
}

impl Key {
    /// `secret` (`RESOUND_SCALING_SECRET`) when set, else the key derived from `apps`
    /// ([`derive_key`]), for messages on `channel`.
    pub(super) fn new(secret: Option<&str>, apps: &[App], channel: &str) -> Key {
        let key = secret.map_or_else(|| derive_key(apps), str::to_owned);
        Key {
            keyed: HmacSha256::new_from_slice(key.as_bytes())
                .expect("HMAC takes keys of any length"),
            channel: channel.to_owned(),
        }
    }

    fn mac(&self, signed: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(self.channel.as_bytes());
        mac.update(&[0]);
        mac.update(signed);
        mac
    }

    /// `msg` (encoded) in its signed envelope: our marker, the node id (hex), the sequence
    /// number, then the MAC of all that.
    pub(super) fn seal(&self, node: &str, seq: u64, msg: &str) -> String {
        let mut text =
            format!(r#"{{"resound":{WIRE_VERSION},"node":"{node}","seq":{seq},"msg":{msg}"#);
        let tag = self.mac(text.as_bytes()).finalize().into_bytes();
        text.push_str(r#","mac":""#);
        text.push_str(&hex::encode(tag));
        text.push_str(r#""}"#);
        text
    }

    /// Reads a message from the bus: `None` for anything whose MAC does not verify (another
    /// program's, a node's with another key or of another wire version, a forgery) or that
    /// is not an envelope of ours. The MAC is checked first, in constant time, and covers
    /// every byte the JSON is read from except the MAC itself.
    pub(super) fn open(&self, payload: &[u8]) -> Option<Envelope> {
        let signed_len = payload.len().checked_sub(TAIL)?;
        let (signed, tail) = payload.split_at(signed_len);
        let hex_tag = tail.strip_prefix(MAC_FIELD)?.strip_suffix(b"\"}")?;
        let mut tag = [0u8; 32];
        hex::decode_to_slice(hex_tag, &mut tag).ok()?;
        self.mac(signed).verify_slice(&tag).ok()?;
        serde_json::from_slice::<Envelope>(payload)
            .ok()
            .filter(|env| env.resound == WIRE_VERSION)
    }
}

/// The cluster's key when `RESOUND_SCALING_SECRET` is not set: lower-case hex of
/// HMAC-SHA256 keyed with [`DERIVATION_LABEL`] over the compact JSON array of every
/// configured app's `[id, secret]`, sorted by id (`[["a","s1"],["b","s2"]]`). Nodes with
/// the same apps (ids and secrets) derive the same key; any difference is another key.
pub(super) fn derive_key(apps: &[App]) -> String {
    let mut pairs: Vec<(&str, &str)> = apps
        .iter()
        .map(|a| (a.id.as_str(), a.secret.as_str()))
        .collect();
    pairs.sort_unstable();
    let json = serde_json::to_string(&pairs).expect("strings serialize");
    let mut mac = HmacSha256::new_from_slice(DERIVATION_LABEL.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(json.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(Some("cluster secret"), &[], "reverb")
    }

    #[test]
    fn a_sealed_message_opens_and_any_change_to_it_does_not() {
        let text = key().seal("n1", 7, &encode(&Msg::Beat));
        let env = key().open(text.as_bytes()).expect("opens");
        assert_eq!((env.node.as_str(), env.seq), ("n1", 7));
        assert!(matches!(env.msg, Msg::Beat));
        // The MAC is the one `auth::sign` computes over channel, NUL, signed part: the
        // integration tests sign with it.
        let signed = &text[..text.len() - TAIL];
        let expected = crate::auth::sign("cluster secret", &format!("reverb\0{signed}"));
        assert_eq!(text, format!(r#"{signed},"mac":"{expected}"}}"#));
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            let mut forged = bytes.to_vec();
            forged[i] ^= 0x01;
            assert!(key().open(&forged).is_none(), "byte {i} changed");
        }
        for cut in 0..bytes.len() {
            assert!(key().open(&bytes[..cut]).is_none());
        }
        let other_key = Key::new(Some("another secret"), &[], "reverb");
        assert!(other_key.open(bytes).is_none());
        let other_channel = Key::new(Some("cluster secret"), &[], "elsewhere");
        assert!(other_channel.open(bytes).is_none());
        let unsigned = format!(r#"{signed}}}"#);
        assert!(key().open(unsigned.as_bytes()).is_none());
        assert!(key()
            .open(br#"{"resound":1,"node":"n","seq":1,"msg":"beat"}"#)
            .is_none());
    }

    #[test]
    fn the_derived_key_depends_on_the_apps_ids_and_secrets_only() {
        let app = |id: &str, secret: &str| App::new(id, &format!("key-{id}"), secret);
        let mut one = vec![app("1", "s1"), app("2", "s2")];
        let base = derive_key(&one);
        assert_eq!(base.len(), 64);
        one.reverse();
        assert_eq!(derive_key(&one), base, "order does not matter");
        one[0].key = "another key".into();
        one[0].enabled = false;
        assert_eq!(derive_key(&one), base, "nor do keys and options");
        one[0].secret = "changed".into();
        assert_ne!(derive_key(&one), base, "a secret does");
        assert_ne!(
            derive_key(&[app("1", "s1")]),
            base,
            "and so does the set of apps"
        );
        // Ids and secrets cannot run into each other.
        assert_ne!(derive_key(&[app("a", "bc")]), derive_key(&[app("ab", "c")]));
        let derived = Key::new(None, &[app("1", "s1")], "reverb");
        let explicit = Key::new(Some(&derive_key(&[app("1", "s1")])), &[], "reverb");
        let text = derived.seal("n", 1, &encode(&Msg::Hello));
        assert!(explicit.open(text.as_bytes()).is_some());
    }
}
