//! Attacks on an SRTP leg over real sockets on loopback: packets with a bad
//! authentication tag, replays, junk and forged streams are dropped and
//! counted (HealthResponse.srtp_dropped), never relayed, and never stop the
//! legitimate phone.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::srtp::SrtpPhone;
use common::*;
use switchboard_sip::sdp::crypto::Suite;
use tokio::net::UdpSocket;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn bad_tags_replays_and_junk_are_dropped_and_counted() {
    let mut m = manager(34).await;
    let mut s = SrtpPhone::new(Suite::AesCm128HmacSha1_80).await;
    let plain = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "srtp", Some(s.offer())).await;
    s.accept(&a.local_sdp);
    let b = create(&mut m, "plain", Some(plain.offer(&[(0, "PCMU")], None))).await;
    m.bridge(&a.session_id, &b.session_id).await;
    let to_a = rtp_addr(&a.local_sdp);
    let to_a_rtcp = std::net::SocketAddr::new(to_a.ip(), to_a.port() + 1);

    // the phone's first packet goes through
    s.send(to_a, 0, &[0x11; 160]).await;
    let got = plain.recv_all(QUIET).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, vec![0x11; 160]);
    assert_eq!(m.health().await.srtp_dropped, 0);

    // a bad tag (every byte of it in turn), from the phone's own address
    let mut dropped = 0;
    let good = s.seal(1, &[0x22; 160]);
    for i in 0..10 {
        let mut bad = good.clone();
        let at = bad.len() - 1 - i;
        bad[at] ^= 0x80;
        s.rtp.send_to(&bad, to_a).await.unwrap();
        dropped += 1;
    }
    // a flipped payload bit (the tag covers it)
    let mut bad = good.clone();
    bad[20] ^= 0x01;
    s.rtp.send_to(&bad, to_a).await.unwrap();
    dropped += 1;
    assert!(plain.recv_all(QUIET).await.is_empty(), "nothing relayed");
    assert_eq!(m.health().await.srtp_dropped, dropped);

    // the genuine packet, then its replay
    s.rtp.send_to(&good, to_a).await.unwrap();
    s.rtp.send_to(&good, to_a).await.unwrap();
    dropped += 1;
    let got = plain.recv_all(QUIET).await;
    assert_eq!(got.len(), 1, "the replay is not relayed");
    assert_eq!(got[0].payload, vec![0x22; 160]);
    assert_eq!(m.health().await.srtp_dropped, dropped);

    // junk of every short length to the RTP and RTCP ports, and a plain RTP
    // packet (which an SRTP leg refuses)
    for len in 0..40usize {
        let mut junk = vec![0x80u8; len];
        if len > 1 {
            junk[1] = 200;
        }
        s.rtp.send_to(&junk, to_a).await.unwrap();
        s.rtcp.send_to(&junk, to_a_rtcp).await.unwrap();
        dropped += 2;
    }
    let mut plain_rtp = Vec::new();
    switchboard_media::rtp_header::write_header(&mut plain_rtp, 0, false, 2, 320, s.ssrc);
    plain_rtp.extend_from_slice(&[0x33; 160]);
    s.rtp.send_to(&plain_rtp, to_a).await.unwrap();
    dropped += 1;
    assert!(plain.recv_all(QUIET).await.is_empty());
    assert_eq!(m.health().await.srtp_dropped, dropped);

    // a stranger forging many streams: dropped, and the phone still talks
    let evil = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for ssrc in 0..200u32 {
        let mut forged = Vec::new();
        switchboard_media::rtp_header::write_header(&mut forged, 0, false, 3, 480, ssrc);
        forged.extend_from_slice(&[0x66; 170]);
        evil.send_to(&forged, to_a).await.unwrap();
        dropped += 1;
    }
    s.send(to_a, 3, &[0x44; 160]).await;
    let got = plain.recv_all(QUIET).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, vec![0x44; 160]);
    let h = m.health().await;
    assert_eq!(h.srtp_dropped, dropped);
    assert_eq!(h.sessions, 2, "the manager is alive and the call is up");
}
