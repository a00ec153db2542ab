//! The one delivery path for channel events: reported to the listeners (the cluster passes
//! it to the other nodes), then serialized once per channel and handed, the same bytes, to
//! every recipient on this node through the app's channel registry.

use tracing::debug;

use crate::channel::ChannelKind;
use crate::connection::{Pending, SocketId};
use crate::hooks::Activity;
use crate::protocol::server;
use crate::state::AppRuntime;

/// Publishes an HTTP API event (`data` verbatim) to each channel, skipping `except` (which
/// may be any node's socket): reported as [`Activity::ApiEvent`], then delivered here.
/// Frames are queued in order now; `out.flush()` writes the sockets. Returns the number of
/// recipients on this node.
pub(crate) fn publish(
    app: &AppRuntime,
    channels: &[String],
    event: &str,
    data: &str,
    except: Option<SocketId>,
    out: &mut Pending,
) -> usize {
    app.hooks.report(|| Activity::ApiEvent {
        channels,
        event,
        data,
        except,
    });
    let recipients = deliver(app, channels, event, data, except, out);
    // Names only, never the data; the channels joined by commas when there are several.
    debug!(
        channel = %channels.join(","),
        event,
        recipients,
        "api event published"
    );
    recipients
}

/// [`publish`] on this node only, unreported (for events another node published).
pub(crate) fn deliver(
    app: &AppRuntime,
    channels: &[String],
    event: &str,
    data: &str,
    except: Option<SocketId>,
    out: &mut Pending,
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
