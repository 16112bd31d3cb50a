//! The call agent over real sockets against `switchboard-signaling` on
//! loopback (in-process, its embedded RTP manager anchoring the media):
//! it registers, calls a desk phone (signaling's test phone over UDP, its
//! RTP a socket of the test) that answers and plays a tone, waits for the
//! silence after it, speaks its text (espeak-ng) into the call, records the
//! tone, transcribes the recording, and reports it; busy, no answer and a
//! wrong password give their outcomes; SRTP mandatory works through the
//! platform and fails clearly against a phone without SRTP; the binary
//! prints the report as its last line and exits with the outcome's code.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::phone::{self, SipPhone};
use common::*;
use switchboard_call::report::Outcome;
use switchboard_sip::message::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_waits_for_silence_speaks_records_and_transcribes() {
    let n = node("answered").await;
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let dir = temp_dir("answered-rec");
    let rec = dir.join("answer.wav");
    let s = settings(&agent_of(
        &n,
        "1002",
        &[
            ("text", "The backup failed. Please check the server.".into()),
            ("wait-for-silence", "1".into()),
            ("post-delay", "0.5".into()),
            ("record", rec.display().to_string()),
            ("transcribe", "true".into()),
        ],
    ));
    let agent = tokio::spawn(async move { switchboard_call::run(&s).await });

    let invite = desk.request(Method::Invite).await;
    let offer = invite.body.clone();
    desk.answer(&invite, 180, Some("desk"), None).await;
    let mut media = DeskMedia::bind().await;
    let answer = phone::sdp(LO, media.port(), "sendrecv");
    desk.answer(&invite, 200, Some("desk"), Some(&answer)).await;
    let answered = Instant::now();
    // the phone plays a tone for 1 s, then speaks, then is quiet
    let mut script = tone(1.0);
    script.extend(speech(
        "Hello, this is the night shift. I will check it now.",
        &dir,
    ));
    // when the phone's last loud 20 ms frame ends (espeak ends in silence)
    let talk = script
        .chunks(160)
        .rposition(|f| switchboard_call::audio::rms(f) >= switchboard_call::audio::SILENCE_RMS)
        .map_or(0.0, |i| (i + 1) as f64 * 0.02);
    media.start(media_addr(&offer), script);
    let bye = desk
        .request_within(Method::Bye, Duration::from_secs(30))
        .await;
    desk.answer(&bye, 200, None, None).await;
    let report = agent.await.unwrap();
    eprintln!("report: {}", report.to_line());

    assert_eq!(report.outcome, Outcome::Answered, "{}", report.to_line());
    assert_eq!(
        (report.exit_code, report.sip_code, report.answered),
        (0, Some(200), true)
    );
    assert_eq!(report.registered, Some(true));
    assert_eq!(report.hangup_by, Some("us"));
    assert_eq!(report.silence_detected, Some(true));
    assert_eq!(report.played.len(), 1);
    assert_eq!(report.played[0].kind, "text");
    assert!(report.played[0].seconds > 1.5, "{:?}", report.played);
    // the speech reached the phone, and only after its tone and 1 s of silence
    let (first, rms) = media.first_loud().expect("the phone heard the agent");
    let _ = answered;
    assert!(
        first > talk + 0.9,
        "the agent spoke {first:.2} s after the answer (the phone's sound ends at {talk:.2} s, then 1 s of silence)"
    );
    assert!(
        media.loud_frames() > 40,
        "{} loud frames (rms {rms:.0})",
        media.loud_frames()
    );
    // and it is the text spoken: espeak-ng's samples of it, through PCMU,
    // arrive frame for frame
    let spoken = through_pcmu(&speech("The backup failed. Please check the server.", &dir));
    let (found, want) = frames_found(&media.samples(), &spoken);
    eprintln!("the phone got {found} of {want} frames of the spoken text sample for sample");
    assert!(
        want > 50 && found * 10 >= want * 9,
        "{found} of {want} frames of the spoken text arrived sample for sample"
    );
    // the recording holds the phone's tone
    let recorded = switchboard_media::wav::load_8k_mono(&rec).unwrap();
    assert!(recorded.len() >= 8000, "{} samples", recorded.len());
    let tone = &recorded[..12_000.min(recorded.len())];
    assert!(
        power(tone, TONE_HZ) > 50.0 * power(tone, 1200.0).max(1.0),
        "the recording holds 700 Hz"
    );
    assert_eq!(report.recording.as_deref(), Some(rec.to_str().unwrap()));
    assert!(
        report.media.packets_received > 50 && report.media.packets_sent > 50,
        "{:?}",
        report.media
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("answer.wav.json")).unwrap()).unwrap();
    assert_eq!(saved["outcome"], "answered");
    // a transcript from whichever engine is there, or the report says none is
    if Path::new("/usr/bin/pocketsphinx_continuous").exists() {
        assert_eq!(
            report.transcript_engine,
            Some("pocketsphinx"),
            "{}",
            report.to_line()
        );
        assert!(
            !report.transcript.as_deref().unwrap_or("").is_empty(),
            "{}",
            report.to_line()
        );
    } else {
        assert!(
            report.errors.iter().any(|e| e.contains("speech-to-text")),
            "{:?}",
            report.errors
        );
    }
    n.running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_no_answer_and_a_wrong_password_have_their_outcomes() {
    let n = node("failures").await;
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let text = ("text", "hello".to_owned());

    let s = settings(&agent_of(&n, "1002", std::slice::from_ref(&text)));
    let agent = tokio::spawn(async move { switchboard_call::run(&s).await });
    let invite = desk.request(Method::Invite).await;
    desk.answer(&invite, 486, Some("busy"), None).await;
    let r = agent.await.unwrap();
    assert_eq!(
        (r.outcome, r.exit_code, r.sip_code),
        (Outcome::Busy, 10, Some(486)),
        "{}",
        r.to_line()
    );

    let s = settings(&agent_of(
        &n,
        "1002",
        &[text.clone(), ("timeout", "2".into())],
    ));
    let agent = tokio::spawn(async move { switchboard_call::run(&s).await });
    let invite = desk.request(Method::Invite).await;
    desk.answer(&invite, 180, Some("ring"), None).await;
    let cancel = desk.request(Method::Cancel).await;
    desk.answer(&cancel, 200, None, None).await;
    desk.answer(&invite, 487, Some("ring"), None).await;
    let r = agent.await.unwrap();
    assert_eq!(
        (r.outcome, r.exit_code),
        (Outcome::NoAnswer, 11),
        "{}",
        r.to_line()
    );
    assert!(r.ring_seconds >= 1.9, "{}", r.ring_seconds);

    let mut wrong = agent_of(&n, "1002", &[text]);
    wrong[3].1 = "not-the-password".into();
    let r = switchboard_call::run(&settings(&wrong)).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.registered),
        (Outcome::Rejected, 12, Some(false)),
        "{}",
        r.to_line()
    );
    assert!(matches!(r.sip_code, Some(401 | 403)), "{}", r.to_line());
    n.running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_mandatory_through_the_platform_and_refused_by_a_plain_phone() {
    let n = node("srtp").await;
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let s = settings(&agent_of(
        &n,
        "1002",
        &[
            ("text", "Secure hello".into()),
            ("sip-srtp", "mandatory".into()),
        ],
    ));
    let agent = tokio::spawn(async move { switchboard_call::run(&s).await });
    let invite = desk.request(Method::Invite).await;
    let offer = invite.body.clone();
    // the platform answered the agent's SRTP and offers the phone plain RTP
    assert!(String::from_utf8_lossy(&offer).contains("RTP/AVP"));
    let media = answer_with_media(&desk, &invite).await;
    take_bye(&desk).await;
    let r = agent.await.unwrap();
    assert_eq!(r.outcome, Outcome::Answered, "{}", r.to_line());
    assert!(r.media.srtp, "{:?}", r.media);
    assert!(
        media.loud_frames() > 20,
        "the phone heard the agent through SRTP: {}",
        media.loud_frames()
    );

    // a phone called directly that refuses SRTP, and one that answers plainly
    for refusal in [true, false] {
        let mut plain = SipPhone::bind(LO, n.sip).await;
        let s = settings(&[
            ("dest", "desk".into()),
            ("sip-server", plain.addr().to_string()),
            ("text", "x".into()),
            ("sip-srtp", "mandatory".into()),
        ]);
        let agent = tokio::spawn(async move { switchboard_call::run(&s).await });
        let (invite, from) = plain.request_from(Method::Invite).await;
        plain.server = from;
        assert!(String::from_utf8_lossy(&invite.body).contains("RTP/SAVP"));
        if refusal {
            plain.answer(&invite, 488, Some("p"), None).await;
        } else {
            plain
                .answer(
                    &invite,
                    200,
                    Some("p"),
                    Some(&phone::sdp(LO, 40_000, "sendrecv")),
                )
                .await;
            let bye = plain
                .request_within(Method::Bye, Duration::from_secs(5))
                .await;
            plain.answer(&bye, 200, None, None).await;
        }
        let r = agent.await.unwrap();
        assert_eq!(
            (r.outcome, r.exit_code),
            (Outcome::Rejected, 12),
            "{}",
            r.to_line()
        );
        assert!(
            r.errors.iter().any(|e| e.contains("SRTP")),
            "{:?}",
            r.errors
        );
    }
    n.running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_its_report_last_and_exits_with_the_outcome() {
    // nothing listens: no response to the REGISTER (network), quickly
    // refused settings: configuration
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-call"))
        .env_clear()
        .env("CALL_DEST", "1002")
        .env("CALL_TEXT", "x")
        .env("SIP_SERVER", "127.0.0.1")
        .env("CALL_TIMEOUT", "601")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(14));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"], "configuration");
    assert!(
        last["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("CALL_TIMEOUT"),
        "{last}"
    );

    let n = node("binary").await;
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-call"))
        .env_clear()
        .env("CALL_DEST", "1002")
        .env("CALL_TEXT", "Hello from the binary")
        .env("SIP_SERVER", n.sip.ip().to_string())
        .env("SIP_PORT", n.sip.port().to_string())
        .env("SIP_USER", "agent")
        .env("SIP_PASSWORD", "agent-secret")
        .env("SIP_TRANSPORT", "udp")
        .kill_on_drop(true)
        .output();
    let child = tokio::spawn(child);
    let invite = desk.request(Method::Invite).await;
    let media = answer_with_media(&desk, &invite).await;
    take_bye(&desk).await;
    let out = child.await.unwrap().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["outcome"].as_str(), last["sip_code"].as_u64()),
        (Some("answered"), Some(200))
    );
    assert!(media.loud_frames() > 20);
    n.running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_the_servers_ca_and_refused_without_it() {
    let dir = temp_dir("tls-files");
    let (ca, cert, key) = tls_files(&dir);
    let n = node_with("tls", |c| {
        c.tls.tls_cert = Some(cert);
        c.tls.tls_key = Some(key);
    })
    .await;
    let tls = n.running.tls_addrs[0];
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let over_tls = |extra: Vec<(&'static str, String)>| {
        let mut v = vec![
            ("dest", "1002".to_owned()),
            ("text", "Hello over TLS".to_owned()),
            ("sip-server", "127.0.0.1".to_owned()),
            ("sip-port", tls.port().to_string()),
            ("sip-transport", "tls".to_owned()),
            ("sip-user", "agent".to_owned()),
            ("sip-password", "agent-secret".to_owned()),
        ];
        v.extend(extra);
        settings(&v)
    };

    // the server's certificate is signed by a CA only SIP_TLS_CA_FILE names
    let s = over_tls(vec![]);
    let r = switchboard_call::run(&s).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.registered),
        (Outcome::Network, 13, Some(false)),
        "{}",
        r.to_line()
    );
    assert!(
        r.errors.iter().any(|e| e.contains("TLS handshake")),
        "{:?}",
        r.errors
    );

    let s = over_tls(vec![("sip-tls-ca-file", ca.display().to_string())]);
    let agent = tokio::spawn(async move { switchboard_call::run(&s).await });
    let invite = desk.request(Method::Invite).await;
    let media = answer_with_media(&desk, &invite).await;
    take_bye(&desk).await;
    let r = agent.await.unwrap();
    assert_eq!(
        (r.outcome, r.registered),
        (Outcome::Answered, Some(true)),
        "{}",
        r.to_line()
    );
    assert!(
        media.loud_frames() > 20,
        "the phone heard the agent: {}",
        media.loud_frames()
    );
    assert_eq!(r.transport, Some("TLS"));
    n.running.shutdown(Duration::from_secs(2)).await;
}

/// The agent's binary calling 1002 as `agent` through `n`, with `extra`
/// settings; its standard output piped (the report is its last line).
fn spawn_agent(n: &Node, extra: &[(&str, &str)]) -> (tokio::process::Child, u32) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-call"))
        .env_clear()
        .env("CALL_DEST", "1002")
        .env("SIP_SERVER", n.sip.to_string())
        .env("SIP_USER", "agent")
        .env("SIP_PASSWORD", "agent-secret")
        .envs(extra.iter().copied())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    (child, pid)
}

/// The Job deleted: the kubelet sends SIGTERM.
fn sigterm(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hangs_up_an_answered_call_and_reports_it() {
    let n = node("sigterm").await;
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let (child, pid) = spawn_agent(
        &n,
        &[
            ("CALL_TEXT", "This message repeats for a long time"),
            ("CALL_REPEAT", "100"),
        ],
    );
    let invite = desk.request(Method::Invite).await;
    let _media = answer_with_media(&desk, &invite).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    sigterm(pid);
    let bye = desk
        .request_within(Method::Bye, Duration::from_secs(5))
        .await;
    desk.answer(&bye, 200, None, None).await;
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the agent exits after its BYE")
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["outcome"].as_str(), last["hangup_by"].as_str()),
        (Some("answered"), Some("us"))
    );
    assert!(last["errors"].to_string().contains("stopped"), "{last}");
    n.running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_ringing_cancels_the_call() {
    let n = node("sigterm-ringing").await;
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let (child, pid) = spawn_agent(
        &n,
        &[("CALL_TEXT", "Nobody hears this"), ("CALL_TIMEOUT", "60")],
    );
    // the desk phone rings and does not answer
    let invite = desk.request(Method::Invite).await;
    desk.answer(&invite, 180, Some("desk-tag"), None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(pid);
    // the agent's CANCEL reaches the ringing phone through the platform
    let cancel = desk
        .request_within(Method::Cancel, Duration::from_secs(5))
        .await;
    assert_eq!(cancel.call_id, invite.call_id);
    desk.answer(&cancel, 200, None, None).await;
    desk.answer(&invite, 487, Some("desk-tag"), None).await;
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the agent exits after its CANCEL")
        .unwrap();
    assert_eq!(out.status.code(), Some(Outcome::NoAnswer.exit_code()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["outcome"].as_str(), last["answered"].as_bool()),
        (Some("no_answer"), Some(false)),
        "{last}"
    );
    assert_eq!(last["sip_code"], 487, "{last}");
    assert!(
        last["errors"].to_string().contains("while ringing"),
        "{last}"
    );
    // nothing is left ringing or live on the platform
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, calls) = n.api_get("/api/v1/calls").await;
        assert_eq!(status, 200);
        if calls.trim() == "[]" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "calls left: {calls}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n.running.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_it_registers_and_calls() {
    let n = node("tcp").await;
    let desk = SipPhone::bind(LO, n.sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);
    let s = settings(&agent_of(
        &n,
        "1002",
        &[
            ("text", "Hello over TCP".into()),
            ("sip-transport", "tcp".into()),
        ],
    ));
    let agent = tokio::spawn(async move { switchboard_call::run(&s).await });
    let invite = desk.request(Method::Invite).await;
    // while it calls, the platform holds the agent's binding on its TCP flow
    let (status, regs) = n.api_get("/api/v1/registrations").await;
    assert_eq!(status, 200);
    let agent_binding = regs
        .split("\"aor\"")
        .find(|r| r.contains("agent@"))
        .unwrap_or("");
    assert!(agent_binding.contains("\"received\":\"tcp:"), "{regs}");
    let media = answer_with_media(&desk, &invite).await;
    take_bye(&desk).await;
    let r = agent.await.unwrap();
    assert_eq!(r.outcome, Outcome::Answered, "{}", r.to_line());
    assert_eq!((r.transport, r.registered), (Some("TCP"), Some(true)));
    assert!(media.loud_frames() > 20, "the desk phone heard the agent");
    n.running.shutdown(Duration::from_secs(2)).await;
}
