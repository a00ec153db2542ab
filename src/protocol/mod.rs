//! The Pusher protocol 7 vocabulary: inbound messages, outbound frames, names and errors.
//! Pure: no I/O and no shared state.

pub(crate) mod error;
pub(crate) mod message;
pub(crate) mod names;

pub(crate) use error::PusherError;
pub(crate) use message::{server, ClientMessage};
