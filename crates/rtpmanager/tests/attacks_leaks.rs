//! Sessions nobody ends, event streams nobody reads, recordings written
//! off the packet path: the manager cleans up after failed parts.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use switchboard_media::g711::Codec;
use switchboard_rtpmanager::Engine;
use switchboard_rtpmanager_api::v1::{self as pb, session_event};
use tonic::Code;

/// Polls until the session is gone; how long that took.
async fn gone_within(m: &mut Manager, session: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        match m.info(session).await {
            Err(e) if e.code() == Code::NotFound => return t0.elapsed(),
            Err(e) => panic!("{e}"),
            Ok(_) => {}
        }
        assert!(t0.elapsed() < limit, "session {session} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_session_nobody_ends_is_ended_after_twice_the_rtp_timeout() {
    // two port pairs only, RTP_TIMEOUT 1 s
    let mut m = manager_with(&["127.0.0.1"], (42400, 42403), Duration::from_secs(1)).await;
    let t0 = Instant::now();
    let phone = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "caller", Some(phone.offer(&[(0, "PCMU")], None))).await;
    let b = create(&mut m, "callee", None).await;
    let e = m
        .client
        .create_session(pb::CreateSessionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    // signaling watches A (it is alive: a call still ringing, say)
    let mut events = m
        .client
        .watch_events(pb::WatchEventsRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let ev = tokio::time::timeout(Duration::from_secs(3), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev.event, Some(session_event::Event::RtpTimeout(_))),
        "{ev:?}"
    );
    // nobody watches B: it is ended after 2 s of silence; A is left to
    // the signaling that watches it
    gone_within(&mut m, &b.session_id, Duration::from_secs(4)).await;
    tokio::time::sleep(Duration::from_millis(3200).saturating_sub(t0.elapsed())).await;
    assert!(m.info(&a.session_id).await.is_ok(), "watched A stays");
    // signaling crashes: its stream goes, and A is ended too
    drop(events);
    gone_within(&mut m, &a.session_id, Duration::from_secs(4)).await;
    let h = m.health().await;
    assert_eq!(h.sessions_expired, 2, "{h:?}");
    assert_eq!(h.sessions, 0);
    // the ports are free again: both pairs can be taken
    let mut created = 0;
    for _ in 0..50 {
        if m.client
            .create_session(pb::CreateSessionRequest::default())
            .await
            .is_ok()
        {
            created += 1;
            if created == 2 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(created, 2, "the ports are back in the pool");
}

#[tokio::test]
async fn the_event_stream_ends_with_an_expired_session() {
    let mut config = engine_config(&["127.0.0.1"], range(19), Duration::from_secs(1));
    config.rtp_hold_timeout = Duration::from_secs(2);
    let mut m = start(config).await;
    let a = create(&mut m, "caller", None).await;
    let mut events = m
        .client
        .watch_events(pb::WatchEventsRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // watched, it lives until RTP_HOLD_TIMEOUT; then the stream ends
    let end = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match events.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the event stream ends with the session");
    assert!(matches!(end, Ok(None)), "{end:?}");
    assert_eq!(
        m.info(&a.session_id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(m.health().await.sessions_expired, 1);
}

#[tokio::test]
async fn a_held_session_lives_until_the_hold_timeout() {
    let mut config = engine_config(&["127.0.0.1"], range(15), Duration::from_secs(1));
    config.rtp_hold_timeout = Duration::from_secs(5);
    let mut m = start(config).await;
    let held_phone = Phone::on("127.0.0.1").await;
    let talking_phone = Phone::on("127.0.0.1").await;
    let held = create(&mut m, "held", Some(held_phone.offer(&[(0, "PCMU")], None))).await;
    let silent = create(
        &mut m,
        "silent",
        Some(talking_phone.offer(&[(0, "PCMU")], None)),
    )
    .await;
    // the phone puts the call on hold: it will send nothing
    m.client
        .update_session(pb::UpdateSessionRequest {
            session_id: held.session_id.clone(),
            remote_sdp: held_phone
                .offer(&[(0, "PCMU")], None)
                .replace("a=sendrecv", "a=inactive"),
            is_offer: true,
        })
        .await
        .unwrap();
    let t0 = Instant::now();
    // the silent sendrecv one goes after 2 s; the held one stays
    gone_within(&mut m, &silent.session_id, Duration::from_secs(4)).await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed())).await;
    assert!(
        m.info(&held.session_id).await.is_ok(),
        "a held call outlives 2×RTP_TIMEOUT"
    );
    let t = gone_within(&mut m, &held.session_id, Duration::from_secs(5)).await;
    let total = t0.elapsed();
    assert!(
        total >= Duration::from_secs(5),
        "ended after {total:?} ({t:?} of polling), before RTP_HOLD_TIMEOUT"
    );
    assert_eq!(m.health().await.sessions_expired, 2);
}

#[tokio::test]
async fn event_streams_are_bounded_per_session() {
    let mut m = manager(16).await;
    let phone = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "caller", Some(phone.offer(&[(0, "PCMU")], None))).await;
    let watch = |m: &mut Manager| {
        let mut c = m.client.clone();
        let id = a.session_id.clone();
        async move {
            c.watch_events(pb::WatchEventsRequest { session_id: id })
                .await
                .map(|r| r.into_inner())
        }
    };
    let mut streams = Vec::new();
    for _ in 0..switchboard_rtpmanager::engine::MAX_WATCHERS {
        streams.push(watch(&mut m).await.unwrap());
    }
    let e = watch(&mut m).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    // a reader that goes away frees its place
    streams.pop();
    let mut again = None;
    for _ in 0..50 {
        match watch(&mut m).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(again.is_some(), "a closed stream's place is taken again");
}

#[tokio::test]
async fn a_reader_that_is_behind_loses_events_not_memory() {
    // the engine itself: its per-session queue, no gRPC buffering between
    let config = engine_config(&["127.0.0.1"], range(17), Duration::from_secs(60));
    let engine = Engine::new(config).unwrap();
    let c = engine
        .create_session("call", "a", None, None, Default::default(), false)
        .await
        .unwrap();
    let mut rx = engine.watch(&c.session_id).unwrap();
    // 100 playbacks started and stopped: 200 events, nobody reading
    for _ in 0..100 {
        let (_, mut pb) = engine
            .play(&c.session_id, &["demo".to_string()], 0)
            .await
            .unwrap();
        engine.stop_playback(&c.session_id).unwrap();
        while pb.recv().await.is_some() {}
    }
    let queued = std::iter::from_fn(|| rx.try_recv().ok()).count();
    assert_eq!(queued, switchboard_rtpmanager::engine::WATCH_QUEUE);
    assert_eq!(engine.stats().events_dropped, 200 - queued as u64);
    // and once read, events flow again
    let (_, mut pb) = engine
        .play(&c.session_id, &["demo".to_string()], 0)
        .await
        .unwrap();
    assert!(pb.recv().await.is_some());
    assert!(rx.recv().await.is_some());
    engine.shutdown();
}

#[tokio::test]
async fn a_stereo_recording_holds_both_sides_sample_exact() {
    let mut m = manager(18).await;
    let pa = Phone::on("127.0.0.1").await;
    let pb_ = Phone::on("127.0.0.1").await;
    let a = create(&mut m, "caller", Some(pa.offer(&[(0, "PCMU")], None))).await;
    let b = create(&mut m, "callee", Some(pb_.offer(&[(8, "PCMA")], None))).await;
    m.bridge(&a.session_id, &b.session_id).await;
    m.client
        .record(pb::RecordRequest {
            session_id: a.session_id.clone(),
            file: "both".into(),
            both_sides: true,
        })
        .await
        .unwrap();
    let left = tone(4000, 500.0, 5000.0);
    let right = tone(4000, 900.0, 3000.0);
    for (i, (l, r)) in left.chunks(160).zip(right.chunks(160)).enumerate() {
        let (mut pl, mut pr) = (Vec::new(), Vec::new());
        Codec::Pcmu.encode(l, &mut pl);
        Codec::Pcma.encode(r, &mut pr);
        let seq = i as u16;
        pa.send(
            rtp_addr(&a.local_sdp),
            0,
            seq,
            160 * u32::from(seq),
            i == 0,
            &pl,
        )
        .await;
        pb_.send(
            rtp_addr(&b.local_sdp),
            8,
            seq,
            160 * u32::from(seq),
            i == 0,
            &pr,
        )
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
    assert_eq!(done.samples, 4000);
    let (channels, samples) = read_wav(&done.path);
    assert_eq!(channels, 2, "stereo");
    let (l, r): (Vec<i16>, Vec<i16>) = samples.chunks(2).map(|f| (f[0], f[1])).unzip();
    assert_eq!(l, through(Codec::Pcmu, &left), "left: the caller");
    assert_eq!(r, through(Codec::Pcma, &right), "right: the callee");
    assert_eq!(m.health().await.recording_dropped, 0);
    let _ = std::fs::remove_dir_all(&m.record_dir);
}

fn through(codec: Codec, samples: &[i16]) -> Vec<i16> {
    samples
        .iter()
        .map(|s| codec.decode_sample(codec.encode_sample(*s)))
        .collect()
}

/// Channels and interleaved samples of a WAV file.
fn read_wav(path: &str) -> (u16, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    assert_eq!(r.spec().sample_rate, 8000);
    let samples = r.samples::<i16>().map(Result::unwrap).collect();
    (r.spec().channels, samples)
}
