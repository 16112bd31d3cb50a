//! SRTP and SRTCP (RFC 3711) of one leg, with `webrtc-srtp`, keyed either
//! by SDES (RFC 4568: the leg's packets are authenticated and decrypted
//! with the key of its `a=crypto`, ours encrypted with the key of our own
//! `a=crypto`, fresh and random per leg) or by DTLS-SRTP (RFC 5764: both
//! keys exported from the leg's DTLS handshake, see
//! [`crate::webrtc::dtls`]). Each leg is independent, so an SRTP leg can
//! be bridged to a plain one.
//!
//! Keys never reach logs: [`LegSrtp`]'s `Debug` shows only the suite and
//! how it was keyed (and [`KeySalt`] redacts itself).

use std::fmt;

use switchboard_sip::sdp::crypto::{Crypto, KeySalt, Suite};
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Packets behind the newest one that are still accepted once (RFC 3711
/// §3.3.2: at least 64).
const REPLAY_WINDOW: usize = 128;
/// Streams (SSRCs) of the leg we keep crypto state for; a new one beyond
/// this starts the receive state afresh.
const MAX_STREAMS: usize = 8;
/// The smallest SRTCP packet: 8 bytes of header and sender SSRC, the
/// 4-byte E flag and index, the 80-bit tag. Shorter ones are refused here
/// (webrtc-srtp 0.17.2 reads the index before checking the length).
const MIN_SRTCP: usize = 8 + 4 + SRTCP_TAG;
/// The fixed RTP header.
const MIN_SRTP: usize = 12;
/// The SRTCP authentication tag of both suites (80 bits).
const SRTCP_TAG: usize = 10;

/// Per-leg SRTP policy, as the gRPC `SrtpPolicy` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// A SAVP offer is answered with SAVP, a plain one plainly; our offers
    /// are plain RTP/AVP.
    #[default]
    Optional,
    /// Plain RTP only: a SAVP offer is refused.
    Disabled,
    /// SRTP only: a plain offer is refused; our offers are RTP/SAVP.
    Required,
}

fn profile(suite: Suite) -> ProtectionProfile {
    match suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn rx_context(key: &KeySalt, suite: Suite) -> Result<Context, String> {
    Context::new(
        key.key(),
        key.salt(),
        profile(suite),
        Some(srtp_replay_protection(REPLAY_WINDOW)),
        Some(srtcp_replay_protection(REPLAY_WINDOW)),
    )
    .map_err(|e| format!("SRTP context: {e}"))
}

/// Our `a=crypto` for a leg: `tag` and `suite` as chosen, a fresh key.
pub fn our_crypto(tag: u32, suite: Suite) -> Crypto {
    Crypto {
        tag,
        suite,
        key: KeySalt::random(),
        lifetime: None,
    }
}

/// How a leg's SRTP keys were agreed.
enum Keying {
    /// In SDP (`a=crypto`): ours as written in our SDP, the leg's from its.
    Sdes { local: Crypto, remote: Crypto },
    /// Exported from the leg's DTLS handshake (RFC 5764 §4.2).
    Dtls,
}

/// The crypto state of one SRTP leg.
pub struct LegSrtp {
    suite: Suite,
    /// The master key and salt of what the leg sends.
    remote_key: KeySalt,
    keying: Keying,
    rx: Context,
    tx: Context,
    /// SSRCs whose SRTP resp. SRTCP authenticated; packets of other SSRCs
    /// are checked on a scratch context first, so forged packets cannot
    /// grow `rx`'s per-SSRC state.
    rtp_streams: Vec<u32>,
    rtcp_streams: Vec<u32>,
}

impl fmt::Debug for LegSrtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LegSrtp");
        d.field("suite", &self.suite);
        match &self.keying {
            Keying::Sdes { local, .. } => d.field("sdes_tag", &local.tag),
            Keying::Dtls => d.field("keying", &"dtls"),
        };
        d.finish_non_exhaustive()
    }
}

impl LegSrtp {
    /// Both directions of a leg; `remote` must use `local`'s suite.
    pub fn new(local: Crypto, remote: Crypto) -> Result<LegSrtp, String> {
        if local.suite != remote.suite {
            return Err(format!(
                "a=crypto: suite {} does not match ours ({})",
                remote.suite, local.suite
            ));
        }
        let (suite, local_key, remote_key) = (local.suite, local.key.clone(), remote.key.clone());
        LegSrtp::keyed(
            suite,
            &local_key,
            remote_key,
            Keying::Sdes { local, remote },
        )
    }

    /// Both directions of a DTLS-SRTP leg: `local` keys what we send,
    /// `remote` what the leg sends (RFC 5764 §4.2: the server's and the
    /// client's write keys, for us as the DTLS server).
    pub fn from_dtls(suite: Suite, local: &KeySalt, remote: KeySalt) -> Result<LegSrtp, String> {
        LegSrtp::keyed(suite, local, remote, Keying::Dtls)
    }

    fn keyed(
        suite: Suite,
        local: &KeySalt,
        remote: KeySalt,
        keying: Keying,
    ) -> Result<LegSrtp, String> {
        let rx = rx_context(&remote, suite)?;
        let tx = Context::new(local.key(), local.salt(), profile(suite), None, None)
            .map_err(|e| format!("SRTP context: {e}"))?;
        Ok(LegSrtp {
            suite,
            remote_key: remote,
            keying,
            rx,
            tx,
            rtp_streams: Vec::new(),
            rtcp_streams: Vec::new(),
        })
    }

    /// Our `a=crypto` (SDES legs only).
    pub fn local(&self) -> Option<&Crypto> {
        match &self.keying {
            Keying::Sdes { local, .. } => Some(local),
            Keying::Dtls => None,
        }
    }

    /// The leg's `a=crypto` (SDES legs only).
    pub fn remote(&self) -> Option<&Crypto> {
        match &self.keying {
            Keying::Sdes { remote, .. } => Some(remote),
            Keying::Dtls => None,
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Authenticates and decrypts one SRTP packet of the leg into `out`.
    /// False (and `out` unspecified) when it does not authenticate, is a
    /// replay or is malformed.
    pub fn unprotect_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        if packet.len() < MIN_SRTP {
            return false;
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        if !self.rtp_streams.contains(&ssrc) {
            // a new stream: proven on a scratch context before `rx` keeps
            // state for it
            let Ok(mut probe) = rx_context(&self.remote_key, self.suite) else {
                return false;
            };
            if probe.decrypt_rtp(packet).is_err() {
                return false;
            }
            if self.rtp_streams.len() >= MAX_STREAMS {
                match rx_context(&self.remote_key, self.suite) {
                    Ok(rx) => self.rx = rx,
                    Err(_) => return false,
                }
                self.rtp_streams.clear();
                self.rtcp_streams.clear();
            }
            self.rtp_streams.push(ssrc);
        }
        match self.rx.decrypt_rtp(packet) {
            Ok(plain) => {
                out.clear();
                out.extend_from_slice(&plain);
                true
            }
            Err(_) => false,
        }
    }

    /// Authenticates and decrypts one SRTCP packet of the leg into `out`.
    pub fn unprotect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        if packet.len() < MIN_SRTCP {
            return false;
        }
        // The E flag must be set: we never negotiate UNENCRYPTED_SRTCP, and
        // webrtc-srtp 0.17.2 returns a packet whose E flag is clear without
        // checking its authentication tag (RFC 3711 §3.4 requires it).
        if packet[packet.len() - SRTCP_TAG - 4] & 0x80 == 0 {
            return false;
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if !self.rtcp_streams.contains(&ssrc) {
            let Ok(mut probe) = rx_context(&self.remote_key, self.suite) else {
                return false;
            };
            if probe.decrypt_rtcp(packet).is_err() {
                return false;
            }
            if self.rtcp_streams.len() >= MAX_STREAMS {
                match rx_context(&self.remote_key, self.suite) {
                    Ok(rx) => self.rx = rx,
                    Err(_) => return false,
                }
                self.rtp_streams.clear();
                self.rtcp_streams.clear();
            }
            self.rtcp_streams.push(ssrc);
        }
        match self.rx.decrypt_rtcp(packet) {
            Ok(plain) => {
                out.clear();
                out.extend_from_slice(&plain);
                true
            }
            Err(_) => false,
        }
    }

    /// Encrypts our RTP packet in `buf` in place; false when it cannot be.
    pub fn protect_rtp(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.tx.encrypt_rtp(buf) {
            Ok(sealed) => {
                buf.clear();
                buf.extend_from_slice(&sealed);
                true
            }
            Err(_) => false,
        }
    }

    /// Encrypts our RTCP packet in `buf` in place; false when it cannot be.
    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.tx.encrypt_rtcp(buf) {
            Ok(sealed) => {
                buf.clear();
                buf.extend_from_slice(&sealed);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_media::rtp_header::write_header;

    fn pair(suite: Suite) -> (LegSrtp, LegSrtp) {
        let a = our_crypto(1, suite);
        let b = our_crypto(1, suite);
        (
            LegSrtp::new(a.clone(), b.clone()).unwrap(),
            LegSrtp::new(b, a).unwrap(),
        )
    }

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = Vec::new();
        write_header(&mut p, 0, false, seq, u32::from(seq) * 160, ssrc);
        p.extend_from_slice(&[0x55; 160]);
        p
    }

    #[test]
    fn round_trip_both_suites_and_bad_tags() {
        for (suite, tag) in [
            (Suite::AesCm128HmacSha1_80, 10),
            (Suite::AesCm128HmacSha1_32, 4),
        ] {
            let (mut a, mut b) = pair(suite);
            let mut out = Vec::new();
            for seq in 0..5u16 {
                let plain = rtp(seq, 7);
                let mut buf = plain.clone();
                assert!(a.protect_rtp(&mut buf));
                assert_eq!(buf.len(), plain.len() + tag);
                assert_ne!(buf[12..172], plain[12..172], "payload encrypted");
                let mut bad = buf.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert!(!b.unprotect_rtp(&bad, &mut out), "bad tag refused");
                assert!(b.unprotect_rtp(&buf, &mut out));
                assert_eq!(out, plain);
                assert!(!b.unprotect_rtp(&buf, &mut out), "replay refused");
            }
            let report = vec![0x80, 201, 0, 1, 0, 0, 0, 7];
            let mut buf = report.clone();
            assert!(a.protect_rtcp(&mut buf));
            assert!(b.unprotect_rtcp(&buf, &mut out));
            assert_eq!(out, report);
        }
    }

    #[test]
    fn junk_never_panics_and_forged_streams_keep_no_state() {
        let (_, mut b) = pair(Suite::AesCm128HmacSha1_80);
        let mut out = Vec::new();
        for len in 0..64 {
            let junk = vec![0x80u8; len];
            assert!(!b.unprotect_rtp(&junk, &mut out));
            let mut rtcp = vec![0u8; len];
            if len > 1 {
                rtcp[0] = 0x80;
                rtcp[1] = 200;
            }
            assert!(!b.unprotect_rtcp(&rtcp, &mut out));
        }
        for ssrc in 0..100 {
            let mut forged = rtp(1, ssrc);
            forged.extend_from_slice(&[0; 10]);
            assert!(!b.unprotect_rtp(&forged, &mut out));
        }
        assert!(b.rtp_streams.is_empty());
    }

    #[test]
    fn srtcp_without_the_e_flag_is_refused_even_with_a_garbage_tag() {
        let (mut a, mut b) = pair(Suite::AesCm128HmacSha1_80);
        let mut out = Vec::new();
        let mut buf = vec![0x80, 201, 0, 1, 0, 0, 0, 7];
        assert!(a.protect_rtcp(&mut buf));
        let e = buf.len() - SRTCP_TAG - 4;
        let mut forged = buf.clone();
        forged[e] &= 0x7f;
        assert!(!b.unprotect_rtcp(&forged, &mut out));
        assert!(b.unprotect_rtcp(&buf, &mut out));
    }

    #[test]
    fn dtls_keyed_legs_round_trip() {
        // as RFC 5764 §4.2 splits the exported keys: what one side sends
        // with, the other receives with
        let (client, server) = (KeySalt::random(), KeySalt::random());
        let suite = Suite::AesCm128HmacSha1_80;
        let mut us = LegSrtp::from_dtls(suite, &server, client.clone()).unwrap();
        let mut browser = LegSrtp::from_dtls(suite, &client, server).unwrap();
        assert!(us.local().is_none() && us.remote().is_none());
        assert_eq!(us.suite(), suite);
        let mut out = Vec::new();
        let plain = rtp(1, 9);
        let mut buf = plain.clone();
        assert!(browser.protect_rtp(&mut buf));
        assert!(us.unprotect_rtp(&buf, &mut out));
        assert_eq!(out, plain);
        let mut back = rtp(2, 10);
        assert!(us.protect_rtp(&mut back));
        assert!(browser.unprotect_rtp(&back, &mut out));
        assert!(format!("{us:?}").contains("dtls"));
    }

    #[test]
    fn debug_redacts_keys() {
        let (a, _) = pair(Suite::AesCm128HmacSha1_80);
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("inline") && !shown.contains("key:"),
            "{shown}"
        );
    }
}
