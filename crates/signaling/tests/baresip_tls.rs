//! Interop with baresip (Debian's `baresip-core`, which
//! scripts/ensure-deps.sh installs): baresip registers over TLS, trusting
//! a test CA made here, and calls the echo (600) with SDES-SRTP
//! (`mediaenc=srtp-mand`); its SIP trace shows RTP/SAVP offered and
//! answered with a=crypto on both sides, and the tone its `ausine` source
//! sends comes back: the `sndfile` dump of what it decoded holds that
//! tone (Goertzel).
//!
//! baresip is driven through its `ctrl_tcp` module (netstring-framed
//! JSON) on a loopback port; it runs from a temporary config directory
//! with no audio device module, and is killed when the test ends.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::tls_phone::{ca, leaf};
use common::{TestServer, start_in, temp_dir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The tone baresip's `ausine` source sends (Hz).
const TONE: u32 = 1000;

/// A TCP port free on loopback right now (baresip's `ctrl_tcp`).
fn free_tcp_port() -> u16 {
    TcpListener::bind((LO, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// One baresip process on its own config directory; killed on drop.
struct Baresip {
    child: Child,
    dir: PathBuf,
    ctrl: SocketAddr,
}

impl Baresip {
    /// Starts baresip with an account registering to `server` over TLS.
    fn spawn(
        dir: &Path,
        server: SocketAddr,
        ca_file: &Path,
        user: &str,
        auth: (&str, &str),
    ) -> Self {
        let conf = dir.join("baresip");
        let dumps = dir.join("dumps");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&dumps).unwrap();
        let ctrl = SocketAddr::new(LO, free_tcp_port());
        let config = format!(
            "poll_method\t\tepoll\n\
             net_interface\t\t127.0.0.1\n\
             sip_listen\t\t127.0.0.1:0\n\
             sip_cafile\t\t{ca}\n\
             call_local_timeout\t30\n\
             audio_source\t\tausine,{TONE}\n\
             ausrc_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             audio_buffer\t\t20\n\
             rtp_timeout\t\t10\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\tsndfile.so\n\
             module\t\t\tsrtp.so\n\
             module_tmp\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t{ctrl}\n\
             snd_path\t\t{dumps}\n",
            ca = ca_file.display(),
            dumps = dumps.display(),
        );
        std::fs::write(conf.join("config"), config).unwrap();
        let (auth_user, auth_pass) = auth;
        let account = format!(
            "<sip:{user}@{ip}:{port};transport=tls>;auth_user={auth_user};auth_pass={auth_pass};\
             mediaenc=srtp-mand;audio_codecs=pcmu;regint=300;answermode=manual\n",
            ip = server.ip(),
            port = server.port(),
        );
        std::fs::write(conf.join("accounts"), account).unwrap();
        std::fs::write(conf.join("contacts"), "").unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-4")
            .arg("-f")
            .arg(&conf)
            .arg("-s") // SIP trace on stdout: the test reads the SDP there
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("baresip runs (scripts/ensure-deps.sh installs baresip-core)");
        Baresip {
            child,
            dir: dir.to_path_buf(),
            ctrl,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// The `sndfile` dump of the decoded (received) audio, once written.
    fn decoded_dump(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.join("dumps"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// baresip's control connection: netstring-framed JSON both ways;
/// responses and events arrive on it in order.
struct Ctrl {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Ctrl {
    async fn connect(addr: SocketAddr) -> Ctrl {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    return Ctrl {
                        stream,
                        buf: Vec::new(),
                    };
                }
                Err(e) if Instant::now() > deadline => panic!("ctrl_tcp at {addr}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn command(&mut self, command: &str, params: &str) {
        let body = json!({"command": command, "params": params, "token": command}).to_string();
        let framed = format!("{}:{body},", body.len());
        self.stream.write_all(framed.as_bytes()).await.unwrap();
    }

    /// The next message, or None after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon])
                    .unwrap()
                    .parse()
                    .unwrap();
                if self.buf.len() > colon + len + 1 {
                    let body = self.buf[colon + 1..colon + 1 + len].to_vec();
                    self.buf.drain(..colon + len + 2);
                    return Some(serde_json::from_slice(&body).unwrap());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .ok()?
                .unwrap();
            assert!(n > 0, "baresip closed its control connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits for the event of `kind` (e.g. CALL_ESTABLISHED), returning
    /// it; panics with what came instead after `wait`.
    async fn event(&mut self, kind: &str, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(m) if m["event"] == true && m["type"] == kind => return m,
                Some(m) => seen.push(m),
                None => break,
            }
        }
        panic!("no {kind} event within {wait:?}; got {seen:#?}");
    }
}

/// The power of `freq` in `samples` (8 kHz) relative to their total power
/// (Goertzel): near 0.5 for a pure tone at `freq`, near 0 without it.
fn tone_share(samples: &[i16], freq: f64) -> f64 {
    let n = samples.len() as f64;
    let w = std::f64::consts::TAU * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut total = 0.0f64;
    for &x in samples {
        let x = f64::from(x);
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        total += x * x;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if total == 0.0 {
        return 0.0;
    }
    // |X(f)|² = (A·N/2)² for a tone of amplitude A; Σx² = A²·N/2
    power / (n * total)
}

#[test]
fn goertzel_finds_a_tone_and_not_another() {
    let tone: Vec<i16> = (0..8000)
        .map(|i| ((f64::from(i) * std::f64::consts::TAU * 1000.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    assert!(tone_share(&tone, 1000.0) > 0.45);
    assert!(tone_share(&tone, 1300.0) < 0.01);
    assert_eq!(tone_share(&[0; 800], 1000.0), 0.0);
}

/// The SIP messages of baresip's trace (`-s`) that hold `needle`.
fn traced_messages<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.split("\n\n").filter(|m| m.contains(needle)).collect()
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
    let phone = Baresip::spawn(&dir, tls, &ca_file, "1001", ("alice", "alice-secret"));

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
