//! DTLS-SRTP (RFC 5763, RFC 5764) of WebRTC legs with webrtc-rs' `dtls`
//! crate (the 0.17 line, on the same `webrtc-util` as `webrtc-srtp`).
//!
//! We are always the DTLS server (`a=setup:passive`). The process has one
//! self-signed ECDSA P-256 certificate ([`Identity`], made at start), whose
//! SHA-256 fingerprint every answer carries. The browser must show a
//! certificate (`RequireAnyClientCert`) whose digest is one of the
//! `a=fingerprint`s of its SDP: that check runs inside the handshake (a
//! mismatch is a fatal `bad_certificate` alert, no keys) and once more on
//! the finished connection. `use_srtp` offers SRTP_AES128_CM_HMAC_SHA1_80
//! and _32; the SRTP master keys and salts are exported with the label
//! `EXTRACTOR-dtls_srtp` (RFC 5764 §4.2) and handed to
//! [`crate::srtp::LegSrtp::from_dtls`].
//!
//! The DTLS connection runs over a [`LegConn`]: the leg's datagrams that
//! the demultiplexer classifies as DTLS, and that come from the leg's
//! ICE-authenticated address, arrive through a bounded channel; what DTLS
//! sends goes out of the leg's socket to that address.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::crypto::Certificate;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rustls::pki_types::CertificateDer;
use switchboard_sip::sdp::crypto::{KEY_LEN, KEY_SALT_LEN, KeySalt, Suite};
use switchboard_sip::sdp::webrtc::Fingerprint;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc, watch};
use webrtc_util::KeyingMaterialExporter as _;

/// DTLS datagrams queued for one leg's handshake; more are dropped (DTLS
/// retransmits).
pub const FEED_QUEUE: usize = 32;
/// RFC 5764 §4.2.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";
/// Salt length of both AES-CM suites.
const SALT_LEN: usize = KEY_SALT_LEN - KEY_LEN;

/// The manager's DTLS certificate and its fingerprint.
pub struct Identity {
    certificate: Certificate,
    fingerprint: Fingerprint,
}

impl Identity {
    /// A fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<Identity, String> {
        let certificate = Certificate::generate_self_signed(vec!["switchboard".to_owned()])
            .map_err(|e| format!("DTLS certificate: {e}"))?;
        let der = certificate
            .certificate
            .first()
            .ok_or("DTLS certificate: empty chain")?;
        let fingerprint = Fingerprint::sha256(der.as_ref());
        Ok(Identity {
            certificate,
            fingerprint,
        })
    }

    /// What our answers write as `a=fingerprint`.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// Why a leg's DTLS did not come up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// The handshake failed: the peer's certificate does not match its
    /// `a=fingerprint` (a fatal alert), no common cipher or SRTP profile,
    /// a malformed or unexpected message.
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    #[error("the peer's certificate does not match its a=fingerprint")]
    Fingerprint,
    #[error("no SRTP protection profile we support was negotiated")]
    Profile,
    #[error("exporting the SRTP keys failed: {0}")]
    Export(String),
}

/// The SRTP keys of a DTLS-SRTP leg, for us as the server. `Debug`
/// redacts them ([`KeySalt`]).
#[derive(Debug)]
pub struct Keys {
    pub suite: Suite,
    /// The server's write key and salt: what we send with.
    pub local: KeySalt,
    /// The client's: what the leg sends with.
    pub remote: KeySalt,
}

/// Splits the 60 exported bytes (RFC 5764 §4.2: client key, server key,
/// client salt, server salt) into keys for the DTLS server.
pub fn split_keys(suite: Suite, material: &[u8]) -> Option<Keys> {
    if material.len() != 2 * KEY_SALT_LEN {
        return None;
    }
    let (keys, salts) = material.split_at(2 * KEY_LEN);
    let (client_key, server_key) = keys.split_at(KEY_LEN);
    let (client_salt, server_salt) = salts.split_at(SALT_LEN);
    let join = |k: &[u8], s: &[u8]| -> Option<KeySalt> {
        let mut all = [0u8; KEY_SALT_LEN];
        all.get_mut(..KEY_LEN)?.copy_from_slice(k);
        all.get_mut(KEY_LEN..)?.copy_from_slice(s);
        Some(KeySalt(all))
    };
    Some(Keys {
        suite,
        local: join(server_key, server_salt)?,
        remote: join(client_key, client_salt)?,
    })
}

fn matches_any(fingerprints: &[Fingerprint], certs: &[Vec<u8>]) -> bool {
    certs
        .first()
        .is_some_and(|der| fingerprints.iter().any(|f| f.matches(der)))
}

/// Runs the server side of the handshake over `conn` until it completes
/// or fails (the caller bounds it in time). On success the connection is
/// returned, to be kept open for the leg's life (the browser may
/// retransmit its last flight, or close), with the leg's SRTP keys.
pub async fn accept(
    identity: &Identity,
    fingerprints: Vec<Fingerprint>,
    conn: Arc<LegConn>,
) -> Result<(DTLSConn, Keys), DtlsError> {
    let fingerprints = Arc::new(fingerprints);
    let expected = fingerprints.clone();
    let config = Config {
        certificates: vec![identity.certificate.clone()],
        srtp_protection_profiles: vec![
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
        ],
        // the browser's certificate is self-signed: no chain to verify,
        // its fingerprint is what authenticates it
        client_auth: ClientAuthType::RequireAnyClientCert,
        extended_master_secret: ExtendedMasterSecretType::Require,
        verify_peer_certificate: Some(Arc::new(
            move |certs: &[Vec<u8>], _: &[CertificateDer<'static>]| {
                if matches_any(&expected, certs) {
                    Ok(())
                } else {
                    Err(dtls::Error::Other(
                        "certificate does not match a=fingerprint".into(),
                    ))
                }
            },
        )),
        ..Default::default()
    };
    let dtls = DTLSConn::new(conn, config, false, None)
        .await
        .map_err(|e| DtlsError::Handshake(e.to_string()))?;
    let state = dtls.connection_state().await;
    if !matches_any(&fingerprints, &state.peer_certificates) {
        return Err(DtlsError::Fingerprint);
    }
    let suite = match dtls.selected_srtpprotection_profile() {
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Suite::AesCm128HmacSha1_80,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => Suite::AesCm128HmacSha1_32,
        _ => return Err(DtlsError::Profile),
    };
    let material = state
        .export_keying_material(EXPORTER_LABEL, &[], 2 * KEY_SALT_LEN)
        .await
        .map_err(|e| DtlsError::Export(e.to_string()))?;
    let keys =
        split_keys(suite, &material).ok_or(DtlsError::Export("short key material".into()))?;
    Ok((dtls, keys))
}

/// A `webrtc_util::Conn` for one leg's DTLS: datagrams in from a bounded
/// channel (fed by the leg's demultiplexer), out of the leg's socket to the
/// address `peer` holds (the leg's ICE-authenticated address).
pub struct LegConn {
    rx: Mutex<mpsc::Receiver<Vec<u8>>>,
    /// Weak: the session owns its socket, which closes when the session
    /// ends even while the DTLS tasks wind down.
    socket: Weak<UdpSocket>,
    peer: watch::Receiver<SocketAddr>,
    local: SocketAddr,
}

impl LegConn {
    pub fn new(
        rx: mpsc::Receiver<Vec<u8>>,
        socket: &Arc<UdpSocket>,
        peer: watch::Receiver<SocketAddr>,
        local: SocketAddr,
    ) -> LegConn {
        LegConn {
            rx: Mutex::new(rx),
            socket: Arc::downgrade(socket),
            peer,
            local,
        }
    }
}

fn closed() -> webrtc_util::Error {
    webrtc_util::Error::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the leg's socket is closed",
    ))
}

#[async_trait]
impl webrtc_util::Conn for LegConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        match self.rx.lock().await.recv().await {
            Some(p) => {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Ok(n)
            }
            // The feed is gone: the leg failed or ended. The DTLS reader
            // task retries after any error in a tight loop, so this waits
            // instead; the task ends when its DTLSConn is dropped.
            None => std::future::pending().await,
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, *self.peer.borrow()))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        let socket = self.socket.upgrade().ok_or_else(closed)?;
        let to = *self.peer.borrow();
        Ok(socket.send_to(buf, to).await?)
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        // only ever to the authenticated address
        self.send(buf).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(*self.peer.borrow())
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_split_as_rfc_5764_says() {
        let material: Vec<u8> = (0..60).collect();
        let k = split_keys(Suite::AesCm128HmacSha1_80, &material).unwrap();
        // client key 0..16, server key 16..32, client salt 32..46, server salt 46..60
        let server: Vec<u8> = (16..32).chain(46..60).collect();
        let client: Vec<u8> = (0..16).chain(32..46).collect();
        assert_eq!(k.local.0.to_vec(), server);
        assert_eq!(k.remote.0.to_vec(), client);
        assert!(split_keys(Suite::AesCm128HmacSha1_80, &material[..59]).is_none());
        assert!(format!("{k:?}").contains("<redacted>"));
    }

    #[test]
    fn identity_fingerprint_is_the_certificates() {
        let id = Identity::generate().unwrap();
        let der = id.certificate.certificate[0].as_ref().to_vec();
        assert!(id.fingerprint().matches(&der));
        assert!(matches_any(
            &[id.fingerprint().clone()],
            std::slice::from_ref(&der)
        ));
        assert!(!matches_any(&[id.fingerprint().clone()], &[]));
        let other = Identity::generate().unwrap();
        assert!(!matches_any(&[other.fingerprint().clone()], &[der]));
    }
}
