//! What a WebRTC (browser) offer carries beyond plain SDP, and our answer
//! to it: ICE (RFC 8839: `a=ice-ufrag`, `a=ice-pwd`, `a=ice-options`,
//! `a=ice-lite`, `a=candidate`), DTLS-SRTP (RFC 5763/8842:
//! `a=fingerprint`, `a=setup`), `a=rtcp-mux` (RFC 5761), `a=mid` and
//! `a=group:BUNDLE` (RFC 8843), on a `UDP/TLS/RTP/SAVPF` audio stream.
//!
//! The RTP manager is an ICE-lite agent (RFC 8445 §2.5) with host
//! candidates only, and the DTLS server (`a=setup:passive`): the browser
//! runs the connectivity checks and the DTLS client. The offer's
//! candidates are parsed but not used (a lite agent never checks); what a
//! browser also writes for its own features (`a=extmap`, `a=rtcp-fb`,
//! `a=ssrc`, `a=msid`, `a=rtcp-rsize`, ...) is ignored and not answered.
//!
//! Pure functions; nothing a peer writes can panic here.

use std::fmt;
use std::net::IpAddr;

use super::{
    Description, LocalMedia, audio_section, push_line, session_header, static_audio, token,
};

/// The transport of a WebRTC audio stream (RFC 5764 §8, RFC 8843).
pub const PROTO: &str = "UDP/TLS/RTP/SAVPF";
/// Per section, at most this many of a repeated attribute are kept.
const MAX_REPEATED: usize = 16;

/// A hash function of `a=fingerprint` (RFC 8122 §5) we can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFunction {
    Sha256,
    Sha384,
    Sha512,
}

impl HashFunction {
    /// The RFC 8122 name, e.g. `sha-256`.
    pub fn name(self) -> &'static str {
        match self {
            HashFunction::Sha256 => "sha-256",
            HashFunction::Sha384 => "sha-384",
            HashFunction::Sha512 => "sha-512",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashFunction::Sha256 => 32,
            HashFunction::Sha384 => 48,
            HashFunction::Sha512 => 64,
        }
    }

    fn from_name(name: &str) -> Option<HashFunction> {
        [
            HashFunction::Sha256,
            HashFunction::Sha384,
            HashFunction::Sha512,
        ]
        .into_iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
    }

    /// The digest of `der` (a DER certificate) with this function.
    pub fn digest(self, der: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            HashFunction::Sha256 => sha2::Sha256::digest(der).to_vec(),
            HashFunction::Sha384 => sha2::Sha384::digest(der).to_vec(),
            HashFunction::Sha512 => sha2::Sha512::digest(der).to_vec(),
        }
    }
}

/// One `a=fingerprint` (RFC 8122): the hash of the certificate the peer
/// will show in its DTLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub hash: HashFunction,
    pub digest: Vec<u8>,
}

impl Fingerprint {
    /// The SHA-256 fingerprint of a DER certificate.
    pub fn sha256(der: &[u8]) -> Fingerprint {
        Fingerprint {
            hash: HashFunction::Sha256,
            digest: HashFunction::Sha256.digest(der),
        }
    }

    /// Parses `<hash-func> <XX:XX:...>`; `None` for another hash function
    /// (sha-1, md5: not accepted) or a malformed value.
    pub fn parse(value: &str) -> Option<Fingerprint> {
        let (hash, hex) = value.trim().split_once(|c: char| c.is_ascii_whitespace())?;
        let hash = HashFunction::from_name(hash)?;
        let digest = hex
            .trim()
            .split(':')
            .map(|b| {
                if b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()) {
                    u8::from_str_radix(b, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u8>>>()?;
        (digest.len() == hash.digest_len()).then_some(Fingerprint { hash, digest })
    }

    /// Whether `der` is the certificate this fingerprint names.
    pub fn matches(&self, der: &[u8]) -> bool {
        let got = self.hash.digest(der);
        // not secret, but a constant-time compare costs nothing here
        got.len() == self.digest.len()
            && got
                .iter()
                .zip(&self.digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash.name())?;
        for (i, b) in self.digest.iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

/// `a=setup` (RFC 4145 §4, RFC 8842): who opens the DTLS association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The offerer lets the answerer choose.
    ActPass,
    /// This side is the DTLS client.
    Active,
    /// This side is the DTLS server.
    Passive,
    HoldConn,
}

impl Setup {
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::HoldConn => "holdconn",
        }
    }

    fn parse(value: &str) -> Option<Setup> {
        [
            Setup::ActPass,
            Setup::Active,
            Setup::Passive,
            Setup::HoldConn,
        ]
        .into_iter()
        .find(|s| value.trim().eq_ignore_ascii_case(s.as_str()))
    }
}

/// One `a=candidate` (RFC 8839 §5.1); the address may be an mDNS name
/// (`<uuid>.local`), as Chromium writes for host candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub component: u16,
    /// `udp` or `tcp`, lower case.
    pub transport: String,
    pub priority: u32,
    pub address: String,
    pub port: u16,
    /// `host`, `srflx`, `prflx`, `relay`.
    pub typ: String,
}

impl Candidate {
    /// `<foundation> <component> <transport> <priority> <address> <port>
    /// typ <type> [...]`.
    pub fn parse(value: &str) -> Option<Candidate> {
        let mut f = value.split_ascii_whitespace();
        let _foundation = f.next()?;
        let component = f.next()?.parse().ok()?;
        let transport = f.next()?.to_ascii_lowercase();
        let priority = f.next()?.parse().ok()?;
        let address = f.next()?.chars().take(255).collect();
        let port = f.next()?.parse().ok()?;
        if !f.next()?.eq_ignore_ascii_case("typ") {
            return None;
        }
        let typ = f.next()?.to_ascii_lowercase();
        Some(Candidate {
            component,
            transport,
            priority,
            address,
            port,
            typ,
        })
    }

    /// The address when it is an IP address (not an mDNS name).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

/// The WebRTC attributes of one SDP section (session level or an m=
/// section), as written: gathered while parsing, interpreted by
/// [`Transport::merge`].
#[derive(Debug, Default)]
pub(super) struct Attrs<'a> {
    ufrag: Option<&'a str>,
    pwd: Option<&'a str>,
    ice_lite: bool,
    ice_options: Option<&'a str>,
    fingerprints: Vec<&'a str>,
    setup: Option<&'a str>,
    pub(super) mid: Option<&'a str>,
    groups: Vec<&'a str>,
    candidates: Vec<&'a str>,
}

impl<'a> Attrs<'a> {
    /// Takes the attribute if it is one of ours; false otherwise.
    pub(super) fn attribute(&mut self, name: &str, value: &'a str) -> bool {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        let keep = |list: &mut Vec<&'a str>| {
            if list.len() < MAX_REPEATED {
                list.push(value);
            }
        };
        if is("ice-ufrag") {
            self.ufrag.get_or_insert(value);
        } else if is("ice-pwd") {
            self.pwd.get_or_insert(value);
        } else if is("ice-lite") {
            self.ice_lite = true;
        } else if is("ice-options") {
            self.ice_options.get_or_insert(value);
        } else if is("fingerprint") {
            keep(&mut self.fingerprints);
        } else if is("setup") {
            self.setup.get_or_insert(value);
        } else if is("mid") {
            self.mid.get_or_insert(value);
        } else if is("group") {
            keep(&mut self.groups);
        } else if is("candidate") {
            keep(&mut self.candidates);
        } else {
            return false;
        }
        true
    }
}

/// ICE and DTLS parameters of the audio stream of a peer's SDP. Media
/// level wins over session level (RFC 8839 §5.4, RFC 8122 §5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    /// `a=ice-lite` at session level: the peer is a lite agent too.
    pub ice_lite: bool,
    /// `a=ice-options` tokens, e.g. `trickle`.
    pub ice_options: Vec<String>,
    /// The fingerprints we can check (other hash functions skipped).
    pub fingerprints: Vec<Fingerprint>,
    pub setup: Option<Setup>,
    /// The audio stream's `a=mid`.
    pub mid: Option<String>,
    /// The mids of the `a=group:BUNDLE` that holds the audio mid.
    pub bundle: Vec<String>,
    /// The audio stream's candidates (component 1 and 2), parseable ones.
    pub candidates: Vec<Candidate>,
}

/// Keeps a peer's token to what may be written back on one line.
fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(256)
        .collect()
}

impl Transport {
    pub(super) fn merge(session: &Attrs<'_>, media: &Attrs<'_>) -> Transport {
        let mid = media.mid.map(clean).filter(|m| !m.is_empty());
        let bundle = session
            .groups
            .iter()
            .filter_map(|g| {
                let mut f = g.split_ascii_whitespace();
                f.next()
                    .filter(|s| s.eq_ignore_ascii_case("BUNDLE"))
                    .map(|_| f.map(clean).collect::<Vec<_>>())
            })
            .find(|ids| mid.as_ref().is_some_and(|m| ids.contains(m)))
            .unwrap_or_default();
        let fingerprints = if media.fingerprints.is_empty() {
            &session.fingerprints
        } else {
            &media.fingerprints
        };
        Transport {
            ice_ufrag: media.ufrag.or(session.ufrag).map(clean),
            ice_pwd: media.pwd.or(session.pwd).map(clean),
            ice_lite: session.ice_lite,
            ice_options: media
                .ice_options
                .or(session.ice_options)
                .map(|o| o.split_ascii_whitespace().map(clean).collect())
                .unwrap_or_default(),
            fingerprints: fingerprints
                .iter()
                .filter_map(|f| Fingerprint::parse(f))
                .collect(),
            setup: media.setup.or(session.setup).and_then(Setup::parse),
            mid,
            bundle,
            candidates: media
                .candidates
                .iter()
                .filter_map(|c| Candidate::parse(c))
                .collect(),
        }
    }
}

/// Whether an m= line's transport is DTLS-SRTP over ICE (`UDP/TLS/RTP/SAVPF`,
/// or `UDP/TLS/RTP/SAVP`).
pub fn is_dtls_proto(proto: &str) -> bool {
    proto.eq_ignore_ascii_case(PROTO) || proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVP")
}

/// Our side of a WebRTC leg, as written in our answer.
#[derive(Debug, Clone, Copy)]
pub struct LocalTransport<'a> {
    pub ice_ufrag: &'a str,
    pub ice_pwd: &'a str,
    /// Of our DTLS certificate.
    pub fingerprint: &'a Fingerprint,
    /// Our SSRC towards the leg, written as `a=ssrc:<ssrc> cname:<cname>`.
    pub ssrc: u32,
    pub cname: &'a str,
}

/// Our answer to a WebRTC offer `remote`: session-level `a=ice-lite` (and
/// the BUNDLE group of the audio mid), the audio stream on our port with
/// the offer's transport, the chosen codec (and telephone-event when
/// offered), our ICE credentials and one host candidate (our RTP address
/// and port, component 1), our fingerprint, `a=setup:passive`,
/// `a=rtcp-mux` and the offer's mid. Every other m= line is declined with
/// port 0, its mid kept and left out of the BUNDLE group (RFC 8843 §7.3.3).
pub fn answer(
    local: &LocalMedia,
    remote: &Description,
    chosen: (u8, &str),
    ptime: u32,
    ours: &LocalTransport<'_>,
) -> String {
    let (pt, name) = chosen;
    let rate = remote
        .codecs
        .iter()
        .find(|c| c.payload_type == pt)
        .map(|c| c.clock_rate)
        .or_else(|| static_audio(pt).map(|(_, rate)| rate))
        .unwrap_or(8000);
    let codecs = [(pt, token(name), rate)];
    let t = &remote.webrtc;

    let mut out = session_header(local);
    push_line(&mut out, format_args!("a=ice-lite"));
    if let Some(mid) = &t.mid
        && !t.bundle.is_empty()
    {
        push_line(&mut out, format_args!("a=group:BUNDLE {mid}"));
    }
    for (i, m) in remote.media.iter().enumerate() {
        if remote.audio_index == Some(i) && m.port != 0 {
            let proto = if is_dtls_proto(&m.proto) {
                clean(&m.proto)
            } else {
                PROTO.to_owned()
            };
            audio_section(
                &mut out,
                local.port,
                &proto,
                &codecs,
                remote.telephone_event,
                remote.direction.reversed(),
                ptime,
                None,
            );
            if let Some(mid) = &t.mid {
                push_line(&mut out, format_args!("a=mid:{mid}"));
            }
            transport_lines(&mut out, local, ours, Setup::Passive);
        } else {
            let fmt = m.formats.first().map_or("0", String::as_str);
            push_line(&mut out, format_args!("m={} 0 {} {fmt}", m.media, m.proto));
            if let Some(mid) = &m.mid {
                push_line(&mut out, format_args!("a=mid:{mid}"));
            }
        }
    }
    out
}

/// Our ICE credentials and host candidate, fingerprint, `a=setup`,
/// rtcp-mux and SSRC: the transport half of an audio section.
fn transport_lines(out: &mut String, local: &LocalMedia, ours: &LocalTransport<'_>, setup: Setup) {
    let ip = if local.address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    };
    push_line(out, format_args!("a=ice-ufrag:{}", ours.ice_ufrag));
    push_line(out, format_args!("a=ice-pwd:{}", ours.ice_pwd));
    push_line(out, format_args!("a=fingerprint:{}", ours.fingerprint));
    push_line(out, format_args!("a=setup:{}", setup.as_str()));
    push_line(out, format_args!("a=rtcp-mux"));
    push_line(
        out,
        format_args!("a=rtcp:{} IN {ip} {}", local.port, local.address),
    );
    push_line(
        out,
        format_args!(
            "a=candidate:1 1 udp 2130706431 {} {} typ host",
            local.address, local.port
        ),
    );
    push_line(out, format_args!("a=end-of-candidates"));
    push_line(
        out,
        format_args!("a=ssrc:{} cname:{}", ours.ssrc, clean(ours.cname)),
    );
}

/// The mid of the audio stream of our offers.
pub const OFFER_MID: &str = "0";

/// Our offer to a browser: session-level `a=ice-lite` and `a=group:BUNDLE
/// <mid>`, one `UDP/TLS/RTP/SAVPF` audio stream with that `mid` ([`OFFER_MID`]
/// in a first offer; a re-offer keeps the stream's) listing `codecs`
/// `(pt, name, clock rate)` in this order plus telephone-event/8000 (PT
/// `te_pt`), our ICE credentials and host candidate, our fingerprint,
/// `a=setup:actpass` (RFC 5763 §5: what an offerer writes; we then require
/// the browser to answer `active`, see [`answered_setup`]) and rtcp-mux.
pub fn offer(
    local: &LocalMedia,
    codecs: &[(u8, &str, u32)],
    te_pt: Option<u8>,
    direction: super::Direction,
    ptime: u32,
    mid: &str,
    ours: &LocalTransport<'_>,
) -> String {
    let mid = clean(mid);
    let codecs: Vec<(u8, String, u32)> = codecs
        .iter()
        .map(|&(pt, name, rate)| (pt, token(name), rate))
        .collect();
    let mut out = session_header(local);
    push_line(&mut out, format_args!("a=ice-lite"));
    push_line(&mut out, format_args!("a=group:BUNDLE {mid}"));
    audio_section(
        &mut out, local.port, PROTO, &codecs, te_pt, direction, ptime, None,
    );
    push_line(&mut out, format_args!("a=mid:{mid}"));
    transport_lines(&mut out, local, ours, Setup::ActPass);
    out
}

/// Whether a browser's answer to our `actpass` offer keeps us the DTLS
/// server: `active` (or no `a=setup`, whose default for an answer is
/// `active`, RFC 4145 §4.1).
pub fn answered_setup(setup: Option<Setup>) -> Result<(), String> {
    match setup {
        None | Some(Setup::Active) => Ok(()),
        Some(s) => Err(format!(
            "a=setup:{} answered; this RTP manager is the DTLS server only (the answer must be a=setup:active)",
            s.as_str()
        )),
    }
}

/// Random ICE credentials (RFC 8445 §5.3: a ufrag of at least 24 bits and
/// a password of at least 128 bits of randomness, ice-chars only): 8 and
/// 24 characters out of 64, i.e. 48 and 144 bits.
pub fn random_credentials() -> (String, String) {
    const ICE_CHARS: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pick = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(ICE_CHARS[usize::from(rand::random::<u8>() & 63)]))
            .collect()
    };
    (pick(8), pick(24))
}

/// Which way the DTLS handshake goes for our answer to `setup`: we are
/// always the server (`passive`), which an offer of `actpass` or `active`
/// allows; `passive` or `holdconn` in the offer cannot be answered so.
pub fn answerable_setup(setup: Option<Setup>) -> Result<(), String> {
    match setup {
        Some(Setup::ActPass | Setup::Active) => Ok(()),
        Some(s) => Err(format!(
            "a=setup:{} offered; this RTP manager is the DTLS server only (answers a=setup:passive)",
            s.as_str()
        )),
        None => Err("no a=setup (RFC 8842 requires it with DTLS-SRTP)".into()),
    }
}

impl Description {
    /// Whether the audio stream is a WebRTC one: DTLS-SRTP over ICE.
    pub fn is_webrtc(&self) -> bool {
        is_dtls_proto(self.audio_proto())
    }
}

#[cfg(test)]
mod tests;
