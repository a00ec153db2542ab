//! The write half of a connection: drains the bounded queue into the socket, batching what is
//! already queued into one flush, and ends the connection with the reason the handle carries.
//! It is the only writer of the socket and makes no protocol decisions.

use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::handle::ConnectionHandle;

/// Time allowed for the last frames (error and close) to reach a client.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most queued frames written before one flush.
const MAX_BATCH: usize = 64;

pub(super) async fn run<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::Receiver<Message>,
    handle: ConnectionHandle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        // `recv` and `closed` are cancel-safe: nothing is lost when the other branch wins.
        let first = tokio::select! {
            biased;
            _ = handle.closed() => break,
            msg = rx.recv() => match msg {
                Some(m) => m,
                None => break,
            },
        };
        let write = async {
            sink.feed(first).await?;
            for _ in 1..MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => sink.feed(m).await?,
                    Err(_) => break,
                }
            }
            sink.flush().await
        };
        // A client that stops reading blocks the write; closing must still win.
        tokio::select! {
            r = write => if r.is_err() { return },
            _ = handle.closed() => break,
        }
    }
    let reason = handle.close_reason().cloned();
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if reason.as_ref().is_some_and(|r| r.flush_queue) {
            while let Ok(m) = rx.try_recv() {
                sink.feed(m).await?;
            }
        }
        if let Some(frame) = reason.as_ref().and_then(|r| r.last_frame.clone()) {
            sink.feed(Message::text(frame)).await?;
        }
        match reason.and_then(|r| r.code) {
            Some((code, text)) => {
                let frame = CloseFrame { code: code.into(), reason: text.into() };
                sink.send(Message::Close(Some(frame))).await
            }
            None => sink.close().await,
        }
    })
    .await;
}
