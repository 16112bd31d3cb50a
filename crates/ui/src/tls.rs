//! TLS towards `https://` backends: rustls with ring, TLS 1.2 and 1.3.
//! A backend's certificate must chain to the system's CA certificates or
//! to one in UI_BACKEND_CA_FILE (a private CA, e.g. the cluster's), and be
//! valid for the URL's host: a DNS name, or an IP address checked against
//! the certificate's IP addresses. Nothing is accepted unverified: a
//! backend whose certificate fails is an error, which the pages show as
//! down with the reason ([`describe`]).

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The certificates of UI_BACKEND_CA_FILE, each checked to be usable as a
/// trust anchor.
///
/// # Errors
/// An unreadable file, unparseable PEM, no certificate, or one that is
/// not a usable CA certificate; the message names UI_BACKEND_CA_FILE.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |why: String| format!("UI_BACKEND_CA_FILE: {}: {why}", path.display());
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    let mut roots = RootCertStore::empty();
    for (n, c) in certs.iter().enumerate() {
        roots
            .add(c.clone())
            .map_err(|e| bad(format!("certificate {}: {e}", n + 1)))?;
    }
    Ok(certs)
}

/// The client configuration for `https://` backends: the system's CA
/// certificates and `extra` as trust anchors. Also returns how many
/// anchors it has (none: every `https://` backend fails verification).
///
/// # Errors
/// Only if ring refused rustls' default protocol versions.
pub fn client_config(extra: &[CertificateDer<'static>]) -> Result<(ClientConfig, usize), String> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::debug!(cause = %e, "a system CA certificate was not loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    tracing::debug!(added, ignored, "system CA certificates loaded");
    for c in extra {
        // checked by read_ca_file already
        let _ = roots.add(c.clone());
    }
    let anchors = roots.len();
    #[allow(deprecated)] // ring lacks only post-quantum key exchange
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, anchors))
}

/// What went wrong in TLS, when `err` (or what it wraps) is a TLS error:
/// a rejected certificate says so and why.
pub fn describe(err: &(dyn Error + 'static)) -> Option<String> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(tls) = rustls_error(e, 4) {
            return Some(match tls {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    "TLS: certificate rejected: not signed by a trusted CA (the system's or \
                     UI_BACKEND_CA_FILE's)"
                        .to_owned()
                }
                rustls::Error::InvalidCertificate(c) => format!("TLS: certificate rejected: {c}"),
                other => format!("TLS: {other}"),
            });
        }
        cause = e.source();
    }
    None
}

/// The rustls error `e` is, or holds within up to `depth` I/O errors
/// (tokio-rustls and hyper-rustls each wrap it in one, and an I/O error's
/// `source` skips what it wraps).
fn rustls_error<'a>(e: &'a (dyn Error + 'static), depth: usize) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    if depth == 0 {
        return None;
    }
    rustls_error(inner, depth - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // as hyper-rustls hands it over: io::Error::other(tokio-rustls' io::Error)
        let wrapped = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            unknown,
        ));
        let got = describe(&wrapped).unwrap_or_default();
        assert!(got.contains("certificate rejected"), "{got}");
        assert!(got.contains("UI_BACKEND_CA_FILE"), "{got}");
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        let got = describe(&expired).unwrap_or_default();
        assert!(got.starts_with("TLS: certificate rejected: "), "{got}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&refused), None);
    }

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-ui-ca-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        let _ = std::fs::write(&empty, "# no certificate here\n");
        let junk = dir.join("junk.pem");
        let _ = std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        for (path, want) in [
            (&missing, "cannot read"),
            (&empty, "no certificate"),
            (&junk, "certificate 1"),
        ] {
            let err = read_ca_file(path).expect_err(want);
            assert!(err.starts_with("UI_BACKEND_CA_FILE: "), "{err}");
            assert!(err.contains(want), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
