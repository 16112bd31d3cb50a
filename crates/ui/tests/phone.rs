//! The browser phone (`/phone`) in a real headless Chromium: JsSIP on the
//! page registers over secure WebSocket to real signaling (its embedded
//! RTP manager answering the browser's WebRTC offer: ICE-lite, DTLS-SRTP),
//! calls 600 and hears its own tone back, calls a desk phone that receives
//! the browser's tone and whose tone the browser hears (samples checked on
//! both sides; a keypad digit arrives as RFC 4733), is called by the desk
//! phone and answers on the page (signaling offers it WebRTC), calls a
//! baresip registered over UDP that answers by itself and records what it
//! decodes (the browser's tone, checked in that WAV) while the browser hears
//! baresip's tone, and a page from a foreign origin cannot open the socket.
//!
//! Chromium's microphone is a WAV file (`--use-file-for-fake-audio-capture`).
//! Everything runs in a network namespace that holds only loopback
//! (`unshare --net`, `lo` up): otherwise Chromium would offer the machine's
//! other addresses as ICE candidates, and tests talk to loopback only. The
//! test re-runs itself inside the namespace and checks how that run ended.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::baresip::{Baresip, Ctrl, Setup, account, tone_share};
use common::phone::SipPhone;
use serde_json::{Value, json};
use switchboard_browser_test::Browser;
use switchboard_sip::message::Method;
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Set in the namespace's run of this test.
const INSIDE: &str = "SWITCHBOARD_TEST_IN_NETNS";
const TEST: &str = "the_browser_phone_registers_calls_echo_and_a_desk_phone";
/// The browser's microphone tone, and the desk phone's.
const BROWSER_HZ: f64 = 1000.0;
const DESK_HZ: f64 = 600.0;
/// The tone baresip's `ausine` source sends.
const BARESIP_HZ: u32 = 440;
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn the_browser_phone_registers_calls_echo_and_a_desk_phone() {
    if !Path::new(switchboard_browser_test::CHROMIUM).exists() {
        eprintln!("skipped: no Chromium (scripts/ensure-deps.sh installs it)");
        return;
    }
    if std::env::var_os(INSIDE).is_some() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(scenario());
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let script = "ip link set lo up && exec \"$0\" \"$@\"";
    let args = [TEST, "--exact", "--nocapture", "--test-threads=1"];
    // root may make a network namespace; a user may in a user namespace
    let mut last = None;
    for prefix in [&["--net"][..], &["--user", "--map-root-user", "--net"][..]] {
        let status = Command::new("unshare")
            .args(prefix)
            .args(["--", "sh", "-c", script])
            .arg(&exe)
            .args(args)
            .env(INSIDE, "1")
            .status()
            .expect("run unshare (util-linux)");
        if status.success() {
            return;
        }
        last = Some(status);
        // a failed test prints its panic; a refused unshare exits 1 before
        // running anything, so the second form is tried only then
        if status.code() != Some(1) {
            break;
        }
    }
    panic!("the test in its loopback-only network namespace failed: {last:?}");
}

async fn scenario() {
    let dir = common::temp_dir("phone");
    let tone = dir.join("tone.wav");
    write_tone(&tone, BROWSER_HZ);
    let ui_port = free_tcp_port();
    let ui_origin = format!("http://127.0.0.1:{ui_port}");
    let sig = signaling(&dir, &ui_origin).await;
    let wss = sig.running.wss_addrs[0];
    for (user, ext) in [("alice", "1001"), ("bob", "1002"), ("carol", "1003")] {
        let body =
            json!({"username": user, "password": format!("{user}-secret"), "extension": ext});
        let (status, v) = sig.api("POST", "/api/v1/users", Some(&body)).await;
        assert_eq!(status, 201, "{v}");
    }
    let ui = common::ui(
        &[(
            "main",
            format!("http://{}", sig.api),
            Some(sig.token.as_str()),
        )],
        |c| {
            c.port = ui_port;
            c.sip_wss_url = Some(format!("wss://127.0.0.1:{}", wss.port()));
        },
    )
    .await;
    assert_eq!(ui.addr.port(), ui_port);
    let fake_mic = format!("--use-file-for-fake-audio-capture={}", tone.display());
    let browser = Browser::start_with_args(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        &fake_mic,
        // the test CA is not the browser's: WSS to 127.0.0.1 only
        "--ignore-certificate-errors",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ])
    .await
    .expect("start Chromium");

    // registers over WSS with the SIP user's own password
    browser
        .goto(&format!("{ui_origin}/phone"))
        .await
        .expect("open /phone");
    browser.fill("#phone-user", "alice").await.expect("user");
    browser
        .fill("#phone-password", "wrong")
        .await
        .expect("password");
    browser
        .click("#phone-register-button")
        .await
        .expect("register");
    let failed = wait_state(&browser, "registration", &["failed"]).await;
    eprintln!("wrong password: {failed}");
    assert!(
        failed.contains("403") || failed.contains("401") || failed.contains("Auth"),
        "{failed}"
    );
    browser
        .fill("#phone-password", "alice-secret")
        .await
        .expect("password");
    browser
        .click("#phone-register-button")
        .await
        .expect("register");
    wait_state(&browser, "registration", &["registered"]).await;
    let regs = sig.api("GET", "/api/v1/registrations", None).await.1;
    let alice = regs
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r.to_string().contains("alice"))
        .unwrap_or_else(|| panic!("alice registered: {regs}"));
    assert!(
        alice.to_string().to_ascii_lowercase().contains("wss"),
        "{alice}"
    );

    // 600 echoes: the browser hears its own 1 kHz tone
    dial(&browser, "600").await;
    wait_state(&browser, "call", &["in-call"]).await;
    let heard = hear(&browser, BROWSER_HZ).await;
    eprintln!("600 echo: the browser hears {heard:?} (Hz, dB)");
    let level = wait_level(&browser, "#phone-remote-level").await;
    assert!(level > 0.01, "remote level meter {level}");
    browser.click("#phone-hangup").await.expect("hang up");
    wait_state(&browser, "call", &["ended"]).await;

    // a desk phone: it receives the browser's tone, the browser hears its tone
    let desk = SipPhone::bind(LO, sig.sip).await;
    let r = desk.register("bob", "bob-secret", &[]).await;
    assert_eq!(r.code, 200, "{r:?}");
    let rtp = UdpSocket::bind((LO, 0)).await.expect("bind RTP");
    dial(&browser, "1002").await;
    let invite = desk.request(Method::Invite).await;
    let offer = String::from_utf8_lossy(&invite.body).into_owned();
    assert!(
        offer.contains("RTP/AVP") && offer.contains("PCMU/8000"),
        "{offer}"
    );
    let manager = media_addr(&offer);
    desk.answer(&invite, 180, Some("desk"), None).await;
    wait_state(&browser, "call", &["ringing"]).await;
    let answer = common::phone::sdp(LO, rtp.local_addr().expect("addr").port(), "sendrecv");
    desk.answer(&invite, 200, Some("desk"), Some(&answer)).await;
    let _ack = desk.request(Method::Ack).await;
    wait_state(&browser, "call", &["in-call"]).await;
    let rtp = std::sync::Arc::new(rtp);
    let talk = tokio::spawn(send_tone(std::sync::Arc::clone(&rtp), manager, DESK_HZ));
    let heard = hear(&browser, DESK_HZ).await;
    eprintln!("desk phone call: the browser hears {heard:?} (Hz, dB)");
    let samples = receive_pcmu(&rtp, Duration::from_secs(2)).await;
    assert!(
        samples.len() >= 8000,
        "desk phone got {} samples",
        samples.len()
    );
    let (at, off) = (power(&samples, BROWSER_HZ), power(&samples, 1500.0));
    eprintln!(
        "desk phone: {} samples, 1 kHz power {at:.0}, 1.5 kHz {off:.0}",
        samples.len()
    );
    assert!(
        at > 20.0 * off.max(1.0),
        "desk phone hears 1 kHz: {at} vs {off}"
    );
    // a key of the page's keypad reaches the desk phone as RFC 4733 events
    let te = telephone_event_pt(&offer);
    browser
        .click("#phone-keypad [data-dtmf='5']")
        .await
        .expect("press 5");
    let digits = receive_events(&rtp, te, Duration::from_secs(4)).await;
    eprintln!("desk phone: telephone-events {digits:?}");
    assert!(digits.contains(&5), "the desk phone got DTMF 5: {digits:?}");
    talk.abort();
    browser.click("#phone-hangup").await.expect("hang up");
    let bye = desk.request(Method::Bye).await;
    desk.answer(&bye, 200, None, None).await;
    wait_state(&browser, "call", &["ended"]).await;

    // the desk phone calls the browser: it rings on the page (signaling
    // offers the browser WebRTC: its contact is on a WebSocket), is
    // answered there, and the tones cross both ways
    let rtp = std::sync::Arc::new(UdpSocket::bind((LO, 0)).await.expect("bind RTP"));
    let port = rtp.local_addr().expect("addr").port();
    let mut d = desk.dialog_to("bob", "1001");
    let offer = common::phone::sdp(LO, port, "sendrecv");
    let cseq = desk
        .start_invite(&mut d, "bob", "bob-secret", &offer, &[])
        .await;
    wait_state(&browser, "call", &["incoming"]).await;
    let from = browser
        .text("#phone-incoming-from")
        .await
        .expect("caller shown");
    assert!(from.contains("bob") || from.contains("1002"), "{from}");
    browser.click("#phone-answer").await.expect("answer");
    let ok = desk.final_response(Method::Invite).await;
    assert_eq!(ok.code, 200, "{ok:?}");
    d.establish(&ok);
    desk.send(&d.ack(cseq, None)).await;
    wait_state(&browser, "call", &["in-call"]).await;
    let talk = tokio::spawn(send_tone(
        std::sync::Arc::clone(&rtp),
        media_addr(&String::from_utf8_lossy(&ok.body)),
        DESK_HZ,
    ));
    let heard = hear(&browser, DESK_HZ).await;
    eprintln!("answered on the page: the browser hears {heard:?} (Hz, dB)");
    let samples = receive_pcmu(&rtp, Duration::from_secs(2)).await;
    let (at, off) = (power(&samples, BROWSER_HZ), power(&samples, 1500.0));
    eprintln!(
        "answered on the page: the desk phone got {} samples, 1 kHz {at:.0}, 1.5 kHz {off:.0}",
        samples.len()
    );
    assert!(
        at > 20.0 * off.max(1.0),
        "the desk phone hears the browser's 1 kHz: {at} vs {off}"
    );
    talk.abort();
    let bye = d.request(&Method::Bye, None, &[]);
    desk.send(&bye.bytes).await;
    wait_state(&browser, "call", &["ended"]).await;

    call_baresip(&browser, &sig, &dir).await;

    // a page from another origin cannot open signaling's WebSocket
    let foreign = browser
        .execute(&format!(
            "return new Promise(done => {{
               const ws = new WebSocket('wss://127.0.0.1:{}', 'sip');
               ws.onopen = () => done('open');
               ws.onerror = () => done('refused');
               setTimeout(() => done('timeout'), 5000);
             }})",
            wss.port()
        ))
        .await
        .expect("run a WebSocket from the dashboard's origin");
    assert_eq!(foreign, json!("open"), "the dashboard's origin is let in");
    browser
        .goto(&format!("http://localhost:{ui_port}/phone"))
        .await
        .expect("open /phone from another origin");
    browser.fill("#phone-user", "alice").await.expect("user");
    browser
        .fill("#phone-password", "alice-secret")
        .await
        .expect("password");
    browser
        .click("#phone-register-button")
        .await
        .expect("register");
    let state = wait_state(&browser, "registration", &["disconnected", "failed"]).await;
    eprintln!("from a foreign origin: {state}");
    assert!(!state.contains("registered as"), "{state}");
    let refused = sig.metrics().await;
    assert!(
        refused.contains("switchboard_ws_handshakes_refused_total{reason=\"origin\"}"),
        "{refused}"
    );

    let _ = browser.close().await;
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// baresip registers over UDP as carol (1003) and answers by itself; the
/// browser calls it: what baresip decodes (its `sndfile` dump) holds the
/// browser's 1 kHz, the browser hears baresip's tone, and the page hangs up.
async fn call_baresip(browser: &Browser, sig: &Sig, dir: &Path) {
    let setup = Setup {
        account: account(
            "1003",
            sig.sip,
            "udp",
            ("carol", "carol-secret"),
            "answermode=auto",
        ),
        tone: BARESIP_HZ,
        ca_file: None,
        modules: &[],
    };
    let phone = Baresip::spawn(&dir.join("baresip"), &setup);
    let mut ctrl = Ctrl::connect(phone.ctrl).await;
    let start = Instant::now();
    loop {
        let regs = sig.api("GET", "/api/v1/registrations", None).await.1;
        if regs.to_string().contains("carol") {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "baresip did not register: {regs}\n{}",
            phone.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dial(browser, "1003").await;
    ctrl.event("CALL_ESTABLISHED", WAIT).await;
    wait_state(browser, "call", &["in-call"]).await;
    let heard = hear(browser, f64::from(BARESIP_HZ)).await;
    eprintln!("baresip call: the browser hears {heard:?} (Hz, dB)");
    // a few seconds of the browser's tone into baresip's recording
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.click("#phone-hangup").await.expect("hang up");
    wait_state(browser, "call", &["ended"]).await;
    ctrl.event("CALL_CLOSED", WAIT).await;
    let log = phone.log();
    let dump = phone
        .decoded_dump()
        .unwrap_or_else(|| panic!("no decoded audio dump from baresip:\n{log}"));
    let samples = switchboard_media::wav::load_8k_mono(&dump).expect("baresip's WAV");
    assert!(
        samples.len() >= 8000,
        "baresip decoded {} samples",
        samples.len()
    );
    // the half second most of 1 kHz (the call starts with silence)
    let (at, off) = samples
        .chunks(4000)
        .map(|c| (tone_share(c, BROWSER_HZ), tone_share(c, 1500.0)))
        .fold((0.0, 0.0), |best, x| if x.0 > best.0 { x } else { best });
    eprintln!(
        "baresip decoded {} samples: 1 kHz share {at:.3}, 1.5 kHz {off:.3}",
        samples.len()
    );
    assert!(
        at > 0.3 && at > 20.0 * off,
        "baresip hears the browser's 1 kHz: {at:.3} vs {off:.3}"
    );
}

struct Sig {
    running: switchboard_signaling::Running,
    sip: SocketAddr,
    api: SocketAddr,
    token: String,
}

impl Sig {
    async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(Value::to_string).unwrap_or_default();
        let r = common::request(
            self.api,
            LO,
            method,
            path,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await;
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )
    }

    async fn metrics(&self) -> String {
        let auth = format!("Bearer {}", self.token);
        let headers = [("authorization", auth.as_str())];
        common::request(self.api, LO, "GET", "/metrics", &headers, "")
            .await
            .body
    }

    async fn stop(self) {
        self.running.shutdown(Duration::from_secs(2)).await;
    }
}

/// Signaling with WSS (a self-signed certificate for 127.0.0.1) letting
/// in pages of `origin` only, and the shipped dialplan (600 echoes).
async fn signaling(dir: &Path, origin: &str) -> Sig {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let (cert, pem) = (dir.join("wss.pem"), dir.join("wss.key"));
    std::fs::write(&cert, key.cert.pem()).expect("write cert");
    std::fs::write(&pem, key.signing_key.serialize_pem()).expect("write key");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dialplan.json");
    let sig_dir = dir.join("signaling");
    std::fs::create_dir_all(&sig_dir).expect("dir");
    std::fs::copy(plan, sig_dir.join("dialplan.json")).expect("dialplan");
    let mut c = switchboard_signaling::Config::for_tests(sig_dir);
    c.tls.tls_cert = Some(cert);
    c.tls.tls_key = Some(pem);
    c.tls.wss_port = Some(0);
    c.tls.ws_allowed_origins = origin.to_owned();
    let token = format!("token-{:x}", rand::random::<u64>());
    c.api_token = Some(token.clone());
    let running = switchboard_signaling::run(c)
        .await
        .expect("signaling starts");
    Sig {
        sip: running.sip_addrs[0],
        api: running.api_addr,
        token,
        running,
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind((LO, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Five seconds of a sine at `hz`, 8 kHz mono (Chromium loops it).
fn write_tone(path: &Path, hz: f64) {
    let samples: Vec<i16> = (0..40_000).map(|i| sine(hz, i)).collect();
    let mut w = switchboard_media::wav::WavRecorder::create(path, 1).expect("create WAV");
    w.write_mono(&samples).expect("write WAV");
    w.finish().expect("finish WAV");
}

fn sine(hz: f64, i: usize) -> i16 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let v = (f64::from(i16::MAX)
        * 0.5
        * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16;
    v
}

async fn dial(browser: &Browser, number: &str) {
    browser.fill("#phone-target", number).await.expect("number");
    browser.click("#phone-call").await.expect("call");
}

/// Waits until `#phone`'s `data-<what>` is one of `states`; returns the
/// state's text shown on the page.
async fn wait_state(browser: &Browser, what: &str, states: &[&str]) -> String {
    let start = Instant::now();
    let js = format!(
        "const p = document.getElementById('phone'); \
         return [p.getAttribute('data-{what}'), \
                 document.getElementById('phone-{}-state').textContent];",
        if what == "call" { "call" } else { "reg" }
    );
    loop {
        let v = browser.execute(&js).await.unwrap_or(Value::Null);
        let state = v[0].as_str().unwrap_or_default();
        if states.contains(&state) {
            return v[1].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            start.elapsed() < WAIT,
            "{what} never became {states:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_level(browser: &Browser, css: &str) -> f64 {
    let start = Instant::now();
    loop {
        let v = browser
            .execute(&format!("return document.querySelector('{css}').value;"))
            .await
            .unwrap_or(Value::Null);
        let level = v.as_f64().unwrap_or(0.0);
        if level > 0.01 || start.elapsed() > Duration::from_secs(5) {
            return level;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Listens until the loudest frequency is `hz` (the first window may
/// hold the call's first silence, or a glitch on a loaded machine); panics
/// with what it heard after six windows.
async fn hear(browser: &Browser, hz: f64) -> (f64, f64) {
    let mut heard = Vec::new();
    for _ in 0..6 {
        let h = listen(browser).await;
        if (h.0 - hz).abs() < 40.0 && h.1 > -60.0 {
            return h;
        }
        heard.push(h);
    }
    panic!("never heard {hz} Hz: {heard:?}");
}

/// The loudest frequency of the remote audio the page plays, over 1.5 s
/// (Web Audio's FFT), with its level in dB.
async fn listen(browser: &Browser) -> (f64, f64) {
    let v = browser
        .execute(
            "return (async () => {
               const s = window.switchboardPhone.remoteStream;
               if (!s) return { error: 'no remote stream' };
               const ctx = new AudioContext();
               await ctx.resume();
               const an = ctx.createAnalyser();
               an.fftSize = 8192;
               an.smoothingTimeConstant = 0.5;
               ctx.createMediaStreamSource(s).connect(an);
               await new Promise(r => setTimeout(r, 1500));
               const d = new Float32Array(an.frequencyBinCount);
               an.getFloatFrequencyData(d);
               let best = 1;
               for (let i = 2; i < d.length; i++) if (d[i] > d[best]) best = i;
               const out = { hz: best * ctx.sampleRate / an.fftSize, db: d[best] };
               ctx.close();
               return out;
             })()",
        )
        .await
        .expect("analyse the remote audio");
    let hz = v["hz"].as_f64().unwrap_or_else(|| panic!("{v}"));
    let db = v["db"].as_f64().unwrap_or(f64::NEG_INFINITY);
    (hz, db)
}

/// `c=` address and `m=audio` port of an SDP.
fn media_addr(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .expect("m= line");
    format!("{ip}:{port}").parse().expect("media address")
}

/// PCMU at `hz` to `to`, 20 ms a packet, until aborted.
async fn send_tone(sock: std::sync::Arc<UdpSocket>, to: SocketAddr, hz: f64) {
    let ssrc = rand::random::<u32>();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..u16::MAX {
        tick.tick().await;
        let mut pkt = Vec::with_capacity(172);
        switchboard_media::rtp_header::write_header(
            &mut pkt,
            0,
            n == 0,
            n,
            u32::from(n) * 160,
            ssrc,
        );
        let start = usize::from(n) * 160;
        pkt.extend((start..start + 160).map(|i| switchboard_media::g711::ulaw_encode(sine(hz, i))));
        let _ = sock.send_to(&pkt, to).await;
    }
}

/// Decoded PCMU samples arriving within `wait` (after the socket's backlog).
async fn receive_pcmu(sock: &UdpSocket, wait: Duration) -> Vec<i16> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let end = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {
        if n > 12 && buf[1] & 0x7f == 0 {
            out.extend(
                buf[12..n]
                    .iter()
                    .map(|b| switchboard_media::g711::ulaw_decode(*b)),
            );
        }
    }
    out
}

/// The payload type of `telephone-event/8000` in an SDP.
fn telephone_event_pt(sdp: &str) -> u8 {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .find_map(|l| {
            let (pt, name) = l.split_once(' ')?;
            name.trim()
                .eq_ignore_ascii_case("telephone-event/8000")
                .then(|| pt.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no telephone-event in {sdp}"))
}

/// The event codes of RFC 4733 packets (payload type `pt`) within `wait`.
async fn receive_events(sock: &UdpSocket, pt: u8, wait: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let end = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {
        if n >= 16 && buf[1] & 0x7f == pt && !out.contains(&buf[12]) {
            out.push(buf[12]);
        }
    }
    out
}

/// Goertzel power of `hz` in 8 kHz samples, per sample.
fn power(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = f64::from(x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = samples.len().max(1) as f64;
    (s1 * s1 + s2 * s2 - c * s1 * s2) / n
}
