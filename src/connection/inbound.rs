//! The byte stream tungstenite reads a connection from: whatever hyper had read past the
//! upgrade request, then the socket's read half. Tungstenite also writes its own replies
//! (pongs to WebSocket pings, the close reply); those go through the connection's outbound
//! queue like every other frame, so the socket keeps exactly one ordered writer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

use super::handle::ConnectionHandle;

pub struct Inbound {
    prefix: Bytes,
    read: OwnedReadHalf,
    out: ConnectionHandle,
}

impl Inbound {
    pub fn new(prefix: Bytes, read: OwnedReadHalf, out: ConnectionHandle) -> Inbound {
        Inbound { prefix, read, out }
    }
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Inbound {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.out.send_raw(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
