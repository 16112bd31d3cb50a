//! `switchboard-rtpmanager health [--ready]`: asks the manager that the
//! same settings describe whether it answers, for Kubernetes exec probes
//! and Docker's HEALTHCHECK.
//!
//! The probe reads the server's configuration (environment and flags) and
//! finds the gRPC port exactly as the server does (`GRPC_PORT`, else the
//! ordinal of `POD_NAME`/`HOSTNAME`). It connects to `GRPC_BIND`, or to
//! loopback of the same family when that is a wildcard (`0.0.0.0` →
//! `127.0.0.1`, `::` → `::1`), sends `RTPMANAGER_TOKEN` when set and calls
//! `Health` with a 2 s limit on the whole exchange.
//!
//! With `GRPC_TLS_CERT` it speaks TLS and accepts exactly the certificate
//! that file starts with, the one the manager serves: the probe dials
//! loopback, a name the certificate need not carry, so it compares the
//! certificate itself instead of checking names against a root, and the
//! handshake still proves the peer holds `GRPC_TLS_KEY`. This works for a
//! self-signed certificate and for a chain file alike. When the server
//! demands client certificates (`GRPC_TLS_CLIENT_CA`) the probe presents
//! `GRPC_TLS_CERT`/`GRPC_TLS_KEY`, which the server accepts only when that
//! certificate is itself signed by a CA in `GRPC_TLS_CLIENT_CA` and allows
//! client authentication (no extended key usage, or `clientAuth` among
//! them); a server certificate from another CA, or one limited to
//! `serverAuth`, fails the probe.
//!
//! Exit status: 0 when the manager answers (and, with `--ready`, is not
//! draining), 1 otherwise, with the reason on stderr. The answer is printed
//! on stdout as one line of JSON whenever there is one.

use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use switchboard_rtpmanager_api::RtpManagerClient;
use switchboard_rtpmanager_api::v1 as pb;
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::Config;

/// How long the whole probe (connect, handshake, call) may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how the probe reaches the manager.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub token: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// `bind` as a probe dials it: a wildcard becomes loopback of its family.
pub fn dial_address(bind: IpAddr) -> IpAddr {
    match bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        a => a,
    }
}

impl Target {
    /// The manager `config` describes (the TLS files are read here); an
    /// error names the variable at fault.
    pub fn from_config(config: &Config) -> Result<Target, String> {
        let addr = SocketAddr::new(dial_address(config.grpc_bind), config.ports().grpc);
        let tls = match (&config.grpc_tls_cert, &config.grpc_tls_key) {
            (Some(cert), Some(key)) => {
                let identity = config.grpc_tls_client_ca.is_some().then_some(key.as_path());
                Some(Arc::new(tls_config(cert, identity)?))
            }
            (Some(_), None) => return Err("GRPC_TLS_KEY: needed with GRPC_TLS_CERT".into()),
            (None, _) => None,
        };
        Ok(Target {
            addr,
            token: config.rtpmanager_token.clone(),
            tls,
        })
    }

    /// Calls Health, all within `timeout`.
    pub async fn health(&self, timeout: Duration) -> Result<pb::HealthResponse, String> {
        let mut request = tonic::Request::new(pb::HealthRequest {});
        if let Some(t) = &self.token {
            let v: MetadataValue<_> = format!("Bearer {t}")
                .parse()
                .map_err(|_| "RTPMANAGER_TOKEN: not usable in a gRPC header".to_string())?;
            request.metadata_mut().insert("authorization", v);
        }
        let call = async {
            let mut client = RtpManagerClient::new(self.connect(timeout).await?);
            client
                .health(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| {
                    let why = with_causes(s.message().to_string(), s.source());
                    format!("{} answered {:?}: {why}", self.addr, s.code())
                })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(format!("{}: no answer within {timeout:?}", self.addr)),
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<Channel, String> {
        // the URI only names the peer: TLS, when on, is done by the connector
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| format!("{}: {e}", self.addr))?
            .connect_timeout(timeout);
        let connected = match &self.tls {
            None => endpoint.connect().await,
            Some(tls) => {
                let addr = self.addr;
                let tls = tokio_rustls::TlsConnector::from(tls.clone());
                let connector = tower::service_fn(move |_: Uri| {
                    let tls = tls.clone();
                    async move {
                        let tcp = TcpStream::connect(addr).await?;
                        tcp.set_nodelay(true)?;
                        let stream = tls.connect(ServerName::from(addr.ip()), tcp).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                });
                endpoint.connect_with_connector(connector).await
            }
        };
        connected.map_err(|e| {
            let why = with_causes(e.to_string(), e.source());
            if why.contains("invalid peer certificate") {
                format!(
                    "cannot connect to {}: {why} (it does not serve the certificate \
                     GRPC_TLS_CERT starts with)",
                    self.addr
                )
            } else {
                format!("cannot connect to {}: {why}", self.addr)
            }
        })
    }
}

/// `text: cause: cause…` (tonic's own texts are terse).
fn with_causes(mut s: String, source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut cause = source;
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// The probe's TLS settings: only the first certificate of `cert_path` is
/// accepted from the server; with `client_key`, that file's chain and key
/// are the probe's own certificate.
fn tls_config(cert_path: &Path, client_key: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(cert_path)
        .map_err(|e| format!("GRPC_TLS_CERT: {}: {e}", cert_path.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("GRPC_TLS_CERT: {}: {e}", cert_path.display()))?;
    let Some(served) = chain.first().cloned() else {
        return Err(format!(
            "GRPC_TLS_CERT: {}: no certificate in the file",
            cert_path.display()
        ));
    };
    // ring, as tonic's TLS uses (deprecated in rustls 0.23.48 only for
    // lacking post-quantum key exchange)
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(SameCertificate {
        served,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_key {
        None => builder.with_no_client_auth(),
        Some(key_path) => {
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| format!("GRPC_TLS_KEY: {}: {e}", key_path.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("GRPC_TLS_CERT/GRPC_TLS_KEY: {e}"))?
        }
    };
    // gRPC is HTTP/2
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts the server's certificate when it is `served`, byte for byte;
/// the handshake's signatures are checked as usual, so the peer must hold
/// its key.
#[derive(Debug)]
struct SameCertificate {
    served: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SameCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.served.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The answer as the one line of JSON the subcommand prints.
pub fn json_line(addr: SocketAddr, h: &pb::HealthResponse) -> String {
    serde_json::json!({
        "address": addr.to_string(),
        "sessions": h.sessions,
        "free_port_pairs": h.free_port_pairs,
        "draining": h.draining,
        "advertise_address": h.advertise_address,
        "rtp_foreign_dropped": h.rtp_foreign_dropped,
        "sessions_expired": h.sessions_expired,
        "events_dropped": h.events_dropped,
        "recording_dropped": h.recording_dropped,
        "srtp_dropped": h.srtp_dropped,
        "ice_refused": h.ice_refused,
        "dtls_failed": h.dtls_failed,
    })
    .to_string()
}

/// The `health` subcommand: prints, and says how the process should exit.
pub async fn main(config: &Config, ready: bool) -> ExitCode {
    let fail = |why: &str| {
        eprintln!("switchboard-rtpmanager health: {why}");
        ExitCode::FAILURE
    };
    let target = match Target::from_config(config) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let h = match target.health(TIMEOUT).await {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    println!("{}", json_line(target.addr, &h));
    if ready && h.draining {
        return fail(&format!(
            "{} is draining (takes no new sessions): not ready",
            target.addr
        ));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_dialled_on_loopback() {
        let cases = [
            ("0.0.0.0", "127.0.0.1"),
            ("::", "::1"),
            ("127.0.0.1", "127.0.0.1"),
            ("10.1.2.3", "10.1.2.3"),
            ("::1", "::1"),
            ("fd00::5", "fd00::5"),
        ];
        for (bind, want) in cases {
            let got = dial_address(bind.parse().unwrap());
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{bind}");
        }
    }
}
