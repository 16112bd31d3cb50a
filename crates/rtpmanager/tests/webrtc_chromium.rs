//! Interop with a real browser: headless Chromium (Debian's, over
//! chromedriver; `switchboard-browser-test`) offers an audio track (a
//! WebAudio oscillator), takes the manager's answer and connects: ICE-lite
//! checks, DTLS with BoringSSL, SRTP. A plain phone bridged to it receives
//! the browser's audio, and the browser counts the packets the phone sends;
//! a re-offer of the manager's is taken without an ICE restart or a new
//! DTLS association. Also the other way round (the manager offers, Chromium answers
//! `a=setup:active`), and Chromium set to Opus only (the manager
//! transcodes to the phone's PCMU): there the phone checks the
//! oscillator's 400 Hz (Goertzel).
//! Loopback only (`--allow-loopback-in-peer-connection`, no mDNS names).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use switchboard_browser_test::Browser;

const OFFER_JS: &str = r#"return (async () => {
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = 400;
  const dst = ctx.createMediaStreamDestination();
  osc.connect(dst);
  osc.start();
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.addTrack(dst.stream.getAudioTracks()[0], dst.stream);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(done => {
    if (pc.iceGatheringState === 'complete') done();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
    setTimeout(done, 3000);
  });
  return pc.localDescription.sdp;
})()"#;

const ANSWER_JS: &str = r#"const sdp = arguments[0];
return (async () => {
  await window.pc.setRemoteDescription({ type: 'answer', sdp });
  return 'ok';
})()"#;

/// Chromium takes a re-offer of the manager's and returns its answer.
const REOFFER_JS: &str = r#"const sdp = arguments[0];
return (async () => {
  await window.pc.setRemoteDescription({ type: 'offer', sdp });
  await window.pc.setLocalDescription(await window.pc.createAnswer());
  return window.pc.localDescription.sdp;
})()"#;

const STATS_JS: &str = r#"return (async () => {
  const out = { state: window.pc.connectionState, sent: 0, received: 0 };
  (await window.pc.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp') out.sent += s.packetsSent || 0;
    if (s.type === 'inbound-rtp') out.received += s.packetsReceived || 0;
  });
  return out;
})()"#;

#[tokio::test]
async fn chromium_talks_to_a_desk_phone_through_the_manager() {
    if !std::path::Path::new(switchboard_browser_test::CHROMIUM).exists() {
        eprintln!("skipped: no Chromium (scripts/ensure-deps.sh installs it)");
        return;
    }
    let mut m = manager(46).await;
    let browser = Browser::start_with_args(&[
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ])
    .await
    .unwrap();
    let offer = browser.execute(OFFER_JS).await.unwrap();
    let offer = offer.as_str().unwrap().to_owned();
    assert!(offer.contains("UDP/TLS/RTP/SAVPF"), "{offer}");
    let a = create(&mut m, "chromium", Some(offer)).await;
    let phone = Phone::on("127.0.0.1").await;
    let p = create(
        &mut m,
        "desk-phone",
        Some(phone.offer(&[(8, "PCMA")], None)),
    )
    .await;
    m.bridge(&a.session_id, &p.session_id).await;
    let r = browser
        .client()
        .execute(ANSWER_JS, vec![json!(a.local_sdp)])
        .await
        .unwrap();
    assert_eq!(r, json!("ok"), "answer taken:\n{}", a.local_sdp);

    // connected: ICE and DTLS done
    let start = Instant::now();
    let mut stats = Value::Null;
    while start.elapsed() < Duration::from_secs(15) {
        stats = browser.execute(STATS_JS).await.unwrap();
        if stats["state"] == "connected" || stats["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let h = m.health().await;
    assert_eq!(stats["state"], "connected", "{stats} {h:?}");

    // the browser's audio reaches the phone, as PCMA
    let got = phone
        .recv(Duration::from_secs(3))
        .await
        .expect("browser audio relayed");
    assert_eq!(got.pt, 8);
    // and the phone's reaches the browser
    let to_leg = rtp_addr(&p.local_sdp);
    phone.burst(to_leg, 0, 50, &[0xd5; 160]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = browser.execute(STATS_JS).await.unwrap();
    assert!(stats["received"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert!(stats["sent"].as_u64().unwrap_or(0) > 0, "{stats}");

    // a re-offer of the manager's (a re-INVITE to the browser) is taken
    // without an ICE restart or a new DTLS association: audio goes on
    let again = m
        .client
        .create_offer(switchboard_rtpmanager_api::v1::CreateOfferRequest {
            session_id: a.session_id.clone(),
            direction: switchboard_rtpmanager_api::v1::Direction::Sendrecv.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .local_sdp;
    let answer = browser
        .client()
        .execute(REOFFER_JS, vec![json!(again)])
        .await
        .unwrap_or_else(|e| panic!("{e}: re-offer not taken:\n{again}"));
    m.client
        .update_session(switchboard_rtpmanager_api::v1::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: answer.as_str().unwrap().to_owned(),
            is_offer: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: answer refused:\n{answer}"));
    let _ = phone.recv_all(Duration::from_millis(1)).await;
    assert!(phone.recv(Duration::from_secs(2)).await.is_some());
    let stats = browser.execute(STATS_JS).await.unwrap();
    assert_eq!(stats["state"], "connected", "{stats}");
    let h = m.health().await;
    assert_eq!((h.dtls_failed, h.srtp_dropped), (0, 0), "{h:?}");
}

/// Chromium takes the manager's offer: its oscillator on a track, the
/// answer `a=setup:active` (it is the DTLS client, the manager the server).
const ANSWER_TO_OFFER_JS: &str = r#"const offer = arguments[0];
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

#[tokio::test]
async fn the_manager_offers_and_chromium_answers() {
    if !std::path::Path::new(switchboard_browser_test::CHROMIUM).exists() {
        eprintln!("skipped: no Chromium (scripts/ensure-deps.sh installs it)");
        return;
    }
    let mut m = manager(49).await;
    let a = m
        .client
        .create_session(switchboard_rtpmanager_api::v1::CreateSessionRequest {
            call_id: "call-1".into(),
            leg: "chromium".into(),
            profile: switchboard_rtpmanager_api::v1::Profile::Webrtc.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let phone = Phone::on("127.0.0.1").await;
    let p = create(
        &mut m,
        "desk-phone",
        Some(phone.offer(&[(0, "PCMU")], None)),
    )
    .await;
    m.bridge(&a.session_id, &p.session_id).await;

    let browser = Browser::start_with_args(&[
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ])
    .await
    .unwrap();
    let answer = browser
        .client()
        .execute(ANSWER_TO_OFFER_JS, vec![json!(a.local_sdp)])
        .await
        .unwrap_or_else(|e| panic!("{e}: offer not taken:\n{}", a.local_sdp));
    let answer = answer.as_str().unwrap().to_owned();
    assert!(answer.contains("a=setup:active"), "{answer}");
    m.client
        .update_session(switchboard_rtpmanager_api::v1::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: answer.clone(),
            is_offer: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: answer refused:\n{answer}"));

    let start = Instant::now();
    let mut stats = Value::Null;
    while start.elapsed() < Duration::from_secs(15) {
        stats = browser.execute(STATS_JS).await.unwrap();
        if stats["state"] == "connected" || stats["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let h = m.health().await;
    assert_eq!(stats["state"], "connected", "{stats} {h:?}");

    // the browser's 400 Hz reaches the phone as PCMU
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = phone.recv_all(Duration::from_millis(1)).await;
    let mut samples = Vec::new();
    while samples.len() < 8000 {
        let got = phone
            .recv(Duration::from_secs(3))
            .await
            .expect("browser audio relayed");
        assert_eq!(got.pt, 0);
        switchboard_media::g711::Codec::Pcmu.decode(&got.payload, &mut samples);
    }
    let share = tone_share(&samples, 400.0, 8000.0);
    assert!(share > 0.5, "400 Hz share {share}");
    assert!(tone_share(&samples, 1000.0, 8000.0) < 0.05);
    // and the phone's audio reaches the browser
    let to_leg = rtp_addr(&p.local_sdp);
    let mut pcmu = Vec::new();
    switchboard_media::g711::Codec::Pcmu.encode(&common::tone(160, 1000.0, 8000.0), &mut pcmu);
    phone.burst(to_leg, 0, 50, &pcmu).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = browser.execute(STATS_JS).await.unwrap();
    assert!(stats["received"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert!(stats["sent"].as_u64().unwrap_or(0) > 0, "{stats}");
    let h = m.health().await;
    assert_eq!((h.dtls_failed, h.srtp_dropped), (0, 0), "{h:?}");
}

/// Chromium offers Opus only (setCodecPreferences), its oscillator on the
/// track.
const OPUS_OFFER_JS: &str = r#"return (async () => {
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = 400;
  const dst = ctx.createMediaStreamDestination();
  osc.connect(dst);
  osc.start();
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const tr = pc.addTransceiver(dst.stream.getAudioTracks()[0], { direction: 'sendrecv', streams: [dst.stream] });
  const keep = ['audio/opus', 'audio/telephone-event'];
  tr.setCodecPreferences(RTCRtpReceiver.getCapabilities('audio').codecs
    .filter(c => keep.includes(c.mimeType.toLowerCase())));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(done => {
    if (pc.iceGatheringState === 'complete') done();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
    setTimeout(done, 3000);
  });
  return pc.localDescription.sdp;
})()"#;

/// Packets and codec of each direction.
const CODEC_STATS_JS: &str = r#"return (async () => {
  const out = { state: window.pc.connectionState, sent: 0, received: 0, codecs: [] };
  const stats = await window.pc.getStats();
  stats.forEach(s => {
    if (s.type === 'outbound-rtp' || s.type === 'inbound-rtp') {
      if (s.type === 'outbound-rtp') out.sent += s.packetsSent || 0;
      if (s.type === 'inbound-rtp') out.received += s.packetsReceived || 0;
      const c = s.codecId && stats.get(s.codecId);
      if (c) out.codecs.push(s.type + ' ' + c.mimeType);
    }
  });
  return out;
})()"#;

#[tokio::test]
async fn chromium_talks_opus_to_a_pcmu_desk_phone() {
    if !std::path::Path::new(switchboard_browser_test::CHROMIUM).exists() {
        eprintln!("skipped: no Chromium (scripts/ensure-deps.sh installs it)");
        return;
    }
    let mut m = manager(52).await;
    let browser = Browser::start_with_args(&[
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ])
    .await
    .unwrap();
    let offer = browser.execute(OPUS_OFFER_JS).await.unwrap();
    let offer = offer.as_str().unwrap().to_owned();
    let a = create(&mut m, "chromium", Some(offer.clone())).await;
    assert_eq!(a.chosen.as_ref().unwrap().name, "opus", "{offer}");
    let phone = Phone::on("127.0.0.1").await;
    let p = create(
        &mut m,
        "desk-phone",
        Some(phone.offer(&[(0, "PCMU")], None)),
    )
    .await;
    m.bridge(&a.session_id, &p.session_id).await;
    let r = browser
        .client()
        .execute(ANSWER_JS, vec![json!(a.local_sdp)])
        .await
        .unwrap();
    assert_eq!(r, json!("ok"), "answer taken:\n{}", a.local_sdp);
    let start = Instant::now();
    let mut stats = Value::Null;
    while start.elapsed() < Duration::from_secs(15) {
        stats = browser.execute(CODEC_STATS_JS).await.unwrap();
        if stats["state"] == "connected" || stats["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stats["state"], "connected", "{stats}");

    // the browser's 400 Hz, Opus on the wire, reaches the phone as PCMU
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = phone.recv_all(Duration::from_millis(1)).await;
    let mut samples = Vec::new();
    while samples.len() < 8000 {
        let got = phone
            .recv(Duration::from_secs(3))
            .await
            .expect("browser audio relayed");
        assert_eq!(got.pt, 0);
        switchboard_media::g711::Codec::Pcmu.decode(&got.payload, &mut samples);
    }
    let share = tone_share(&samples, 400.0, 8000.0);
    assert!(share > 0.5, "400 Hz share {share}");
    // and the phone's PCMU reaches the browser as Opus
    let to_leg = rtp_addr(&p.local_sdp);
    let mut pcmu = Vec::new();
    switchboard_media::g711::Codec::Pcmu.encode(&common::tone(160, 1000.0, 8000.0), &mut pcmu);
    phone.burst(to_leg, 0, 50, &pcmu).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = browser.execute(CODEC_STATS_JS).await.unwrap();
    assert!(stats["received"].as_u64().unwrap_or(0) > 0, "{stats}");
    let codecs = stats["codecs"].to_string().to_lowercase();
    assert!(
        codecs.contains("outbound-rtp audio/opus") && codecs.contains("inbound-rtp audio/opus"),
        "{stats}"
    );
    let h = m.health().await;
    assert_eq!((h.dtls_failed, h.srtp_dropped), (0, 0), "{h:?}");
}
