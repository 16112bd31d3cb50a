//! Zero-copy RTP header view (RFC 3550 §5.1) and RTP/RTCP demultiplexing
//! (RFC 5761 §4) for the RTP manager's relay hot path. Nothing is copied or
//! allocated; parsing validates every length so accessors cannot panic.

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// A validated RTP packet borrowed from a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    buf: &'a [u8],
    header_len: usize,
    payload_end: usize,
}

impl<'a> RtpView<'a> {
    /// Validates `buf` as an RTP packet: version 2, at least 12 bytes, room
    /// for the CSRC list and the header extension, and a padding count
    /// (when the P bit is set) between 1 and the bytes after the header.
    pub fn parse(buf: &'a [u8]) -> Option<RtpView<'a>> {
        if buf.len() < RTP_HEADER_LEN || buf[0] >> 6 != 2 {
            return None;
        }
        let csrc_count = usize::from(buf[0] & 0x0F);
        let mut header_len = RTP_HEADER_LEN + 4 * csrc_count;
        if buf[0] & 0x10 != 0 {
            let ext = buf.get(header_len..header_len + 4)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            header_len += 4 + 4 * words;
        }
        if header_len > buf.len() {
            return None;
        }
        let mut payload_end = buf.len();
        if buf[0] & 0x20 != 0 {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || pad > buf.len() - header_len {
                return None;
            }
            payload_end -= pad;
        }
        Some(RtpView {
            buf,
            header_len,
            payload_end,
        })
    }

    /// The whole packet as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// M bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// Payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7F
    }

    /// Sequence number.
    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    /// Synchronisation source.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }

    /// Number of CSRC identifiers (CC field).
    pub fn csrc_count(&self) -> usize {
        usize::from(self.buf[0] & 0x0F)
    }

    /// The CSRC identifiers.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.buf[RTP_HEADER_LEN..RTP_HEADER_LEN + 4 * self.csrc_count()]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Header extension as (profile-defined id, data), if the X bit is set.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if self.buf[0] & 0x10 == 0 {
            return None;
        }
        let start = RTP_HEADER_LEN + 4 * self.csrc_count();
        let id = u16::from_be_bytes([self.buf[start], self.buf[start + 1]]);
        Some((id, &self.buf[start + 4..self.header_len]))
    }

    /// Header length including CSRCs and the extension: payload start.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// End of the payload within the packet (padding excluded).
    pub fn payload_end(&self) -> usize {
        self.payload_end
    }

    /// Number of padding bytes (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }

    /// The payload, without header and padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.payload_end]
    }
}

/// RFC 5761 §4 demultiplexing: a packet on a muxed port is RTCP when its
/// second byte (RTCP packet type, or RTP M bit + payload type) is in
/// 192..=223; RTP payload types 64–95 are therefore not usable with rtcp-mux.
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

/// Appends a plain 12-byte RTP header (version 2, no padding, extension or
/// CSRCs). `pt` is masked to 7 bits.
pub fn write_header(out: &mut Vec<u8>, pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    out.reserve(RTP_HEADER_LEN);
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (pt & 0x7F));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut v = Vec::new();
        write_header(&mut v, pt, marker, seq, ts, ssrc);
        v
    }

    #[test]
    fn write_and_parse_plain_packet() {
        let mut pkt = header(8, true, 0xBEEF, 0xDEAD_BEEF, 0x0102_0304);
        assert_eq!(
            pkt,
            [0x80, 0x88, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]
        );
        pkt.extend_from_slice(&[0xD5; 160]);
        let v = RtpView::parse(&pkt).unwrap();
        assert_eq!(v.payload_type(), 8);
        assert!(v.marker());
        assert_eq!(v.sequence(), 0xBEEF);
        assert_eq!(v.timestamp(), 0xDEAD_BEEF);
        assert_eq!(v.ssrc(), 0x0102_0304);
        assert_eq!(v.header_len(), 12);
        assert_eq!(v.payload_end(), 172);
        assert_eq!(v.payload(), &[0xD5; 160][..]);
        assert_eq!(v.padding_len(), 0);
        assert_eq!(v.csrc_count(), 0);
        assert_eq!(v.extension(), None);
        assert_eq!(v.as_bytes().len(), 172);

        let no_marker = header(0x7F | 0x80, false, 1, 2, 3);
        let v = RtpView::parse(&no_marker).unwrap();
        assert_eq!(v.payload_type(), 0x7F);
        assert!(!v.marker());
        assert!(v.payload().is_empty());
    }

    #[test]
    fn csrc_extension_and_padding() {
        // V=2, P=1, X=1, CC=2
        let mut pkt = vec![0xB2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        pkt.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 11]); // CSRCs
        pkt.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]); // extension, 1 word
        pkt.extend_from_slice(&[1, 2, 3, 4, 5]); // payload
        pkt.extend_from_slice(&[0, 0, 3]); // padding
        let v = RtpView::parse(&pkt).unwrap();
        assert_eq!(v.csrc_count(), 2);
        assert_eq!(v.csrcs().collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(v.extension(), Some((0xBEDE, &[0x10, 0xAA, 0, 0][..])));
        assert_eq!(v.header_len(), 12 + 8 + 8);
        assert_eq!(v.payload_end(), pkt.len() - 3);
        assert_eq!(v.padding_len(), 3);
        assert_eq!(v.payload(), &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn malformed_packets_rejected() {
        let base = header(0, false, 1, 2, 3);
        let with = |first: u8, tail: &[u8]| {
            let mut p = base.clone();
            p[0] = first;
            p.extend_from_slice(tail);
            p
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("short", base[..11].to_vec()),
            ("version 0", with(0x00, &[])),
            ("version 1", with(0x40, &[])),
            ("version 3", with(0xC0, &[])),
            ("csrc missing", with(0x81, &[])),
            ("csrc truncated", with(0x82, &[0, 0, 0, 1])),
            ("extension header missing", with(0x90, &[0xBE, 0xDE])),
            (
                "extension body missing",
                with(0x90, &[0xBE, 0xDE, 0, 2, 0, 0, 0, 0]),
            ),
            ("padding without bytes", with(0xA0, &[])),
            ("padding zero", with(0xA0, &[1, 2, 0])),
            ("padding too long", with(0xA0, &[1, 2, 4])),
        ];
        for (name, pkt) in cases {
            assert_eq!(RtpView::parse(&pkt), None, "{name}");
        }
        // Boundary cases that are valid.
        let padded = with(0xA0, &[1, 2, 3]);
        let v = RtpView::parse(&padded).unwrap();
        assert!(v.payload().is_empty());
        let empty_ext = with(0x90, &[0xBE, 0xDE, 0, 0]);
        let v = RtpView::parse(&empty_ext).unwrap();
        assert_eq!(v.header_len(), 16);
        assert_eq!(v.extension(), Some((0xBEDE, &[][..])));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut state: u32 = 0x1234_5678;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for round in 0..200 {
            for len in 0..40 {
                let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if round % 2 == 0 && len > 0 {
                    buf[0] = 0x80 | (buf[0] & 0x3F); // force version 2
                }
                let _ = is_rtcp(&buf);
                if let Some(v) = RtpView::parse(&buf) {
                    assert!(v.header_len() <= v.payload_end());
                    assert!(v.payload_end() <= buf.len());
                    let _ = (
                        v.payload(),
                        v.extension(),
                        v.csrcs().count(),
                        v.padding_len(),
                    );
                    let _ = (
                        v.marker(),
                        v.payload_type(),
                        v.sequence(),
                        v.timestamp(),
                        v.ssrc(),
                    );
                }
            }
        }
    }

    #[test]
    fn rtcp_demux() {
        let cases: &[(&[u8], bool)] = &[
            (&[], false),
            (&[0x80], false),
            (&[0x80, 200, 0, 6], true), // SR
            (&[0x81, 201, 0, 7], true), // RR
            (&[0x81, 202], true),       // SDES
            (&[0x80, 203], true),       // BYE
            (&[0x80, 204], true),       // APP
            (&[0x80, 205], true),       // RTPFB
            (&[0x80, 206], true),       // PSFB
            (&[0x80, 192], true),
            (&[0x80, 223], true),
            (&[0x80, 191], false),
            (&[0x80, 224], false),
            (&[0x80, 0], false),    // PCMU
            (&[0x80, 0x80], false), // PCMU with marker
            (&[0x80, 8], false),    // PCMA
            (&[0x80, 101], false),  // telephone-event
            (&[0x80, 0xE5], false), // telephone-event with marker
        ];
        for &(buf, expected) in cases {
            assert_eq!(is_rtcp(buf), expected, "{buf:?}");
        }
    }
}
