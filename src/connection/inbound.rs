//! The byte stream tungstenite reads a connection from: whatever hyper had read past the
//! upgrade request, then the socket's read half. Tungstenite also writes its own replies
//! (pongs to WebSocket pings, the close reply); those go through the connection's outbound
//! queue like every other frame, so the socket keeps exactly one ordered writer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::handle::ConnectionHandle;
use super::socket::ReadSide;

pub(super) struct Inbound {
    prefix: Bytes,
    read: ReadSide,
    out: ConnectionHandle,
}

impl Inbound {
    pub(super) fn new(prefix: Bytes, read: ReadSide, out: ConnectionHandle) -> Inbound {
        // `prefix` is a view into hyper's read buffer (8 KiB or more): copy the few bytes it
        // holds, or the whole buffer would stay allocated for the life of the connection.
        let prefix = match prefix.is_empty() {
            true => Bytes::new(),
            false => Bytes::copy_from_slice(&prefix),
        };
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
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::SocketId;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn serves_the_prefix_first_and_does_not_keep_hypers_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (read, write) = accepted.unwrap().0.into_split();
        let handle = ConnectionHandle::new(
            SocketId::random(),
            crate::connection::OutboundLimits::frames(8),
            Some(write.into()),
        );
        let mut buffer = bytes::BytesMut::with_capacity(8192);
        buffer.extend_from_slice(b"GET / ...\r\n\r\nAB");
        let buffer = buffer.freeze();
        let prefix = buffer.slice(buffer.len() - 2..);
        let mut inbound = Inbound::new(
            prefix,
            crate::connection::socket::ReadSide::Tcp(read),
            handle,
        );
        assert!(
            buffer.is_unique(),
            "the 8 KiB buffer must not stay referenced"
        );
        let mut client = client.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"CD")
            .await
            .unwrap();
        let mut got = [0u8; 4];
        inbound.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ABCD");
    }
}
