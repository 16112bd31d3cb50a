//! Interop with baresip (Debian's `baresip-core`, which
//! scripts/ensure-deps.sh installs): baresip registers over TLS, trusting
//! a test CA made here, and calls the echo (600) with SDES-SRTP
//! (`mediaenc=srtp-mand`); its SIP trace shows RTP/SAVP offered and
//! answered with a=crypto on both sides, and the tone its `ausine` source
//! sends comes back: the `sndfile` dump of what it decoded holds that
//! tone (Goertzel).
//!
//! baresip is driven as `common::baresip` describes.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::baresip::{Baresip, Ctrl, Setup, account, tone_share, traced_messages};
use common::tls_phone::{ca, leaf};
use common::{TestServer, start_in, temp_dir};
use serde_json::json;

/// The tone baresip's `ausine` source sends (Hz).
const TONE: u32 = 1000;

#[test]
fn goertzel_finds_a_tone_and_not_another() {
    let tone: Vec<i16> = (0..8000)
        .map(|i| ((f64::from(i) * std::f64::consts::TAU * 1000.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    assert!(tone_share(&tone, 1000.0) > 0.45);
    assert!(tone_share(&tone, 1300.0) < 0.01);
    assert_eq!(tone_share(&[0; 800], 1000.0), 0.0);
}

async fn server(name: &str) -> (TestServer, SocketAddr, PathBuf) {
    let authority = ca("switchboard test CA");
    let dir = temp_dir(name);
    leaf(&dir, "server", &["127.0.0.1"], &authority);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, authority.pem()).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let s = start_in(dir, |c| {
        c.tls.tls_cert = Some(cert);
        c.tls.tls_key = Some(key);
    })
    .await;
    let tls = s.running.tls_addrs[0];
    let plan = json!({"version": "1.0", "routes": [
        {"id": "echo", "pattern": "600", "actions": [{"type": "echo", "params": {"timeout": 60}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    (s, tls, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_over_tls_and_hears_its_tone_back_through_srtp() {
    let (s, tls, ca_file) = server("baresip").await;
    let (status, body) = s
        .http(
            "POST",
            "/api/v1/users",
            Some(&json!({"username": "alice", "password": "alice-secret", "extension": "1001"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let dir = s.dir.join("baresip-run");
    let phone = Baresip::spawn(
        &dir,
        &Setup {
            account: account(
                "1001",
                tls,
                "tls",
                ("alice", "alice-secret"),
                "mediaenc=srtp-mand;answermode=manual",
            ),
            tone: TONE,
            ca_file: Some(&ca_file),
            modules: &["srtp.so"],
        },
    );

    // registered, over TLS, by extension
    let deadline = Instant::now() + Duration::from_secs(15);
    let contacts = loop {
        let c = s.contacts("alice").await;
        if !c.is_empty() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "baresip did not register within 15 s:\n{}",
            phone.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    let contact = contacts[0].to_string();
    assert!(contact.contains("transport=tls"), "{contact}");

    // a call to the echo, SRTP mandatory on baresip's side
    let mut ctrl = Ctrl::connect(phone.ctrl).await;
    ctrl.command(
        "dial",
        // (baresip adds the account's transport=tls itself)
        &format!("sip:600@{}:{}", tls.ip(), tls.port()),
    )
    .await;
    ctrl.event("CALL_ESTABLISHED", Duration::from_secs(10))
        .await;
    // three seconds of tone out and back
    tokio::time::sleep(Duration::from_secs(3)).await;
    ctrl.command("hangup", "").await;
    ctrl.event("CALL_CLOSED", Duration::from_secs(10)).await;

    // the SDP both ways: RTP/SAVP with SDES keys
    let log = phone.log();
    let offers = traced_messages(&log, "INVITE sip:600@");
    assert!(!offers.is_empty(), "no INVITE in the trace:\n{log}");
    let sent = offers.last().unwrap();
    assert!(
        sent.contains("m=audio") && sent.contains("RTP/SAVP") && sent.contains("a=crypto:"),
        "baresip offers SDES-SRTP: {sent}"
    );
    let answers: Vec<&str> = traced_messages(&log, "SIP/2.0 200 OK")
        .into_iter()
        .filter(|m| m.contains("INVITE") && m.contains("m=audio"))
        .collect();
    let answer = answers
        .last()
        .unwrap_or_else(|| panic!("no 200 with SDP:\n{log}"));
    assert!(
        answer.contains("RTP/SAVP") && answer.contains("a=crypto:"),
        "we answer SDES-SRTP: {answer}"
    );
    assert!(
        !log.contains("srtp: authentication failed") && !log.contains("srtp: replay"),
        "baresip's SRTP complained:\n{log}"
    );

    // what baresip decoded is its own tone, back from the echo
    let dump = phone
        .decoded_dump()
        .unwrap_or_else(|| panic!("no decoded audio dump:\n{log}"));
    let samples = switchboard_media::wav::load_8k_mono(&dump).unwrap();
    assert!(
        samples.len() >= 8000,
        "at least a second of audio decoded, got {} samples",
        samples.len()
    );
    // the loudest second (the echo starts after the call is set up)
    let best = samples
        .chunks(4000)
        .map(|c| tone_share(c, f64::from(TONE)))
        .fold(0.0f64, f64::max);
    let loud = samples.iter().filter(|&&x| x.unsigned_abs() > 1000).count();
    eprintln!(
        "baresip decoded {} samples, {loud} loud; {TONE} Hz share {best:.3}",
        samples.len()
    );
    assert!(
        best > 0.3,
        "the {TONE} Hz tone comes back (share {best:.3})"
    );
    assert!(loud > 4000, "audible samples: {loud}");

    drop(ctrl);
    drop(phone);
    s.stop().await;
}
