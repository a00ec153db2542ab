//! One WebSocket connection: its id, its handle, its reader (session) and its writer.

pub mod handle;
mod inbound;
pub mod session;
pub mod socket_id;
mod writer;

pub use handle::{CloseReason, ConnectionHandle, Flushes, Outgoing};
pub use socket_id::SocketId;
