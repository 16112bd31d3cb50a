//! Our zero-copy RTP header view against webrtc-rs's `rtp` crate: packets
//! with every header feature (CSRCs, one-byte and two-byte extensions,
//! padding) built by one side must read the same on the other.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use rtp::header::{Extension, Header};
use rtp::packet::Packet;
use switchboard_media::rtp_header::{RtpView, write_header};
use webrtc_util::marshal::{Marshal, Unmarshal};

/// A small deterministic generator (no dependency, same packets every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

fn packet(r: &mut Lcg) -> Packet {
    let csrc: Vec<u32> = (0..r.below(4)).map(|_| r.next()).collect();
    let (extension, profile, extensions) = match r.below(3) {
        0 => (false, 0, Vec::new()),
        // one-byte header extensions (RFC 8285): ids 1..=14, 1..=16 bytes
        1 => (
            true,
            0xBEDE,
            (0..1 + r.below(3))
                .map(|i| Extension {
                    id: 1 + i as u8,
                    payload: Bytes::from(vec![i as u8; 1 + r.below(16) as usize]),
                })
                .collect(),
        ),
        // two-byte header extensions
        _ => (
            true,
            0x1000,
            (0..1 + r.below(3))
                .map(|i| Extension {
                    id: 1 + i as u8,
                    payload: Bytes::from(vec![0xA0 | i as u8; r.below(40) as usize]),
                })
                .collect(),
        ),
    };
    let payload: Vec<u8> = (0..r.below(200)).map(|_| r.next() as u8).collect();
    Packet {
        header: Header {
            version: 2,
            padding: false,
            extension,
            marker: r.below(2) == 1,
            payload_type: r.below(128) as u8,
            sequence_number: r.next() as u16,
            timestamp: r.next(),
            ssrc: r.next(),
            csrc,
            extension_profile: profile,
            extensions,
            extensions_padding: 0,
        },
        payload: Bytes::from(payload),
    }
}

#[test]
fn packets_written_by_webrtc_rs_read_the_same_here() {
    let mut r = Lcg(42);
    for i in 0..5000 {
        let p = packet(&mut r);
        let raw = p.marshal().unwrap();
        let v = RtpView::parse(&raw).unwrap_or_else(|| panic!("packet {i} refused: {p}"));
        let h = &p.header;
        assert_eq!(v.payload_type(), h.payload_type, "{i}");
        assert_eq!(v.marker(), h.marker, "{i}");
        assert_eq!(v.sequence(), h.sequence_number, "{i}");
        assert_eq!(v.timestamp(), h.timestamp, "{i}");
        assert_eq!(v.ssrc(), h.ssrc, "{i}");
        assert_eq!(v.csrcs().collect::<Vec<_>>(), h.csrc, "{i}");
        assert_eq!(v.payload(), &p.payload[..], "{i}");
        // and webrtc-rs reads it back as it wrote it
        let back = Packet::unmarshal(&mut raw.clone()).unwrap();
        assert_eq!(back.payload, p.payload);
    }
}

#[test]
fn headers_written_here_read_the_same_in_webrtc_rs() {
    let mut r = Lcg(7);
    for _ in 0..5000 {
        let (pt, marker, seq, ts, ssrc) = (
            r.below(128) as u8,
            r.below(2) == 1,
            r.next() as u16,
            r.next(),
            r.next(),
        );
        let payload: Vec<u8> = (0..r.below(320)).map(|_| r.next() as u8).collect();
        let mut buf = Vec::new();
        write_header(&mut buf, pt, marker, seq, ts, ssrc);
        buf.extend_from_slice(&payload);
        let p = Packet::unmarshal(&mut Bytes::from(buf)).unwrap();
        assert_eq!(p.header.version, 2);
        assert_eq!(p.header.payload_type, pt);
        assert_eq!(p.header.marker, marker);
        assert_eq!(p.header.sequence_number, seq);
        assert_eq!(p.header.timestamp, ts);
        assert_eq!(p.header.ssrc, ssrc);
        assert!(p.header.csrc.is_empty());
        assert_eq!(&p.payload[..], &payload[..]);
    }
}

#[test]
fn padded_packets_agree_on_the_payload() {
    // RFC 3550 §5.1: the last octet counts the padding, itself included
    let mut buf = Vec::new();
    write_header(&mut buf, 0, false, 1, 160, 9);
    buf[0] |= 0x20;
    buf.extend_from_slice(&[1, 2, 3, 4, 5]);
    buf.extend_from_slice(&[0, 0, 3]);
    let ours = RtpView::parse(&buf).unwrap();
    let theirs = Packet::unmarshal(&mut Bytes::from(buf.clone())).unwrap();
    assert_eq!(ours.payload(), &[1, 2, 3, 4, 5]);
    assert_eq!(&theirs.payload[..], ours.payload());
}

#[test]
fn what_webrtc_rs_refuses_we_refuse_or_read_safely() {
    let mut r = Lcg(99);
    for len in 0..2000usize {
        let junk: Vec<u8> = (0..len % 64).map(|_| r.next() as u8).collect();
        let ours = RtpView::parse(&junk);
        let theirs = Packet::unmarshal(&mut Bytes::from(junk.clone()));
        if theirs.is_err() {
            // a packet webrtc-rs cannot read must not be read as valid here
            // unless its header is complete and consistent
            if let Some(v) = ours {
                assert!(v.header_len() <= junk.len());
                assert!(v.payload_end() <= junk.len());
            }
        }
    }
}
