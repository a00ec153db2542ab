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
