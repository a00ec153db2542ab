//! A deliberately minimal WebSocket and HTTP/1.1 client for load generation: it parses only
//! frame headers and response lengths, so the generator spends far less CPU per message than
//! the server it measures. Not a general-purpose client.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A client WebSocket connection.
pub struct Ws {
    stream: TcpStream,
    buf: BytesMut,
}

/// One frame's opcode and payload, borrowed from the read buffer.
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

impl Ws {
    /// Opens a TCP connection and performs the upgrade for `path`.
    pub async fn connect(addr: &str, path: &str) -> io::Result<Ws> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during upgrade",
                ));
            }
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                if !buf.starts_with(b"HTTP/1.1 101") {
                    return Err(io::Error::other(
                        String::from_utf8_lossy(&buf[..end]).into_owned(),
                    ));
                }
                buf.advance(end + 4);
                return Ok(Ws { stream, buf });
            }
        }
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        self.stream.write_all(&mask_frame(text)).await
    }

    /// Splits into a reader (keeping buffered bytes) and a writer.
    pub fn into_split(self) -> (WsRead, WsWrite) {
        let (r, w) = self.stream.into_split();
        (
            WsRead {
                stream: r,
                buf: self.buf,
            },
            WsWrite { stream: w },
        )
    }
}

/// Builds one masked client text frame.
pub fn mask_frame(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 14);
    out.push(0x81);
    match text.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x5a, 0x13, 0xc7, 0x2e];
    out.extend_from_slice(&mask);
    out.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The write half of a split connection.
pub struct WsWrite {
    stream: OwnedWriteHalf,
}

impl WsWrite {
    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        self.stream.write_all(&mask_frame(text)).await
    }
}

/// The read half of a split connection.
pub struct WsRead {
    stream: OwnedReadHalf,
    buf: BytesMut,
}

impl WsRead {
    /// Like [`Ws::read_frames`].
    pub async fn read_frames(&mut self, f: impl FnMut(Frame<'_>)) -> io::Result<bool> {
        read_frames(&mut self.stream, &mut self.buf, f).await
    }
}

impl Ws {
    /// Reads until at least one whole frame is buffered, then hands every whole frame to `f`.
    /// Returns false when the connection closed.
    pub async fn read_frames(&mut self, f: impl FnMut(Frame<'_>)) -> io::Result<bool> {
        read_frames(&mut self.stream, &mut self.buf, f).await
    }

    /// The next text frame's payload as a String (for handshakes and replies).
    pub async fn next_text(&mut self) -> io::Result<String> {
        loop {
            let mut got = None;
            if let Some((opcode, start, len)) = parse_header(&self.buf) {
                if opcode == 1 {
                    got = Some(String::from_utf8_lossy(&self.buf[start..start + len]).into_owned());
                }
                self.buf.advance(start + len);
                if let Some(t) = got {
                    return Ok(t);
                }
                continue;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
        }
    }
}

async fn read_frames<R: AsyncReadExt + Unpin>(
    stream: &mut R,
    buf: &mut BytesMut,
    mut f: impl FnMut(Frame<'_>),
) -> io::Result<bool> {
    loop {
        let mut seen = false;
        while let Some((opcode, start, len)) = parse_header(buf) {
            f(Frame {
                opcode,
                payload: &buf[start..start + len],
            });
            buf.advance(start + len);
            seen = true;
        }
        if seen {
            return Ok(true);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16384);
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
}

/// (opcode, payload start, payload length) of the first whole unmasked frame in `b`.
fn parse_header(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let (len, start) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (b.len() >= start + len).then_some((opcode, start, len))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive HTTP/1.1 connection that sends prepared requests and reads each response.
pub struct Http {
    stream: TcpStream,
    buf: BytesMut,
}

impl Http {
    pub async fn connect(addr: &str) -> io::Result<Http> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends one request and returns the response status.
    pub async fn request(&mut self, req: &[u8]) -> io::Result<u16> {
        self.stream.write_all(req).await?;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).map_err(io::Error::other)?;
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    self.buf.advance(end + 4 + len);
                    return Ok(status);
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(parse_header(&[0x81, 3, b'a', b'b', b'c']), Some((1, 2, 3)));
        assert_eq!(parse_header(&[0x81, 3, b'a']), None);
        let mut long = vec![0x81, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(parse_header(&long), Some((1, 4, 256)));
    }
}
