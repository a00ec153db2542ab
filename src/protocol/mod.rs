//! The Pusher protocol 7 vocabulary: inbound messages, outbound frames, names and errors.
//! Pure: no I/O and no shared state.

pub mod error;
pub mod message;
pub mod names;

pub use error::PusherError;
pub use message::{server, ClientMessage};
