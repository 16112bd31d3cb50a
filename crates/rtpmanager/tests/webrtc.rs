//! WebRTC legs over real sockets on loopback: a browser written with
//! webrtc-rs' crates (tests/common/webrtc.rs) gets its answer through gRPC
//! CreateSession, runs ICE checks and the DTLS handshake, and talks SRTP
//! PCMU to a plain desk phone through the manager (samples checked both
//! ways). Attacks: checks with a wrong password, media before ICE, a
//! certificate that is not the SDP's, a handshake that never comes.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::webrtc::{Answer, Browser};
use common::*;
use switchboard_media::g711::Codec;
use switchboard_rtpmanager::engine::DTLS_DEADLINE;
use switchboard_rtpmanager_api::v1 as pb;

const WAIT: Duration = Duration::from_secs(2);

/// A 400 Hz tone of 20 ms, encoded with `codec`, and its samples after one
/// round through that codec.
fn tone(codec: Codec, phase: usize) -> (Vec<u8>, Vec<i16>) {
    let samples: Vec<i16> = (0..160)
        .map(|i| {
            let t = (phase * 160 + i) as f64 / 8000.0;
            ((t * 400.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
        })
        .collect();
    let mut enc = Vec::new();
    codec.encode(&samples, &mut enc);
    let mut decoded = Vec::new();
    codec.decode(&enc, &mut decoded);
    (enc, decoded)
}

/// Samples within the error of one more G.711 transcoding step.
fn close(got: &[i16], want: &[i16]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (i32::from(*g) - i32::from(*w)).abs() <= 300 + i32::from(*w).abs() / 16)
}

/// A bridged call: the browser's leg (its answer and session id), a plain
/// PCMA phone and where that phone sends its RTP.
async fn call(m: &mut Manager, b: &Browser) -> (Answer, String, Phone, std::net::SocketAddr) {
    let a = create(m, "browser", Some(b.offer())).await;
    let answer = Answer::parse(&a.local_sdp);
    let phone = Phone::on("127.0.0.1").await;
    let p = create(m, "desk-phone", Some(phone.offer(&[(8, "PCMA")], None))).await;
    m.bridge(&a.session_id, &p.session_id).await;
    (answer, a.session_id, phone, rtp_addr(&p.local_sdp))
}

#[tokio::test]
async fn browser_and_desk_phone_hear_each_other() {
    let mut m = manager(40).await;
    let mut b = Browser::new().await;
    let a = create(&mut m, "browser", Some(b.offer())).await;
    // the answer: ICE-lite, our fingerprint, passive, rtcp-mux, PCMU
    for line in [
        "a=ice-lite\r\n",
        "a=group:BUNDLE 0\r\n",
        " UDP/TLS/RTP/SAVPF 0 126\r\n",
        "a=setup:passive\r\n",
        "a=rtcp-mux\r\n",
        "a=mid:0\r\n",
        "a=fingerprint:sha-256 ",
        " typ host\r\n",
    ] {
        assert!(a.local_sdp.contains(line), "{line:?} in\n{}", a.local_sdp);
    }
    assert!(!a.local_sdp.contains("extmap"), "{}", a.local_sdp);
    assert_eq!(a.chosen.as_ref().unwrap().name, "PCMU");
    let answer = Answer::parse(&a.local_sdp);
    assert_eq!(answer.candidate.to_string(), a.local_address);

    let phone = Phone::on("127.0.0.1").await;
    let p = create(
        &mut m,
        "desk-phone",
        Some(phone.offer(&[(8, "PCMA")], None)),
    )
    .await;
    m.bridge(&a.session_id, &p.session_id).await;
    let to_phone_leg = rtp_addr(&p.local_sdp);

    // ICE, then DTLS
    let mapped = b.ice(&answer).await;
    assert_eq!(mapped, b.addr(), "XOR-MAPPED-ADDRESS is where we sent from");
    let info = m.info(&a.session_id).await.unwrap();
    assert_eq!(info.remote_address, b.addr().to_string());
    let _dtls = b.dtls(&answer).await.expect("DTLS handshake");

    // browser -> phone: SRTP PCMU decrypted, transcoded to PCMA
    tokio::time::sleep(Duration::from_millis(50)).await;
    for seq in 0..10u16 {
        b.send_srtp(
            answer.candidate,
            seq,
            &tone(Codec::Pcmu, usize::from(seq)).0,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = phone.recv_all(Duration::from_millis(400)).await;
    assert_eq!(got.len(), 10, "every SRTP packet relayed");
    for (k, p) in got.iter().enumerate() {
        assert_eq!(p.pt, 8);
        let mut samples = Vec::new();
        Codec::Pcma.decode(&p.payload, &mut samples);
        assert!(close(&samples, &tone(Codec::Pcmu, k).1), "packet {k}");
    }

    // phone -> browser: encrypted with the DTLS-exported keys
    for seq in 0..5u16 {
        let (pcma, _) = tone(Codec::Pcma, usize::from(seq));
        phone
            .send(to_phone_leg, 8, seq, u32::from(seq) * 160, seq == 0, &pcma)
            .await;
        let r = b.recv_srtp(WAIT).await.expect("SRTP that decrypts");
        assert_eq!(r.pt, 0);
        let mut samples = Vec::new();
        Codec::Pcmu.decode(&r.payload, &mut samples);
        assert!(close(&samples, &tone(Codec::Pcma, usize::from(seq)).1));
    }
    let h = m.health().await;
    assert_eq!((h.ice_refused, h.dtls_failed, h.srtp_dropped), (0, 0, 0));
}

#[tokio::test]
async fn a_check_with_a_wrong_password_is_not_answered_and_moves_nothing() {
    let mut m = manager(41).await;
    let mut b = Browser::new().await;
    let (answer, leg, _phone, _) = call(&mut m, &b).await;
    let attacker = Browser::new().await;
    let forged = attacker.check(&answer, "not-the-manager-password", true);
    attacker
        .sock
        .send_to(&forged, answer.candidate)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(m.info(&leg).await.unwrap().remote_address, "");
    assert_eq!(m.health().await.ice_refused, 1);

    // the browser's own check moves the leg to it; a forged one later
    // (even from the browser's ufrag, with USE-CANDIDATE) does not
    b.ice(&answer).await;
    assert_eq!(
        m.info(&leg).await.unwrap().remote_address,
        b.addr().to_string()
    );
    attacker
        .sock
        .send_to(&attacker.check(&answer, "guess", true), answer.candidate)
        .await
        .unwrap();
    // and no answer to it: the browser's queue stays empty too
    assert!(b.stun_response(Duration::from_millis(300)).await.is_none());
    assert_eq!(
        m.info(&leg).await.unwrap().remote_address,
        b.addr().to_string()
    );
    assert_eq!(m.health().await.ice_refused, 2);
}

#[tokio::test]
async fn media_before_ice_and_dtls_is_dropped() {
    let mut m = manager(42).await;
    let mut b = Browser::new().await;
    let (answer, _, phone, to_phone_leg) = call(&mut m, &b).await;
    // plain RTP from the address the browser's SDP names, before ICE
    let (pcmu, _) = tone(Codec::Pcmu, 0);
    let stranger = Phone::on("127.0.0.1").await;
    stranger.burst(answer.candidate, 0, 5, &pcmu).await;
    b.sock
        .send_to(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9], answer.candidate)
        .await
        .unwrap();
    assert!(phone.recv(Duration::from_millis(300)).await.is_none());
    assert_eq!(m.health().await.rtp_foreign_dropped, 6);
    // after ICE, before DTLS: still nothing relayed, and nothing sent to
    // the browser unencrypted
    b.ice(&answer).await;
    stranger.burst(answer.candidate, 5, 3, &pcmu).await;
    for seq in 0..3u16 {
        let mut p = Vec::new();
        switchboard_media::rtp_header::write_header(&mut p, 0, false, seq, 0, 1);
        p.extend_from_slice(&pcmu);
        b.sock.send_to(&p, answer.candidate).await.unwrap();
    }
    assert!(phone.recv(Duration::from_millis(300)).await.is_none());
    let (pcma, _) = tone(Codec::Pcma, 0);
    phone.burst(to_phone_leg, 0, 3, &pcma).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(b.drain_raw(), 0, "nothing reached the browser unencrypted");
}

#[tokio::test]
async fn a_certificate_that_is_not_the_sdps_is_refused() {
    let mut m = manager(43).await;
    let mut b = Browser::new().await;
    let (answer, _, phone, _) = call(&mut m, &b).await;
    b.ice(&answer).await;
    // the SDP named the first certificate; the handshake shows another
    b.swap_certificate();
    let r = tokio::time::timeout(Duration::from_secs(8), b.dtls(&answer)).await;
    assert!(!matches!(r, Ok(Ok(_))), "the handshake must not complete");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(m.health().await.dtls_failed, 1);
    assert!(phone.recv(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn a_peer_that_never_finishes_dtls_fails_after_the_deadline() {
    let mut m = manager(44).await;
    let mut b = Browser::new().await;
    let (answer, _, _phone, _) = call(&mut m, &b).await;
    b.ice(&answer).await;
    // a ClientHello-looking datagram, then silence
    b.sock
        .send_to(
            &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
            answer.candidate,
        )
        .await
        .unwrap();
    tokio::time::sleep(DTLS_DEADLINE - Duration::from_secs(2)).await;
    assert_eq!(m.health().await.dtls_failed, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(m.health().await.dtls_failed, 1);
}

#[tokio::test]
async fn offers_the_manager_cannot_answer_are_refused() {
    let mut m = manager(45).await;
    let b = Browser::new().await;
    let offer = b.offer();
    let cases = [
        (offer.replace("a=rtcp-mux\r\n", ""), "rtcp-mux"),
        (offer.replace("a=setup:actpass", "a=setup:passive"), "setup"),
        (
            offer.replace(&format!("a=fingerprint:{}\r\n", b.fingerprint), ""),
            "fingerprint",
        ),
        (offer.replace("a=ice-ufrag:EsAw\r\n", ""), "ice-ufrag"),
        (
            offer.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n"),
            "ICE-lite",
        ),
    ];
    for (sdp, why) in cases {
        let e = m
            .client
            .create_session(pb::CreateSessionRequest {
                call_id: "c".into(),
                leg: "browser".into(),
                remote_sdp: sdp,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{why}");
        assert!(e.message().contains(why), "{why}: {}", e.message());
    }
    // SRTP disabled on the leg: a DTLS-SRTP offer is refused too
    let e = m
        .client
        .create_session(pb::CreateSessionRequest {
            remote_sdp: offer.clone(),
            srtp: pb::SrtpPolicy::Disabled.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // a re-offer keeping ICE and DTLS is answered with the same ones; an
    // ICE restart is refused; CreateOffer to the browser keeps them too
    let a = create(&mut m, "browser", Some(offer.clone())).await;
    let again = m
        .client
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: offer.replace("a=sendrecv", "a=sendonly"),
            is_offer: true,
        })
        .await
        .unwrap()
        .into_inner();
    let first = Answer::parse(&a.local_sdp);
    let second = Answer::parse(&again.local_sdp);
    assert_eq!((&first.ufrag, &first.pwd), (&second.ufrag, &second.pwd));
    assert!(
        again.local_sdp.contains("a=recvonly"),
        "{}",
        again.local_sdp
    );
    let e = m
        .client
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: offer.replace("a=ice-ufrag:EsAw", "a=ice-ufrag:New1"),
            is_offer: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let hold = m
        .client
        .create_offer(pb::CreateOfferRequest {
            session_id: a.session_id.clone(),
            direction: pb::Direction::Sendonly.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .local_sdp;
    let third = Answer::parse(&hold);
    assert_eq!(
        (&first.ufrag, &first.pwd, &first.fingerprint),
        (&third.ufrag, &third.pwd, &third.fingerprint)
    );
    // the leg's codec and telephone-event, with its payload types, and
    // the browser's mid
    for line in [
        " UDP/TLS/RTP/SAVPF 0 126\r\n",
        "a=sendonly\r\n",
        "a=setup:actpass\r\n",
        "a=mid:0\r\n",
    ] {
        assert!(hold.contains(line), "{line:?} in\n{hold}");
    }
    // the browser's answer to it is taken (DTLS client still)
    let answer = b.answer(0, "PCMU/8000").replace("a=sendrecv", "a=recvonly");
    m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: answer.clone(),
            is_offer: false,
        })
        .await
        .unwrap();
    let e = m
        .client
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id,
            remote_sdp: answer.replace("a=setup:active", "a=setup:passive"),
            is_offer: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}
