//! The one delivery path for channel events: serialize once per channel, hand the same bytes
//! to every recipient through the app's channel registry.

use crate::channel::ChannelKind;
use crate::connection::{Flushes, SocketId};
use crate::protocol::server;
use crate::state::AppRuntime;

/// Publishes an HTTP API event (`data` verbatim) to each channel, skipping `except`.
/// Frames are queued in order now; `out` writes the sockets (see [`Flushes`]).
/// Returns the number of recipients.
pub fn publish(
    app: &AppRuntime,
    channels: &[String],
    event: &str,
    data: &str,
    except: Option<SocketId>,
    out: &mut Flushes,
) -> usize {
    channels
        .iter()
        .map(|channel| {
            let text = || server::channel_event(event, channel, data).into();
            let cache = ChannelKind::from_name(channel).cache;
            app.channels.publish(channel, cache, text, except, out)
        })
        .sum()
}
