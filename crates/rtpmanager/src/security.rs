//! Who may drive the RTP manager: its gRPC port can create sessions, play
//! files, record calls, so it is not open.
//!
//! - It listens on loopback unless told otherwise (`GRPC_BIND`).
//! - With a token (`RTPMANAGER_TOKEN`) every call must carry
//!   `authorization: Bearer <token>` metadata (Health too: a manager's
//!   figures are nobody else's business); the check compares SHA-256
//!   digests in constant time. Bound to any non-loopback address, the
//!   manager refuses to start without a token.
//! - With `GRPC_TLS_CERT`/`GRPC_TLS_KEY` gRPC is served over TLS
//!   (rustls), and with `GRPC_TLS_CLIENT_CA` clients must present a
//!   certificate signed by that CA.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// Shortest token accepted (a guessable secret protects nothing).
pub const MIN_TOKEN_LEN: usize = 16;
/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a token setting; the error names `var`.
pub fn validate_token(var: &str, token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "{var}: the token must be at least {MIN_TOKEN_LEN} characters long"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{var}: the token must be printable ASCII without spaces"
        ));
    }
    Ok(())
}

/// How the gRPC port is protected.
#[derive(Clone, Default)]
pub struct GrpcSecurity {
    pub token: Option<String>,
    pub tls: Option<ServerTlsConfig>,
}

impl std::fmt::Debug for GrpcSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcSecurity")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn read(var: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{var}: {}: {e}", path.display()))
}

impl GrpcSecurity {
    /// From the settings (the TLS files are read here); an error names the
    /// variable at fault.
    pub fn from_settings(
        bind: IpAddr,
        token: Option<&str>,
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<GrpcSecurity, String> {
        if let Some(t) = token {
            validate_token("RTPMANAGER_TOKEN", t)?;
        }
        if token.is_none() && !bind.is_loopback() {
            return Err(format!(
                "RTPMANAGER_TOKEN: GRPC_BIND {bind} is not a loopback address, and anyone \
                 reaching it could create sessions, play files and record calls; set \
                 RTPMANAGER_TOKEN (and preferably GRPC_TLS_CERT/GRPC_TLS_KEY), or bind 127.0.0.1"
            ));
        }
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read("GRPC_TLS_CERT", cert)?, read("GRPC_TLS_KEY", key)?);
                let mut tls = ServerTlsConfig::new()
                    .identity(identity)
                    .timeout(HANDSHAKE_TIMEOUT);
                if let Some(ca) = client_ca {
                    tls =
                        tls.client_ca_root(Certificate::from_pem(read("GRPC_TLS_CLIENT_CA", ca)?));
                }
                // the files are parsed now, so a bad one stops start-up
                tonic::transport::Server::builder()
                    .tls_config(tls.clone())
                    .map_err(|e| {
                        format!("GRPC_TLS_CERT/GRPC_TLS_KEY/GRPC_TLS_CLIENT_CA: unusable: {e}")
                    })?;
                Some(tls)
            }
            (Some(_), None) => return Err("GRPC_TLS_KEY: needed with GRPC_TLS_CERT".into()),
            (None, Some(_)) => return Err("GRPC_TLS_CERT: needed with GRPC_TLS_KEY".into()),
            (None, None) if client_ca.is_some() => {
                return Err("GRPC_TLS_CLIENT_CA: needs GRPC_TLS_CERT and GRPC_TLS_KEY".into());
            }
            (None, None) => None,
        };
        Ok(GrpcSecurity {
            token: token.map(str::to_owned),
            tls,
        })
    }
}

/// The token check of every call (a no-op without a token).
#[derive(Clone)]
pub struct Auth {
    /// SHA-256 of the expected `authorization` value.
    expected: Option<[u8; 32]>,
}

impl Auth {
    pub fn new(token: Option<&str>) -> Auth {
        Auth {
            expected: token.map(|t| Sha256::digest(format!("Bearer {t}")).into()),
        }
    }

    /// Whether an `authorization` value is the expected one; the time taken
    /// does not depend on where they differ.
    pub fn accepts(&self, presented: Option<&[u8]>) -> bool {
        let Some(expected) = &self.expected else {
            return true;
        };
        let got: [u8; 32] = Sha256::digest(presented.unwrap_or_default()).into();
        got.iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if self.accepts(presented) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong token (authorization: Bearer <RTPMANAGER_TOKEN>)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole() {
        let auth = Auth::new(Some("0123456789abcdef"));
        let cases: [(Option<&[u8]>, bool); 6] = [
            (Some(b"Bearer 0123456789abcdef"), true),
            (Some(b"Bearer 0123456789abcdeg"), false),
            (Some(b"Bearer 0123456789abcdef0"), false),
            (Some(b"0123456789abcdef"), false),
            (Some(b""), false),
            (None, false),
        ];
        for (presented, want) in cases {
            assert_eq!(auth.accepts(presented), want, "{presented:?}");
        }
        assert!(Auth::new(None).accepts(None), "no token: open (loopback)");
    }

    #[test]
    fn settings_refuse_an_open_port() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let ok = "s3cret-token-0123456789";
        let cases: [(IpAddr, Option<&str>, Result<(), &str>); 6] = [
            (lo, None, Ok(())),
            (lo, Some(ok), Ok(())),
            (any, Some(ok), Ok(())),
            (any, None, Err("RTPMANAGER_TOKEN: GRPC_BIND 0.0.0.0")),
            ("10.0.0.5".parse().unwrap(), None, Err("RTPMANAGER_TOKEN")),
            (
                lo,
                Some("short"),
                Err("RTPMANAGER_TOKEN: the token must be at least"),
            ),
        ];
        for (bind, token, want) in cases {
            let got = GrpcSecurity::from_settings(bind, token, None, None, None).map(|_| ());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(prefix)) => assert!(e.starts_with(prefix), "{e}"),
                (got, want) => panic!("{bind} {token:?}: {got:?}, want {want:?}"),
            }
        }
        let e = validate_token("X", "has a space in it!!").unwrap_err();
        assert!(e.contains("printable"), "{e}");
        let p = Path::new("/nonexistent");
        let e = GrpcSecurity::from_settings(lo, None, Some(p), None, None).unwrap_err();
        assert!(e.starts_with("GRPC_TLS_KEY"), "{e}");
        let e = GrpcSecurity::from_settings(lo, None, None, None, Some(p)).unwrap_err();
        assert!(e.starts_with("GRPC_TLS_CLIENT_CA"), "{e}");
        let e = GrpcSecurity::from_settings(lo, None, Some(p), Some(p), None).unwrap_err();
        assert!(e.starts_with("GRPC_TLS_CERT: /nonexistent"), "{e}");
    }
}
