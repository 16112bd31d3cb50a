//! RTP hijacking ("RTP Bleed") attempts against a live call, over real
//! sockets on loopback: strangers send RTP and RTCP to a call's ports and
//! must neither receive the call's audio nor inject their own. The
//! legitimate phone, also behind a NAT, still talks.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use switchboard_media::rtcp;
use switchboard_rtpmanager_api::v1 as pb;
use tokio::net::UdpSocket;

const QUIET: Duration = Duration::from_millis(300);
const A_VOICE: [u8; 160] = [0xAA; 160];
const B_VOICE: [u8; 160] = [0xBB; 160];
const EVIL: [u8; 160] = [0x66; 160];

/// A call: phone A and phone B on loopback, bridged through the manager.
struct Call {
    m: Manager,
    pa: Phone,
    pb: Phone,
    a: pb::CreateSessionResponse,
    b: pb::CreateSessionResponse,
}

impl Call {
    async fn new(slot: u16) -> Call {
        let mut m = manager(slot).await;
        let pa = Phone::on("127.0.0.1").await;
        let mut pb_ = Phone::on("127.0.0.1").await;
        pb_.ssrc = 0x0b0b_0b0b;
        let a = create(&mut m, "caller", Some(pa.offer(&[(0, "PCMU")], None))).await;
        let b = create(&mut m, "callee", Some(pb_.offer(&[(0, "PCMU")], None))).await;
        m.bridge(&a.session_id, &b.session_id).await;
        Call {
            m,
            pa,
            pb: pb_,
            a,
            b,
        }
    }

    fn to_a(&self) -> std::net::SocketAddr {
        rtp_addr(&self.a.local_sdp)
    }

    fn to_b(&self) -> std::net::SocketAddr {
        rtp_addr(&self.b.local_sdp)
    }
}

fn payloads(got: &[Rtp]) -> Vec<u8> {
    got.iter().map(|p| p.payload[0]).collect()
}

#[tokio::test]
async fn a_stranger_before_the_phones_first_packet_gets_nothing_and_injects_nothing() {
    let mut c = Call::new(10).await;
    // an attacker on another host sends a clean in-sequence stream to A's
    // port before phone A has sent anything (the "RTP Bleed" race)
    let stranger = Phone::on("127.0.0.2").await;
    stranger.burst(c.to_a(), 1000, 20, &EVIL).await;
    // a scanner on the phone's own host probes with stray packets
    let scanner = Phone::on("127.0.0.1").await;
    for seq in [7u16, 300, 12, 9000] {
        scanner.send(c.to_a(), 0, seq, 0, false, &EVIL).await;
    }
    // B talks: its audio goes to A's SDP address, to nobody else
    c.pb.burst(c.to_b(), 1, 10, &B_VOICE).await;
    let at_a = c.pa.recv_all(QUIET).await;
    assert_eq!(payloads(&at_a), vec![0xBB; 10], "phone A hears B");
    assert!(
        stranger.recv_all(QUIET).await.is_empty(),
        "the stranger hears nothing"
    );
    assert!(
        scanner.recv_all(QUIET).await.is_empty(),
        "the scanner hears nothing"
    );
    assert!(
        c.pb.recv_all(QUIET).await.is_empty(),
        "nothing of the stranger's reached B"
    );
    // A's first packet from its SDP address locks at once: nothing lost
    c.pa.burst(c.to_a(), 50, 5, &A_VOICE).await;
    let at_b = c.pb.recv_all(QUIET).await;
    assert_eq!(payloads(&at_b), vec![0xAA; 5], "B hears A, all of it");
    // and the stranger, trying again, is still nobody
    stranger.burst(c.to_a(), 1020, 10, &EVIL).await;
    assert!(c.pb.recv_all(QUIET).await.is_empty());
    let h = c.m.health().await;
    // 30 from the stranger; the scanner's stray probes never passed probation
    assert!(h.rtp_foreign_dropped >= 30, "{h:?}");
    let info = c.m.info(&c.a.session_id).await.unwrap();
    assert_eq!(info.packets_received, 5, "only A's packets counted");
    assert_eq!(info.remote_address, c.pa.addr().to_string());
}

#[tokio::test]
async fn a_stranger_after_silence_is_not_learned() {
    let mut c = Call::new(11).await;
    c.pa.burst(c.to_a(), 1, 5, &A_VOICE).await;
    assert_eq!(payloads(&c.pb.recv_all(QUIET).await), vec![0xAA; 5]);
    // the phone falls silent (muted, or VAD) for over 3 s
    tokio::time::sleep(Duration::from_millis(3200)).await;
    // strangers on the phone's own IP and elsewhere send RTP and RTCP
    let near = Phone::on("127.0.0.1").await;
    let far = Phone::on("127.0.0.2").await;
    let rtcp_to = std::net::SocketAddr::new(c.to_a().ip(), c.to_a().port() + 1);
    let stranger_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // (the phone's SSRC is random in real life: the stranger has to guess)
    let rr = rtcp::compound_report(0xdead_beef, None, None, "evil");
    for _ in 0..3 {
        stranger_rtcp.send_to(&rr, rtcp_to).await.unwrap();
    }
    near.burst(c.to_a(), 500, 20, &EVIL).await;
    far.burst(c.to_a(), 900, 20, &EVIL).await;
    assert!(
        c.pb.recv_all(QUIET).await.is_empty(),
        "nothing of the strangers' reached B"
    );
    // B's audio still goes to phone A only
    c.pb.burst(c.to_b(), 100, 10, &B_VOICE).await;
    assert_eq!(payloads(&c.pa.recv_all(QUIET).await), vec![0xBB; 10]);
    assert!(near.recv_all(QUIET).await.is_empty());
    assert!(far.recv_all(QUIET).await.is_empty());
    // our RTCP reports (every 300 ms here) do not go to the stranger
    let mut buf = [0u8; 1500];
    let got = tokio::time::timeout(Duration::from_secs(1), stranger_rtcp.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the stranger got an RTCP report: {got:?}");
    // and phone A goes on where it left off
    c.pa.burst(c.to_a(), 6, 3, &A_VOICE).await;
    assert_eq!(payloads(&c.pb.recv_all(QUIET).await), vec![0xAA; 3]);
    let h = c.m.health().await;
    assert!(h.rtp_foreign_dropped >= 43, "{h:?}");
}

#[tokio::test]
async fn a_phone_behind_nat_is_learned_from_packets_in_sequence() {
    let mut m = manager(12).await;
    let announced = Phone::on("127.0.0.1").await; // what its SDP says
    let real = Phone::on("127.0.0.1").await; // where it really sends from (NAT)
    let other = Phone::on("127.0.0.1").await;
    let a = create(
        &mut m,
        "caller",
        Some(announced.offer(&[(0, "PCMU")], None)),
    )
    .await;
    let b = create(&mut m, "callee", Some(other.offer(&[(0, "PCMU")], None))).await;
    m.bridge(&a.session_id, &b.session_id).await;
    let (to_a, to_b) = (rtp_addr(&a.local_sdp), rtp_addr(&b.local_sdp));
    // three packets in sequence: the first two are its probation
    for (seq, byte) in [(1u16, 1u8), (2, 2), (3, 3), (4, 4)] {
        real.send(to_a, 0, seq, u32::from(seq) * 160, seq == 1, &[byte; 160])
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(payloads(&other.recv_all(QUIET).await), vec![3, 4]);
    // answered where the packets come from, not at the SDP's address
    other.burst(to_b, 1, 5, &B_VOICE).await;
    assert_eq!(payloads(&real.recv_all(QUIET).await), vec![0xBB; 5]);
    assert!(announced.recv_all(QUIET).await.is_empty());
    let info = m.info(&a.session_id).await.unwrap();
    assert_eq!(info.remote_address, real.addr().to_string());
    // a re-offer (the same SDP): no gap, the phone is taken back at once
    m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: announced.offer(&[(0, "PCMU")], None),
            is_offer: true,
        })
        .await
        .unwrap();
    other.burst(to_b, 6, 2, &B_VOICE).await;
    assert_eq!(payloads(&real.recv_all(QUIET).await), vec![0xBB; 2]);
    real.send(to_a, 0, 5, 800, false, &[5; 160]).await;
    assert_eq!(payloads(&other.recv_all(QUIET).await), vec![5]);
    // packets from the SDP's own address are preferred to a NAT guess
    announced.burst(to_a, 40, 2, &A_VOICE).await;
    assert_eq!(payloads(&other.recv_all(QUIET).await), vec![0xAA; 2]);
    other.burst(to_b, 8, 2, &B_VOICE).await;
    assert_eq!(payloads(&announced.recv_all(QUIET).await), vec![0xBB; 2]);
    assert!(real.recv_all(QUIET).await.is_empty());
}

#[tokio::test]
async fn a_new_sdp_address_reopens_learning() {
    let mut c = Call::new(13).await;
    c.pa.burst(c.to_a(), 1, 3, &A_VOICE).await;
    assert_eq!(payloads(&c.pb.recv_all(QUIET).await), vec![0xAA; 3]);
    // the phone moves (a re-INVITE with its new address)
    let moved = Phone::on("127.0.0.1").await;
    c.m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: c.a.session_id.clone(),
            remote_sdp: moved.offer(&[(0, "PCMU")], None),
            is_offer: true,
        })
        .await
        .unwrap();
    moved.burst(c.to_a(), 10, 3, &[0x11; 160]).await;
    assert_eq!(payloads(&c.pb.recv_all(QUIET).await), vec![0x11; 3]);
    // the old address is a stranger now
    c.pa.burst(c.to_a(), 4, 5, &A_VOICE).await;
    assert!(c.pb.recv_all(QUIET).await.is_empty());
    c.pb.burst(c.to_b(), 1, 3, &B_VOICE).await;
    assert_eq!(payloads(&moved.recv_all(QUIET).await), vec![0xBB; 3]);
    assert!(c.pa.recv_all(QUIET).await.is_empty());
}
