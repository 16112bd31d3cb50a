//! The manager offers to a browser (CreateSession with profile WebRTC and
//! no SDP): the webrtc-rs browser of tests/common answers `a=setup:active`,
//! runs ICE checks (the first before its answer reaches the manager) and
//! the DTLS client handshake, and talks SRTP PCMU to a plain desk phone
//! (samples checked both ways); re-offers of the manager's (hold, resume)
//! keep ICE and DTLS. Answers the manager cannot take are refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::webrtc::{Answer, Browser};
use common::*;
use switchboard_media::g711::Codec;
use switchboard_rtpmanager_api::v1 as pb;

const WAIT: Duration = Duration::from_secs(2);

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

fn close(got: &[i16], want: &[i16]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (i32::from(*g) - i32::from(*w)).abs() <= 300 + i32::from(*w).abs() / 16)
}

/// A session the manager offers WebRTC on.
async fn offered(m: &mut Manager) -> pb::CreateSessionResponse {
    m.client
        .create_session(pb::CreateSessionRequest {
            call_id: "call-1".into(),
            leg: "browser".into(),
            profile: pb::Profile::Webrtc.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn answer(m: &mut Manager, session: &str, sdp: String) -> Result<(), tonic::Status> {
    m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: session.into(),
            remote_sdp: sdp,
            is_offer: false,
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn the_manager_offers_and_a_browser_answers() {
    let mut m = manager(47).await;
    let mut b = Browser::new().await;
    let a = offered(&mut m).await;
    for line in [
        "a=ice-lite\r\n",
        "a=group:BUNDLE 0\r\n",
        " UDP/TLS/RTP/SAVPF 0 8 111 101\r\n",
        "a=rtpmap:111 opus/48000/2\r\n",
        "a=setup:actpass\r\n",
        "a=rtcp-mux\r\n",
        "a=mid:0\r\n",
        "a=fingerprint:sha-256 ",
        " typ host\r\n",
    ] {
        assert!(a.local_sdp.contains(line), "{line:?} in\n{}", a.local_sdp);
    }
    assert!(a.chosen.is_none());
    let offer = Answer::parse(&a.local_sdp);
    assert_eq!(offer.candidate.to_string(), a.local_address);

    let phone = Phone::on("127.0.0.1").await;
    let p = create(
        &mut m,
        "desk-phone",
        Some(phone.offer(&[(8, "PCMA")], None)),
    )
    .await;
    m.bridge(&a.session_id, &p.session_id).await;
    let to_phone_leg = rtp_addr(&p.local_sdp);

    // the browser's check comes before its answer reaches the manager:
    // answered all the same (our ice-pwd authenticates it)
    let mapped = b.ice(&offer).await;
    assert_eq!(mapped, b.addr());
    // and its DTLS handshake starts before the answer too: the manager's
    // server waits for the answer's fingerprint
    let sdp = b.answer(0, "PCMU/8000");
    let session = a.session_id.clone();
    let (dtls, answered) = tokio::join!(b.dtls(&offer), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        answer(&mut m, &session, sdp.clone()).await
    });
    answered.unwrap();
    let _dtls = dtls.expect("DTLS handshake");
    assert_eq!(
        m.info(&a.session_id).await.unwrap().codec.unwrap().name,
        "PCMU"
    );
    // the answer again (a 18x, then the 2xx) is taken
    answer(&mut m, &a.session_id, sdp).await.unwrap();

    // browser -> phone
    tokio::time::sleep(Duration::from_millis(50)).await;
    for seq in 0..10u16 {
        let (pcmu, _) = tone(Codec::Pcmu, usize::from(seq));
        b.send_srtp(offer.candidate, seq, &pcmu).await;
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
    // phone -> browser
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

    // a re-offer (hold, then resume) keeps ICE and DTLS: the keys stay
    for (direction, answered) in [
        (pb::Direction::Sendonly, "a=recvonly"),
        (pb::Direction::Sendrecv, "a=sendrecv"),
    ] {
        let again = m
            .client
            .create_offer(pb::CreateOfferRequest {
                session_id: a.session_id.clone(),
                direction: direction.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .local_sdp;
        assert_eq!(Answer::parse(&again).ufrag, offer.ufrag);
        let sdp = b.answer(0, "PCMU/8000").replace("a=sendrecv", answered);
        answer(&mut m, &a.session_id, sdp).await.unwrap();
    }
    for seq in 10..15u16 {
        let (pcmu, _) = tone(Codec::Pcmu, usize::from(seq));
        b.send_srtp(offer.candidate, seq, &pcmu).await;
    }
    assert_eq!(phone.recv_all(Duration::from_millis(400)).await.len(), 5);
    let h = m.health().await;
    assert_eq!((h.ice_refused, h.dtls_failed, h.srtp_dropped), (0, 0, 0));
}

#[tokio::test]
async fn answers_the_manager_cannot_take_are_refused() {
    let mut m = manager(48).await;
    let b = Browser::new().await;
    let good = b.answer(0, "PCMU/8000");
    let cases = [
        (good.replace("a=setup:active", "a=setup:passive"), "setup"),
        (good.replace("a=rtcp-mux\r\n", ""), "rtcp-mux"),
        (
            good.replace(&format!("a=fingerprint:{}\r\n", b.fingerprint), ""),
            "fingerprint",
        ),
        (good.replace("a=ice-ufrag:EsAw\r\n", ""), "ice-ufrag"),
        (
            good.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"),
            "UDP/TLS/RTP/SAVPF",
        ),
    ];
    let a = offered(&mut m).await;
    for (sdp, why) in cases {
        let e = answer(&mut m, &a.session_id, sdp).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{why}");
        assert!(e.message().contains(why), "{why}: {}", e.message());
    }
    // refused answers left the leg waiting: the good one is taken, and a
    // later answer with another ICE ufrag is not
    answer(&mut m, &a.session_id, good.clone()).await.unwrap();
    let e = answer(
        &mut m,
        &a.session_id,
        good.replace("a=ice-ufrag:EsAw", "a=ice-ufrag:New1"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // profile WebRTC: SRTP disabled, or a plain offer, do not fit
    for req in [
        pb::CreateSessionRequest {
            profile: pb::Profile::Webrtc.into(),
            srtp: pb::SrtpPolicy::Disabled.into(),
            ..Default::default()
        },
        pb::CreateSessionRequest {
            profile: pb::Profile::Webrtc.into(),
            remote_sdp: offer_at("127.0.0.1:4000".parse().unwrap(), &[(0, "PCMU")], None),
            ..Default::default()
        },
        pb::CreateSessionRequest {
            profile: 99,
            ..Default::default()
        },
    ] {
        let e = m.client.create_session(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    }
    // a leg the browser offered on takes no answer
    let c = create(&mut m, "browser", Some(b.offer())).await;
    let e = answer(&mut m, &c.session_id, good).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}
