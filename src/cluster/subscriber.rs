//! The subscribing side of the Redis link, read at our own pace.
//!
//! The `redis` crate's pub/sub reader moves every message into an unbounded in-process
//! channel as fast as the socket delivers, so a node that falls behind the cluster's publish
//! rate would grow without limit. Here the socket is read only when the previous message has
//! been delivered: a node that falls behind leaves the backlog in Redis, which disconnects it
//! past `client-output-buffer-limit pubsub` (32 MB by default); the node then reconnects and
//! re-syncs presence. Publishing still goes through the crate.
//!
//! Only what a subscriber receives is parsed: RESP2 simple strings, errors, integers, bulk
//! strings and arrays of them.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A plain or TLS connection to Redis.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The largest value accepted from Redis (our messages are a few KB; a presence state may be
/// a few MB).
const MAX_VALUE: usize = 256 << 20;

#[derive(Debug, PartialEq)]
enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Vec<Value>),
}

pub(super) struct Subscriber {
    stream: Box<dyn Io>,
    buf: BytesMut,
}

impl Subscriber {
    /// Connects to the Redis of `url` (over TLS for `rediss://`, trusting `ca` or the system's
    /// roots), authenticates when it has credentials, and subscribes to `channel`.
    pub(super) async fn connect(
        url: &str,
        ca: Option<&[u8]>,
        channel: &str,
    ) -> Result<Subscriber, String> {
        let info =
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| e.to_string())?;
        let (host, port, tls) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                ..
            } => (host.clone(), *port, true),
            other => {
                return Err(format!(
                    "unsupported Redis address {other} (use redis:// or rediss://)"
                ))
            }
        };
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = if tls {
            let config = super::tls::client_config(ca)?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{host}: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            Box::new(
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?,
            )
        } else {
            Box::new(tcp)
        };
        let mut sub = Subscriber {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            sub.command(&auth.get_packed_command()).await?;
            match sub.read().await? {
                Value::Simple(_) => {}
                Value::Error(e) => return Err(format!("AUTH refused: {e}")),
                other => return Err(format!("unexpected AUTH reply {other:?}")),
            }
        }
        sub.command(&redis::cmd("SUBSCRIBE").arg(channel).get_packed_command())
            .await?;
        match sub.read().await? {
            Value::Array(v)
                if v.first() == Some(&Value::Bulk(Some(Bytes::from_static(b"subscribe")))) =>
            {
                Ok(sub)
            }
            Value::Error(e) => Err(format!("SUBSCRIBE refused: {e}")),
            other => Err(format!("unexpected SUBSCRIBE reply {other:?}")),
        }
    }

    async fn command(&mut self, packed: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(packed)
            .await
            .map_err(|e| e.to_string())
    }

    /// The payload of the next published message; `Err` when the connection is lost.
    pub(super) async fn next_message(&mut self) -> Result<Bytes, String> {
        loop {
            if let Some(payload) = take_message(&mut self.buf)? {
                return Ok(payload);
            }
            self.fill().await?;
        }
    }

    /// Reads one whole value.
    async fn read(&mut self) -> Result<Value, String> {
        loop {
            if let Some(v) = parse(&mut self.buf)? {
                return Ok(v);
            }
            self.fill().await?;
        }
    }

    /// Reads what Redis has sent into the buffer.
    async fn fill(&mut self) -> Result<(), String> {
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed by Redis".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Takes values off the front of `buf` up to the first published message and returns its
/// payload; anything else is dropped. `None` once the rest of `buf` has not all arrived.
pub(super) fn take_message(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    while let Some(v) = parse(buf)? {
        if let Value::Array(parts) = v {
            let mut parts = parts.into_iter();
            if let (
                Some(Value::Bulk(Some(kind))),
                Some(_channel),
                Some(Value::Bulk(Some(payload))),
            ) = (parts.next(), parts.next(), parts.next())
            {
                if &kind[..] == b"message" {
                    return Ok(Some(payload));
                }
            }
        }
    }
    Ok(None)
}

/// Takes one whole value off the front of `buf`, or `None` (and leaves `buf` as it is) when
/// it has not all arrived.
fn parse(buf: &mut BytesMut) -> Result<Option<Value>, String> {
    let mut at = 0;
    match value(buf, &mut at, 0)? {
        Some(v) => {
            buf.advance(at);
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

fn line<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *at += end + 2;
    Some(&rest[..end])
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "bad number in a Redis reply: {:?}",
                String::from_utf8_lossy(text)
            )
        })
}

/// Arrays nest this deep at most (ours nest once).
const MAX_DEPTH: usize = 8;

fn value(buf: &BytesMut, at: &mut usize, depth: usize) -> Result<Option<Value>, String> {
    if depth > MAX_DEPTH {
        return Err("Redis reply nested too deep".into());
    }
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    *at += 1;
    let Some(head) = line(buf, at) else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(head).into_owned();
    Ok(Some(match kind {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Int(number(head)?),
        b'$' => {
            let len = number(head)?;
            if len < 0 {
                Value::Bulk(None)
            } else {
                let len = len as usize;
                if len > MAX_VALUE {
                    return Err(format!("a {len}-byte value from Redis is too large"));
                }
                if buf.len() < *at + len + 2 {
                    return Ok(None);
                }
                let data = Bytes::copy_from_slice(&buf[*at..*at + len]);
                *at += len + 2;
                Value::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = number(head)?;
            let mut items = Vec::with_capacity(n.clamp(0, 16) as usize);
            for _ in 0..n.max(0) {
                match value(buf, at, depth + 1)? {
                    Some(v) => items.push(v),
                    None => return Ok(None),
                }
            }
            Value::Array(items)
        }
        other => return Err(format!("unexpected byte {other:#x} in a Redis reply")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_whole_or_waits_for_the_rest() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$6\r\nreverb\r\n$11\r\n{\"a\":\"b\r\n\"}\r\n+OK\r\n";
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            match parse(&mut buf).unwrap() {
                None => assert_eq!(buf.len(), cut, "an incomplete value is left alone"),
                Some(_) => assert!(cut >= wire.len() - 5),
            }
        }
        let mut buf = BytesMut::from(&wire[..]);
        let msg = parse(&mut buf).unwrap().unwrap();
        assert_eq!(
            msg,
            Value::Array(vec![
                Value::Bulk(Some(Bytes::from_static(b"message"))),
                Value::Bulk(Some(Bytes::from_static(b"reverb"))),
                Value::Bulk(Some(Bytes::from_static(b"{\"a\":\"b\r\n\"}"))),
            ])
        );
        assert_eq!(parse(&mut buf).unwrap(), Some(Value::Simple("OK".into())));
        assert!(buf.is_empty());
        let mut odd = BytesMut::from(&b":-2\r\n$-1\r\n-ERR no\r\n"[..]);
        assert_eq!(parse(&mut odd).unwrap(), Some(Value::Int(-2)));
        assert_eq!(parse(&mut odd).unwrap(), Some(Value::Bulk(None)));
        assert_eq!(
            parse(&mut odd).unwrap(),
            Some(Value::Error("ERR no".into()))
        );
        assert!(parse(&mut BytesMut::from(&b"?x\r\n"[..])).is_err());
        assert!(parse(&mut BytesMut::from(&b"$999999999999\r\n"[..])).is_err());
        assert!(parse(&mut BytesMut::from("*1\r\n".repeat(20).as_bytes())).is_err());
    }

    #[test]
    fn take_message_skips_replies_and_waits_for_a_whole_message() {
        let message = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n";
        let mut wire = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n+OK\r\n".to_vec();
        wire.extend_from_slice(message);
        wire.extend_from_slice(&message[..10]);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(take_message(&mut buf).unwrap().as_deref(), Some(&b"hi"[..]));
        assert_eq!(take_message(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], &message[..10], "the partial message is kept");
    }
}
