//! Calls with anchored media over real sockets: sipp does the signaling,
//! the test's own UDP sockets are the phones' RTP (their ports go into
//! sipp's SDP through an injection file), so every assertion is about
//! packets that crossed loopback: payload types, decoded samples, DTMF,
//! recordings, RTP timeouts, IPv6 ↔ IPv4, and moving a live call.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use common::{TestServer, free_port, sipp, sipp_on, spawn_sipp_uas_with, start, wait_sipp};
use serde_json::{Value, json};
use switchboard_media::dtmf::{DtmfGenerator, TelephoneEvent};
use switchboard_media::g711::Codec;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_media::wav;
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn audio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../audio")
}

/// A phone's media: one UDP socket the test reads and writes.
struct Phone {
    sock: UdpSocket,
    ssrc: u32,
}

struct Rtp {
    pt: u8,
    payload: Vec<u8>,
}

impl Phone {
    async fn on(ip: IpAddr) -> Phone {
        Phone {
            sock: UdpSocket::bind((ip, 0)).await.expect("bind RTP"),
            ssrc: rand_ssrc(),
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().expect("addr").port()
    }

    /// The sipp injection file naming this phone's port and codec.
    fn csv(&self, dir: &std::path::Path, codec: Codec) -> String {
        let path = dir.join(format!("phone-{}.csv", self.port()));
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(
            &path,
            format!(
                "SEQUENTIAL\n{};{};{};\n",
                self.port(),
                codec.payload_type(),
                codec.name()
            ),
        )
        .expect("csv");
        path.display().to_string()
    }

    async fn send(&self, to: SocketAddr, pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) {
        let mut buf = Vec::new();
        write_header(&mut buf, pt, marker, seq, ts, self.ssrc);
        buf.extend_from_slice(payload);
        self.sock.send_to(&buf, to).await.expect("send RTP");
    }

    async fn recv(&self, wait: Duration) -> Option<Rtp> {
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if let Some(v) = RtpView::parse(&buf[..n]) {
                return Some(Rtp {
                    pt: v.payload_type(),
                    payload: v.payload().to_vec(),
                });
            }
        }
    }

    /// Drops whatever is queued (echo or earlier audio).
    async fn drain(&self) {
        while self.recv(Duration::from_millis(50)).await.is_some() {}
    }
}

fn rand_ssrc() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7)
}

fn tone(n: usize, freq: f64) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f64 * freq * std::f64::consts::TAU / 8000.0).sin() * 6000.0) as i16)
        .collect()
}

fn through(codec: Codec, samples: &[i16]) -> Vec<i16> {
    samples
        .iter()
        .map(|s| codec.decode_sample(codec.encode_sample(*s)))
        .collect()
}

/// A server with alice and bob and a dialplan exercising every media action.
async fn media_server(
    name: &str,
    tweak: impl FnOnce(&mut switchboard_signaling::Config),
) -> TestServer {
    let s = start(name, tweak).await;
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let (status, body) = s
            .http(
                "POST",
                "/api/v1/users",
                Some(&json!({"username": user, "password": format!("{user}-secret"), "extension": ext})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let plan = json!({"version": "1.0", "routes": [
        {"id": "demo", "pattern": "500", "actions": [
            {"type": "play_audio", "params": {"file": "demo"}}, {"type": "hangup"}]},
        {"id": "echo", "pattern": "600", "actions": [{"type": "echo"}]},
        {"id": "rec", "pattern": "601", "actions": [
            {"type": "record", "params": {"file": "rec-${call_id}"}}, {"type": "echo"}]},
        {"id": "ivr", "pattern": "7", "actions": [
            {"type": "read_digits", "params": {"max": 4, "timeout": 5, "variable": "ext"}},
            {"type": "dial", "params": {"target": "user/${ext}", "timeout": 10}}]},
        {"id": "extensions", "pattern": "1*", "priority": 50, "actions": [
            {"type": "dial", "params": {"target": "user/${destination}", "timeout": 10}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    s
}

async fn register_bob(s: &TestServer, ip: IpAddr, port: u16) {
    let server = s
        .running
        .sip_addrs
        .iter()
        .copied()
        .find(|a| a.is_ipv4() == ip.is_ipv4())
        .expect("SIP address of the family");
    let reg = sipp_on(
        "register_auth.xml",
        server,
        ip,
        port,
        &["-s", "bob", "-au", "bob", "-ap", "bob-secret"],
    )
    .await;
    assert!(reg.status.success(), "bob's registration failed");
}

/// alice calls `to` with `scenario`, her media on `phone` in `codec`.
fn alice_calls(
    s: &TestServer,
    ip: IpAddr,
    scenario: &'static str,
    to: &str,
    phone: &Phone,
    codec: Codec,
    talk_ms: u32,
) -> tokio::task::JoinHandle<bool> {
    let server = s
        .running
        .sip_addrs
        .iter()
        .copied()
        .find(|a| a.is_ipv4() == ip.is_ipv4())
        .expect("SIP address of the family");
    let csv = phone.csv(&s.dir, codec);
    let to = to.to_owned();
    tokio::spawn(async move {
        let d = talk_ms.to_string();
        sipp(
            scenario,
            server,
            ip,
            &[
                "-s",
                &to,
                "-au",
                "alice",
                "-ap",
                "alice-secret",
                "-inf",
                &csv,
                "-d",
                &d,
            ],
        )
        .await
        .status
        .success()
    })
}

/// The sessions of the live call(s): leg → (local address, manager).
async fn sessions(s: &TestServer, want: &[&str]) -> Vec<Value> {
    for _ in 0..100 {
        let (status, body) = s.http("GET", "/api/v1/sessions", None).await;
        assert_eq!(status, 200, "{body}");
        let list = body.as_array().cloned().unwrap_or_default();
        let ready = want.iter().all(|leg| {
            list.iter()
                .any(|x| x["leg"] == *leg && (want.len() == 1 || !x["bridged_to"].is_null()))
        });
        if ready {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sessions {want:?} never appeared");
}

fn leg_addr(list: &[Value], leg: &str) -> SocketAddr {
    let s = list
        .iter()
        .find(|x| x["leg"] == leg)
        .unwrap_or_else(|| panic!("no {leg} session in {list:?}"));
    s["local_address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("local address")
}

async fn only_cdr(s: &TestServer) -> Value {
    for _ in 0..200 {
        let (_, body) = s.http("GET", "/api/v1/cdrs", None).await;
        if let Some(list) = body["cdrs"].as_array()
            && let Some(c) = list.first()
        {
            return c.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no CDR");
}

/// Sends `samples` in `codec`, 160 per packet, 20 ms apart, numbered from
/// `seq0` and timestamp `160 * seq0` (one continuous stream per phone).
async fn talk(phone: &Phone, to: SocketAddr, codec: Codec, samples: &[i16], seq0: u16) {
    for (i, frame) in samples.chunks(160).enumerate() {
        let mut payload = Vec::new();
        codec.encode(frame, &mut payload);
        phone
            .send(
                to,
                codec.payload_type(),
                seq0.wrapping_add(i as u16),
                160 * (u32::from(seq0) + i as u32),
                i == 0,
                &payload,
            )
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One RFC 4733 digit, continuing the phone's stream at `*seq` (its
/// timestamp is the stream's position, `160 * seq`).
async fn dtmf(phone: &Phone, to: SocketAddr, digit: char, seq: &mut u16) {
    let ts = 160 * u32::from(*seq);
    for (p, marker) in DtmfGenerator::packets(digit, 80, 10).expect("digit") {
        phone.send(to, 101, *seq, ts, marker, &p).await;
        *seq = seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A call from alice to bob with both phones' media in the test's hands:
/// bob (registered from 127.0.0.1) answers with `callee_xml` in
/// `bob_codec`, alice (on `alice_ip`) calls `to` with `caller_xml` in
/// `alice_codec` and talks for `talk_ms`.
struct TwoPhones {
    a: Phone,
    b: Phone,
    bob: tokio::process::Child,
    call: tokio::task::JoinHandle<bool>,
}

#[allow(clippy::too_many_arguments)]
async fn alice_calls_bob(
    s: &TestServer,
    alice_ip: IpAddr,
    caller_xml: &'static str,
    to: &str,
    alice_codec: Codec,
    callee_xml: &str,
    bob_codec: Codec,
    talk_ms: u32,
) -> TwoPhones {
    let bob_port = free_port(LO);
    register_bob(s, LO, bob_port).await;
    let (a, b) = (Phone::on(alice_ip).await, Phone::on(LO).await);
    let bob = spawn_sipp_uas_with(
        callee_xml,
        LO,
        bob_port,
        &["-inf", &b.csv(&s.dir, bob_codec)],
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let call = alice_calls(s, alice_ip, caller_xml, to, &a, alice_codec, talk_ms);
    TwoPhones { a, b, bob, call }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_500_hears_the_demo_prompt() {
    let s = media_server("media-500", |_| {}).await;
    let phone = Phone::on(LO).await;
    let call = alice_calls(&s, LO, "media_uac.xml", "500", &phone, Codec::Pcmu, 2500);
    // the first two seconds of the prompt, packet by packet
    let want = wav::load_8k_mono(&audio_dir().join("demo.wav")).expect("demo.wav");
    let mut got = Vec::new();
    while got.len() < 16000 {
        let p = phone
            .recv(Duration::from_secs(5))
            .await
            .expect("prompt RTP arrives");
        assert_eq!(p.pt, 0, "PCMU as offered");
        assert_eq!(p.payload.len(), 160, "20 ms packets");
        Codec::Pcmu.decode(&p.payload, &mut got);
    }
    assert_eq!(
        got[..16000],
        through(Codec::Pcmu, &want[..16000])[..],
        "decoded samples are the WAV's"
    );
    assert!(call.await.expect("sipp task"), "caller scenario failed");
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["route"], "demo", "{cdr}");
    assert_eq!(cdr["rtpmanager"], "embedded", "{cdr}");
    assert!(cdr["rtp_sent"].as_i64().unwrap_or(0) >= 100, "{cdr}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_call_transcodes_both_ways_and_relays_dtmf() {
    let s = media_server("media-bridge", |_| {}).await;
    // bob's phone answers PCMU; alice offers PCMA only
    let TwoPhones { a, b, bob, call } = alice_calls_bob(
        &s,
        LO,
        "media_uac.xml",
        "1002",
        Codec::Pcma,
        "media_callee.xml",
        Codec::Pcmu,
        3000,
    )
    .await;
    let list = sessions(&s, &["A", "B1"]).await;
    let (to_a, to_b) = (leg_addr(&list, "A"), leg_addr(&list, "B1"));

    let voice = tone(160 * 25, 440.0);
    talk(&a, to_a, Codec::Pcma, &voice, 100).await;
    let mut heard = Vec::new();
    while heard.len() < voice.len() {
        let p = b
            .recv(Duration::from_secs(2))
            .await
            .expect("bob hears alice");
        assert_eq!(p.pt, 0, "alice's PCMA reaches bob as PCMU");
        Codec::Pcmu.decode(&p.payload, &mut heard);
    }
    assert_eq!(heard, through(Codec::Pcmu, &through(Codec::Pcma, &voice)));

    let reply = tone(160 * 25, 1000.0);
    talk(&b, to_b, Codec::Pcmu, &reply, 7).await;
    let mut heard = Vec::new();
    while heard.len() < reply.len() {
        let p = a
            .recv(Duration::from_secs(2))
            .await
            .expect("alice hears bob");
        assert_eq!(p.pt, 8, "bob's PCMU reaches alice as PCMA");
        Codec::Pcma.decode(&p.payload, &mut heard);
    }
    assert_eq!(heard, through(Codec::Pcma, &through(Codec::Pcmu, &reply)));

    // a DTMF 5 from alice reaches bob as telephone-event
    let mut seq = 125;
    dtmf(&a, to_a, '5', &mut seq).await;
    let p = b
        .recv(Duration::from_secs(2))
        .await
        .expect("bob gets the DTMF");
    assert_eq!(p.pt, 101);
    assert_eq!(TelephoneEvent::parse(&p.payload).map(|e| e.event), Some(5));

    assert!(call.await.expect("sipp task"), "caller scenario failed");
    assert!(
        wait_sipp(bob, "media_callee.xml").await,
        "bob's phone failed"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert!(cdr["rtp_received"].as_i64().unwrap_or(0) >= 25, "{cdr}");
    assert!(cdr["rtp_sent"].as_i64().unwrap_or(0) >= 25, "{cdr}");
    assert_eq!(cdr["rtp_lost"], 0, "{cdr}");
    assert!(cdr["mos"].as_f64().unwrap_or(0.0) > 4.0, "{cdr}");
    let (_, left) = s.http("GET", "/api/v1/sessions", None).await;
    assert_eq!(left, json!([]), "sessions freed with the call");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivr_reads_digits_then_dials_them() {
    let s = media_server("media-ivr", |_| {}).await;
    let TwoPhones { a, bob, call, .. } = alice_calls_bob(
        &s,
        LO,
        "media_uac.xml",
        "7",
        Codec::Pcmu,
        "media_callee.xml",
        Codec::Pcmu,
        3000,
    )
    .await;
    let list = sessions(&s, &["A"]).await;
    let to_a = leg_addr(&list, "A");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seq = 1;
    for d in "1002".chars() {
        dtmf(&a, to_a, d, &mut seq).await;
    }
    assert!(call.await.expect("sipp task"), "caller scenario failed");
    assert!(
        wait_sipp(bob, "media_callee.xml").await,
        "bob was not dialled"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["route"], "ivr", "{cdr}");
    assert_eq!(cdr["callee_user"], "bob", "the digits picked bob: {cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_the_callers_audio_and_echo_returns_it() {
    let s = media_server("media-record", |_| {}).await;
    let a = Phone::on(LO).await;
    let call = alice_calls(&s, LO, "media_uac.xml", "601", &a, Codec::Pcmu, 2500);
    let list = sessions(&s, &["A"]).await;
    let to_a = leg_addr(&list, "A");
    let voice = tone(8000, 700.0);
    talk(&a, to_a, Codec::Pcmu, &voice, 1).await;
    let mut echoed = Vec::new();
    while echoed.len() < voice.len() {
        let p = a.recv(Duration::from_secs(2)).await.expect("echo");
        Codec::Pcmu.decode(&p.payload, &mut echoed);
    }
    assert_eq!(
        echoed,
        through(Codec::Pcmu, &voice),
        "echo returns the audio"
    );
    assert!(call.await.expect("sipp task"), "caller scenario failed");
    let cdr = only_cdr(&s).await;
    let call_id = cdr["call_id"].as_str().expect("call id");
    let path = s.dir.join("recordings").join(format!("rec-{call_id}.wav"));
    let recorded = wav::load_8k_mono(&path).expect("recording exists");
    assert_eq!(
        recorded,
        through(Codec::Pcmu, &voice),
        "the far end's audio"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_ends_the_call_with_an_rtp_timeout_cdr() {
    let s = media_server("media-timeout", |c| c.rtp_timeout = 1).await;
    let a = Phone::on(LO).await;
    // alice sends no RTP; switchboard hangs up on her
    let call = alice_calls(&s, LO, "media_uac_byed.xml", "600", &a, Codec::Pcmu, 0);
    assert!(call.await.expect("sipp task"), "no BYE from switchboard");
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["hangup_reason"], "RTP timeout", "{cdr}");
    assert_eq!(cdr["hangup_side"], "system", "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_phone_calls_an_ipv4_phone() {
    let s = media_server("media-v6", |c| c.bind = vec![LO, LO6]).await;
    let TwoPhones { a, b, bob, call } = alice_calls_bob(
        &s,
        LO6,
        "media_uac.xml",
        "1002",
        Codec::Pcmu,
        "media_callee.xml",
        Codec::Pcmu,
        2500,
    )
    .await;
    let list = sessions(&s, &["A", "B1"]).await;
    let (to_a, to_b) = (leg_addr(&list, "A"), leg_addr(&list, "B1"));
    assert!(to_a.is_ipv6(), "alice's leg on ::1: {to_a}");
    assert!(to_b.is_ipv4(), "bob's leg on 127.0.0.1: {to_b}");
    let voice = tone(160 * 10, 500.0);
    talk(&a, to_a, Codec::Pcmu, &voice, 1).await;
    let p = b.recv(Duration::from_secs(2)).await.expect("v6 → v4");
    assert_eq!(p.pt, 0);
    talk(&b, to_b, Codec::Pcmu, &voice, 1).await;
    let p = a.recv(Duration::from_secs(2)).await.expect("v4 → v6");
    assert_eq!(p.pt, 0);
    assert!(call.await.expect("sipp task"), "caller scenario failed");
    assert!(
        wait_sipp(bob, "media_callee.xml").await,
        "bob's phone failed"
    );
    s.stop().await;
}

/// Two external RTP managers on loopback.
/// The token the test managers require (and signaling sends).
const MANAGER_TOKEN: &str = "media-test-token-0123456789";

async fn two_managers(slot: u16) -> Vec<switchboard_rtpmanager::Running> {
    let mut out = Vec::new();
    for i in 0..2u16 {
        // inside the 1xxxx range the sipp scenarios expect in SDP
        let base = 18000 + slot * 200 + i * 100;
        let engine = switchboard_rtpmanager::Engine::new(switchboard_rtpmanager::EngineConfig {
            addresses: vec![switchboard_rtpmanager::RtpAddress {
                bind: LO,
                advertise: LO,
            }],
            port_min: base,
            port_max: base + 99,
            audio_path: audio_dir(),
            record_path: std::env::temp_dir(),
            rtp_timeout: Duration::from_secs(60),
            rtp_hold_timeout: switchboard_rtpmanager::engine::RTP_HOLD_TIMEOUT,
            rtcp_interval: switchboard_rtpmanager::engine::RTCP_INTERVAL,
            source_policy: switchboard_media::learning::Policy::SdpIp,
        })
        .expect("engine");
        let listener = tokio::net::TcpListener::bind((LO, 0)).await.expect("bind");
        let security = switchboard_rtpmanager::GrpcSecurity {
            token: Some(MANAGER_TOKEN.into()),
            tls: None,
        };
        out.push(
            switchboard_rtpmanager::serve_secured(engine, listener, security)
                .await
                .expect("manager"),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggressive_drain_moves_a_live_call_and_audio_keeps_flowing() {
    let managers = two_managers(0).await;
    let s = pooled_server("media-drain", &managers).await;
    let (status, list) = s.http("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let TwoPhones { a, b, bob, call } = alice_calls_bob(
        &s,
        LO,
        "media_uac_moved.xml",
        "1002",
        Codec::Pcmu,
        "media_callee_moved.xml",
        Codec::Pcmu,
        2500,
    )
    .await;
    let list = sessions(&s, &["A", "B1"]).await;
    let first = list[0]["manager"].as_str().expect("manager").to_owned();
    assert!(
        list.iter().all(|x| x["manager"] == first),
        "both legs on one manager: {list:?}"
    );
    let voice = tone(160 * 5, 440.0);
    talk(&a, leg_addr(&list, "A"), Codec::Pcmu, &voice, 1).await;
    assert!(
        b.recv(Duration::from_secs(2)).await.is_some(),
        "audio before the move"
    );

    let (status, body) = s
        .http(
            "POST",
            &format!("/api/v1/rtpmanagers/{first}/drain"),
            Some(&json!({"mode": "aggressive"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["draining"], true, "{body}");
    // the call's sessions reappear on the other manager
    let mut moved = Vec::new();
    for _ in 0..100 {
        let (_, l) = s.http("GET", "/api/v1/sessions", None).await;
        let l = l.as_array().cloned().unwrap_or_default();
        if l.len() == 2
            && l.iter().all(|x| x["manager"] != first.as_str())
            && l.iter().all(|x| !x["bridged_to"].is_null())
        {
            moved = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!moved.is_empty(), "the call did not move");
    b.drain().await;
    talk(&a, leg_addr(&moved, "A"), Codec::Pcmu, &voice, 50).await;
    let p = b
        .recv(Duration::from_secs(2))
        .await
        .expect("audio after the move");
    assert_eq!(p.pt, 0);
    talk(&b, leg_addr(&moved, "B1"), Codec::Pcmu, &voice, 50).await;
    a.drain().await;
    talk(&b, leg_addr(&moved, "B1"), Codec::Pcmu, &voice, 60).await;
    assert!(a.recv(Duration::from_secs(2)).await.is_some(), "and back");
    assert!(call.await.expect("sipp task"), "caller scenario failed");
    assert!(
        wait_sipp(bob, "media_callee_moved.xml").await,
        "bob's phone failed"
    );

    // a new call while one manager drains goes to the other; then the
    // other is killed and the next call goes back to the first (undrained)
    let (status, _) = s
        .http(
            "DELETE",
            &format!("/api/v1/rtpmanagers/{first}/drain"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let mut managers = managers;
    let other_index = if first == "m0" { 1 } else { 0 };
    managers.remove(other_index).shutdown().await;
    for n in 0..2 {
        let c = Phone::on(LO).await;
        let call = alice_calls(&s, LO, "media_uac.xml", "600", &c, Codec::Pcmu, 300);
        let l = sessions(&s, &["A"]).await;
        assert_eq!(
            l[0]["manager"],
            first.as_str(),
            "call {n} on the live manager: {l:?}"
        );
        assert!(call.await.expect("sipp task"), "call {n} failed");
    }
    s.stop().await;
    for m in managers {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_port_range_answers_new_calls_503() {
    // one RTP/RTCP pair: the first call takes it, the second cannot be anchored
    let s = media_server("media-exhausted", |c| {
        c.rtp_port_min = 19990;
        c.rtp_port_max = 19991;
    })
    .await;
    let a = Phone::on(LO).await;
    let first = alice_calls(&s, LO, "media_uac.xml", "600", &a, Codec::Pcmu, 1500);
    sessions(&s, &["A"]).await;
    let second = sipp(
        "call_503_uac.xml",
        s.sip,
        LO,
        &["-s", "600", "-au", "alice", "-ap", "alice-secret"],
    )
    .await;
    assert!(second.status.success(), "the second call did not get 503");
    assert!(first.await.expect("sipp task"), "the first call failed");
    // once the first call is over its pair is free again
    let b = Phone::on(LO).await;
    let third = alice_calls(&s, LO, "media_uac.xml", "600", &b, Codec::Pcmu, 200);
    assert!(
        third.await.expect("sipp task"),
        "the freed pair was not reused"
    );
    s.stop().await;
}

/// A server using the two managers, named m0 and m1.
async fn pooled_server(name: &str, managers: &[switchboard_rtpmanager::Running]) -> TestServer {
    let addrs: Vec<String> = managers
        .iter()
        .enumerate()
        .map(|(i, m)| format!("m{i}={}", m.grpc_addr))
        .collect();
    media_server(name, |c| {
        c.rtpmanager_addrs = addrs;
        c.rtpmanager_token = Some(MANAGER_TOKEN.into());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_managers_bridged_call_moves_to_the_other_one() {
    let mut managers = two_managers(1).await;
    let s = pooled_server("media-lost-moves", &managers).await;
    let TwoPhones { a, b, bob, call } = alice_calls_bob(
        &s,
        LO,
        "media_uac_moved.xml",
        "1002",
        Codec::Pcmu,
        "media_callee_moved.xml",
        Codec::Pcmu,
        2500,
    )
    .await;
    let list = sessions(&s, &["A", "B1"]).await;
    let first = list[0]["manager"].as_str().expect("manager").to_owned();
    // the manager the call is on dies (no drain, no warning)
    let i = if first == "m0" { 0 } else { 1 };
    managers.remove(i).shutdown().await;
    // after LOST_AFTER failed checks the call is moved by re-INVITEs
    let mut moved = Vec::new();
    for _ in 0..300 {
        let (_, l) = s.http("GET", "/api/v1/sessions", None).await;
        let l = l.as_array().cloned().unwrap_or_default();
        if l.len() == 2 && l.iter().all(|x| x["manager"] != first.as_str()) {
            moved = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !moved.is_empty(),
        "the call did not move off the lost manager"
    );
    let voice = tone(160 * 5, 440.0);
    b.drain().await;
    talk(&a, leg_addr(&moved, "A"), Codec::Pcmu, &voice, 50).await;
    assert!(
        b.recv(Duration::from_secs(2)).await.is_some(),
        "audio after the move"
    );
    assert!(call.await.expect("sipp task"), "caller scenario failed");
    assert!(
        wait_sipp(bob, "media_callee_moved.xml").await,
        "bob's phone failed"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_ne!(cdr["rtpmanager"], first.as_str(), "{cdr}");
    s.stop().await;
    for m in managers {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_manager_is_lost_with_nowhere_to_go_ends_with_a_cdr() {
    let mut managers = two_managers(2).await;
    let spare = managers.pop().expect("two managers");
    spare.shutdown().await;
    let s = pooled_server("media-lost-ends", &managers).await;
    let a = Phone::on(LO).await;
    // alice is served by the echo; her only live manager dies
    let call = alice_calls(&s, LO, "media_uac_byed.xml", "600", &a, Codec::Pcmu, 0);
    sessions(&s, &["A"]).await;
    managers.remove(0).shutdown().await;
    assert!(call.await.expect("sipp task"), "no BYE from switchboard");
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["hangup_reason"], "RTP Manager Lost", "{cdr}");
    assert_eq!(cdr["hangup_side"], "system", "{cdr}");
    s.stop().await;
}
