//! `Activity`: what happened in the core, as a typed value that listeners receive. Borrowed
//! from the caller: a listener that keeps something copies it.

use serde_json::value::RawValue;

use crate::channel::presence::PresenceMember;
use crate::connection::SocketId;

/// One thing that happened on this node, in one app. "On this node" is the rule for every
/// transition below: a cluster-wide view is what a listener such as the cluster builds from
/// the nodes' reports.
#[derive(Debug)]
pub enum Activity<'a> {
    /// A WebSocket connection was accepted and registered.
    ConnectionOpened { socket_id: SocketId },
    /// A connection ended; `code` is the close code the server sent, if any.
    ConnectionClosed {
        socket_id: SocketId,
        code: Option<u16>,
    },
    /// A socket subscribed to a channel (a repeated subscribe is not reported).
    Subscribed {
        channel: &'a str,
        socket_id: SocketId,
    },
    /// A socket left a channel (unsubscribed, or its connection closed).
    Unsubscribed {
        channel: &'a str,
        socket_id: SocketId,
    },
    /// The channel got its first subscriber on this node.
    ChannelOccupied { channel: &'a str },
    /// The channel lost its last subscriber on this node.
    ChannelVacated { channel: &'a str },
    /// A presence user's first socket on this node joined the channel.
    MemberJoined {
        channel: &'a str,
        member: &'a PresenceMember,
    },
    /// A presence user's last socket on this node left the channel; `id` is the member's
    /// string id.
    MemberLeft { channel: &'a str, id: &'a str },
    /// This node's subscriber count of the channel changed (to `local`).
    SubscriptionCount { channel: &'a str, local: usize },
    /// A client event was relayed to the channel's other subscribers on this node.
    ClientEvent {
        channel: &'a str,
        event: &'a str,
        /// `data` exactly as the client sent it.
        data: Option<&'a RawValue>,
        /// The sender's presence `user_id`, on presence channels.
        user_id: Option<&'a RawValue>,
        socket_id: SocketId,
    },
    /// An HTTP API event was published (delivered here at once).
    ApiEvent {
        channels: &'a [String],
        event: &'a str,
        data: &'a str,
        /// The socket to skip, which may be on any node.
        except: Option<SocketId>,
    },
    /// A connection signed in as `user_id`.
    SignedIn {
        user_id: &'a str,
        socket_id: SocketId,
    },
    /// A signed-in connection closed.
    SignedOut {
        user_id: &'a str,
        socket_id: SocketId,
    },
    /// The user's first connection on this node signed in.
    UserOnline { user_id: &'a str },
    /// The user's last connection on this node closed.
    UserOffline { user_id: &'a str },
    /// The app asked for every connection of `user_id` to be closed (on every node); this
    /// node's are closed already.
    UserTerminated { user_id: &'a str },
    // Cluster-wide transitions, as this node sees them: on a single node they come with
    // their local counterparts; with other nodes they are also reported for changes the
    // cluster applies on their behalf (a node that expires included), so every node sees
    // every transition once.
    /// The channel got its first subscriber on any node.
    ClusterOccupied { channel: &'a str },
    /// The channel lost its last subscriber on every node.
    ClusterVacated { channel: &'a str },
    /// A presence user joined the channel, present on no node before.
    ClusterMemberAdded { channel: &'a str, user_id: &'a str },
    /// A presence user is now gone from the channel on every node.
    ClusterMemberRemoved { channel: &'a str, user_id: &'a str },
    /// The channel's subscribers on every node (as far as the other nodes report them)
    /// changed to `count`.
    ClusterSubscriptionCount { channel: &'a str, count: usize },
    /// A `pusher:error` was sent to a client of this node (before the close frame when the
    /// error ends the connection). `message` is the error's fixed text, which never holds
    /// event data or secrets; `channel` is the channel the refused message named, if any
    /// and valid (a refused subscription, a refused client event). `socket_id` is `None`
    /// for a connection refused at the handshake (disabled app, protocol, origin, quota),
    /// which never got one.
    ClientError {
        socket_id: Option<SocketId>,
        code: u16,
        message: &'a str,
        channel: Option<&'a str>,
    },
    /// A socket subscribed to a cache channel that had no cached event
    /// (`pusher:cache_miss`).
    CacheMiss {
        channel: &'a str,
        socket_id: SocketId,
    },
}
