//! The socket a session reads and writes: a plain TCP socket, or TCP with TLS (rustls). The
//! write side keeps the contract `handle.rs` is built on: non-blocking writes from whichever
//! thread holds the queue's lock (`try_write`), and `writable` for the writer task. Over TLS
//! the plaintext is encrypted under the connection's lock and the records are written to the
//! TCP socket straight away; records the kernel would not take yet stay with rustls, and
//! [`WriteSide::flush`] reports them, so the writer task waits and finishes them.

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use rustls::ServerConnection;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// An accepted connection after its HTTP upgrade.
pub(crate) enum Accepted {
    Tcp(TcpStream),
    Tls(TcpStream, Box<ServerConnection>),
}

impl Accepted {
    pub(crate) fn split(self) -> (ReadSide, WriteSide) {
        match self {
            Accepted::Tcp(tcp) => {
                let (r, w) = tcp.into_split();
                (ReadSide::Tcp(r), WriteSide::Tcp(w))
            }
            Accepted::Tls(tcp, conn) => {
                let link = Arc::new(TlsLink {
                    tcp,
                    conn: Mutex::new(*conn),
                });
                (ReadSide::Tls(link.clone()), WriteSide::Tls(link))
            }
        }
    }
}

/// A TLS connection shared by its reader and its writers.
pub(crate) struct TlsLink {
    tcp: TcpStream,
    conn: Mutex<ServerConnection>,
}

/// Writes to a `TcpStream` without waiting: `WouldBlock` when the send buffer is full.
struct TryWrite<'a>(&'a TcpStream);

impl Write for TryWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsLink {
    /// Writes the records rustls holds; `Ok(true)` when none is left.
    fn send_records(&self, conn: &mut ServerConnection) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(&mut TryWrite(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn write_with(
        &self,
        put: impl FnOnce(&mut rustls::Writer<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut conn = self.conn.lock();
        // Records of earlier frames first; while they wait, take nothing more.
        if !self.send_records(&mut conn)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = put(&mut conn.writer())?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What the kernel does not take now is left for `flush`.
        self.send_records(&mut conn)?;
        Ok(n)
    }
}

/// The write half of a connection's socket.
pub(crate) enum WriteSide {
    Tcp(OwnedWriteHalf),
    Tls(Arc<TlsLink>),
}

impl From<OwnedWriteHalf> for WriteSide {
    fn from(w: OwnedWriteHalf) -> WriteSide {
        WriteSide::Tcp(w)
    }
}

impl WriteSide {
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteSide::Tcp(w) => w.try_write(buf),
            WriteSide::Tls(link) => link.write_with(|w| w.write(buf)),
        }
    }

    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            WriteSide::Tcp(w) => w.try_write_vectored(bufs),
            WriteSide::Tls(link) => link.write_with(|w| w.write_vectored(bufs)),
        }
    }

    /// Writes what was accepted but not yet sent (TLS records); `Ok(true)` when nothing is
    /// left. Always true for plain TCP, where an accepted byte is in the kernel.
    pub(crate) fn flush(&self) -> io::Result<bool> {
        match self {
            WriteSide::Tcp(_) => Ok(true),
            WriteSide::Tls(link) => link.send_records(&mut link.conn.lock()),
        }
    }

    /// Resolves when the socket can take more bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            WriteSide::Tcp(w) => w.writable().await,
            WriteSide::Tls(link) => link.tcp.writable().await,
        }
    }
}

impl Drop for WriteSide {
    /// As dropping a TCP write half does: the end of the stream for the peer, after TLS's
    /// own `close_notify` (best effort: the socket may be full or gone).
    fn drop(&mut self) {
        if let WriteSide::Tls(link) = self {
            let mut conn = link.conn.lock();
            conn.send_close_notify();
            let _ = link.send_records(&mut conn);
            let _ = socket2::SockRef::from(&link.tcp).shutdown(std::net::Shutdown::Write);
        }
    }
}

/// The read half of a connection's socket.
pub(crate) enum ReadSide {
    Tcp(OwnedReadHalf),
    Tls(Arc<TlsLink>),
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadSide::Tls(link) => link.poll_read(cx, buf),
        }
    }
}

/// Reads from a `TcpStream` without waiting: `WouldBlock` when nothing has arrived.
struct TryRead<'a>(&'a TcpStream);

impl Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl TlsLink {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut conn = self.conn.lock();
            match conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    // 0: the peer's close_notify, the end of the stream.
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The TCP stream ended without close_notify: the end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // No plaintext left: records straight from the socket into rustls, as much as its
            // buffer takes (0 tells it the stream ended).
            match conn.read_tls(&mut TryRead(&self.tcp)) {
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        // The alert that says why goes out if it can.
                        let _ = self.send_records(&mut conn);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                    // Replies rustls owes (a key update, say), best effort: the next write
                    // sends what is left.
                    let _ = self.send_records(&mut conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drop(conn);
                    match self.tcp.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
