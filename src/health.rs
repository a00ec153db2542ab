//! `resound health`: asks the server this configuration describes for `/up` and exits 0
//! when it answers 200, 1 otherwise. For container health checks in an image with no curl.
//! Over TLS when the configuration has a certificate; the certificate is not verified (the
//! check asks the local process whether it is alive, by address rather than by name).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;

/// The command line and working directory of this container's main process (PID 1), when
/// it is this same binary started with arguments other than `health`: `resound health` run
/// bare (the image's `HEALTHCHECK`) reads its settings from them, so that a server started
/// with flags (`docker run resound --port 9000`) is asked where it listens. The environment
/// is the container's for both processes. `None` outside such a container, when PID 1 is
/// another program (a shell, `tini`), or when its files cannot be read.
#[cfg(target_os = "linux")]
pub fn main_process_args() -> Option<(Vec<std::ffi::OsString>, std::path::PathBuf)> {
    let exe = std::fs::read_link("/proc/1/exe").ok()?;
    if exe != std::env::current_exe().ok()? {
        return None;
    }
    let args = split_cmdline(&std::fs::read("/proc/1/cmdline").ok()?);
    if args.len() < 2 || args.iter().skip(1).any(|a| a == "health") {
        return None;
    }
    let cwd = std::fs::read_link("/proc/1/cwd").ok()?;
    Some((args, cwd))
}

/// The arguments in a `/proc/<pid>/cmdline`: each one ends with a NUL byte.
#[cfg(target_os = "linux")]
fn split_cmdline(raw: &[u8]) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    raw.strip_suffix(&[0])
        .unwrap_or(raw)
        .split(|b| *b == 0)
        .filter(|_| !raw.is_empty())
        .map(|a| std::ffi::OsStr::from_bytes(a).to_owned())
        .collect()
}

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Ok when `GET {path}/up` on the configured host and port answers 200 within 5 s.
pub async fn check(config: &Config) -> Result<(), String> {
    tokio::time::timeout(TIMEOUT, ask(config))
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
}

async fn ask(config: &Config) -> Result<(), String> {
    // A server bound to every address is asked on loopback.
    let host = match config.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h.trim_start_matches('[').trim_end_matches(']'),
    };
    let stream = TcpStream::connect((host, config.port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{}: {e}", config.port))?;
    let request = format!(
        "GET {}/up HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: resound-health\r\n\r\n",
        config.path
    );
    let answer = match &config.tls {
        None => exchange(stream, &request).await?,
        Some(_) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            exchange(stream, &request).await?
        }
    };
    let status = answer.lines().next().unwrap_or("");
    if status.starts_with("HTTP/1.1 200") {
        Ok(())
    } else if config.tls.is_none() && answer.starts_with("\u{15}\u{3}") {
        // A TLS alert record: the port serves TLS and this check was not told so.
        Err(format!(
            "{host}:{} answered with TLS: give the check the server's RESOUND_TLS_CERT and \
             RESOUND_TLS_KEY (or --tls-cert and --tls-key)",
            config.port
        ))
    } else {
        Err(format!("/up answered {status:?}"))
    }
}

async fn exchange(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    request: &str,
) -> Result<String, String> {
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // A TLS peer that closes without close_notify still gave us its answer.
    let _ = s.take(64 * 1024).read_to_end(&mut buf).await;
    if buf.is_empty() {
        return Err("the connection closed without an answer".into());
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Accepts whichever certificate the server shows (signatures are still checked): see the
/// module's comment.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::split_cmdline;

    #[test]
    fn a_cmdline_splits_at_each_nul() {
        assert_eq!(
            split_cmdline(b"/usr/local/bin/resound\0--port\09000\0"),
            ["/usr/local/bin/resound", "--port", "9000"]
        );
        assert_eq!(split_cmdline(b"resound\0\0"), ["resound", ""]);
        assert!(split_cmdline(b"").is_empty());
    }
}
