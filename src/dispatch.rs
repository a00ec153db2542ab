//! The one delivery path for channel events: serialize once per channel, hand the same bytes
//! to every recipient through the app's channel registry.

use crate::channel::ChannelKind;
use crate::cluster::Msg;
use crate::connection::{Flushes, SocketId};
use crate::protocol::server;
use crate::state::AppRuntime;

/// Publishes an HTTP API event (`data` verbatim) to each channel, skipping `except`: here
/// at once, and on the other nodes when scaling is enabled (`except` may be any node's).
/// Frames are queued in order now; `out` writes the sockets (see [`Flushes`]).
/// Returns the number of recipients on this node.
pub fn publish(
    app: &AppRuntime,
    channels: &[String],
    event: &str,
    data: &str,
    except: Option<SocketId>,
    out: &mut Flushes,
) -> usize {
    if let Some(bus) = &app.bus {
        bus.send(Msg::Event {
            app: app.app.id.clone(),
            channels: channels.to_vec(),
            event: event.to_owned(),
            data: data.to_owned(),
            except: except.map(|id| id.to_string()),
        });
    }
    deliver(app, channels, event, data, except, out)
}

/// [`publish`] on this node only.
pub fn deliver(
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
