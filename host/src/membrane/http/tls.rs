//! The TLS of a plugin's outbound HTTPS when the policy changes it: the built-in roots plus
//! `[host] tls_roots`, and, on the hops a client certificate is for, that certificate and its
//! key. The files are read for each request (a renewed certificate needs no restart); a key
//! file that other users may read is refused, as ssh refuses one. Nothing read here reaches a
//! plugin, a message or a record.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::policy::ClientCertificate;

/// A client certificate a plugin's request named, with its name in the policy.
pub(crate) struct Identity {
    /// Its name in `[secrets]`.
    pub(crate) name: String,
    /// Its files, and where it may be presented.
    pub(crate) certificate: ClientCertificate,
}

/// The client's TLS settings for one hop: the built-in roots and `roots`, and `identity` if it
/// is presented on this hop.
///
/// # Errors
///
/// Which file cannot be read or used, and why.
pub(super) fn client_config(
    roots: &[std::path::PathBuf],
    identity: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in roots {
        for cert in certificates(path, "[host] tls_roots")? {
            store
                .add(cert)
                .map_err(|e| format!("[host] tls_roots: {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(store);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let what = format!("client certificate {:?}", identity.name);
            let chain = certificates(&identity.certificate.cert, &what)?;
            let key = private_key(&identity.certificate.key, &what)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{what}: its certificate and key do not make a pair: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let at = || format!("{what}: {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read it: {e}", at()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", at()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no CERTIFICATE block", at()));
    }
    Ok(certs)
}

/// The private key of a PEM file that only its owner may read.
fn private_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    let at = format!("{what}: the key {}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| format!("{at}: cannot read it: {e}"))?;
    if let Some(mode) = shared_mode(&meta) {
        return Err(format!(
            "{at} may be read by other users (mode {mode:o}); make it readable by its owner \
             only (chmod 600)"
        ));
    }
    // The parser's message never quotes the key.
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{at}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
}

/// The file's mode, if users other than its owner may read or write it.
#[cfg(unix)]
fn shared_mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Elsewhere the file's access list is the operator's to set.
#[cfg(not(unix))]
fn shared_mode(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}
