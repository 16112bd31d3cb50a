//! RTCP (RFC 3550 §6): the compound report an RTP manager sends for each
//! leg every few seconds, and the one field it reads from the phone's own
//! sender reports (for the round-trip fields LSR/DLSR).
//!
//! A compound packet is a sender report (SR) when we have sent RTP to the
//! leg since the last report, else a receiver report (RR), followed by an
//! SDES packet with our CNAME, as §6.1 requires of every compound packet.

/// One reception report block (RFC 3550 §6.4.1): how the stream from
/// `ssrc` reaches us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed, clamped).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from `ssrc`.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// Sender information of an SR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 in the upper 32 bits).
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp from a Unix time.
pub fn ntp_from_unix(d: std::time::Duration) -> u64 {
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

fn header(out: &mut Vec<u8>, count: u8, pt: u8) -> usize {
    let at = out.len();
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    out.extend_from_slice(&[0, 0]); // length, filled in by `finish`
    at
}

/// Writes the length field of the packet starting at `at`: 32-bit words
/// minus one (§6.4.1).
fn finish(out: &mut [u8], at: usize) {
    let words = ((out.len() - at) / 4 - 1) as u16;
    out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
}

fn block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
    out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&b.extended_highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

/// A compound report from `ssrc`: SR with `sender` (or RR without), at
/// most one report block, and SDES CNAME.
pub fn compound_report(
    ssrc: u32,
    sender: Option<SenderInfo>,
    report: Option<ReportBlock>,
    cname: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    let count = u8::from(report.is_some());
    let at = header(
        &mut out,
        count,
        if sender.is_some() { PT_SR } else { PT_RR },
    );
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    if let Some(b) = &report {
        block(&mut out, b);
    }
    finish(&mut out, at);
    // SDES: one chunk, CNAME item, end marker, padded to 32 bits
    let at = header(&mut out, 1, PT_SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    let name = &cname.as_bytes()[..cname.len().min(255)];
    out.push(1);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    finish(&mut out, at);
    out
}

/// The sender's SSRC and the middle 32 bits of its NTP timestamp, when a
/// compound packet starts with a valid SR.
pub fn parse_sender_report(buf: &[u8]) -> Option<(u32, u32)> {
    if buf.len() < 28 || buf[0] >> 6 != 2 || buf[1] != PT_SR {
        return None;
    }
    let words = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if (words + 1) * 4 > buf.len() {
        return None;
    }
    let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let middle = u32::from_be_bytes([buf[10], buf[11], buf[12], buf[13]]);
    Some((ssrc, middle))
}

/// The sender's SSRC of a compound packet that starts with an SR or RR.
pub fn sender_ssrc(buf: &[u8]) -> Option<u32> {
    if buf.len() < 8 || buf[0] >> 6 != 2 || !matches!(buf[1], PT_SR | PT_RR) {
        return None;
    }
    Some(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]))
}

/// Whether `buf` is a well-formed compound RTCP packet: every packet
/// version 2, lengths adding up exactly, the first an SR or RR (§6.1).
pub fn is_valid_compound(buf: &[u8]) -> bool {
    let mut at = 0;
    let mut first = true;
    while at < buf.len() {
        if buf.len() - at < 4 || buf[at] >> 6 != 2 {
            return false;
        }
        let pt = buf[at + 1];
        if first && pt != PT_SR && pt != PT_RR {
            return false;
        }
        first = false;
        let len = (usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])) + 1) * 4;
        if at + len > buf.len() {
            return false;
        }
        at += len;
    }
    !first
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_sr_with_a_block_and_cname_has_the_rfc_layout() {
        let sr = compound_report(
            0x1122_3344,
            Some(SenderInfo {
                ntp: 0xAABB_CCDD_EEFF_0011,
                rtp_timestamp: 160_000,
                packets: 1000,
                octets: 160_000,
            }),
            Some(ReportBlock {
                ssrc: 0x5566_7788,
                fraction_lost: 25,
                cumulative_lost: 7,
                extended_highest_seq: 70_000,
                jitter: 42,
                last_sr: 0xCCDD_EEFF,
                delay_since_last_sr: 65_536,
            }),
            "rtp@switchboard",
        );
        assert!(is_valid_compound(&sr));
        // SR: 8 header+SSRC, 20 sender info, 24 block = 52 bytes = 13 words
        assert_eq!(&sr[..4], &[0x81, 200, 0, 12]);
        assert_eq!(&sr[4..8], &0x1122_3344u32.to_be_bytes());
        assert_eq!(&sr[8..16], &0xAABB_CCDD_EEFF_0011u64.to_be_bytes());
        assert_eq!(&sr[16..20], &160_000u32.to_be_bytes());
        assert_eq!(&sr[28..32], &0x5566_7788u32.to_be_bytes());
        assert_eq!(&sr[32..36], &[25, 0, 0, 7]);
        assert_eq!(&sr[36..40], &70_000u32.to_be_bytes());
        assert_eq!(&sr[44..48], &0xCCDD_EEFFu32.to_be_bytes());
        // SDES follows: V=2, SC=1, PT 202, CNAME item
        assert_eq!(&sr[52..54], &[0x81, 202]);
        assert_eq!(sr[60], 1);
        assert_eq!(sr[61] as usize, "rtp@switchboard".len());
        assert_eq!(sr.len() % 4, 0);
        assert_eq!(parse_sender_report(&sr), Some((0x1122_3344, 0xCCDD_EEFF)));
    }

    #[test]
    fn without_sending_it_is_a_receiver_report() {
        let rr = compound_report(9, None, None, "x");
        assert!(is_valid_compound(&rr));
        assert_eq!(&rr[..4], &[0x80, 201, 0, 1]);
        assert_eq!(parse_sender_report(&rr), None);
        assert_eq!(sender_ssrc(&rr), Some(9));
        let sr = compound_report(7, Some(SenderInfo::default()), None, "x");
        assert_eq!(sender_ssrc(&sr), Some(7));
        assert_eq!(sender_ssrc(&[0x81, 202, 0, 1, 0, 0, 0, 1]), None, "SDES");
        assert_eq!(sender_ssrc(&[0x80, 201, 0, 1, 0, 0]), None, "short");
    }

    #[test]
    fn cumulative_loss_is_24_bits_signed() {
        for (lost, want) in [
            (0, [0, 0, 0]),
            (1, [0, 0, 1]),
            (-1, [0xff, 0xff, 0xff]),
            (10_000_000, [0x7f, 0xff, 0xff]),
            (-10_000_000, [0x80, 0, 0]),
        ] {
            let b = ReportBlock {
                ssrc: 1,
                fraction_lost: 0,
                cumulative_lost: lost,
                extended_highest_seq: 0,
                jitter: 0,
                last_sr: 0,
                delay_since_last_sr: 0,
            };
            let rr = compound_report(2, None, Some(b), "x");
            assert_eq!(&rr[13..16], &want, "{lost}");
        }
    }

    #[test]
    fn ntp_time_counts_from_1900() {
        let t = ntp_from_unix(Duration::new(1, 500_000_000));
        assert_eq!(t >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(t & 0xffff_ffff, 0x8000_0000);
    }

    #[test]
    fn garbage_is_not_a_report() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_sender_report(&junk);
            let _ = sender_ssrc(&junk);
            let _ = is_valid_compound(&junk);
        }
        assert!(
            !is_valid_compound(&[0x80, 202, 0, 0]),
            "must start with SR/RR"
        );
        assert!(
            !is_valid_compound(&[0x80, 200, 0, 9, 0, 0, 0, 0]),
            "length past the end"
        );
    }
}
