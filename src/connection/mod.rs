//! One WebSocket connection: its id, its handle, its reader (session) and its writer, the
//! frames queued for it and how it closes.

pub mod close;
pub mod handle;
mod inbound;
mod outgoing;
mod pending;
pub mod session;
pub mod socket_id;
mod writer;

pub use close::CloseReason;
pub use handle::ConnectionHandle;
pub use outgoing::Outgoing;
pub use pending::Pending;
pub use socket_id::SocketId;
