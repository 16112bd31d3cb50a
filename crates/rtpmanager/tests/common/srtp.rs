//! An SRTP phone for the tests: SDES offers and answers, and its own
//! `webrtc-srtp` contexts (independent of the manager's `LegSrtp`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_sip::sdp;
use switchboard_sip::sdp::crypto::{self, Crypto, KeySalt, Suite};
use tokio::net::UdpSocket;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

use super::Rtp;

pub fn profile(suite: Suite) -> ProtectionProfile {
    match suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

pub fn context(key: &KeySalt, suite: Suite) -> Context {
    Context::new(key.key(), key.salt(), profile(suite), None, None).unwrap()
}

/// A phone with an RTP socket on an even port and its RTCP socket above.
pub struct SrtpPhone {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub ssrc: u32,
    pub crypto: Crypto,
    /// Encrypts what the phone sends (its own key).
    pub tx: Context,
    /// Decrypts what the manager sends (the key of the manager's a=crypto).
    pub rx: Option<Context>,
}

impl SrtpPhone {
    pub async fn new(suite: Suite) -> SrtpPhone {
        let (rtp, rtcp) = loop {
            let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = a.local_addr().unwrap().port();
            if port % 2 != 0 || port == u16::MAX {
                continue;
            }
            if let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
                break (a, b);
            }
        };
        let crypto = Crypto {
            tag: 1,
            suite,
            key: KeySalt::random(),
            lifetime: Some(1 << 31),
        };
        SrtpPhone {
            rtp,
            rtcp,
            ssrc: 0x5a5a_0001,
            tx: context(&crypto.key, suite),
            rx: None,
            crypto,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap()
    }

    /// An RTP/SAVP offer of PCMU with this phone's a=crypto (plus an MKI
    /// line with another tag, which the manager must skip).
    pub fn offer(&self) -> String {
        let a = self.addr();
        let mut s = sdp_head(a.ip(), a.port(), "RTP/SAVP");
        s.push_str(&format!(
            "a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:{}|2^20|1:4\r\n",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
        ));
        s.push_str(&format!("a=crypto:{}\r\n", crypto::format(&self.crypto)));
        s
    }

    /// An RTP/SAVP answer to the manager's offer: its tag and suite, our key.
    pub fn answer(&mut self, offer: &str) -> String {
        let d = sdp::parse(offer.as_bytes()).unwrap();
        assert!(d.is_savp(), "{offer}");
        let theirs = crypto::choose(&d.crypto).unwrap();
        self.crypto.tag = theirs.tag;
        self.crypto.suite = theirs.suite;
        self.tx = context(&self.crypto.key, theirs.suite);
        self.rx = Some(context(&theirs.key, theirs.suite));
        let a = self.addr();
        let mut s = sdp_head(a.ip(), a.port(), "RTP/SAVP");
        s.push_str(&format!("a=crypto:{}\r\n", crypto::format(&self.crypto)));
        s
    }

    /// Takes the manager's answer: its a=crypto keys what we receive.
    pub fn accept(&mut self, answer: &str) -> Crypto {
        let d = sdp::parse(answer.as_bytes()).unwrap();
        assert!(d.is_savp(), "{answer}");
        assert_eq!(d.crypto.len(), 1, "{answer}");
        let theirs = crypto::parse(&d.crypto[0]).unwrap();
        self.rx = Some(context(&theirs.key, theirs.suite));
        theirs
    }

    pub fn seal(&mut self, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        write_header(&mut buf, 0, seq == 0, seq, u32::from(seq) * 160, self.ssrc);
        buf.extend_from_slice(payload);
        self.tx.encrypt_rtp(&buf).unwrap().to_vec()
    }

    pub async fn send(&mut self, to: SocketAddr, seq: u16, payload: &[u8]) {
        let p = self.seal(seq, payload);
        self.rtp.send_to(&p, to).await.unwrap();
    }

    /// The next datagram as received (still encrypted).
    pub async fn recv_raw(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(wait, self.rtp.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[..n].to_vec())
    }

    /// Decrypts a datagram from the manager with the manager's key.
    pub fn open(&mut self, raw: &[u8]) -> Option<Rtp> {
        let plain = self.rx.as_mut()?.decrypt_rtp(raw).ok()?;
        let v = RtpView::parse(&plain)?;
        Some(Rtp {
            pt: v.payload_type(),
            seq: v.sequence(),
            ts: v.timestamp(),
            ssrc: v.ssrc(),
            marker: v.marker(),
            payload: v.payload().to_vec(),
            from: self.addr(),
        })
    }
}

fn sdp_head(ip: IpAddr, port: u16, proto: &str) -> String {
    format!(
        "v=0\r\no=srtp-phone 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}
