//! `POST /apps/{id}/users/{user_id}/terminate_connections`.

use serde_json::{json, Value};
use tracing::debug;

use crate::connection::CloseReason;
use crate::protocol::{server, PusherError};
use crate::state::AppRuntime;

/// Close code for terminated connections: pusher-js treats 4009 as "refused" and does not
/// reconnect, which is what an app terminating a user wants.
pub const CLOSE_TERMINATED: u16 = 4009;

/// Closes every connection signed in as `user_id` and every presence membership of that user
/// (`pusher:error` 4009, then close 4009), on every node. Their sessions clean up as for any
/// close, so presence channels see `member_removed`.
pub fn terminate(app: &AppRuntime, user_id: &str) -> Value {
    if let Some(bus) = &app.bus {
        bus.send(crate::cluster::Msg::Terminate {
            app: app.app.id.clone(),
            user_id: user_id.to_owned(),
        });
    }
    terminate_local(app, user_id);
    json!({})
}

/// [`terminate`] on this node only.
pub fn terminate_local(app: &AppRuntime, user_id: &str) {
    let mut handles = app.users.connections(user_id);
    handles.extend(app.channels.presence_connections(user_id));
    debug!(
        user_id,
        connections = handles.len(),
        "terminating user connections"
    );
    let err = PusherError::Terminated;
    for h in handles {
        h.close(CloseReason {
            last_frame: Some(server::error(&err)),
            code: Some((CLOSE_TERMINATED, err.to_string())),
            flush_queue: true,
        });
    }
}
