//! Where a leg's RTP and RTCP are accepted from: the defence against RTP
//! hijacking ("RTP Bleed").
//!
//! A relay that sends a leg's audio wherever packets for its port come
//! from hands the call to anyone who sends first. So a leg's source is
//! *learned* only in a window that a new SDP opens, and then *locked*:
//!
//! - a packet from the exact address the SDP names locks at once, and
//!   takes over from a source learned elsewhere (the SDP is preferred);
//! - any other address must send [`PROBATION`] packets in sequence (one
//!   SSRC, consecutive sequence numbers) before it is locked (a phone
//!   behind NAT); packets on probation are not relayed;
//! - under [`Policy::SdpIp`] an address outside the SDP's IP is never
//!   learned when that IP is a routable (or loopback) one: such a phone
//!   says where it is, and only its port may differ (a port-changing NAT).
//!   A private SDP address (RFC 1918, CGNAT, link-local, ULA) says nothing
//!   about where packets will come from, so there any address may be
//!   learned after probation;
//! - once locked, packets from anywhere else are dropped ([`Verdict::Foreign`]),
//!   however long the leg has been silent: only a new SDP re-opens learning.
//!   A re-offer that keeps the address also re-opens it, but the source
//!   locked before it is taken back at its first packet.
//!
//! RTCP follows the same window ([`RtcpSource`]); having no sequence
//! numbers, an RTCP source other than the SDP's is learned only from the
//! IP of the locked RTP source and only with the SSRC of its stream.
//!
//! Pure state machines; the engine calls them under the session's lock.

use std::net::{IpAddr, SocketAddr};

/// In-sequence packets a source other than the SDP's sends before it is
/// learned (Asterisk's `probation`, 4 there by default).
pub const PROBATION: u8 = 3;

/// Candidates tracked at once while learning, so a stranger sending from
/// other addresses cannot keep resetting the phone's probation.
const CANDIDATES: usize = 4;

/// Which addresses other than the SDP's exact one may be learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Only the SDP's IP (any port), unless that IP is a private one.
    SdpIp,
    /// Any IP, after probation.
    AnyIp,
}

/// How a lock came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Packets came from the address the SDP names.
    Sdp,
    /// The source locked before a re-offer came back.
    Previous,
    /// Another address passed probation.
    Learned,
    /// Proven by other means than RTP: an ICE check that authenticated
    /// with the leg's ICE password ([`RtpSource::pin`]).
    Authenticated,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the locked source.
    Accept,
    /// This packet locked the source (or moved it to the SDP's address):
    /// accept it, and send to it from now on.
    Locked(SocketAddr, Origin),
    /// A candidate on probation: not relayed, not counted as received.
    Probation,
    /// From an address that may not feed this leg now: dropped.
    Foreign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    seq: u16,
    count: u8,
    /// Arrival order of its last packet, for eviction among equals.
    seen: u64,
}

/// The learning state of one leg's RTP.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceState {
    /// Since the last SDP, nothing locked yet.
    Learning {
        candidates: [Option<Candidate>; CANDIDATES],
        /// The lock before a re-offer with the same address.
        previous: Option<SocketAddr>,
    },
    Locked {
        addr: SocketAddr,
        origin: Origin,
    },
}

impl SourceState {
    fn learning(previous: Option<SocketAddr>) -> SourceState {
        SourceState::Learning {
            candidates: [None; CANDIDATES],
            previous,
        }
    }
}

/// Where one leg's RTP is accepted from and where ours goes.
#[derive(Debug, Clone)]
pub struct RtpSource {
    policy: Policy,
    sdp: Option<SocketAddr>,
    state: SourceState,
    arrivals: u64,
}

/// The address as compared: an IPv4-mapped IPv6 address is its IPv4 one.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Whether an SDP address says nothing about where the phone's packets
/// will come from (it is behind a NAT or on a private network).
pub fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                // 100.64.0.0/10: carrier-grade NAT (RFC 6598)
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

impl RtpSource {
    /// A leg without SDP yet: any address may be learned after probation.
    pub fn new(policy: Policy) -> RtpSource {
        RtpSource {
            policy,
            sdp: None,
            state: SourceState::learning(None),
            arrivals: 0,
        }
    }

    pub fn sdp(&self) -> Option<SocketAddr> {
        self.sdp
    }

    /// A new SDP from the leg (`None`: no usable address, e.g. a hold with
    /// `c=0.0.0.0`). A changed address re-opens learning from scratch; a
    /// re-offer with the same address re-opens it too, keeping the
    /// current lock as the one address taken back at once. An answer with
    /// the same address changes nothing.
    pub fn on_sdp(&mut self, sdp: Option<SocketAddr>, reoffer: bool) {
        let sdp = sdp.map(canonical);
        if sdp != self.sdp {
            self.sdp = sdp;
            self.state = SourceState::learning(None);
        } else if reoffer {
            let previous = match &self.state {
                SourceState::Locked { addr, .. } => Some(*addr),
                SourceState::Learning { previous, .. } => *previous,
            };
            self.state = SourceState::learning(previous);
        }
    }

    /// Where we send the leg's audio: the locked source, else the source
    /// before the re-offer, else the SDP's address.
    pub fn destination(&self) -> Option<SocketAddr> {
        match &self.state {
            SourceState::Locked { addr, .. } => Some(*addr),
            SourceState::Learning { previous, .. } => previous.or(self.sdp),
        }
    }

    /// The locked source, if any.
    pub fn locked(&self) -> Option<SocketAddr> {
        match &self.state {
            SourceState::Locked { addr, .. } => Some(*addr),
            SourceState::Learning { .. } => None,
        }
    }

    /// Whether `from` is the locked source.
    pub fn is_locked_to(&self, from: SocketAddr) -> bool {
        self.locked() == Some(canonical(from))
    }

    fn may_learn(&self, from: SocketAddr) -> bool {
        match (self.policy, self.sdp) {
            (_, None) | (Policy::AnyIp, _) => true,
            (Policy::SdpIp, Some(sdp)) => from.ip() == sdp.ip() || is_private(sdp.ip()),
        }
    }

    /// The verdict on one RTP packet from `from`.
    pub fn on_packet(&mut self, from: SocketAddr, ssrc: u32, seq: u16) -> Verdict {
        // the hot path: the locked source, compared as received
        if let SourceState::Locked { addr, .. } = &self.state
            && *addr == from
        {
            return Verdict::Accept;
        }
        let from = canonical(from);
        match &self.state {
            SourceState::Locked { addr, .. } if *addr == from => return Verdict::Accept,
            SourceState::Locked {
                origin: Origin::Sdp | Origin::Authenticated,
                ..
            } => return Verdict::Foreign,
            _ => {}
        }
        if self.sdp == Some(from) {
            return self.lock(from, Origin::Sdp);
        }
        self.arrivals += 1;
        let seen = self.arrivals;
        let may_learn = self.may_learn(from);
        let SourceState::Learning {
            candidates,
            previous,
        } = &mut self.state
        else {
            return Verdict::Foreign;
        };
        if *previous == Some(from) {
            return self.lock(from, Origin::Previous);
        }
        if !may_learn {
            return Verdict::Foreign;
        }
        let slot = match candidates
            .iter()
            .position(|c| c.is_some_and(|c| c.addr == from))
        {
            Some(i) => i,
            None => {
                // a free slot, else the weakest (fewest packets, then oldest)
                let i = candidates
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        (0..CANDIDATES)
                            .min_by_key(|&i| candidates[i].map(|c| (c.count, c.seen)))
                            .unwrap_or(0)
                    });
                candidates[i] = None;
                i
            }
        };
        let next = match candidates[slot] {
            Some(c) if c.ssrc == ssrc && seq == c.seq.wrapping_add(1) => Candidate {
                seq,
                count: c.count.saturating_add(1),
                seen,
                ..c
            },
            // new, or out of sequence: probation starts again
            _ => Candidate {
                addr: from,
                ssrc,
                seq,
                count: 1,
                seen,
            },
        };
        if next.count >= PROBATION {
            return self.lock(from, Origin::Learned);
        }
        candidates[slot] = Some(next);
        Verdict::Probation
    }

    /// Locks the source to `addr`, proven by other means (an ICE check
    /// authenticated with the leg's password): packets from anywhere else
    /// are foreign until the next pin. For legs whose source is never
    /// learned from SDP or RTP (WebRTC).
    pub fn pin(&mut self, addr: SocketAddr) {
        self.state = SourceState::Locked {
            addr: canonical(addr),
            origin: Origin::Authenticated,
        };
    }

    fn lock(&mut self, addr: SocketAddr, origin: Origin) -> Verdict {
        self.state = SourceState::Locked { addr, origin };
        Verdict::Locked(addr, origin)
    }
}

/// Where one leg's RTCP is accepted from and where ours goes.
#[derive(Debug, Clone, Default)]
pub struct RtcpSource {
    /// The SDP's RTCP address (RTP port + 1).
    sdp: Option<SocketAddr>,
    locked: Option<SocketAddr>,
    /// The lock before a re-offer with the same address.
    previous: Option<SocketAddr>,
}

impl RtcpSource {
    pub fn new() -> RtcpSource {
        RtcpSource::default()
    }

    /// A new SDP; `rtp` is its RTP address (RTCP is one port above).
    /// Re-opens learning as [`RtpSource::on_sdp`] does.
    pub fn on_sdp(&mut self, rtp: Option<SocketAddr>, reoffer: bool) {
        let sdp = rtp.map(|a| canonical(SocketAddr::new(a.ip(), a.port().wrapping_add(1))));
        if sdp != self.sdp {
            self.sdp = sdp;
            self.locked = None;
            self.previous = None;
        } else if reoffer {
            self.previous = self.locked.take().or(self.previous);
        }
    }

    /// Where our reports go: the locked source; else, when RTP is locked
    /// to an address other than the SDP's, one port above it (a NAT keeps
    /// the pair's order more often than not); else the SDP's RTCP address.
    pub fn destination(&self, rtp: &RtpSource) -> Option<SocketAddr> {
        if let Some(a) = self.locked.or(self.previous) {
            return Some(a);
        }
        match rtp.locked() {
            Some(a) if rtp.sdp() != Some(a) => {
                Some(SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
            }
            _ => self.sdp,
        }
    }

    /// The verdict on one RTCP packet from `from` whose first report names
    /// `sender_ssrc`. `rtp` is the leg's RTP source and `rtp_ssrc` the SSRC
    /// of the stream accepted from it.
    pub fn on_packet(
        &mut self,
        from: SocketAddr,
        sender_ssrc: Option<u32>,
        rtp: &RtpSource,
        rtp_ssrc: Option<u32>,
    ) -> Verdict {
        let from = canonical(from);
        if self.locked == Some(from) {
            return Verdict::Accept;
        }
        if self.sdp == Some(from) {
            self.locked = Some(from);
            return Verdict::Locked(from, Origin::Sdp);
        }
        if self.locked.is_some() {
            return Verdict::Foreign;
        }
        if self.previous == Some(from) {
            self.locked = Some(from);
            return Verdict::Locked(from, Origin::Previous);
        }
        // tied to the proven RTP stream: its IP and its SSRC
        let proven = rtp.locked().is_some_and(|a| {
            a.ip() == from.ip() && sender_ssrc.is_some() && sender_ssrc == rtp_ssrc
        });
        if proven {
            self.locked = Some(from);
            return Verdict::Locked(from, Origin::Learned);
        }
        Verdict::Foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Packets as (from, ssrc, seq), with the verdict each must get.
    type Step<'a> = (&'a str, u32, u16, Verdict);

    fn run(src: &mut RtpSource, steps: &[Step<'_>], case: &str) {
        for (i, (from, ssrc, seq, want)) in steps.iter().enumerate() {
            let got = src.on_packet(a(from), *ssrc, *seq);
            assert_eq!(got, *want, "{case}: packet {i} from {from}");
        }
    }

    const PHONE: &str = "203.0.113.5:4000";
    const NAT: &str = "203.0.113.5:61000";
    const STRANGER: &str = "198.51.100.66:5000";

    fn locked(s: &str, o: Origin) -> Verdict {
        Verdict::Locked(a(s), o)
    }

    #[test]
    fn learning_follows_the_rules() {
        use Verdict::{Accept, Foreign, Probation};
        let cases: Vec<(&str, Option<&str>, Policy, Vec<Step<'_>>)> = vec![
            (
                "the SDP's address locks at once, then nothing else is heard",
                Some(PHONE),
                Policy::SdpIp,
                vec![
                    (PHONE, 1, 10, locked(PHONE, Origin::Sdp)),
                    (PHONE, 1, 11, Accept),
                    (NAT, 1, 12, Foreign),
                    (NAT, 1, 13, Foreign),
                    (NAT, 1, 14, Foreign),
                    (STRANGER, 9, 1, Foreign),
                ],
            ),
            (
                "a NAT port of the SDP's IP after three in sequence",
                Some(PHONE),
                Policy::SdpIp,
                vec![
                    (NAT, 1, 100, Probation),
                    (NAT, 1, 101, Probation),
                    (NAT, 1, 102, locked(NAT, Origin::Learned)),
                    (NAT, 1, 103, Accept),
                    (STRANGER, 9, 1, Foreign),
                ],
            ),
            (
                "out of sequence or another SSRC starts probation again",
                Some(PHONE),
                Policy::SdpIp,
                vec![
                    (NAT, 1, 100, Probation),
                    (NAT, 1, 101, Probation),
                    (NAT, 1, 105, Probation),
                    (NAT, 2, 106, Probation),
                    (NAT, 2, 107, Probation),
                    (NAT, 2, 108, locked(NAT, Origin::Learned)),
                ],
            ),
            (
                "sequence numbers wrap",
                Some(PHONE),
                Policy::SdpIp,
                vec![
                    (NAT, 1, 65534, Probation),
                    (NAT, 1, 65535, Probation),
                    (NAT, 1, 0, locked(NAT, Origin::Learned)),
                ],
            ),
            (
                "another IP is never learned for a public SDP address",
                Some(PHONE),
                Policy::SdpIp,
                vec![
                    (STRANGER, 9, 1, Foreign),
                    (STRANGER, 9, 2, Foreign),
                    (STRANGER, 9, 3, Foreign),
                    (STRANGER, 9, 4, Foreign),
                    (PHONE, 1, 1, locked(PHONE, Origin::Sdp)),
                ],
            ),
            (
                "nor for a loopback one",
                Some("127.0.0.1:4000"),
                Policy::SdpIp,
                vec![
                    ("127.0.0.2:4000", 9, 1, Foreign),
                    ("127.0.0.2:4000", 9, 2, Foreign),
                    ("127.0.0.2:4000", 9, 3, Foreign),
                    ("127.0.0.1:4002", 1, 7, Probation),
                ],
            ),
            (
                "a private SDP address: any IP after probation",
                Some("192.168.1.20:4000"),
                Policy::SdpIp,
                vec![
                    (NAT, 1, 1, Probation),
                    (NAT, 1, 2, Probation),
                    (NAT, 1, 3, locked(NAT, Origin::Learned)),
                    (STRANGER, 9, 4, Foreign),
                ],
            ),
            (
                "AnyIp learns another IP of a public SDP address",
                Some(PHONE),
                Policy::AnyIp,
                vec![
                    (STRANGER, 9, 1, Probation),
                    (STRANGER, 9, 2, Probation),
                    (STRANGER, 9, 3, locked(STRANGER, Origin::Learned)),
                ],
            ),
            (
                "the SDP's address takes over from a learned NAT source",
                Some("10.0.0.7:4000"),
                Policy::SdpIp,
                vec![
                    (NAT, 1, 1, Probation),
                    (NAT, 1, 2, Probation),
                    (NAT, 1, 3, locked(NAT, Origin::Learned)),
                    ("10.0.0.7:4000", 5, 50, locked("10.0.0.7:4000", Origin::Sdp)),
                    (NAT, 1, 4, Foreign),
                ],
            ),
            (
                "a stranger from other addresses cannot reset the phone's probation",
                Some("10.0.0.7:4000"),
                Policy::SdpIp,
                vec![
                    (NAT, 1, 1, Probation),
                    (STRANGER, 9, 1, Probation),
                    (NAT, 1, 2, Probation),
                    ("198.51.100.66:5001", 9, 7, Probation),
                    ("198.51.100.66:5002", 9, 7, Probation),
                    ("198.51.100.66:5003", 9, 7, Probation),
                    ("198.51.100.66:5004", 9, 7, Probation),
                    (NAT, 1, 3, locked(NAT, Origin::Learned)),
                ],
            ),
            (
                "without SDP any address is learned after probation",
                None,
                Policy::SdpIp,
                vec![
                    (STRANGER, 9, 1, Probation),
                    (STRANGER, 9, 2, Probation),
                    (STRANGER, 9, 3, locked(STRANGER, Origin::Learned)),
                ],
            ),
        ];
        for (case, sdp, policy, steps) in cases {
            let mut src = RtpSource::new(policy);
            src.on_sdp(sdp.map(a), false);
            run(&mut src, &steps, case);
        }
    }

    #[test]
    fn only_a_new_sdp_reopens_learning() {
        let mut src = RtpSource::new(Policy::SdpIp);
        src.on_sdp(Some(a(PHONE)), false);
        assert_eq!(src.destination(), Some(a(PHONE)), "SDP until locked");
        for seq in 1..=3 {
            src.on_packet(a(NAT), 1, seq);
        }
        assert_eq!(src.destination(), Some(a(NAT)));
        // the same answer again: still locked
        src.on_sdp(Some(a(PHONE)), false);
        assert_eq!(
            src.on_packet(a("203.0.113.5:62000"), 1, 4),
            Verdict::Foreign
        );
        // a re-offer with the same address: the old source comes back at once
        src.on_sdp(Some(a(PHONE)), true);
        assert_eq!(src.destination(), Some(a(NAT)), "no gap while re-learning");
        assert_eq!(
            src.on_packet(a(NAT), 1, 9),
            Verdict::Locked(a(NAT), Origin::Previous)
        );
        // a new address: learning from scratch, the old source is foreign
        src.on_sdp(Some(a("203.0.113.9:4000")), true);
        assert_eq!(src.destination(), Some(a("203.0.113.9:4000")));
        assert_eq!(src.on_packet(a(NAT), 1, 10), Verdict::Foreign);
    }

    #[test]
    fn mapped_ipv6_sources_compare_as_ipv4() {
        let mut src = RtpSource::new(Policy::SdpIp);
        src.on_sdp(Some(a("127.0.0.1:4000")), false);
        assert_eq!(
            src.on_packet(a("[::ffff:127.0.0.1]:4000"), 1, 1),
            Verdict::Locked(a("127.0.0.1:4000"), Origin::Sdp)
        );
    }

    #[test]
    fn private_addresses() {
        for (ip, want) in [
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.0.1", true),
            ("100.64.0.1", true),
            ("100.127.255.1", true),
            ("100.128.0.1", false),
            ("169.254.1.1", true),
            ("127.0.0.1", false),
            ("203.0.113.5", false),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::1", false),
            ("2001:db8::1", false),
            ("::ffff:192.168.1.1", true),
        ] {
            assert_eq!(is_private(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn rtcp_is_learned_only_from_the_sdp_or_the_proven_stream() {
        let mut rtp = RtpSource::new(Policy::SdpIp);
        rtp.on_sdp(Some(a(PHONE)), false);
        let mut rtcp = RtcpSource::new();
        rtcp.on_sdp(Some(a(PHONE)), false);
        assert_eq!(rtcp.destination(&rtp), Some(a("203.0.113.5:4001")));
        // nothing proven yet: a report from the NAT's port is foreign
        let nat_rtcp = a("203.0.113.5:61001");
        assert_eq!(
            rtcp.on_packet(nat_rtcp, Some(1), &rtp, None),
            Verdict::Foreign
        );
        for seq in 1..=3 {
            rtp.on_packet(a(NAT), 1, seq);
        }
        assert_eq!(rtcp.destination(&rtp), Some(a("203.0.113.5:61001")));
        // the right IP but another SSRC, or a stranger with the SSRC: foreign
        assert_eq!(
            rtcp.on_packet(nat_rtcp, Some(2), &rtp, Some(1)),
            Verdict::Foreign
        );
        assert_eq!(
            rtcp.on_packet(a(STRANGER), Some(1), &rtp, Some(1)),
            Verdict::Foreign
        );
        assert_eq!(
            rtcp.on_packet(nat_rtcp, Some(1), &rtp, Some(1)),
            Verdict::Locked(nat_rtcp, Origin::Learned)
        );
        assert_eq!(
            rtcp.on_packet(nat_rtcp, None, &rtp, Some(1)),
            Verdict::Accept
        );
        assert_eq!(
            rtcp.on_packet(a("203.0.113.5:61003"), Some(1), &rtp, Some(1)),
            Verdict::Foreign
        );
        // the SDP's RTCP address is always preferred
        assert_eq!(
            rtcp.on_packet(a("203.0.113.5:4001"), None, &rtp, Some(1)),
            Verdict::Locked(a("203.0.113.5:4001"), Origin::Sdp)
        );
        // a re-offer: the old lock is taken back at once, others stay out
        rtcp.on_sdp(Some(a(PHONE)), true);
        assert_eq!(
            rtcp.on_packet(a("203.0.113.5:4001"), None, &rtp, Some(1)),
            Verdict::Locked(a("203.0.113.5:4001"), Origin::Sdp)
        );
    }

    #[test]
    fn a_pinned_source_is_the_only_one() {
        let mut s = RtpSource::new(Policy::AnyIp);
        s.pin(a("192.0.2.1:5000"));
        assert_eq!(s.destination(), Some(a("192.0.2.1:5000")));
        assert_eq!(s.on_packet(a("192.0.2.1:5000"), 1, 1), Verdict::Accept);
        // in-sequence packets from elsewhere never take it over
        for seq in 0..10 {
            assert_eq!(s.on_packet(a("192.0.2.1:5002"), 1, seq), Verdict::Foreign);
            assert_eq!(
                s.on_packet(a("198.51.100.9:5000"), 1, seq),
                Verdict::Foreign
            );
        }
        s.pin(a("198.51.100.9:6000"));
        assert!(s.is_locked_to(a("198.51.100.9:6000")));
        assert_eq!(s.on_packet(a("192.0.2.1:5000"), 1, 11), Verdict::Foreign);
    }
}
