//! ICE-lite (RFC 8445 §2.5, §7.3) on one leg's port: the browser (a full
//! agent, always controlling) sends STUN Binding requests to our one host
//! candidate; we answer those that prove they know our ICE password, and
//! the address they came from becomes where the leg's media goes.
//!
//! A check is answered only when its USERNAME is `<our ufrag>:<their
//! ufrag>`, its MESSAGE-INTEGRITY is the HMAC-SHA1 keyed with our ice-pwd
//! (RFC 8445 §7.2.2 short-term credentials) and it carries a valid
//! FINGERPRINT; the answer is a Binding success with XOR-MAPPED-ADDRESS,
//! MESSAGE-INTEGRITY and FINGERPRINT. Anything else is refused (dropped,
//! never answered: no error responses to strangers, nothing to amplify).
//!
//! Message encoding and integrity come from webrtc-rs' `stun` crate; what
//! its checks index into was read for the lengths a peer controls.

use std::net::SocketAddr;

use stun::attributes::{ATTR_USE_CANDIDATE, ATTR_USERNAME};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

/// The largest STUN message we read; a Binding request is about 100 bytes.
const MAX_STUN: usize = 548;

/// What a datagram on a WebRTC leg's port is, by its first byte (RFC 7983
/// §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    /// 0-3.
    Stun,
    /// 20-63.
    Dtls,
    /// 128-191: RTP or RTCP (rtcp-mux), SRTP-protected.
    Rtp,
    /// Anything else (ZRTP, TURN channels, junk).
    Other,
}

pub fn demux(packet: &[u8]) -> Demux {
    match packet.first() {
        Some(0..=3) => Demux::Stun,
        Some(20..=63) => Demux::Dtls,
        Some(128..=191) => Demux::Rtp,
        _ => Demux::Other,
    }
}

/// Why a STUN message was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a well-formed STUN message")]
    Malformed,
    #[error("not a Binding request")]
    NotBindingRequest,
    #[error("FINGERPRINT missing or wrong")]
    Fingerprint,
    #[error("USERNAME missing or not <our ufrag>:<their ufrag>")]
    Username,
    #[error("MESSAGE-INTEGRITY missing or not keyed with our ice-pwd")]
    Integrity,
}

/// An answered check.
#[derive(Debug)]
pub struct Answered {
    /// The Binding success to send back to where the check came from.
    pub response: Vec<u8>,
    /// The check nominates its pair (USE-CANDIDATE).
    pub nominated: bool,
}

/// Our ICE-lite side of one leg.
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    remote_ufrag: String,
    /// `<local ufrag>:<remote ufrag>`: what a check's USERNAME must be.
    username: String,
}

impl std::fmt::Debug for IceLite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the password keys the checks: never shown
        f.debug_struct("IceLite")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl IceLite {
    pub fn new(local_ufrag: String, local_pwd: String, remote_ufrag: String) -> IceLite {
        let username = format!("{local_ufrag}:{remote_ufrag}");
        IceLite {
            local_ufrag,
            local_pwd,
            remote_ufrag,
            username,
        }
    }

    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    pub fn remote_ufrag(&self) -> &str {
        &self.remote_ufrag
    }

    /// Their ufrag, from the answer to our offer (empty until then).
    pub fn set_remote_ufrag(&mut self, remote_ufrag: String) {
        self.username = format!("{}:{remote_ufrag}", self.local_ufrag);
        self.remote_ufrag = remote_ufrag;
    }

    /// Whether a check's USERNAME names us (and them, once known).
    fn username_ok(&self, user: &str) -> bool {
        if self.remote_ufrag.is_empty() {
            user.strip_prefix(self.local_ufrag.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|theirs| !theirs.is_empty())
        } else {
            user == self.username
        }
    }

    /// Checks one STUN datagram that came from `from`; a valid Binding
    /// request gets its answer.
    pub fn check(&self, packet: &[u8], from: SocketAddr) -> Result<Answered, Refused> {
        if packet.len() > MAX_STUN || !stun::message::is_message(packet) {
            return Err(Refused::Malformed);
        }
        let mut m = Message::new();
        m.raw = packet.to_vec();
        m.decode().map_err(|_| Refused::Malformed)?;
        if m.typ != BINDING_REQUEST {
            return Err(Refused::NotBindingRequest);
        }
        // FINGERPRINT must be the last attribute (RFC 5389 §15.5); the
        // crate's check assumes so and reads the end of the message
        if m.attributes.0.last().map(|a| a.typ) != Some(stun::attributes::ATTR_FINGERPRINT)
            || m.raw.len() != stun::message::MESSAGE_HEADER_SIZE + m.length as usize
        {
            return Err(Refused::Fingerprint);
        }
        FINGERPRINT.check(&m).map_err(|_| Refused::Fingerprint)?;
        let user = TextAttribute::get_from_as(&m, ATTR_USERNAME).map_err(|_| Refused::Username)?;
        if !self.username_ok(&user.text) {
            return Err(Refused::Username);
        }
        MessageIntegrity::new_short_term_integrity(self.local_pwd.clone())
            .check(&mut m)
            .map_err(|_| Refused::Integrity)?;
        let nominated = m.contains(ATTR_USE_CANDIDATE);

        let mut out = Message::new();
        let setters: [Box<dyn Setter>; 5] = [
            Box::new(m.transaction_id),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: from.ip(),
                port: from.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity(
                self.local_pwd.clone(),
            )),
            Box::new(FINGERPRINT),
        ];
        // building from our own values cannot fail; if it did, the check
        // simply goes unanswered
        out.build(&setters).map_err(|_| Refused::Malformed)?;
        Ok(Answered {
            response: out.raw,
            nominated,
        })
    }
}

/// Where the leg's media goes, from its authenticated checks: the address
/// of the last one, except that once a check nominated its pair
/// (USE-CANDIDATE), only another nominating check moves it. The browser
/// keeps pinging its other candidate pairs now and then (backups); those
/// checks are answered but do not pull the media away from the pair it
/// chose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selected {
    addr: Option<SocketAddr>,
    nominated: bool,
}

impl Selected {
    /// An authenticated check from `from`; returns the address to use when
    /// it changed.
    pub fn on_check(&mut self, from: SocketAddr, nominated: bool) -> Option<SocketAddr> {
        if nominated || !self.nominated {
            self.nominated |= nominated;
            if self.addr != Some(from) {
                self.addr = Some(from);
                return Some(from);
            }
        }
        None
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::agent::TransactionId;
    use stun::attributes::{ATTR_PRIORITY, RawAttribute};
    use stun::xoraddr::XorMappedAddress;

    const OURS: (&str, &str) = ("AbCd1234", "abcdefghijklmnopqrstuvwx");

    fn ice() -> IceLite {
        IceLite::new(OURS.0.into(), OURS.1.into(), "EsAw".into())
    }

    /// A browser's check: USERNAME, PRIORITY, [USE-CANDIDATE], integrity
    /// with `pwd`, FINGERPRINT.
    fn check_msg(user: &str, pwd: &str, nominate: bool, fingerprint: bool) -> Vec<u8> {
        let mut m = Message::new();
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId([7; 12])),
            Box::new(TextAttribute::new(ATTR_USERNAME, user.into())),
            Box::new(RawAttribute {
                typ: ATTR_PRIORITY,
                length: 4,
                value: 1_853_817_087u32.to_be_bytes().to_vec(),
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
            pwd.into(),
        )));
        if fingerprint {
            setters.push(Box::new(FINGERPRINT));
        }
        m.build(&setters).unwrap();
        m.raw
    }

    #[test]
    fn demux_by_first_byte() {
        let cases: &[(&[u8], Demux)] = &[
            (&[], Demux::Other),
            (&[0], Demux::Stun),
            (&[3], Demux::Stun),
            (&[4], Demux::Other),
            (&[19], Demux::Other),
            (&[20], Demux::Dtls),
            (&[22, 254, 253], Demux::Dtls),
            (&[63], Demux::Dtls),
            (&[64], Demux::Other),
            (&[127], Demux::Other),
            (&[128], Demux::Rtp),
            (&[0x80, 0], Demux::Rtp),
            (&[191], Demux::Rtp),
            (&[192], Demux::Other),
            (&[255], Demux::Other),
        ];
        for (p, want) in cases {
            assert_eq!(demux(p), *want, "{p:?}");
        }
    }

    #[test]
    fn a_valid_check_is_answered_with_integrity_and_mapped_address() {
        let from: SocketAddr = "192.0.2.7:54321".parse().unwrap();
        for nominate in [false, true] {
            let req = check_msg("AbCd1234:EsAw", OURS.1, nominate, true);
            let a = ice().check(&req, from).unwrap();
            assert_eq!(a.nominated, nominate);
            let mut resp = Message::new();
            resp.raw = a.response.clone();
            resp.decode().unwrap();
            assert_eq!(resp.typ, BINDING_SUCCESS);
            assert_eq!(resp.transaction_id, TransactionId([7; 12]));
            let mut xor = XorMappedAddress::default();
            xor.get_from_as(&resp, stun::attributes::ATTR_XORMAPPED_ADDRESS)
                .unwrap();
            assert_eq!(SocketAddr::new(xor.ip, xor.port), from);
            FINGERPRINT.check(&resp).unwrap();
            MessageIntegrity::new_short_term_integrity(OURS.1.into())
                .check(&mut resp)
                .unwrap();
        }
    }

    #[test]
    fn refusals() {
        let from: SocketAddr = "192.0.2.7:1".parse().unwrap();
        let good = check_msg("AbCd1234:EsAw", OURS.1, true, true);
        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n - 20] ^= 1; // inside the integrity's HMAC
        let mut response_type = good.clone();
        response_type[0..2].copy_from_slice(&[0x01, 0x01]);
        let cases: Vec<(&str, Vec<u8>, Refused)> = vec![
            ("empty", vec![], Refused::Malformed),
            ("header only", good[..19].to_vec(), Refused::Malformed),
            (
                "truncated",
                good[..good.len() - 4].to_vec(),
                Refused::Malformed,
            ),
            (
                "a Binding success",
                response_type,
                Refused::NotBindingRequest,
            ),
            (
                "wrong password",
                check_msg("AbCd1234:EsAw", "not-the-password-at-all", true, true),
                Refused::Integrity,
            ),
            (
                "their ufrag wrong",
                check_msg("AbCd1234:XXXX", OURS.1, true, true),
                Refused::Username,
            ),
            (
                "ufrags swapped",
                check_msg("EsAw:AbCd1234", OURS.1, true, true),
                Refused::Username,
            ),
            (
                "no fingerprint",
                check_msg("AbCd1234:EsAw", OURS.1, true, false),
                Refused::Fingerprint,
            ),
            ("a flipped bit", flipped, Refused::Fingerprint),
            ("oversized", vec![0u8; 2000], Refused::Malformed),
        ];
        for (name, p, want) in cases {
            assert_eq!(ice().check(&p, from).err(), Some(want), "{name}");
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 8]);
        assert_eq!(
            ice().check(&trailing, from).err(),
            Some(Refused::Fingerprint)
        );
    }

    #[test]
    fn before_the_answer_any_ufrag_of_theirs_until_it_is_known() {
        let from: SocketAddr = "192.0.2.7:1".parse().unwrap();
        let mut ice = IceLite::new(OURS.0.into(), OURS.1.into(), String::new());
        let early = check_msg("AbCd1234:EsAw", OURS.1, true, true);
        assert!(ice.check(&early, from).is_ok());
        for bad in ["AbCd1234:", "AbCd1234", "EsAw:AbCd1234", "AbCd12345:EsAw"] {
            let p = check_msg(bad, OURS.1, true, true);
            assert_eq!(ice.check(&p, from).err(), Some(Refused::Username), "{bad}");
        }
        let wrong_pwd = check_msg("AbCd1234:EsAw", "not-the-password-at-all", true, true);
        assert_eq!(ice.check(&wrong_pwd, from).err(), Some(Refused::Integrity));
        ice.set_remote_ufrag("Zz9".into());
        assert_eq!(ice.check(&early, from).err(), Some(Refused::Username));
        let p = check_msg("AbCd1234:Zz9", OURS.1, true, true);
        assert!(ice.check(&p, from).is_ok());
    }

    #[test]
    fn junk_never_panics() {
        let from: SocketAddr = "192.0.2.7:1".parse().unwrap();
        let good = check_msg("AbCd1234:EsAw", OURS.1, true, true);
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut p = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % p.len();
                p[i] = next() as u8;
            }
            p.truncate((next() as usize) % (good.len() + 1));
            let _ = ice().check(&p, from);
        }
        for len in 0..64 {
            let mut p = vec![0u8; len];
            if len >= 8 {
                p[4..8].copy_from_slice(&stun::message::MAGIC_COOKIE.to_be_bytes());
                p[3] = 0xff;
            }
            let _ = ice().check(&p, from);
        }
    }

    #[test]
    fn the_nominated_pair_keeps_the_media() {
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "198.51.100.1:2000".parse().unwrap();
        let mut s = Selected::default();
        // (from, nominated, moved to)
        let steps = [
            (a, false, Some(a)),
            (b, false, Some(b)), // before nomination: the last check wins
            (b, false, None),
            (a, true, Some(a)), // nominated
            (b, false, None),   // a backup ping does not move it
            (a, false, None),
            (b, true, Some(b)), // a new nomination does
        ];
        for (i, (from, nominated, want)) in steps.into_iter().enumerate() {
            assert_eq!(s.on_check(from, nominated), want, "step {i}");
        }
        assert_eq!(s.addr(), Some(b));
    }
}
