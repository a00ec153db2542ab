//! What nodes say to each other, and how it travels: one JSON message per Redis `PUBLISH`,
//! inside an envelope with our marker, the sending node's id and a sequence number.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Marks our messages on a channel other software may share.
const WIRE_VERSION: u32 = 1;

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
    },
    /// A node (re)joined: everybody answers with `State`.
    Hello,
    /// The sending node is alive.
    Beat,
    /// The sending node is shutting down.
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

#[derive(Deserialize)]
pub(super) struct Envelope {
    resound: u32,
    pub node: String,
    /// Numbers the sending node's messages in the order it published them, so that what a
    /// lost connection makes it publish again is recognised (0: unnumbered).
    #[serde(default)]
    pub seq: u64,
    pub msg: Msg,
}

impl Envelope {
    /// Reads a message from the bus: `None` for anything that is not one of ours (another
    /// program's, or another wire version's).
    pub(super) fn read(payload: &[u8]) -> Option<Envelope> {
        serde_json::from_slice::<Envelope>(payload)
            .ok()
            .filter(|env| env.resound == WIRE_VERSION)
    }
}

/// A message's JSON, without its envelope (added by the link, see [`wrap`]).
pub(super) fn encode(msg: &Msg) -> String {
    serde_json::to_string(msg).expect("cluster messages serialize")
}

/// The envelope around an encoded message: our marker, the node id (hex) and the sequence
/// number.
pub(super) fn wrap(node: &str, seq: u64, msg: &str) -> String {
    format!(r#"{{"resound":{WIRE_VERSION},"node":"{node}","seq":{seq},"msg":{msg}}}"#)
}
