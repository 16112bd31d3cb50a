//! What SIP over TLS needs beyond TCP: the server certificate (swappable
//! while the listener runs), the client side's trust anchors and
//! verification, and the per-destination settings of outbound connections.
//!
//! The connections themselves are the TCP code's ([`super::stream`]): a
//! TLS connection is a TCP connection whose reader and writer run on the
//! TLS stream once the handshake (under its own deadline) is done, so
//! framing, deadlines, caps and keep-alive pongs are the same.
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3 only, and rustls'
//! default cipher suites (AEAD with forward secrecy only).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
/// A certificate (DER), as [`TlsPeer::extra_ca`] holds them.
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Why a certificate, key or CA file was not usable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    Key(String),
    #[error("CA file: {0}")]
    Ca(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// ring, the workspace's provider (tonic's TLS uses it too; deprecated in
/// rustls 0.23.48 only for lacking post-quantum key exchange).
fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key from PEM data, checked to belong
/// together.
///
/// # Errors
/// No certificate, an unparseable or unsupported key, or a key that is not
/// the certificate's.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = certificate_chain(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Key(e.to_string()))
}

/// The certificates of a PEM certificate chain (leaf first), without its
/// key.
///
/// # Errors
/// Unparseable PEM, or no certificate in it.
pub fn certificate_chain(cert_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(chain)
}

/// The listener's certificate. Every handshake asks for the current one,
/// so [`ServerCert::replace`] takes effect at the next connection while
/// established ones keep what they were given.
pub struct ServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert").finish_non_exhaustive()
    }
}

impl ServerCert {
    /// # Errors
    /// As [`certified_key`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified_key(cert_pem, key_pem)?)),
        }))
    }

    /// Serves this chain and key from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(key),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(key),
        }
    }

    /// The end-entity certificate served now (DER).
    pub fn end_entity(&self) -> Option<CertificateDer<'static>> {
        let current = self.current.read().ok()?;
        current.cert.first().cloned()
    }

    /// A server configuration that serves this certificate: TLS 1.2 and
    /// 1.3, rustls' default suites, no client certificates.
    ///
    /// # Errors
    /// Only if the provider refused its own defaults.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// How one outbound TLS connection is checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsPeer {
    /// The name sent as SNI and that the certificate must carry; `None`:
    /// the destination's IP address (checked against the certificate's IP
    /// addresses, no SNI).
    pub server_name: Option<String>,
    /// `true`: any certificate is accepted (the handshake's signatures are
    /// still checked). For trunks that present self-signed certificates.
    pub insecure: bool,
    /// CA certificates trusted for this destination only, in addition to
    /// the client's anchors (a trunk's `tls_ca_file`).
    pub extra_ca: Vec<CertificateDer<'static>>,
}

/// The certificates of a PEM CA file.
///
/// # Errors
/// Unparseable PEM, or no certificate in it.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Ca("no certificate in it".into()));
    }
    // each must be usable as a trust anchor
    let mut roots = RootCertStore::empty();
    for c in &certs {
        roots
            .add(c.clone())
            .map_err(|e| TlsError::Ca(e.to_string()))?;
    }
    Ok(certs)
}

/// Whether `name` can be sent as SNI and checked against a certificate
/// (a DNS name or an IP address).
pub fn valid_server_name(name: &str) -> bool {
    ServerName::try_from(name).is_ok()
}

/// Settings of outbound TLS per destination address (signaling answers
/// with the trunk's); destinations it does not know get the defaults
/// (verification on, the IP address as name).
pub type TlsPeers = Arc<dyn Fn(SocketAddr) -> Option<TlsPeer> + Send + Sync>;

/// The client side: one configuration that verifies server certificates
/// against the trust anchors, and one that does not (used only for
/// destinations configured so).
#[derive(Debug, Clone)]
pub struct TlsClient {
    verifying: Arc<ClientConfig>,
    unverified: Arc<ClientConfig>,
    /// The anchors of `verifying`, for destinations that trust more.
    roots: Arc<RootCertStore>,
}

impl TlsClient {
    /// Trusts the system's CA certificates (when `system` is set) and the
    /// PEM certificates in `extra_ca`. With no trust anchor at all (no
    /// system certificates installed, no CA file) every verified handshake
    /// fails: [`TlsClient::anchors`] tells the caller to say so.
    ///
    /// # Errors
    /// An unparseable or empty `extra_ca`.
    pub fn new(system: bool, extra_ca: Option<&[u8]>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        if system {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(cause = %e, "a system CA certificate was not loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
        }
        if let Some(pem) = extra_ca {
            for c in ca_certificates(pem)? {
                roots.add(c).map_err(|e| TlsError::Ca(e.to_string()))?;
            }
        }
        let roots = Arc::new(roots);
        let verifying = verifying_config(Arc::clone(&roots))?;
        let unverified = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider().signature_verification_algorithms,
            )))
            .with_no_client_auth();
        Ok(Self {
            verifying,
            unverified: Arc::new(unverified),
            roots,
        })
    }

    /// How many trust anchors the verifying side has.
    pub fn anchors(&self) -> usize {
        self.roots.len()
    }

    /// The configuration and name for a connection to `remote`.
    ///
    /// # Errors
    /// A configured server name that is not a valid DNS name.
    pub(super) fn for_peer(
        &self,
        remote: SocketAddr,
        peer: &TlsPeer,
    ) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsError> {
        let name = match &peer.server_name {
            Some(n) => ServerName::try_from(n.clone())
                .map_err(|e| TlsError::Config(format!("server name {n:?}: {e}")))?,
            None => ServerName::IpAddress(remote.ip().into()),
        };
        let config = if peer.insecure {
            Arc::clone(&self.unverified)
        } else if peer.extra_ca.is_empty() {
            Arc::clone(&self.verifying)
        } else {
            // this destination's CAs on top of everyone's (a handshake
            // to a trunk is rare enough to build its configuration anew)
            let mut roots = RootCertStore::clone(&self.roots);
            for c in &peer.extra_ca {
                roots
                    .add(c.clone())
                    .map_err(|e| TlsError::Ca(e.to_string()))?;
            }
            verifying_config(Arc::new(roots))?
        };
        Ok((config, name))
    }
}

/// A client configuration that verifies server certificates against
/// `roots`.
fn verifying_config(roots: Arc<RootCertStore>) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that accepts exactly one server certificate,
/// `end_entity` (compared byte for byte; issuer, names and dates are not
/// looked at), and checks that the server holds its key. For a process
/// probing its own server on loopback with the certificate file that
/// server serves.
///
/// # Errors
/// Only if the provider refused its own defaults.
pub fn pinned_config(end_entity: CertificateDer<'static>) -> Result<Arc<ClientConfig>, TlsError> {
    let algorithms = provider().signature_verification_algorithms;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(end_entity, AnyCertificate(algorithms))))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts its certificate only; the signatures as [`AnyCertificate`].
#[derive(Debug)]
struct Pinned(CertificateDer<'static>, AnyCertificate);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.1.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.1.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.supported_verify_schemes()
    }
}

/// Accepts any server certificate but still checks that the peer holds
/// its key (the handshake signatures).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// TLS on a [`super::Transports`]: a listener (optional) and the client.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// Listen for TLS on this port of every address (0: a free one, for
    /// tests) with this configuration; `None`: outbound TLS only.
    pub listen: Option<(u16, Arc<ServerConfig>)>,
    /// Outbound connections.
    pub client: Arc<TlsClient>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let (cert, key) = pair("a.example");
        let (_, other_key) = pair("b.example");
        assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_ok());
        assert!(matches!(
            certified_key(cert.as_bytes(), other_key.as_bytes()),
            Err(TlsError::Key(_))
        ));
        assert!(matches!(
            certified_key(b"", key.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert!(matches!(
            certified_key(cert.as_bytes(), b"not a key"),
            Err(TlsError::Key(_))
        ));
    }

    #[test]
    fn chains_are_read_without_their_key() {
        let (cert, _) = pair("a.example");
        let chain = certificate_chain(cert.as_bytes()).unwrap();
        assert_eq!(chain.len(), 1);
        assert!(matches!(
            certificate_chain(b""),
            Err(TlsError::NoCertificate)
        ));
        assert!(pinned_config(chain[0].clone()).is_ok());
    }

    #[test]
    fn a_replaced_certificate_is_the_one_resolved() {
        let (cert, key) = pair("a.example");
        let (cert2, key2) = pair("b.example");
        let server = ServerCert::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let first = server.end_entity().unwrap();
        server.replace(certified_key(cert2.as_bytes(), key2.as_bytes()).unwrap());
        let second = server.end_entity().unwrap();
        assert_ne!(first, second);
        assert!(server.server_config().is_ok());
    }

    #[test]
    fn peer_names() {
        let (ca, _) = pair("ca.example");
        let client = TlsClient::new(false, Some(ca.as_bytes())).unwrap();
        assert_eq!(client.anchors(), 1);
        let remote: SocketAddr = "192.0.2.1:5061".parse().unwrap();
        let (_, name) = client.for_peer(remote, &TlsPeer::default()).unwrap();
        assert_eq!(name.to_str(), "192.0.2.1");
        let peer = TlsPeer {
            server_name: Some("sip.example.com".into()),
            ..TlsPeer::default()
        };
        let (_, name) = client.for_peer(remote, &peer).unwrap();
        assert_eq!(name.to_str(), "sip.example.com");
        let bad = TlsPeer {
            server_name: Some("not a name!".into()),
            ..TlsPeer::default()
        };
        assert!(client.for_peer(remote, &bad).is_err());
        // a destination's own CAs: a configuration of its own; the shared
        // one is left as it was
        let (own_ca, _) = pair("own-ca.example");
        let own = TlsPeer {
            extra_ca: ca_certificates(own_ca.as_bytes()).unwrap(),
            ..TlsPeer::default()
        };
        let (shared, _) = client.for_peer(remote, &TlsPeer::default()).unwrap();
        let (mine, _) = client.for_peer(remote, &own).unwrap();
        assert!(!Arc::ptr_eq(&shared, &mine));
        assert_eq!(client.anchors(), 1);
        let junk = TlsPeer {
            extra_ca: vec![CertificateDer::from(vec![1u8, 2, 3])],
            ..TlsPeer::default()
        };
        assert!(matches!(
            client.for_peer(remote, &junk),
            Err(TlsError::Ca(_))
        ));
        assert_eq!(TlsClient::new(false, None).unwrap().anchors(), 0);
        assert!(matches!(
            TlsClient::new(false, Some(b"garbage")),
            Err(TlsError::Ca(_))
        ));
    }
}
