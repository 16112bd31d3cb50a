//! The gRPC contract over a loopback channel, with real UDP "phones"
//! sending and receiving RTP on 127.0.0.1 / ::1.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use switchboard_media::dtmf::DtmfGenerator;
use switchboard_media::g711::Codec;
use switchboard_media::wav;
use switchboard_rtpmanager_api::v1::{self as pb, playback_event, session_event};
use switchboard_sip::sdp;
use tokio::net::UdpSocket;
use tonic::Code;

#[tokio::test]
async fn sessions_answer_offers_and_make_offers() {
    let mut m = manager(0).await;
    let phone = Phone::on("127.0.0.1").await;
    // a PCMA-only phone with telephone-event at 96
    let a = create(
        &mut m,
        "caller",
        Some(phone.offer(&[(8, "PCMA")], Some(96))),
    )
    .await;
    let ans = sdp::parse(a.local_sdp.as_bytes()).unwrap();
    assert_eq!(ans.connection, Some("127.0.0.1".parse().unwrap()));
    assert!((41000..41100).contains(&ans.audio_port));
    assert_eq!(ans.audio_port % 2, 0, "RTP on an even port");
    assert_eq!(ans.codecs.len(), 1);
    assert_eq!(ans.codecs[0].name, "PCMA");
    assert_eq!(ans.telephone_event, Some(96));
    assert_eq!(a.chosen.as_ref().unwrap().name, "PCMA");
    assert_eq!(a.telephone_event_pt, 96);
    assert_eq!(a.offered.len(), 1);
    assert_eq!(a.local_address, format!("127.0.0.1:{}", ans.audio_port));

    // without an offer: ours lists both codecs and telephone-event
    let b = create(&mut m, "callee", None).await;
    let off = sdp::parse(b.local_sdp.as_bytes()).unwrap();
    let names: Vec<&str> = off.codecs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["PCMU", "PCMA"]);
    assert_eq!(off.telephone_event, Some(101));
    assert!(b.chosen.is_none());
    assert_ne!(off.audio_port, ans.audio_port);

    // the callee answers PCMU
    let u = m
        .client
        .update_session(pb::UpdateSessionRequest {
            session_id: b.session_id.clone(),
            remote_sdp: phone.offer(&[(0, "PCMU")], Some(101)),
            is_offer: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.chosen.unwrap().name, "PCMU");
    assert!(u.local_sdp.is_empty(), "no SDP back for an answer");

    // a new offer (hold) gets an answer with the reverse direction
    let hold = phone
        .offer(&[(0, "PCMU")], None)
        .replace("a=sendrecv", "a=sendonly");
    let u = m
        .client
        .update_session(pb::UpdateSessionRequest {
            session_id: b.session_id.clone(),
            remote_sdp: hold,
            is_offer: true,
        })
        .await
        .unwrap()
        .into_inner();
    let d = sdp::parse(u.local_sdp.as_bytes()).unwrap();
    assert_eq!(d.direction, sdp::Direction::RecvOnly);
    assert_eq!(d.origin_version, 2, "o= version goes up");

    let o = m
        .client
        .create_offer(pb::CreateOfferRequest {
            session_id: a.session_id.clone(),
            direction: pb::Direction::Sendonly as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let d = sdp::parse(o.local_sdp.as_bytes()).unwrap();
    assert_eq!(d.direction, sdp::Direction::SendOnly);
    assert_eq!(d.audio_port, ans.audio_port, "same port in a re-offer");

    let list = m
        .client
        .list_sessions(pb::ListSessionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 2);
    assert!(list.sessions.iter().all(|s| s.call_id == "call-1"));
}

#[tokio::test]
async fn bad_requests_get_clear_status_codes() {
    let mut m = manager(1).await;
    let cases: Vec<(pb::CreateSessionRequest, Code, &str)> = vec![
        (
            pb::CreateSessionRequest {
                remote_sdp: "not sdp at all".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "remote_sdp",
        ),
        (
            pb::CreateSessionRequest {
                remote_sdp: "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 18\r\n".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "no common codec",
        ),
        (
            pb::CreateSessionRequest {
                address_family: "IPX".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "address_family",
        ),
        (
            pb::CreateSessionRequest {
                address_family: "IP6".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "no IPv6 address",
        ),
    ];
    for (req, code, text) in cases {
        let e = m.client.create_session(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{req:?}: {e}");
        assert!(e.message().contains(text), "{req:?}: {}", e.message());
    }
    let e = m
        .client
        .destroy_session(pb::DestroySessionRequest {
            session_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = m
        .client
        .bridge(pb::BridgeRequest {
            session_a: "nope".into(),
            session_b: "".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("session_b"), "{}", e.message());
    let s = create(&mut m, "a", None).await;
    let e = m
        .client
        .bridge(pb::BridgeRequest {
            session_a: s.session_id.clone(),
            session_b: s.session_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = m
        .client
        .play(pb::PlayRequest {
            session_id: s.session_id.clone(),
            files: vec!["../etc/passwd".into()],
            repeat: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("files[0]"), "{}", e.message());
    let e = m
        .client
        .play(pb::PlayRequest {
            session_id: s.session_id.clone(),
            files: vec!["no-such-prompt".into()],
            repeat: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = m
        .client
        .record(pb::RecordRequest {
            session_id: s.session_id.clone(),
            file: "x".into(),
            both_sides: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = m
        .client
        .update_session(pb::UpdateSessionRequest {
            session_id: s.session_id.clone(),
            remote_sdp: "garbage".into(),
            is_offer: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn ports_run_out_cleanly_and_come_back() {
    // two pairs only
    let mut m = manager_with(&["127.0.0.1"], (41200, 41203), Duration::from_secs(60)).await;
    let h = m
        .client
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.free_port_pairs, 2);
    let a = create(&mut m, "a", None).await;
    let _b = create(&mut m, "b", None).await;
    let e = m
        .client
        .create_session(pb::CreateSessionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    for _ in 0..20 {
        m.client
            .destroy_session(pb::DestroySessionRequest {
                session_id: a.session_id.clone(),
            })
            .await
            .ok();
        // the pair is free once the session's tasks have let go of it
        let mut created = None;
        for _ in 0..50 {
            match m
                .client
                .create_session(pb::CreateSessionRequest::default())
                .await
            {
                Ok(r) => {
                    created = Some(r.into_inner());
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let c = created.expect("the freed pair is handed out again");
        m.client
            .destroy_session(pb::DestroySessionRequest {
                session_id: c.session_id,
            })
            .await
            .unwrap();
    }
    // draining refuses new sessions
    let h = m
        .client
        .set_draining(pb::SetDrainingRequest { draining: true })
        .await
        .unwrap()
        .into_inner();
    assert!(h.draining);
    let e = m
        .client
        .create_session(pb::CreateSessionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}

#[tokio::test]
async fn a_bridge_transcodes_and_keeps_one_stream_per_leg() {
    let mut m = manager(3).await;
    let pa = Phone::on("127.0.0.1").await; // PCMU
    let pb_ = Phone::on("127.0.0.1").await; // PCMA
    let a = create(&mut m, "caller", Some(pa.offer(&[(0, "PCMU")], Some(101)))).await;
    let b = create(&mut m, "callee", None).await;
    m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: b.session_id.clone(),
            remote_sdp: pb_.offer(&[(8, "PCMA")], Some(101)),
            is_offer: false,
        })
        .await
        .unwrap();
    m.client
        .bridge(pb::BridgeRequest {
            session_a: a.session_id.clone(),
            session_b: b.session_id.clone(),
        })
        .await
        .unwrap();
    let to_a = rtp_addr(&a.local_sdp);
    let to_b = rtp_addr(&b.local_sdp);
    let mut events = m
        .client
        .watch_events(pb::WatchEventsRequest {
            session_id: b.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    let voice = tone(160 * 10, 440.0, 8000.0);
    let mut first: Option<Rtp> = None;
    for (i, frame) in voice.chunks(160).enumerate() {
        let mut payload = Vec::new();
        Codec::Pcmu.encode(frame, &mut payload);
        pa.send(
            to_a,
            0,
            100 + i as u16,
            8000 + 160 * i as u32,
            i == 0,
            &payload,
        )
        .await;
        let got = pb_.recv(Duration::from_secs(2)).await.expect("B hears A");
        assert_eq!(got.pt, 8, "PCMU transcoded to the callee's PCMA");
        assert_eq!(got.from, to_b, "sent from the port B's SDP names");
        let mut decoded = Vec::new();
        Codec::Pcma.decode(&got.payload, &mut decoded);
        let mut via_ulaw = Vec::new();
        Codec::Pcmu.decode(&payload, &mut via_ulaw);
        // exactly µ-law decoded, then A-law quantised
        let expect: Vec<i16> = via_ulaw
            .iter()
            .map(|s| Codec::Pcma.decode_sample(Codec::Pcma.encode_sample(*s)))
            .collect();
        assert_eq!(decoded, expect);
        match &first {
            None => {
                assert!(got.marker, "first packet of the stream carries the marker");
                first = Some(got);
            }
            Some(f) => {
                assert_eq!(got.ssrc, f.ssrc);
                assert_eq!(got.seq, f.seq.wrapping_add(i as u16));
                assert_eq!(got.ts, f.ts.wrapping_add(160 * i as u32));
            }
        }
    }
    // and back: B's PCMA reaches A as PCMU
    let mut payload = Vec::new();
    Codec::Pcma.encode(&tone(160, 1000.0, 4000.0), &mut payload);
    pb_.send(to_b, 8, 7, 99, true, &payload).await;
    let got = pa.recv(Duration::from_secs(2)).await.expect("A hears B");
    assert_eq!(got.pt, 0);
    assert_eq!(got.from, to_a);

    // DTMF from B: detected once (events) and relayed to A as telephone-event
    let packets = DtmfGenerator::packets('7', 100, 10).unwrap();
    for (k, (p, marker)) in packets.iter().enumerate() {
        pb_.send(to_b, 101, 8 + k as u16, 1000, *marker, p).await;
    }
    let ev = tokio::time::timeout(Duration::from_secs(2), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev.event {
        Some(session_event::Event::Dtmf(d)) => assert_eq!(d.digit, "7"),
        other => panic!("{other:?}"),
    }
    let mut relayed = 0;
    while let Some(p) = pa.recv(Duration::from_millis(300)).await {
        assert_eq!(p.pt, 101);
        relayed += 1;
    }
    assert_eq!(relayed, packets.len(), "every event packet relayed");

    let info = m
        .client
        .get_session(pb::GetSessionRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.packets_received, 10);
    assert_eq!(info.packets_lost, 0);
    assert_eq!(info.bridged_to, b.session_id);
    assert!(info.mos > 4.0, "{}", info.mos);
}

#[tokio::test]
async fn playback_sends_the_wav_paced_and_reports_events() {
    let mut m = manager(5).await;
    let phone = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "caller", Some(phone.offer(&[(0, "PCMU")], None))).await;
    let mut stream = m
        .client
        .play(pb::PlayRequest {
            session_id: a.session_id.clone(),
            files: vec!["demo".into()],
            repeat: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let started = stream.message().await.unwrap().unwrap();
    assert_eq!(started.kind, playback_event::Kind::Started as i32);
    let want = wav::load_8k_mono(&audio_dir().join("demo.wav")).unwrap();
    // the first second: 50 packets, each the WAV's next 160 samples
    let t0 = std::time::Instant::now();
    let mut got = Vec::new();
    let mut last_seq = None;
    for _ in 0..50 {
        let p = phone
            .recv(Duration::from_secs(2))
            .await
            .expect("playback RTP");
        assert_eq!(p.pt, 0);
        assert_eq!(p.payload.len(), 160);
        if let Some(s) = last_seq {
            assert_eq!(p.seq, u16::wrapping_add(s, 1));
        }
        last_seq = Some(p.seq);
        Codec::Pcmu.decode(&p.payload, &mut got);
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1500),
        "50 packets paced at 20 ms took {elapsed:?}"
    );
    let expect: Vec<i16> = want[..8000]
        .iter()
        .map(|s| Codec::Pcmu.decode_sample(Codec::Pcmu.encode_sample(*s)))
        .collect();
    assert_eq!(got, expect, "decoded samples are the WAV's");

    let stopped = m
        .client
        .stop_playback(pb::StopPlaybackRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stopped.stopped);
    let end = stream.message().await.unwrap().unwrap();
    assert_eq!(end.kind, playback_event::Kind::Interrupted as i32);
    assert!(stream.message().await.unwrap().is_none(), "stream closes");
}

#[tokio::test]
async fn recording_holds_the_far_ends_audio() {
    let mut m = manager(6).await;
    let phone = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "caller", Some(phone.offer(&[(8, "PCMA")], None))).await;
    let rec = m
        .client
        .record(pb::RecordRequest {
            session_id: a.session_id.clone(),
            file: "calls/rec-test".into(),
            both_sides: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rec.path.ends_with("calls/rec-test.wav"), "{}", rec.path);
    let voice = tone(8000, 700.0, 6000.0);
    let to = rtp_addr(&a.local_sdp);
    for (i, frame) in voice.chunks(160).enumerate() {
        let mut payload = Vec::new();
        Codec::Pcma.encode(frame, &mut payload);
        phone
            .send(to, 8, i as u16, 160 * i as u32, i == 0, &payload)
            .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done = m
        .client
        .stop_recording(pb::StopRecordingRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.samples, 8000);
    let samples = wav::load_8k_mono(std::path::Path::new(&done.path)).unwrap();
    let expect: Vec<i16> = voice
        .iter()
        .map(|s| Codec::Pcma.decode_sample(Codec::Pcma.encode_sample(*s)))
        .collect();
    assert_eq!(samples, expect);
    let _ = std::fs::remove_dir_all(&m.record_dir);
}

#[tokio::test]
async fn silence_is_reported_as_an_rtp_timeout() {
    let mut m = manager_with(&["127.0.0.1"], range(7), Duration::from_secs(1)).await;
    let phone = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "caller", Some(phone.offer(&[(0, "PCMU")], None))).await;
    let mut events = m
        .client
        .watch_events(pb::WatchEventsRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let ev = tokio::time::timeout(Duration::from_secs(4), events.message())
        .await
        .expect("a timeout event within 4 s")
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            ev.event,
            Some(session_event::Event::RtpTimeout(pb::RtpTimeout {
                seconds: 1
            }))
        ),
        "{ev:?}"
    );
    // destroying the session ends its event stream
    m.client
        .destroy_session(pb::DestroySessionRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap();
    // (a further timeout may have been reported meanwhile: silence goes on)
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match events.message().await {
                Ok(Some(pb::SessionEvent {
                    event: Some(session_event::Event::RtpTimeout(_)),
                    ..
                })) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("stream ends");
    assert!(matches!(ended, Ok(None)), "{ended:?}");
}

#[tokio::test]
async fn an_ipv6_phone_talks_to_an_ipv4_phone() {
    let mut m = manager_with(&["127.0.0.1", "::1"], range(8), Duration::from_secs(60)).await;
    let p6 = Phone::on("::1").await;
    let p4 = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "caller", Some(p6.offer(&[(0, "PCMU")], None))).await;
    assert!(a.local_sdp.contains("c=IN IP6 ::1"), "{}", a.local_sdp);
    let b = m
        .client
        .create_session(pb::CreateSessionRequest {
            call_id: "c".into(),
            leg: "callee".into(),
            remote_sdp: String::new(),
            address_family: "IP4".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        b.local_sdp.contains("c=IN IP4 127.0.0.1"),
        "{}",
        b.local_sdp
    );
    m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: b.session_id.clone(),
            remote_sdp: p4.offer(&[(0, "PCMU")], None),
            is_offer: false,
        })
        .await
        .unwrap();
    m.client
        .bridge(pb::BridgeRequest {
            session_a: a.session_id.clone(),
            session_b: b.session_id.clone(),
        })
        .await
        .unwrap();
    p6.send(rtp_addr(&a.local_sdp), 0, 1, 1, true, &[1; 160])
        .await;
    let got = p4.recv(Duration::from_secs(2)).await.expect("v6 → v4");
    assert_eq!(got.payload, vec![1; 160]);
    p4.send(rtp_addr(&b.local_sdp), 0, 1, 1, true, &[2; 160])
        .await;
    let got = p6.recv(Duration::from_secs(2)).await.expect("v4 → v6");
    assert_eq!(got.payload, vec![2; 160]);
}

#[tokio::test]
async fn each_leg_gets_rtcp_sender_reports_about_its_stream() {
    use switchboard_media::rtcp;
    let mut m = manager(9).await;
    let phone = Phone::on("127.0.0.1").await;
    let rtcp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = create(&mut m, "caller", Some(phone.offer(&[(0, "PCMU")], None))).await;
    m.client
        .echo(pb::EchoRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap();
    let to = rtp_addr(&a.local_sdp);
    for i in 0..20u16 {
        phone
            .send(to, 0, 500 + i, 160 * u32::from(i), i == 0, &[0xff; 160])
            .await;
    }
    // the phone's own SR, from its RTCP socket: latches our reports there
    let phone_sr = rtcp::compound_report(
        phone.ssrc,
        Some(rtcp::SenderInfo {
            ntp: 0x0102_0304_0506_0708,
            rtp_timestamp: 3200,
            packets: 20,
            octets: 3200,
        }),
        None,
        "phone",
    );
    let rtcp_to = SocketAddr::new(to.ip(), to.port() + 1);
    rtcp_sock.send_to(&phone_sr, rtcp_to).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), rtcp_sock.recv_from(&mut buf))
        .await
        .expect("an RTCP report within 3 s")
        .unwrap();
    let r = &buf[..n];
    assert_eq!(from, rtcp_to, "sent from the session's RTCP port");
    assert!(rtcp::is_valid_compound(r), "{r:?}");
    assert_eq!(
        r[1],
        rtcp::PT_SR,
        "we echoed RTP to the leg: a sender report"
    );
    assert_eq!(r[0] & 0x1f, 1, "one report block");
    // the block reports the phone's stream
    assert_eq!(&r[28..32], &phone.ssrc.to_be_bytes());
    assert_eq!(
        u32::from_be_bytes([r[36], r[37], r[38], r[39]]) & 0xffff,
        519
    );
    assert_eq!(
        &r[44..48],
        &0x0304_0506u32.to_be_bytes(),
        "LSR: middle of the phone's NTP"
    );
    // our packet count is the echoed packets
    assert_eq!(u32::from_be_bytes([r[20], r[21], r[22], r[23]]), 20);
}
