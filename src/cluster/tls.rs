//! TLS for the Redis link (`rediss://`): rustls with the `ring` provider, trusting the
//! system's roots or the certificates of `RESOUND_REDIS_CA_FILE`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Makes `ring` the process's rustls provider (the `redis` crate's TLS uses the default).
pub(crate) fn install_provider() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of a PEM file; an error when it holds none or one is malformed.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the PEM file".into());
    }
    Ok(certs)
}

/// A client configuration trusting `ca` (PEM) or, without it, the system's roots.
pub(crate) fn client_config(ca: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    install_provider();
    let mut roots = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in certificates(pem)? {
                roots.add(cert).map_err(|e| e.to_string())?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no system root certificates found (set RESOUND_REDIS_CA_FILE)".into());
            }
        }
    }
    Ok(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
