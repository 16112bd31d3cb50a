//! SRTP with SDES keys (RFC 4568) over real sockets on loopback: an SRTP
//! phone bridged to a plain phone through the manager hears and is heard
//! (samples checked), what the manager sends the SRTP phone is encrypted
//! with the key of the manager's own a=crypto, SRTCP flows, and the per-leg
//! policy decides what is offered and what is refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::srtp::SrtpPhone;
use common::*;
use switchboard_media::g711::Codec;
use switchboard_media::rtcp;
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_sip::sdp::{self, crypto::Suite};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(2);

/// A 400 Hz tone of 20 ms as PCMU, and its samples after a PCMU round.
fn tone_pcmu(phase: usize) -> (Vec<u8>, Vec<i16>) {
    let samples: Vec<i16> = (0..160)
        .map(|i| {
            let t = (phase * 160 + i) as f64 / 8000.0;
            ((t * 400.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
        })
        .collect();
    let mut pcmu = Vec::new();
    Codec::Pcmu.encode(&samples, &mut pcmu);
    let mut decoded = Vec::new();
    Codec::Pcmu.decode(&pcmu, &mut decoded);
    (pcmu, decoded)
}

/// Samples within the error of one more G.711 transcoding step.
fn close(got: &[i16], want: &[i16]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (i32::from(*g) - i32::from(*w)).abs() <= 300 + i32::from(*w).abs() / 16)
}

async fn create_with(
    m: &mut Manager,
    leg: &str,
    offer: Option<String>,
    srtp: pb::SrtpPolicy,
) -> Result<pb::CreateSessionResponse, tonic::Status> {
    m.client
        .create_session(pb::CreateSessionRequest {
            call_id: "srtp-call".into(),
            leg: leg.into(),
            remote_sdp: offer.unwrap_or_default(),
            srtp: srtp.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn srtp_phone_bridged_to_plain_phone_both_ways_both_suites() {
    let mut m = manager(30).await;
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
        let mut s = SrtpPhone::new(suite).await;
        let plain = Phone::on("127.0.0.1").await;
        // the SRTP phone offers SAVP; default policy (optional)
        let a = create(&mut m, "srtp", Some(s.offer())).await;
        assert!(a.local_sdp.contains(" RTP/SAVP 0"), "{}", a.local_sdp);
        let ours = s.accept(&a.local_sdp);
        assert_eq!((ours.tag, ours.suite), (1, suite), "same tag and suite");
        assert_ne!(ours.key, s.crypto.key, "our own key, not the phone's");
        // the plain phone talks PCMA: the relay decrypts and transcodes
        let b = create(&mut m, "plain", Some(plain.offer(&[(8, "PCMA")], None))).await;
        assert!(b.local_sdp.contains(" RTP/AVP 8"), "{}", b.local_sdp);
        assert!(!b.local_sdp.contains("a=crypto"), "{}", b.local_sdp);
        m.bridge(&a.session_id, &b.session_id).await;
        let to_a = rtp_addr(&a.local_sdp);
        let to_b = rtp_addr(&b.local_sdp);

        // SRTP phone -> plain phone: decoded samples are the tone
        for seq in 0..10u16 {
            let (pcmu, _) = tone_pcmu(usize::from(seq));
            s.send(to_a, seq, &pcmu).await;
        }
        let got = plain.recv_all(Duration::from_millis(300)).await;
        assert_eq!(got.len(), 10, "every SRTP packet relayed ({suite:?})");
        for (k, p) in got.iter().enumerate() {
            assert_eq!(p.pt, 8);
            let mut samples = Vec::new();
            Codec::Pcma.decode(&p.payload, &mut samples);
            assert!(close(&samples, &tone_pcmu(k).1), "packet {k} samples");
        }

        // plain phone -> SRTP phone: on the wire it is not the payload,
        // with the key of our a=crypto it is
        for seq in 0..5u16 {
            let mut pcma = Vec::new();
            Codec::Pcma.encode(&tone_pcmu(usize::from(seq)).1, &mut pcma);
            plain
                .send(to_b, 8, seq, u32::from(seq) * 160, seq == 0, &pcma)
                .await;
            let raw = s.recv_raw(WAIT).await.expect("relayed to the SRTP phone");
            let tag_len = if suite == Suite::AesCm128HmacSha1_80 {
                10
            } else {
                4
            };
            assert_eq!(raw.len(), 12 + 160 + tag_len);
            let as_plain = switchboard_media::rtp_header::RtpView::parse(&raw).unwrap();
            let mut wrong = Vec::new();
            Codec::Pcmu.decode(&as_plain.payload()[..160], &mut wrong);
            assert!(!close(&wrong, &tone_pcmu(usize::from(seq)).1), "encrypted");
            let p = s.open(&raw).expect("decrypts with our a=crypto key");
            assert_eq!(p.pt, 0);
            let mut samples = Vec::new();
            Codec::Pcmu.decode(&p.payload, &mut samples);
            assert!(close(&samples, &tone_pcmu(usize::from(seq)).1));
        }
        assert_eq!(m.health().await.srtp_dropped, 0);
    }
}

#[tokio::test]
async fn srtcp_both_ways() {
    let mut m = manager(31).await;
    let mut s = SrtpPhone::new(Suite::AesCm128HmacSha1_80).await;
    let a = create(&mut m, "srtp", Some(s.offer())).await;
    let ours = s.accept(&a.local_sdp);
    let to_a = rtp_addr(&a.local_sdp);
    let to_a_rtcp = std::net::SocketAddr::new(to_a.ip(), to_a.port() + 1);
    for seq in 0..3u16 {
        s.send(to_a, seq, &[0xff; 160]).await;
    }
    // the phone's SRTCP report authenticates (nothing dropped); a copy with
    // a flipped tag bit does not
    let report = rtcp::compound_report(s.ssrc, None, None, "phone@127.0.0.1");
    let sealed = s.tx.encrypt_rtcp(&report).unwrap().to_vec();
    s.rtcp.send_to(&sealed, to_a_rtcp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(m.health().await.srtp_dropped, 0);
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    s.rtcp.send_to(&bad, to_a_rtcp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(m.health().await.srtp_dropped, 1);
    // our report (every 300 ms in tests) is SRTCP under our key
    let mut rx = common::srtp::context(&ours.key, ours.suite);
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), s.rtcp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let plain = rx.decrypt_rtcp(&buf[..n]).expect("decrypts with our key");
    assert!(rtcp::is_valid_compound(&plain), "a valid compound report");
}

#[tokio::test]
async fn policy_decides_offers_and_refusals() {
    let mut m = manager(32).await;
    let plain = Phone::on("127.0.0.1").await;
    let s = SrtpPhone::new(Suite::AesCm128HmacSha1_80).await;
    let cases = [
        (
            Some(plain.offer(&[(0, "PCMU")], None)),
            pb::SrtpPolicy::Required,
            "srtp: required",
        ),
        (Some(s.offer()), pb::SrtpPolicy::Disabled, "srtp: disabled"),
        (
            Some(s.offer().replace(
                &format!("a=crypto:{}\r\n", sdp::crypto::format(&s.crypto)),
                "",
            )),
            pb::SrtpPolicy::Optional,
            "MKI",
        ),
        (
            Some(s.offer().replace("a=crypto", "a=x-crypto")),
            pb::SrtpPolicy::Optional,
            "without a=crypto",
        ),
    ];
    for (offer, policy, why) in cases {
        let e = create_with(&mut m, "x", offer, policy).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{why}: {e:?}");
        assert!(e.message().contains(why), "{why}: {}", e.message());
        assert!(e.message().starts_with("remote_sdp"), "{}", e.message());
    }
    let e = m
        .client
        .create_session(pb::CreateSessionRequest {
            srtp: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("srtp:"), "{}", e.message());
    assert_eq!(m.health().await.sessions, 0, "nothing allocated");

    // offers: plain unless required
    for policy in [pb::SrtpPolicy::Unspecified, pb::SrtpPolicy::Optional] {
        let o = create_with(&mut m, "b", None, policy).await.unwrap();
        assert!(o.local_sdp.contains(" RTP/AVP "), "{}", o.local_sdp);
        assert!(!o.local_sdp.contains("a=crypto"), "{}", o.local_sdp);
    }
    let o = create_with(&mut m, "b", None, pb::SrtpPolicy::Required)
        .await
        .unwrap();
    assert!(o.local_sdp.contains(" RTP/SAVP "), "{}", o.local_sdp);
    assert!(
        o.local_sdp
            .contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{}",
        o.local_sdp
    );
    // a plain answer to it is refused and the session keeps its offer
    let e = m
        .client
        .update_session(pb::UpdateSessionRequest {
            session_id: o.session_id.clone(),
            remote_sdp: plain.offer(&[(0, "PCMU")], None),
            is_offer: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("RTP/SAVP offer"), "{}", e.message());
}

/// A plain caller and a callee whose leg requires SRTP: our SAVP offer,
/// the callee's SAVP answer, and audio both ways.
#[tokio::test]
async fn plain_caller_to_srtp_callee_through_our_offer() {
    let mut m = manager(33).await;
    let plain = Phone::on("127.0.0.1").await;
    let mut s = SrtpPhone::new(Suite::AesCm128HmacSha1_80).await;
    let a = create(&mut m, "caller", Some(plain.offer(&[(0, "PCMU")], None))).await;
    let b = create_with(&mut m, "callee", None, pb::SrtpPolicy::Required)
        .await
        .unwrap();
    let answer = s.answer(&b.local_sdp);
    m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: b.session_id.clone(),
            remote_sdp: answer,
            is_offer: false,
        })
        .await
        .unwrap();
    m.bridge(&a.session_id, &b.session_id).await;
    let (to_a, to_b) = (rtp_addr(&a.local_sdp), rtp_addr(&b.local_sdp));
    let (pcmu, samples) = tone_pcmu(3);
    plain.send(to_a, 0, 1, 160, true, &pcmu).await;
    let raw = s.recv_raw(WAIT).await.unwrap();
    assert_ne!(&raw[12..172], &pcmu[..], "encrypted on the wire");
    let p = s.open(&raw).unwrap();
    assert_eq!(p.payload, pcmu);
    s.send(to_b, 0, &pcmu).await;
    let back = plain.recv(WAIT).await.unwrap();
    let mut got = Vec::new();
    Codec::Pcmu.decode(&back.payload, &mut got);
    assert_eq!(got, samples);
    // a re-INVITE we send keeps the leg's key (no new keys mid-call)
    let re = m
        .client
        .create_offer(pb::CreateOfferRequest {
            session_id: b.session_id.clone(),
            direction: pb::Direction::Sendrecv.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let d = sdp::parse(re.local_sdp.as_bytes()).unwrap();
    let first = sdp::parse(b.local_sdp.as_bytes()).unwrap();
    assert_eq!(d.crypto, first.crypto);
}
