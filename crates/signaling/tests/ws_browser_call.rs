//! A browser called through the whole node: a UDP desk phone calls a user
//! registered over WebSocket, whose "phone" is headless Chromium (Debian's,
//! over chromedriver) taking the INVITE's SDP as JsSIP would hand it to
//! its RTCPeerConnection. The manager's WebRTC offer is answered, ICE and
//! DTLS connect to the node's embedded RTP manager, and audio flows both
//! ways: the desk phone hears the browser's 400 Hz (Goertzel), the browser
//! counts the phone's packets. Loopback only; skipped without Chromium.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::no_live_calls;
use common::phone::{SipPhone, sdp};
use common::ws_phone::{ws_node, ws_phone};
use serde_json::{Value, json};
use switchboard_browser_test::Browser;
use switchboard_media::g711::Codec;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_sip::message::Method;
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The offer from the INVITE goes to an RTCPeerConnection with an
/// oscillator on its track; its answer (after ICE gathering) comes back.
const ANSWER_JS: &str = r#"const offer = arguments[0];
return (async () => {
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = 400;
  const dst = ctx.createMediaStreamDestination();
  osc.connect(dst);
  osc.start();
  const pc = new RTCPeerConnection();
  window.pc = pc;
  await pc.setRemoteDescription({ type: 'offer', sdp: offer });
  pc.addTrack(dst.stream.getAudioTracks()[0], dst.stream);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise(done => {
    if (pc.iceGatheringState === 'complete') done();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
    setTimeout(done, 3000);
  });
  return pc.localDescription.sdp;
})()"#;

const STATS_JS: &str = r#"return (async () => {
  const out = { state: window.pc.connectionState, received: 0 };
  (await window.pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp') out.received += s.packetsReceived || 0;
  });
  return out;
})()"#;

/// The strength of `freq` in 8 kHz samples (Goertzel), relative to the
/// block's energy: near 1 for a pure tone.
fn tone_share(samples: &[i16], freq: f64) -> f64 {
    let c = 2.0 * (std::f64::consts::TAU * freq / 8000.0).cos();
    let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
    for &x in samples {
        let x = f64::from(x);
        let s0 = x + c * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    if energy == 0.0 {
        return 0.0;
    }
    2.0 * (s1 * s1 + s2 * s2 - c * s1 * s2) / (energy * samples.len() as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_phone_calls_a_browser_on_websocket() {
    if !std::path::Path::new(switchboard_browser_test::CHROMIUM).exists() {
        eprintln!("skipped: no Chromium (scripts/ensure-deps.sh installs it)");
        return;
    }
    let (s, ws, _, _) = ws_node("ws-browser-call", |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    let bob = ws_phone(ws, None, None).await;
    assert_eq!(bob.register("bob", "bob-secret").await.code, 200);
    let browser = Browser::start_with_args(&[
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ])
    .await
    .unwrap();
    let alice = SipPhone::bind(LO, s.sip).await;
    let alice_rtp = UdpSocket::bind((LO, 0)).await.unwrap();
    let offer = sdp(LO, alice_rtp.local_addr().unwrap().port(), "sendrecv");

    let callee = async {
        let invite = bob.request(Method::Invite).await;
        bob.answer(&invite, 180, Some("bob-tag"), None).await;
        let offer = String::from_utf8_lossy(&invite.body).into_owned();
        let answer = browser
            .client()
            .execute(ANSWER_JS, vec![json!(offer)])
            .await
            .unwrap_or_else(|e| panic!("{e}: Chromium refused the offer:\n{offer}"));
        let answer = answer.as_str().unwrap().to_owned();
        bob.answer(&invite, 200, Some("bob-tag"), Some(&answer))
            .await;
        invite
    };
    let ((mut d, ok), invite) = tokio::join!(
        alice.call("alice", "alice-secret", "bob", &offer, &[]),
        callee
    );
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(
        String::from_utf8_lossy(&invite.body).contains("UDP/TLS/RTP/SAVPF"),
        "{invite:?}"
    );
    bob.request(Method::Ack).await;

    let start = Instant::now();
    let mut stats = Value::Null;
    while start.elapsed() < Duration::from_secs(15) {
        stats = browser.execute(STATS_JS).await.unwrap();
        if stats["state"] == "connected" || stats["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stats["state"], "connected", "{stats}");

    // the browser's 400 Hz reaches the desk phone as PCMU
    let to_alice_session = switchboard_sip::sdp::parse(&ok.body)
        .unwrap()
        .remote_rtp()
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while samples.len() < 8000 + 1600 && Instant::now() < deadline {
        let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(3), alice_rtp.recv_from(&mut buf)).await
        else {
            break;
        };
        let v = RtpView::parse(&buf[..n]).unwrap();
        assert_eq!(v.payload_type(), 0);
        Codec::Pcmu.decode(v.payload(), &mut samples);
    }
    assert!(samples.len() >= 9600, "{} samples heard", samples.len());
    let share = tone_share(&samples[1600..], 400.0);
    assert!(share > 0.5, "400 Hz share {share}");

    // and the desk phone's audio reaches the browser
    for seq in 0..50u16 {
        let mut p = Vec::new();
        write_header(&mut p, 0, seq == 0, seq, u32::from(seq) * 160, 0xa11ce);
        p.extend_from_slice(&[0x55; 160]);
        alice_rtp.send_to(&p, to_alice_session).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = browser.execute(STATS_JS).await.unwrap();
    assert!(stats["received"].as_u64().unwrap_or(0) > 0, "{stats}");

    let bye = d.request(&Method::Bye, None, &[]);
    alice.send(&bye.bytes).await;
    let bye = bob.request(Method::Bye).await;
    bob.answer(&bye, 200, None, None).await;
    assert_eq!(alice.final_response(Method::Bye).await.code, 200);
    no_live_calls(&s).await;
    s.stop().await;
}
