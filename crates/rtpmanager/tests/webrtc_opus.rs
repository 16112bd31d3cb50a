//! Opus on a browser's leg, transcoded to and from a G.711 desk phone: the
//! webrtc-rs browser of tests/common offers Opus only, sends a 400 Hz tone
//! encoded with libopus at 48 kHz (as a browser does) and the bridged PCMU
//! phone receives it decoded (frequency checked with Goertzel); the phone's
//! 1 kHz tone reaches the browser as Opus at the 48 kHz RTP clock. When a
//! browser offers Opus and G.711, G.711 is chosen (no transcoding towards
//! a desk phone). A prompt played to an Opus leg arrives as Opus.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::webrtc::{Answer, Browser};
use common::*;
use switchboard_media::g711::Codec;

const WAIT: Duration = Duration::from_secs(2);

/// The browser's offer with Opus as its only codec (and telephone-event).
fn opus_only(b: &Browser) -> String {
    b.offer().replace(
        " UDP/TLS/RTP/SAVPF 111 0 8 110 126",
        " UDP/TLS/RTP/SAVPF 111 110 126",
    )
}

#[tokio::test]
async fn opus_from_a_browser_is_heard_as_pcmu_and_back() {
    let mut m = manager(50).await;
    let mut b = Browser::new().await;
    let a = create(&mut m, "browser", Some(opus_only(&b))).await;
    let chosen = a.chosen.clone().unwrap();
    assert_eq!(
        (chosen.payload_type, chosen.name.as_str(), chosen.clock_rate),
        (111, "opus", 48000)
    );
    assert!(
        a.local_sdp.contains("a=rtpmap:111 opus/48000/2\r\n"),
        "{}",
        a.local_sdp
    );
    let answer = Answer::parse(&a.local_sdp);
    let phone = Phone::on("127.0.0.1").await;
    let p = create(
        &mut m,
        "desk-phone",
        Some(phone.offer(&[(0, "PCMU")], None)),
    )
    .await;
    m.bridge(&a.session_id, &p.session_id).await;
    let to_phone_leg = rtp_addr(&p.local_sdp);
    b.ice(&answer).await;
    let _dtls = b.dtls(&answer).await.expect("DTLS handshake");
    tokio::time::sleep(Duration::from_millis(50)).await;

    // browser -> phone: 400 Hz, Opus at 48 kHz, 50 packets (1 s)
    let mut enc = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = vec![0u8; 1500];
    for seq in 0..50u16 {
        let pcm: Vec<i16> = (0..960)
            .map(|i| {
                let t = (usize::from(seq) * 960 + i) as f64 / 48000.0;
                ((t * 400.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let n = enc.encode(&pcm, &mut packet).unwrap();
        b.send_opus(answer.candidate, seq, &packet[..n]).await;
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    let got = phone.recv_all(Duration::from_millis(400)).await;
    assert_eq!(got.len(), 50, "every Opus packet relayed");
    let mut samples = Vec::new();
    for (k, r) in got.iter().enumerate() {
        assert_eq!(r.pt, 0);
        assert_eq!(r.payload.len(), 160, "20 ms of PCMU");
        if k > 0 {
            // the 48 kHz clock scaled to 8 kHz
            assert_eq!(r.ts.wrapping_sub(got[k - 1].ts), 160);
        }
        Codec::Pcmu.decode(&r.payload, &mut samples);
    }
    // past the codec's start-up
    let tail = &samples[1600..];
    let share = tone_share(tail, 400.0, 8000.0);
    assert!(share > 0.6, "400 Hz share {share}");
    assert!(tone_share(tail, 1000.0, 8000.0) < 0.05);

    // phone -> browser: 1 kHz PCMU, received as Opus at 48 kHz
    let mut dec = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let mut heard = Vec::new();
    let mut last_ts = None;
    for seq in 0..50u16 {
        let pcm: Vec<i16> = (0..160)
            .map(|i| {
                let t = (usize::from(seq) * 160 + i) as f64 / 8000.0;
                ((t * 1000.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let mut pcmu = Vec::new();
        Codec::Pcmu.encode(&pcm, &mut pcmu);
        phone
            .send(to_phone_leg, 0, seq, u32::from(seq) * 160, seq == 0, &pcmu)
            .await;
        let r = b.recv_srtp(WAIT).await.expect("Opus SRTP that decrypts");
        assert_eq!(r.pt, 111);
        if let Some(last) = last_ts {
            assert_eq!(r.ts.wrapping_sub(last), 960, "48 kHz clock");
        }
        last_ts = Some(r.ts);
        let mut out = vec![0i16; 5760];
        let n = dec.decode(&r.payload, &mut out, false).unwrap();
        assert_eq!(n, 960, "20 ms frames");
        heard.extend_from_slice(&out[..n]);
    }
    let tail = &heard[9600..];
    let share = tone_share(tail, 1000.0, 48000.0);
    assert!(share > 0.6, "1 kHz share {share}");
    assert!(tone_share(tail, 400.0, 48000.0) < 0.05);
    let h = m.health().await;
    assert_eq!((h.dtls_failed, h.srtp_dropped), (0, 0), "{h:?}");
}

#[tokio::test]
async fn g711_is_chosen_over_opus_and_junk_opus_is_dropped() {
    let mut m = manager(51).await;
    let b = Browser::new().await;
    // Chromium's order: Opus first, then PCMU, PCMA
    let a = create(&mut m, "browser", Some(b.offer())).await;
    assert_eq!(a.chosen.unwrap().name, "PCMU");
    // an Opus-only leg bridged to a phone: undecodable Opus relays nothing
    let mut b = Browser::new().await;
    let a = create(&mut m, "browser", Some(opus_only(&b))).await;
    let answer = Answer::parse(&a.local_sdp);
    let phone = Phone::on("127.0.0.1").await;
    let p = create(
        &mut m,
        "desk-phone",
        Some(phone.offer(&[(8, "PCMA")], None)),
    )
    .await;
    m.bridge(&a.session_id, &p.session_id).await;
    b.ice(&answer).await;
    let _dtls = b.dtls(&answer).await.expect("DTLS handshake");
    tokio::time::sleep(Duration::from_millis(50)).await;
    for seq in 0..5u16 {
        // TOC code 3 with no frames, then an empty payload
        let junk: &[u8] = if seq % 2 == 0 { &[0x03, 0x00] } else { &[] };
        b.send_opus(answer.candidate, seq, junk).await;
    }
    assert!(phone.recv(Duration::from_millis(300)).await.is_none());
    // a good packet after them is heard
    let mut enc = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = vec![0u8; 1500];
    let n = enc.encode(&[0i16; 960], &mut packet).unwrap();
    b.send_opus(answer.candidate, 5, &packet[..n]).await;
    let r = phone.recv(WAIT).await.expect("relayed");
    assert_eq!((r.pt, r.payload.len()), (8, 160));
}

#[tokio::test]
async fn a_prompt_reaches_an_opus_leg_as_opus() {
    let mut m = manager(53).await;
    let mut b = Browser::new().await;
    let a = create(&mut m, "browser", Some(opus_only(&b))).await;
    let answer = Answer::parse(&a.local_sdp);
    b.ice(&answer).await;
    let _dtls = b.dtls(&answer).await.expect("DTLS handshake");
    let _events = m
        .client
        .play(switchboard_rtpmanager_api::v1::PlayRequest {
            session_id: a.session_id.clone(),
            files: vec!["demo".into()],
            repeat: 0,
        })
        .await
        .unwrap();
    let mut dec = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let mut last_ts = None;
    let mut energy = 0.0f64;
    for _ in 0..25 {
        let r = b.recv_srtp(WAIT).await.expect("the prompt, as Opus");
        assert_eq!(r.pt, 111);
        if let Some(last) = last_ts {
            assert_eq!(r.ts.wrapping_sub(last), 960);
        }
        last_ts = Some(r.ts);
        let mut out = vec![0i16; 5760];
        let n = dec.decode(&r.payload, &mut out, false).unwrap();
        assert_eq!(n, 960);
        energy += out[..n].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
    }
    assert!(energy > 0.0, "the prompt is not silence");
}
