//! One target's sender: takes ready events from its queue, batches them (up to the batch
//! size, waiting at most the batch delay for more), signs each body with the app's secret
//! and POSTs it. A failed request (not 2xx, refused, timed out) is retried with exponential
//! backoff and jitter, the first within about a second, until the retry window is over;
//! then its events are dropped and counted. While it retries, new events wait in the queue
//! (bounded), so one target's requests stay in order.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::client::Client;
use super::Shared;
use crate::apps::WebhookTarget;

/// The first retry waits between half of this and this; each next one twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What a target needs to sign: the app's key and secret.
pub(super) struct Signer {
    pub(super) key: String,
    pub(super) secret: String,
}

/// `{"time_ms":..,"events":[..]}` of events already serialized.
pub(super) fn body(time_ms: u64, events: &[String]) -> String {
    let mut s = format!(r#"{{"time_ms":{time_ms},"events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(e);
    }
    s.push_str("]}");
    s
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wait before try `n` (1 = the first retry): `FIRST_RETRY * 2^(n-1)`, capped at
/// `MAX_RETRY`, times a random factor from 0.5 to 1 (so receivers that failed together do
/// not hear again together).
fn backoff(n: u32) -> Duration {
    let full = FIRST_RETRY
        .saturating_mul(1 << n.saturating_sub(1).min(10))
        .min(MAX_RETRY);
    full.mul_f64(rand::random_range(0.5..=1.0))
}

/// Runs until its queue is closed and empty, or shutdown's deadline has passed.
pub(super) async fn run(
    target: WebhookTarget,
    signer: Signer,
    mut rx: mpsc::Receiver<String>,
    shared: Arc<Shared>,
) {
    let settings = shared.settings.clone();
    let mut client = Client::new(&target, shared.tls.clone(), shared.ca.clone());
    let mut batch = Vec::with_capacity(settings.batch_size);
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        batch.push(first);
        let until = Instant::now() + settings.batch_delay;
        while batch.len() < settings.batch_size {
            // No waiting for more once shutting down: everything queued is there already.
            if shared.stopping() {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
                continue;
            }
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => batch.push(e),
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let n = batch.len();
        let body = body(now_ms(), &batch);
        batch.clear();
        if !deliver(&mut client, &target, &signer, body, &shared).await {
            shared.stats.dropped(
                n as u64,
                "a webhook receiver kept failing for the whole retry window",
            );
        }
    }
}

/// Sends one body until it is accepted (true), or the retry window or shutdown's deadline
/// is over (false).
async fn deliver(
    client: &mut Client,
    target: &WebhookTarget,
    signer: &Signer,
    body: String,
    shared: &Shared,
) -> bool {
    let settings = &shared.settings;
    let signature = crate::auth::sign(&signer.secret, &body);
    let body = Bytes::from(body);
    let give_up = Instant::now() + settings.retry_window;
    let mut tries = 0u32;
    // Logged without the query string (it may hold a token).
    let shown = shown_url(&target.url);
    loop {
        tries += 1;
        let deadline = shared.deadline(give_up);
        let timeout = settings
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let sent =
            tokio::time::timeout(timeout, client.post(body.clone(), &signer.key, &signature));
        let failure = match sent.await {
            Ok(Ok(())) => {
                debug!(url = %shown, bytes = body.len(), "webhook sent");
                shared.stats.sent();
                return true;
            }
            Ok(Err(e)) => e,
            Err(_) => "no answer within the webhook timeout".to_owned(),
        };
        let wait = backoff(tries);
        let deadline = shared.deadline(give_up);
        if Instant::now() + wait >= deadline {
            warn!(url = %shown, tries, error = %failure, "webhook dropped: the receiver kept failing");
            return false;
        }
        debug!(url = %shown, tries, error = %failure, retry_in_ms = wait.as_millis() as u64, "webhook failed; retrying");
        shared.stats.retried();
        // At shutdown, one last try at once (within the shutdown deadline).
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.stop.cancelled() => {}
        }
    }
}

/// `url` as logs show it: scheme, host, port and path, not the query (a token may be there).
/// Credentials in the URL are refused when the configuration is read.
pub(super) fn shown_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_pushers() {
        let e = r#"{"name":"channel_occupied","channel":"private-Rooms.my-room"}"#.to_owned();
        let b = body(1_700_000_000_123, &[e]);
        assert_eq!(
            b,
            r#"{"time_ms":1700000000123,"events":[{"name":"channel_occupied","channel":"private-Rooms.my-room"}]}"#
        );
        // Test vector T16 (PROTOCOL.md §9).
        assert_eq!(
            crate::auth::sign("w3e8r1t6y9u4i2o7p5a0", &b),
            "3b7fedd92d581cd1aef72a35113b1faf2c011028da21a48289897ed4dc227dea"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(
                first >= FIRST_RETRY / 2 && first <= FIRST_RETRY,
                "{first:?}"
            );
            let fourth = backoff(4);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            assert!(backoff(40) <= MAX_RETRY);
        }
    }
}
