//! One WebSocket connection: its id, its handle, its reader (session) and its writer, the
//! frames queued for it and how it closes.

pub(crate) mod close;
pub(crate) mod handle;
mod inbound;
pub(crate) mod limits;
mod outgoing;
mod pending;
pub(crate) mod session;
pub(crate) mod socket;
pub(crate) mod socket_id;
mod throttle;
mod writer;

pub(crate) use close::CloseReason;
pub(crate) use handle::ConnectionHandle;
pub(crate) use limits::OutboundLimits;
pub(crate) use outgoing::Outgoing;
pub(crate) use pending::Pending;
pub(crate) use socket_id::SocketId;
