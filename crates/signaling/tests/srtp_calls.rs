//! SRTP (SDES, RFC 4568) through signaling and the RTP manager, over real
//! sockets on loopback: an SRTP phone calls a plain phone and each hears
//! the other (samples checked); the callee is offered plain RTP/AVP; what
//! reaches the SRTP phone is ciphertext that decodes only with the key of
//! the manager's a=crypto; a plain offer to a route that requires SRTP gets
//! 488, as does one from an account that requires SRTP; a bad `srtp`
//! value in a route or an account is refused naming the field; a trunk
//! with `"srtp": "required"` is offered SRTP and hears it.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::phone::{SipPhone, sdp};
use common::{TestServer, start};
use switchboard_media::g711::Codec;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_sip::message::Method;
use switchboard_sip::sdp::crypto::{self, Crypto, KeySalt, Suite};
use switchboard_sip_stack::dialog::Dialog;
use tokio::net::UdpSocket;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(3);

fn context(c: &Crypto) -> Context {
    let profile = match c.suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    };
    Context::new(c.key.key(), c.key.salt(), profile, None, None).unwrap()
}

fn media_addr(body: &[u8]) -> SocketAddr {
    let d = switchboard_sip::sdp::parse(body).unwrap();
    d.remote_rtp().unwrap()
}

/// 20 ms of a 500 Hz tone starting at packet `k`, as PCMU samples.
fn tone(k: usize) -> Vec<i16> {
    let s: Vec<i16> = (0..160)
        .map(|i| {
            let t = (k * 160 + i) as f64 / 8000.0;
            ((t * 500.0 * std::f64::consts::TAU).sin() * 7000.0) as i16
        })
        .collect();
    let mut pcmu = Vec::new();
    Codec::Pcmu.encode(&s, &mut pcmu);
    let mut back = Vec::new();
    Codec::Pcmu.decode(&pcmu, &mut back);
    back
}

fn pcmu(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    Codec::Pcmu.encode(samples, &mut out);
    out
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    write_header(&mut buf, 0, seq == 0, seq, u32::from(seq) * 160, ssrc);
    buf.extend_from_slice(payload);
    buf
}

/// A server with alice, and bob (a plain phone dialled by URI) behind
/// route 3* (srtp required) and 4* (srtp optional, the default).
async fn server(name: &str) -> (TestServer, SipPhone) {
    let s = start(name, |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    let bob = SipPhone::bind(LO, s.sip).await;
    let dial = serde_json::json!([{"type": "dial", "params": {
        "target": format!("sip:bob@{}", bob.addr()), "timeout": 10}}]);
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "secure", "pattern": "3*", "priority": 10, "srtp": "required", "actions": dial},
        {"id": "any", "pattern": "4*", "priority": 10, "srtp": "optional", "actions": dial}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    (s, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_phone_calls_plain_phone_through_a_required_route() {
    let (s, bob) = server("srtp-call").await;
    let alice = SipPhone::bind(LO, s.sip).await;
    let alice_rtp = UdpSocket::bind((LO, 0)).await.unwrap();
    let bob_rtp = UdpSocket::bind((LO, 0)).await.unwrap();
    let alice_key = Crypto {
        tag: 1,
        suite: Suite::AesCm128HmacSha1_80,
        key: KeySalt::random(),
        lifetime: None,
    };
    let offer = sdp(LO, alice_rtp.local_addr().unwrap().port(), "sendrecv")
        .replace(" RTP/AVP ", " RTP/SAVP ")
        + &format!("a=crypto:{}\r\n", crypto::format(&alice_key));
    let answer = sdp(LO, bob_rtp.local_addr().unwrap().port(), "sendrecv");
    let callee = async {
        let inv = bob.request(Method::Invite).await;
        bob.answer(&inv, 200, Some("bobtag"), Some(&answer)).await;
        bob.request(Method::Ack).await;
        inv
    };
    let ((_a, ok), inv) = tokio::join!(
        alice.call("alice", "alice-secret", "3000", &offer, &[]),
        callee
    );
    // bob, a plain phone, is offered plain RTP/AVP
    let to_bob = String::from_utf8_lossy(&inv.body).into_owned();
    assert!(to_bob.contains(" RTP/AVP "), "{to_bob}");
    assert!(!to_bob.contains("a=crypto"), "{to_bob}");
    // alice gets RTP/SAVP and the manager's own key, same tag and suite
    let d = switchboard_sip::sdp::parse(&ok.body).unwrap();
    assert!(d.is_savp(), "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(d.crypto.len(), 1);
    let ours = crypto::parse(&d.crypto[0]).unwrap();
    assert_eq!((ours.tag, ours.suite), (1, Suite::AesCm128HmacSha1_80));
    assert_ne!(ours.key, alice_key.key);
    let _ = Dialog::uas(&inv, "bobtag", bob.flow());
    let (alice_session, bob_session) = (media_addr(&ok.body), media_addr(&inv.body));

    // alice (SRTP) -> bob (plain): bob decodes the tone
    let mut tx = context(&alice_key);
    for k in 0..8u16 {
        let sealed = tx
            .encrypt_rtp(&rtp(k, 0xa11ce, &pcmu(&tone(usize::from(k)))))
            .unwrap();
        alice_rtp.send_to(&sealed, alice_session).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut buf = [0u8; 2048];
    for k in 0..8usize {
        let (n, _) = tokio::time::timeout(WAIT, bob_rtp.recv_from(&mut buf))
            .await
            .expect("bob hears alice")
            .unwrap();
        let v = RtpView::parse(&buf[..n]).unwrap();
        let mut got = Vec::new();
        Codec::Pcmu.decode(v.payload(), &mut got);
        assert_eq!(got, tone(k), "packet {k}: alice's samples, decrypted");
    }

    // bob (plain) -> alice (SRTP): ciphertext on the wire, the tone under
    // the key of the manager's a=crypto
    let mut rx = context(&ours);
    for k in 0..5u16 {
        let samples = tone(100 + usize::from(k));
        bob_rtp
            .send_to(&rtp(k, 0xb0b, &pcmu(&samples)), bob_session)
            .await
            .unwrap();
        let (n, _) = tokio::time::timeout(WAIT, alice_rtp.recv_from(&mut buf))
            .await
            .expect("alice hears bob")
            .unwrap();
        let raw = &buf[..n];
        assert_eq!(n, 12 + 160 + 10, "SRTP with an 80-bit tag");
        assert_ne!(&raw[12..172], &pcmu(&samples)[..], "not plain on the wire");
        let plain = rx.decrypt_rtp(raw).expect("decrypts with our a=crypto key");
        let v = RtpView::parse(&plain).unwrap();
        let mut got = Vec::new();
        Codec::Pcmu.decode(v.payload(), &mut got);
        assert_eq!(got, samples);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_offer_to_a_required_route_gets_488_and_elsewhere_plain() {
    let (s, bob) = server("srtp-488").await;
    let alice = SipPhone::bind(LO, s.sip).await;
    let offer = sdp(LO, 40_000, "sendrecv");
    let mut d = alice.dialog_to("alice", "3000");
    let (r, _) = alice
        .invite(&mut d, "alice", "alice-secret", &offer, &[])
        .await;
    assert_eq!(r.code, 488, "{r:?}");
    assert!(
        bob.recv(Duration::from_millis(300)).await.is_none(),
        "bob not called"
    );

    // the optional route: plain both sides
    let answer = sdp(LO, 40_002, "sendrecv");
    let callee = async {
        let inv = bob.request(Method::Invite).await;
        bob.answer(&inv, 200, Some("bobtag"), Some(&answer)).await;
        inv
    };
    let ((_a, ok), inv) = tokio::join!(
        alice.call("alice", "alice-secret", "4000", &offer, &[]),
        callee
    );
    for body in [&ok.body, &inv.body] {
        let d = switchboard_sip::sdp::parse(body).unwrap();
        assert!(!d.is_savp() && d.crypto.is_empty());
    }

    // alice's account requires SRTP: the optional route refuses her plain
    // offer too
    let (status, e) = s
        .http(
            "PATCH",
            "/api/v1/accounts/1",
            Some(&serde_json::json!({"srtp": "sometimes"})),
        )
        .await;
    assert!(status == 400 || status == 422, "{status} {e}");
    assert!(e.to_string().contains("srtp"), "{e}");
    let (status, a) = s
        .http(
            "PATCH",
            "/api/v1/accounts/1",
            Some(&serde_json::json!({"srtp": "required"})),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["srtp"], "required", "{a}");
    let mut d = alice.dialog_to("alice", "4001");
    let (r, _) = alice
        .invite(&mut d, "alice", "alice-secret", &offer, &[])
        .await;
    assert_eq!(r.code, 488, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_srtp_value_is_refused_naming_the_field() {
    let s = start("srtp-validate", |_| {}).await;
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "x", "pattern": "3*", "srtp": "always",
         "actions": [{"type": "hangup"}]}]});
    let (status, e) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["path"], "routes[0].srtp", "{e}");
    assert_eq!(e["route"], "x", "{e}");
    assert!(e["reason"].as_str().unwrap().contains("required"), "{e}");
}

/// Calls through trunks use the same SRTP code: a trunk with `"srtp":
/// "required"` is offered RTP/SAVP with the manager's a=crypto and hears a
/// plain phone's audio as SRTP under that key; a trunk without it is
/// offered plain RTP/AVP; a bad value is refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_requires_srtp_is_offered_srtp() {
    let s = start("srtp-trunk", |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    let secure = SipPhone::bind(LO, s.sip).await;
    let plain = SipPhone::bind(LO, s.sip).await;
    for (name, phone, srtp) in [
        ("secure", &secure, Some("required")),
        ("plain", &plain, None),
    ] {
        let mut body =
            serde_json::json!({"host": phone.addr().to_string(), "domain": "provider.test"});
        if let Some(v) = srtp {
            body["srtp"] = v.into();
        }
        let (status, t) = s
            .http("PUT", &format!("/api/v1/trunks/{name}"), Some(&body))
            .await;
        assert_eq!(status, 201, "{t}");
        assert_eq!(t.get("srtp").and_then(|v| v.as_str()), srtp, "{t}");
    }
    let (status, e) = s
        .http(
            "PUT",
            "/api/v1/trunks/bad",
            Some(&serde_json::json!({"host": "127.0.0.1:5999", "srtp": "always"})),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(e.to_string().contains("srtp"), "{e}");
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "secure-out", "pattern": "8*", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": "gateway/secure"}}]},
        {"id": "plain-out", "pattern": "9*", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": "gateway/plain"}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");

    let alice = SipPhone::bind(LO, s.sip).await;
    let alice_rtp = UdpSocket::bind((LO, 0)).await.unwrap();
    let trunk_rtp = UdpSocket::bind((LO, 0)).await.unwrap();
    let offer = sdp(LO, alice_rtp.local_addr().unwrap().port(), "sendrecv");
    let trunk_key = Crypto {
        tag: 1,
        suite: Suite::AesCm128HmacSha1_80,
        key: KeySalt::random(),
        lifetime: None,
    };
    let answer = sdp(LO, trunk_rtp.local_addr().unwrap().port(), "sendrecv")
        .replace(" RTP/AVP ", " RTP/SAVP ")
        + &format!("a=crypto:{}\r\n", crypto::format(&trunk_key));
    let callee = async {
        let inv = secure.request(Method::Invite).await;
        secure.answer(&inv, 200, Some("trunk"), Some(&answer)).await;
        inv
    };
    let ((_d, ok), inv) = tokio::join!(
        alice.call("alice", "alice-secret", "8000", &offer, &[]),
        callee
    );
    let to_trunk = switchboard_sip::sdp::parse(&inv.body).unwrap();
    assert!(to_trunk.is_savp(), "{}", String::from_utf8_lossy(&inv.body));
    let ours = crypto::parse(&to_trunk.crypto[0]).unwrap();
    // alice (plain) talks; the trunk gets SRTP that opens with the key of
    // the manager's a=crypto
    let mut rx = context(&ours);
    let mut buf = [0u8; 2048];
    let to_alice_session = media_addr(&ok.body);
    for k in 0..5u16 {
        let samples = tone(usize::from(k));
        alice_rtp
            .send_to(&rtp(k, 0xa11ce, &pcmu(&samples)), to_alice_session)
            .await
            .unwrap();
        let (n, _) = tokio::time::timeout(WAIT, trunk_rtp.recv_from(&mut buf))
            .await
            .expect("the trunk hears alice")
            .unwrap();
        assert_eq!(n, 12 + 160 + 10, "SRTP with an 80-bit tag");
        let opened = rx
            .decrypt_rtp(&buf[..n])
            .expect("decrypts with the offer's key");
        let v = RtpView::parse(&opened).unwrap();
        let mut got = Vec::new();
        Codec::Pcmu.decode(v.payload(), &mut got);
        assert_eq!(got, samples);
    }

    // the plain trunk is offered plain RTP/AVP
    let callee = async {
        let inv = plain.request(Method::Invite).await;
        plain
            .answer(
                &inv,
                200,
                Some("trunk2"),
                Some(&sdp(LO, 40_010, "sendrecv")),
            )
            .await;
        inv
    };
    let (_, inv) = tokio::join!(
        alice.call("alice", "alice-secret", "9000", &offer, &[]),
        callee
    );
    let d = switchboard_sip::sdp::parse(&inv.body).unwrap();
    assert!(
        !d.is_savp() && d.crypto.is_empty(),
        "{}",
        String::from_utf8_lossy(&inv.body)
    );
}
