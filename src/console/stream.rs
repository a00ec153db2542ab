//! The console's live stream: activities of one app, encoded once as JSON and offered to each
//! viewer's bounded buffer with `try_send`. A viewer that does not keep up loses entries (each
//! loss counted, and told to the viewer when it catches up); the reporting thread never waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use parking_lot::RwLock;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::hooks::Activity;

/// Entries one viewer may have waiting; past it new ones are dropped for that viewer.
pub(super) const VIEWER_BUFFER: usize = 256;
/// Bytes of entries one viewer may have waiting (event data can be large).
pub(super) const VIEWER_BYTES: usize = 1 << 20;
/// Viewers one app may have at once on this node.
pub(super) const MAX_VIEWERS: usize = 16;
/// How often a viewer that lost entries is told so, when nothing else is sent.
const DROP_NOTICE_EVERY: Duration = Duration::from_secs(1);

/// One open stream.
struct Viewer {
    id: u64,
    tx: mpsc::Sender<Arc<str>>,
    /// Bytes of the entries waiting in `tx`.
    queued: Arc<AtomicUsize>,
    /// Entries lost since the viewer was last told.
    lost: Arc<AtomicU64>,
}

/// Per-app counters the overview shows.
#[derive(Default)]
struct AppStats {
    viewers: Vec<Viewer>,
    /// Entries dropped for this app's viewers since start (counted under the read lock).
    dropped: AtomicU64,
}

/// Every app's viewers.
#[derive(Default)]
pub(super) struct Viewers {
    /// Viewers of every app: `on` returns at once while it is 0.
    live: AtomicUsize,
    next_id: AtomicU64,
    apps: RwLock<HashMap<String, AppStats>>,
}

/// A registered viewer's end: its buffer, and its loss counter.
pub(super) struct Subscription {
    pub(super) id: u64,
    pub(super) app_id: String,
    pub(super) rx: mpsc::Receiver<Arc<str>>,
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) lost: Arc<AtomicU64>,
}

impl Viewers {
    /// Registers a viewer of `app_id`, or `None` when the app has `MAX_VIEWERS` already.
    pub(super) fn add(&self, app_id: &str) -> Option<Subscription> {
        let mut apps = self.apps.write();
        let stats = apps.entry(app_id.to_owned()).or_default();
        if stats.viewers.len() >= MAX_VIEWERS {
            return None;
        }
        let (tx, rx) = mpsc::channel(VIEWER_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let lost = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        stats.viewers.push(Viewer {
            id,
            tx,
            queued: queued.clone(),
            lost: lost.clone(),
        });
        self.live.fetch_add(1, Ordering::AcqRel);
        Some(Subscription {
            id,
            app_id: app_id.to_owned(),
            rx,
            queued,
            lost,
        })
    }

    /// Forgets viewer `id` of `app_id`.
    pub(super) fn remove(&self, app_id: &str, id: u64) {
        let mut apps = self.apps.write();
        if let Some(stats) = apps.get_mut(app_id) {
            let before = stats.viewers.len();
            stats.viewers.retain(|v| v.id != id);
            if stats.viewers.len() < before {
                self.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Open viewers of `app_id`, and entries dropped for them since start.
    pub(super) fn stats(&self, app_id: &str) -> (usize, u64) {
        self.apps.read().get(app_id).map_or((0, 0), |s| {
            (s.viewers.len(), s.dropped.load(Ordering::Relaxed))
        })
    }

    /// Offers `activity` of `app_id` to its viewers. Never waits: a full buffer loses it.
    pub(super) fn offer(&self, app_id: &str, activity: &Activity<'_>) {
        if self.live.load(Ordering::Acquire) == 0 {
            return;
        }
        let apps = self.apps.read();
        let Some(stats) = apps.get(app_id).filter(|s| !s.viewers.is_empty()) else {
            return;
        };
        let Some(entry) = encode(activity) else {
            return;
        };
        let entry: Arc<str> = entry.into();
        let len = entry.len();
        for v in &stats.viewers {
            // Over the byte bound counts as full; a lone entry larger than it still goes.
            let queued = v.queued.fetch_add(len, Ordering::AcqRel);
            let sent = match queued > 0 && queued + len > VIEWER_BYTES {
                true => false,
                false => match v.tx.try_send(entry.clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => false,
                    // The viewer's task has ended and is about to remove it.
                    Err(TrySendError::Closed(_)) => continue,
                },
            };
            if !sent {
                v.queued.fetch_sub(len, Ordering::AcqRel);
                v.lost.fetch_add(1, Ordering::Relaxed);
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One stream entry: `{"type":..,"at":ms,..}`; `None` for activities the console leaves out.
fn encode(activity: &Activity<'_>) -> Option<String> {
    let at = now_ms();
    let v = match activity {
        Activity::ConnectionOpened { socket_id } => {
            json!({"type": "connection_opened", "at": at, "socket_id": socket_id.to_string()})
        }
        Activity::ConnectionClosed { socket_id, code } => json!({
            "type": "connection_closed", "at": at, "socket_id": socket_id.to_string(),
            "code": code,
        }),
        Activity::Subscribed { channel, socket_id } => json!({
            "type": "subscribed", "at": at, "channel": channel,
            "socket_id": socket_id.to_string(),
        }),
        Activity::Unsubscribed { channel, socket_id } => json!({
            "type": "unsubscribed", "at": at, "channel": channel,
            "socket_id": socket_id.to_string(),
        }),
        Activity::ChannelOccupied { channel } => {
            json!({"type": "channel_occupied", "at": at, "channel": channel})
        }
        Activity::ChannelVacated { channel } => {
            json!({"type": "channel_vacated", "at": at, "channel": channel})
        }
        Activity::MemberJoined { channel, member } => json!({
            "type": "member_added", "at": at, "channel": channel, "user_id": member.id,
            "user_info": member.user_info,
        }),
        Activity::MemberLeft { channel, id } => {
            json!({"type": "member_removed", "at": at, "channel": channel, "user_id": id})
        }
        Activity::SubscriptionCount { channel, local } => {
            json!({"type": "subscription_count", "at": at, "channel": channel, "count": local})
        }
        Activity::ClientEvent {
            channel,
            event,
            data,
            user_id,
            socket_id,
        } => json!({
            "type": "client_event", "at": at, "channel": channel, "event": event,
            "data": data, "user_id": user_id, "socket_id": socket_id.to_string(),
        }),
        Activity::ApiEvent {
            channels,
            event,
            data,
            except,
        } => json!({
            "type": "api_event", "at": at, "channels": channels, "event": event, "data": data,
            "except": except.map(|s| s.to_string()),
        }),
        Activity::SignedIn { user_id, socket_id } => json!({
            "type": "signed_in", "at": at, "user_id": user_id,
            "socket_id": socket_id.to_string(),
        }),
        Activity::SignedOut { user_id, socket_id } => json!({
            "type": "signed_out", "at": at, "user_id": user_id,
            "socket_id": socket_id.to_string(),
        }),
        Activity::UserTerminated { user_id } => {
            json!({"type": "user_terminated", "at": at, "user_id": user_id})
        }
        Activity::ClientError {
            socket_id,
            code,
            message,
            channel,
        } => json!({
            "type": "error", "at": at, "socket_id": socket_id.map(|s| s.to_string()), "code": code,
            "message": message, "channel": channel,
        }),
        // Online/offline repeat sign-ins; activities added to the seam later are shown once
        // the console learns them.
        _ => return None,
    };
    Some(v.to_string())
}

/// Sends `sub`'s entries to the viewer's WebSocket until either side closes or the server
/// shuts down. Only this task waits on the viewer's socket.
pub(super) async fn pump<S>(ws: WebSocketStream<S>, mut sub: Subscription, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = ws.split();
    let hello = json!({"type": "hello", "at": now_ms(), "app_id": sub.app_id}).to_string();
    let mut notice = tokio::time::interval(DROP_NOTICE_EVERY);
    let send = async {
        sink.send(Message::text(hello)).await?;
        loop {
            tokio::select! {
                entry = sub.rx.recv() => {
                    let Some(entry) = entry else { break };
                    sub.queued.fetch_sub(entry.len(), Ordering::AcqRel);
                    tell_losses(&mut sink, &sub.lost).await?;
                    sink.send(Message::text(&*entry)).await?;
                }
                _ = notice.tick() => tell_losses(&mut sink, &sub.lost).await?,
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    // Pings are answered by the next write; nothing else is expected.
                    Some(Ok(_)) => {}
                },
            }
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(sink)
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        done = send => if let Ok(mut sink) = done {
            let _ = sink.close().await;
        },
    }
}

/// Sends `{"type":"dropped","count":n}` when entries were lost since the last notice.
async fn tell_losses<K>(sink: &mut K, lost: &AtomicU64) -> Result<(), K::Error>
where
    K: futures_util::Sink<Message> + Unpin,
{
    let n = lost.swap(0, Ordering::Relaxed);
    if n == 0 {
        return Ok(());
    }
    let notice = json!({"type": "dropped", "at": now_ms(), "count": n}).to_string();
    sink.send(Message::text(notice)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_event(data: &str) -> Activity<'_> {
        const CHANNELS: &[String] = &[];
        Activity::ApiEvent {
            channels: CHANNELS,
            event: "e",
            data,
            except: None,
        }
    }

    #[test]
    fn a_viewer_that_does_not_read_loses_entries_past_its_bounds() {
        let viewers = Viewers::default();
        let mut sub = viewers.add("1").unwrap();
        let mut other_app = viewers.add("2").unwrap();
        for _ in 0..VIEWER_BUFFER + 10 {
            viewers.offer("1", &api_event("small"));
        }
        assert_eq!(viewers.stats("1"), (1, 10));
        assert_eq!(sub.lost.load(Ordering::Relaxed), 10);
        assert_eq!(
            viewers.stats("2"),
            (1, 0),
            "another app's viewer hears nothing"
        );
        assert!(other_app.rx.try_recv().is_err());
        // Reading makes room again.
        let first = sub.rx.try_recv().unwrap();
        assert!(first.contains(r#""type":"api_event""#), "{first}");
        sub.queued.fetch_sub(first.len(), Ordering::AcqRel);
        viewers.offer("1", &api_event("small"));
        assert_eq!(viewers.stats("1").1, 10);
    }

    #[test]
    fn the_byte_bound_holds_with_large_entries() {
        let viewers = Viewers::default();
        let sub = viewers.add("1").unwrap();
        let big = "x".repeat(100_000);
        for _ in 0..20 {
            viewers.offer("1", &api_event(&big));
        }
        let queued = sub.queued.load(Ordering::Relaxed);
        assert!(queued <= VIEWER_BYTES, "{queued}");
        assert_eq!(sub.rx.len(), 10, "ten 100 KB entries fit in 1 MiB");
        assert_eq!(viewers.stats("1").1, 10);
    }

    #[test]
    fn viewers_are_limited_per_app_and_removed_when_gone() {
        let viewers = Viewers::default();
        let subs: Vec<_> = (0..MAX_VIEWERS)
            .map(|_| viewers.add("1").unwrap())
            .collect();
        assert!(viewers.add("1").is_none());
        assert!(viewers.add("2").is_some(), "the limit is per app");
        viewers.remove("1", subs[0].id);
        assert_eq!(viewers.stats("1").0, MAX_VIEWERS - 1);
        assert!(viewers.add("1").is_some());
    }
}
