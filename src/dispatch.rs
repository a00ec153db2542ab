//! The one delivery path for channel events: serialize once per channel, hand the same bytes
//! to every recipient through the app's channel registry.

use crate::channel::ChannelKind;
use crate::connection::SocketId;
use crate::protocol::server;
use crate::state::AppRuntime;

/// Publishes an HTTP API event (`data` verbatim) to each channel, skipping `except`.
/// Returns the number of frames queued.
pub fn publish(
    app: &AppRuntime,
    channels: &[String],
    event: &str,
    data: &str,
    except: Option<SocketId>,
) -> usize {
    channels
        .iter()
        .map(|channel| {
            let text = server::channel_event(event, channel, data).into();
            let cache = ChannelKind::from_name(channel).cache;
            app.channels.publish(channel, cache, &text, except)
        })
        .sum()
}
