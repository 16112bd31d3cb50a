//! A WebRTC peer for the tests, written with webrtc-rs' crates and
//! independent of the manager's code: it offers as Chromium does, runs ICE
//! checks (a full, controlling agent with STUN short-term credentials),
//! the DTLS client handshake with its own self-signed certificate, and
//! SRTP with the keys it exports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtls::config::{Config, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::crypto::Certificate;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rustls::pki_types::CertificateDer;
use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USE_CANDIDATE, ATTR_USERNAME, ATTR_XORMAPPED_ADDRESS,
    RawAttribute,
};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_sip::sdp;
use switchboard_sip::sdp::webrtc::Fingerprint;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::KeyingMaterialExporter as _;

use super::Rtp;

/// What the manager answered, as the browser reads it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: Fingerprint,
    /// The one host candidate.
    pub candidate: SocketAddr,
}

impl Answer {
    pub fn parse(text: &str) -> Answer {
        let d = sdp::parse(text.as_bytes()).unwrap();
        assert!(d.is_webrtc(), "{text}");
        let t = &d.webrtc;
        assert_eq!(t.candidates.len(), 1, "{text}");
        let c = &t.candidates[0];
        Answer {
            ufrag: t.ice_ufrag.clone().unwrap(),
            pwd: t.ice_pwd.clone().unwrap(),
            fingerprint: t.fingerprints[0].clone(),
            candidate: SocketAddr::new(c.ip().unwrap(), c.port),
        }
    }
}

/// A browser: one UDP socket for everything (BUNDLE, rtcp-mux), sorted by
/// first byte into STUN, DTLS and SRTP queues.
pub struct Browser {
    pub sock: Arc<UdpSocket>,
    pub ufrag: String,
    pub pwd: String,
    /// The certificate it shows in DTLS.
    pub cert: Certificate,
    /// The fingerprint its SDP says (its certificate's unless a test lies).
    pub fingerprint: Fingerprint,
    pub ssrc: u32,
    stun: mpsc::Receiver<Vec<u8>>,
    dtls: Option<mpsc::Receiver<Vec<u8>>>,
    srtp: mpsc::Receiver<Vec<u8>>,
    tx: Option<Context>,
    rx: Option<Context>,
}

fn cert_fingerprint(cert: &Certificate) -> Fingerprint {
    Fingerprint::sha256(cert.certificate[0].as_ref())
}

impl Browser {
    pub async fn new() -> Browser {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let (stun_tx, stun) = mpsc::channel(64);
        let (dtls_tx, dtls) = mpsc::channel(64);
        let (srtp_tx, srtp) = mpsc::channel(1024);
        let reader = sock.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = reader.recv_from(&mut buf).await {
                let p = buf[..n].to_vec();
                let _ = match p.first() {
                    Some(0..=3) => stun_tx.try_send(p),
                    Some(20..=63) => dtls_tx.try_send(p),
                    _ => srtp_tx.try_send(p),
                };
            }
        });
        let cert = Certificate::generate_self_signed(vec!["browser".to_owned()]).unwrap();
        Browser {
            sock,
            ufrag: "EsAw".into(),
            pwd: "P2uYro0UCOQ4zxjKXaWCBui1".into(),
            fingerprint: cert_fingerprint(&cert),
            cert,
            ssrc: 0x0bad_cafe,
            stun,
            dtls: Some(dtls),
            srtp,
            tx: None,
            rx: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Shows another certificate in DTLS than the SDP's fingerprint names.
    pub fn swap_certificate(&mut self) {
        self.cert = Certificate::generate_self_signed(vec!["impostor".to_owned()]).unwrap();
    }

    /// An offer as Chromium writes it (Opus first, PCMU, PCMA,
    /// telephone-event at 48 and 8 kHz; one host candidate).
    pub fn offer(&self) -> String {
        let a = self.addr();
        format!(
            "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS s1\r\n\
             m=audio {port} UDP/TLS/RTP/SAVPF 111 0 8 110 126\r\nc=IN IP4 {ip}\r\n\
             a=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=candidate:1467250027 1 udp 2122260223 {ip} {port} typ host generation 0 network-id 1\r\n\
             a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=ice-options:trickle\r\n\
             a=fingerprint:{fp}\r\na=setup:actpass\r\na=mid:0\r\n\
             a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
             a=sendrecv\r\na=msid:s1 t1\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
             a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
             a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\na=rtpmap:110 telephone-event/48000\r\n\
             a=rtpmap:126 telephone-event/8000\r\na=ssrc:{ssrc} cname:browser\r\n",
            ip = a.ip(),
            port = a.port(),
            ufrag = self.ufrag,
            pwd = self.pwd,
            fp = self.fingerprint,
            ssrc = self.ssrc,
        )
    }

    /// Its answer to the manager's offer, as Chromium writes one: the
    /// offer's mid bundled, `pt` chosen with its rtpmap `name` (e.g.
    /// `PCMU/8000`; and telephone-event/8000
    /// as 101), `a=setup:active` (the DTLS client), rtcp-mux.
    pub fn answer(&self, pt: u8, name: &str) -> String {
        let a = self.addr();
        format!(
            "v=0\r\no=- 4611731400430051337 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0\r\na=msid-semantic: WMS s1\r\n\
             m=audio {port} UDP/TLS/RTP/SAVPF {pt} 101\r\nc=IN IP4 {ip}\r\n\
             a=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=candidate:1467250027 1 udp 2122260223 {ip} {port} typ host generation 0 network-id 1\r\n\
             a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=ice-options:trickle\r\n\
             a=fingerprint:{fp}\r\na=setup:active\r\na=mid:0\r\n\
             a=sendrecv\r\na=msid:s1 t1\r\na=rtcp-mux\r\n\
             a=rtpmap:{pt} {name}\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=ssrc:{ssrc} cname:browser\r\n",
            ip = a.ip(),
            port = a.port(),
            ufrag = self.ufrag,
            pwd = self.pwd,
            fp = self.fingerprint,
            ssrc = self.ssrc,
        )
    }

    /// A connectivity check to the manager, keyed with `pwd` (the answer's
    /// ice-pwd unless a test lies).
    pub fn check(&self, answer: &Answer, pwd: &str, nominate: bool) -> Vec<u8> {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(TextAttribute::new(
                ATTR_USERNAME,
                format!("{}:{}", answer.ufrag, self.ufrag),
            )),
            Box::new(RawAttribute {
                typ: ATTR_PRIORITY,
                length: 4,
                value: 2_122_260_223u32.to_be_bytes().to_vec(),
            }),
            Box::new(RawAttribute {
                typ: ATTR_ICE_CONTROLLING,
                length: 8,
                value: 0x1122_3344_5566_7788u64.to_be_bytes().to_vec(),
            }),
        ];
        if nominate {
            setters.push(Box::new(RawAttribute {
                typ: ATTR_USE_CANDIDATE,
                length: 0,
                value: vec![],
            }));
        }
        setters.push(Box::new(MessageIntegrity::new_short_term_integrity(
            pwd.to_owned(),
        )));
        setters.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m.raw
    }

    /// Sends a nominating check keyed with the answer's password and
    /// returns the mapped address of the manager's authenticated answer.
    pub async fn ice(&mut self, answer: &Answer) -> SocketAddr {
        let req = self.check(answer, &answer.pwd, true);
        self.sock.send_to(&req, answer.candidate).await.unwrap();
        let raw = self
            .stun_response(Duration::from_secs(2))
            .await
            .expect("a Binding success");
        let mut m = Message::new();
        m.raw = raw;
        m.decode().unwrap();
        assert_eq!(m.typ, BINDING_SUCCESS);
        assert_eq!(m.transaction_id.0, req[8..20]);
        FINGERPRINT.check(&m).unwrap();
        MessageIntegrity::new_short_term_integrity(answer.pwd.clone())
            .check(&mut m)
            .expect("the answer is keyed with the manager's ice-pwd");
        let mut xor = XorMappedAddress::default();
        xor.get_from_as(&m, ATTR_XORMAPPED_ADDRESS).unwrap();
        SocketAddr::new(xor.ip, xor.port)
    }

    /// The next STUN datagram the manager sent us, if one comes in `wait`.
    pub async fn stun_response(&mut self, wait: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(wait, self.stun.recv()).await.ok()?
    }

    /// The DTLS client handshake with the manager; on success the SRTP
    /// contexts are keyed. The server's certificate must match the
    /// answer's fingerprint.
    pub async fn dtls(&mut self, answer: &Answer) -> Result<DTLSConn, dtls::Error> {
        let conn = Arc::new(PeerConn {
            sock: self.sock.clone(),
            to: answer.candidate,
            rx: Mutex::new(self.dtls.take().expect("one handshake per browser")),
        });
        let expected = answer.fingerprint.clone();
        let config = Config {
            certificates: vec![self.cert.clone()],
            srtp_protection_profiles: vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80],
            extended_master_secret: ExtendedMasterSecretType::Require,
            // self-signed: the fingerprint in the answer is what counts
            insecure_skip_verify: true,
            verify_peer_certificate: Some(Arc::new(
                move |certs: &[Vec<u8>], _: &[CertificateDer<'static>]| {
                    if certs.first().is_some_and(|c| expected.matches(c)) {
                        Ok(())
                    } else {
                        Err(dtls::Error::Other("server fingerprint mismatch".into()))
                    }
                },
            )),
            server_name: "switchboard".into(),
            ..Default::default()
        };
        let dtls = DTLSConn::new(conn, config, true, None).await?;
        let state = dtls.connection_state().await;
        let material = state
            .export_keying_material("EXTRACTOR-dtls_srtp", &[], 60)
            .await
            .unwrap();
        // RFC 5764 §4.2: client key, server key, client salt, server salt
        let (ck, sk, cs, ss) = (
            &material[0..16],
            &material[16..32],
            &material[32..46],
            &material[46..60],
        );
        let profile = ProtectionProfile::Aes128CmHmacSha1_80;
        self.tx = Some(Context::new(ck, cs, profile, None, None).unwrap());
        self.rx = Some(Context::new(sk, ss, profile, None, None).unwrap());
        Ok(dtls)
    }

    /// An SRTP packet (PCMU) of this browser's stream.
    pub fn seal(&mut self, seq: u16, payload: &[u8]) -> Vec<u8> {
        self.seal_as(0, seq, u32::from(seq) * 160, payload)
    }

    /// An SRTP packet of this browser's stream with this payload type and
    /// timestamp (Opus: 111, 960 units per 20 ms).
    pub fn seal_as(&mut self, pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        write_header(&mut buf, pt, seq == 0, seq, ts, self.ssrc);
        buf.extend_from_slice(payload);
        self.tx
            .as_mut()
            .unwrap()
            .encrypt_rtp(&buf)
            .unwrap()
            .to_vec()
    }

    pub async fn send_srtp(&mut self, to: SocketAddr, seq: u16, payload: &[u8]) {
        let p = self.seal(seq, payload);
        self.sock.send_to(&p, to).await.unwrap();
    }

    /// An Opus SRTP packet (PT 111) of 20 ms, packet `seq` of the stream.
    pub async fn send_opus(&mut self, to: SocketAddr, seq: u16, payload: &[u8]) {
        let p = self.seal_as(111, seq, u32::from(seq) * 960, payload);
        self.sock.send_to(&p, to).await.unwrap();
    }

    /// The next SRTP (not SRTCP) packet from the manager, decrypted.
    pub async fn recv_srtp(&mut self, wait: Duration) -> Option<Rtp> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let raw = tokio::time::timeout_at(deadline, self.srtp.recv())
                .await
                .ok()??;
            if raw.len() > 1 && (200..=206).contains(&raw[1]) {
                continue; // SRTCP reports
            }
            let plain = self.rx.as_mut()?.decrypt_rtp(&raw).ok()?;
            let v = RtpView::parse(&plain)?;
            return Some(Rtp {
                pt: v.payload_type(),
                seq: v.sequence(),
                ts: v.timestamp(),
                ssrc: v.ssrc(),
                marker: v.marker(),
                payload: v.payload().to_vec(),
                from: self.addr(),
            });
        }
    }

    /// Whatever (S)RTP datagrams arrived, undecrypted.
    pub fn drain_raw(&mut self) -> usize {
        let mut n = 0;
        while self.srtp.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

/// The browser's DTLS transport: datagrams in from its demultiplexer, out
/// to the manager's candidate.
struct PeerConn {
    sock: Arc<UdpSocket>,
    to: SocketAddr,
    rx: Mutex<mpsc::Receiver<Vec<u8>>>,
}

#[async_trait]
impl webrtc_util::Conn for PeerConn {
    async fn connect(&self, _: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        match self.rx.lock().await.recv().await {
            Some(p) => {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Ok(n)
            }
            None => std::future::pending().await,
        }
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        Ok((self.recv(buf).await?, self.to))
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(self.sock.send_to(buf, self.to).await?)
    }
    async fn send_to(&self, buf: &[u8], _: SocketAddr) -> webrtc_util::Result<usize> {
        self.send(buf).await
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.to)
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}
