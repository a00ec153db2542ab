//! `POST /apps/{id}/users/{user_id}/terminate_connections`.

use serde_json::{json, Value};

use crate::hooks::Activity;
use crate::state::AppRuntime;

/// Closes every connection signed in as `user_id` and every presence membership of that user
/// (`pusher:error` 4009, then close 4009): this node's at once, the other nodes' through the
/// listeners ([`Activity::UserTerminated`]).
pub(crate) fn terminate(app: &AppRuntime, user_id: &str) -> Value {
    app.close_user(user_id);
    app.hooks.report(|| Activity::UserTerminated { user_id });
    json!({})
}
