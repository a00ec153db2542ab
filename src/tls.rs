//! TLS in process: the certificate chain and private key from PEM files (`RESOUND_TLS_CERT`,
//! `RESOUND_TLS_KEY`), served by rustls on the server's one port, so `wss://` and `https://`
//! (the HTTP API, `/up`) share it. The files are read again on SIGHUP and whenever their
//! modification time, size, target, inode or change time changes: new handshakes get the new certificate, open
//! connections keep theirs. A reload that fails keeps the old certificate and logs an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Where the certificate chain and key are read from, and how often they are looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then the intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are compared.
    pub poll_every: Duration,
}

/// The certificate chain and key of `files`, checked: both parse, the chain is not empty,
/// the key is one rustls can sign with, and it belongs to the first certificate.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let (cert, key) = (&files.cert, &files.key);
    let cert_pem = read(cert, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate {}: not valid PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\")",
            cert.display()
        ));
    }
    let key_pem = read(key, "key")?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        // PKCS#8 "ENCRYPTED PRIVATE KEY", or a traditional key with "Proc-Type: 4,ENCRYPTED".
        if memchr::memmem::find(&key_pem, b"ENCRYPTED").is_some() {
            return format!(
                "TLS key {}: the key is protected by a passphrase, which resound cannot use; \
                 decrypt it first (openssl pkey -in key.pem -out key-plain.pem)",
                key.display()
            );
        }
        format!(
            "TLS key {}: no private key in it (expected PEM \"BEGIN PRIVATE KEY\", \
             \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"): {e}",
            key.display()
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, private, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "TLS key {} does not belong to the certificate {}",
            key.display(),
            cert.display()
        ),
        e => format!(
            "TLS certificate {} with key {}: {e}",
            cert.display(),
            key.display()
        ),
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))
}

/// The certificate handshakes get: swapped whole by a reload.
struct Current(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Current")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The server side of TLS: the acceptor and the certificate it serves, which
/// [`Tls::reload`] replaces.
pub struct Tls {
    files: TlsFiles,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    /// Reads `files` (see [`load`]) and builds the acceptor: TLS 1.2 and 1.3, HTTP/1.1.
    pub fn new(files: &TlsFiles) -> Result<Tls, String> {
        let current = Arc::new(Current(RwLock::new(Arc::new(load(files)?))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            files: files.clone(),
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again; on success new handshakes get the new certificate, on failure
    /// the old one stays (the error is returned, and logged by the watcher).
    pub fn reload(&self) -> Result<(), String> {
        let key = load(&self.files)?;
        *self.current.0.write() = Arc::new(key);
        Ok(())
    }

    /// Reloads on SIGHUP and when the files change, until `stop` is cancelled. The SIGHUP
    /// handler is in place when this returns, before the future first runs.
    pub(crate) fn watch(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> {
        let hup = hangups();
        self.watching(hup, stop)
    }

    async fn watching(self: Arc<Self>, mut hup: Hangups, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.files.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = stamp(&self.files);
        loop {
            let why = tokio::select! {
                _ = stop.cancelled() => return,
                _ = next_hangup(&mut hup) => "SIGHUP",
                _ = tick.tick() => {
                    let now = stamp(&self.files);
                    if now == seen {
                        continue;
                    }
                    // Remembered even when the reload fails: a certificate and key written
                    // one after the other change the stamp twice, and the second try reads both.
                    seen = now;
                    "the files changed"
                }
            };
            match self.reload() {
                Ok(()) => {
                    info!(reason = why, cert = %self.files.cert.display(), "TLS certificate reloaded")
                }
                Err(e) => error!(
                    reason = why,
                    "TLS reload failed, keeping the previous certificate: {e}"
                ),
            }
        }
    }
}

/// Without TLS there is nothing to reload: SIGHUP is logged and ignored (its default action
/// would end the process), until `stop` is cancelled.
/// The handler is in place when this returns, before the future first runs.
pub(crate) fn no_reload(stop: CancellationToken) -> impl std::future::Future<Output = ()> {
    let mut hup = hangups();
    async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = next_hangup(&mut hup) => info!("SIGHUP: no TLS certificate to reload"),
            }
        }
    }
}

/// What identifies a version of the files: each one's target, modification time and size
/// (a renewal that swaps a symlink changes the target), and on Unix its inode and change
/// time: a copy that keeps the old modification time (`cp -p`, `install -p`, `rsync -a`)
/// and size, renamed over the file, is still a new file.
type Stamp = [Option<(PathBuf, SystemTime, u64, Identity)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| {
        let meta = std::fs::metadata(p).ok()?;
        let target = std::fs::canonicalize(p).ok()?;
        Some((target, meta.modified().ok()?, meta.len(), identity(&meta)))
    };
    [one(&files.cert), one(&files.key)]
}

/// The device, inode and change time (seconds, nanoseconds): no copy can set them.
#[cfg(unix)]
type Identity = (u64, u64, i64, i64);
#[cfg(not(unix))]
type Identity = ();

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Identity {}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn next_hangup(hup: &mut Hangups) {
    match hup {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) {
    std::future::pending().await
}
