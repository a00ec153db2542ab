//! The drain at shutdown: rather than closing every WebSocket in the same instant (so that
//! every client reconnects in the same second), each connection is closed with 4200 at its
//! own random instant in the drain window; pusher-js reconnects at once on 4200, so the
//! reconnects spread over the window as well.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::info;

use crate::connection::CloseReason;
use crate::protocol::PusherError;
use crate::state::State;

/// How often a wait for a connection's instant looks whether it was closed meanwhile.
const TICK: Duration = Duration::from_millis(100);

/// Closes every connection open now at a random instant in `[start, start + window)`, in
/// order, then sweeps up any that opened meanwhile. Returns once the last one was told (at
/// the latest instant drawn, so a little before the end of the window).
pub(crate) async fn drain(state: &State, start: Instant, window: Duration) {
    let reason = CloseReason::for_error(&PusherError::ShuttingDown);
    let mut schedule: Vec<_> = {
        let mut rng = rand::rng();
        state
            .apps()
            .flat_map(|app| {
                app.connections
                    .iter()
                    .map(|c| c.value().clone())
                    .collect::<Vec<_>>()
            })
            .map(|handle| (window.mul_f64(rng.random::<f64>()), handle))
            .collect()
    };
    schedule.sort_unstable_by_key(|(at, _)| *at);
    info!(
        connections = schedule.len(),
        window_ms = window.as_millis() as u64,
        "draining: closing connections spread over the window"
    );
    for (at, handle) in schedule {
        // One closed meanwhile (a second signal closes them all) is not waited for: the
        // wait is cut in ticks so that such a close is seen within one.
        while !handle.is_closing() && Instant::now() < start + at {
            tokio::time::sleep_until((start + at).min(Instant::now() + TICK)).await;
        }
        handle.close(reason.clone());
    }
    // Connections that registered after the schedule was made (their session closes itself
    // when it sees the shutdown token; this covers the rest).
    state.close_all();
}
