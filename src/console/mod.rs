//! The live debug console (a plugin, wired in `server::state` when `RESOUND_CONSOLE_ENABLED`
//! is true): a page at `{path}/console`, embedded in the binary, where an app's developers
//! log in with the app's id and secret (or `RESOUND_CONSOLE_TOKEN`) and watch their app live.
//!
//! It is two plugins in one value: a [`Listener`] that offers each activity to the viewers'
//! bounded buffers (`stream`), and [`Pages`] that serve the page, the login (`session`), a
//! snapshot of connections and channels, the stream, and a test-event form that publishes
//! through the HTTP API's own trigger (`pages`). With no viewer open, hearing an activity
//! costs one atomic load.

mod pages;
mod session;
mod stream;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::config::Console as Settings;
use crate::hooks::{Activity, Answer, Listener};
use crate::http::error::ApiError;
use crate::state::{Pages, Plugins, State};

/// The console as plugins for the core: its listener and its pages.
pub(crate) fn plug(settings: &Settings) -> Plugins {
    let console = Arc::new(Console {
        token: settings.token.clone(),
        sessions: session::Sessions::default(),
        viewers: stream::Viewers::default(),
    });
    Plugins {
        listeners: vec![console.clone()],
        pages: vec![console],
        ..Plugins::default()
    }
}

/// The console's state: open sessions and live viewers.
pub(crate) struct Console {
    /// `RESOUND_CONSOLE_TOKEN`, accepted instead of any app's secret.
    token: Option<String>,
    sessions: session::Sessions,
    viewers: stream::Viewers,
}

impl Listener for Console {
    fn on(&self, app_id: &str, activity: &Activity<'_>) {
        self.viewers.offer(app_id, activity);
    }
}

impl Pages for Console {
    fn mount(&self) -> &'static str {
        "console"
    }

    fn serve(
        self: Arc<Self>,
        state: Arc<State>,
        req: Request<Incoming>,
        rest: Vec<String>,
    ) -> Answer<'static, Response<Full<Bytes>>> {
        Box::pin(async move {
            pages::serve(&self, &state, req, &rest)
                .await
                .unwrap_or_else(ApiError::into_response)
        })
    }
}
