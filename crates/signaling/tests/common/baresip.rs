//! baresip (Debian's `baresip-core`, which scripts/ensure-deps.sh
//! installs) as a test peer: one process on its own temporary config
//! directory, with no audio device module — its `ausine` source sends a
//! tone and its `sndfile` module writes what it sends and decodes to WAV
//! files — driven through its `ctrl_tcp` module (netstring-framed JSON)
//! on a loopback port, and killed when dropped.
//!
//! baresip 1.0.0's quirks are handled here: `ausine` wants a 48 kHz
//! stereo source (`ausrc_srate`, `ausrc_channels`), dialling needs the
//! `menu` module, and it is kept to loopback with `net_interface
//! 127.0.0.1` and `-4`. Auto-answer is the account's `answermode=auto`.
//!
//! Shared by signaling's `baresip_tls` and the UI's browser phone test
//! (which includes this file by path).

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Whether baresip is installed (a test without it says so and skips).
pub fn installed() -> bool {
    Path::new("/usr/lib/baresip/modules/sndfile.so").exists()
}

/// A TCP port free on loopback right now (baresip's `ctrl_tcp`).
fn free_tcp_port() -> u16 {
    TcpListener::bind((LO, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// What one baresip runs with.
pub struct Setup<'a> {
    /// The account line of baresip's `accounts` file, e.g.
    /// `<sip:1003@127.0.0.1:5060>;auth_user=carol;auth_pass=…;answermode=auto`
    /// ([`account`] writes one).
    pub account: String,
    /// The tone its `ausine` source sends (Hz).
    pub tone: u32,
    /// A CA file trusted for TLS (`sip_cafile`).
    pub ca_file: Option<&'a Path>,
    /// More modules to load (e.g. `srtp.so`).
    pub modules: &'a [&'a str],
}

/// An account line registering `user` to `server` over `transport`
/// (`udp` or `tls`) with digest credentials `auth`, then `params`
/// (`;`-separated account parameters, e.g. `answermode=auto`).
pub fn account(
    user: &str,
    server: SocketAddr,
    transport: &str,
    auth: (&str, &str),
    params: &str,
) -> String {
    let (auth_user, auth_pass) = auth;
    format!(
        "<sip:{user}@{ip}:{port};transport={transport}>;auth_user={auth_user};auth_pass={auth_pass};\
         audio_codecs=pcmu;regint=300;{params}",
        ip = server.ip(),
        port = server.port(),
    )
}

/// One baresip process on its own config directory; killed on drop.
pub struct Baresip {
    child: Child,
    pub dir: PathBuf,
    pub ctrl: SocketAddr,
}

impl Baresip {
    /// Starts baresip in `dir` (created), its SIP trace (`-s`) in
    /// `dir/baresip.log`.
    pub fn spawn(dir: &Path, setup: &Setup<'_>) -> Self {
        let conf = dir.join("baresip");
        let dumps = dir.join("dumps");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&dumps).unwrap();
        let ctrl = SocketAddr::new(LO, free_tcp_port());
        let mut config = format!(
            "poll_method\t\tepoll\n\
             net_interface\t\t127.0.0.1\n\
             sip_listen\t\t127.0.0.1:0\n\
             call_local_timeout\t30\n\
             audio_source\t\tausine,{tone}\n\
             ausrc_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             audio_buffer\t\t20\n\
             rtp_timeout\t\t10\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\tsndfile.so\n\
             module_tmp\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t{ctrl}\n\
             snd_path\t\t{dumps}\n",
            tone = setup.tone,
            dumps = dumps.display(),
        );
        if let Some(ca) = setup.ca_file {
            config.push_str(&format!("sip_cafile\t\t{}\n", ca.display()));
        }
        for m in setup.modules {
            config.push_str(&format!("module\t\t\t{m}\n"));
        }
        std::fs::write(conf.join("config"), config).unwrap();
        std::fs::write(conf.join("accounts"), format!("{}\n", setup.account)).unwrap();
        std::fs::write(conf.join("contacts"), "").unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-4")
            .arg("-f")
            .arg(&conf)
            .arg("-s") // SIP trace on stdout: tests read the SDP there
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// The `sndfile` dump of the decoded (received) audio, once written.
    pub fn decoded_dump(&self) -> Option<PathBuf> {
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
pub struct Ctrl {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Ctrl {
    pub async fn connect(addr: SocketAddr) -> Ctrl {
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

    pub async fn command(&mut self, command: &str, params: &str) {
        let body = json!({"command": command, "params": params, "token": command}).to_string();
        let framed = format!("{}:{body},", body.len());
        self.stream.write_all(framed.as_bytes()).await.unwrap();
    }

    /// The next message, or None after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
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
    pub async fn event(&mut self, kind: &str, wait: Duration) -> Value {
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
pub fn tone_share(samples: &[i16], freq: f64) -> f64 {
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

/// The SIP messages of baresip's trace (`-s`) that hold `needle`.
pub fn traced_messages<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.split("\n\n").filter(|m| m.contains(needle)).collect()
}
