//! What the call agent's tests share: signaling on loopback with the
//! shipped dialplan and two users (agent 1001, desk 1002), the agent's
//! settings from flags, a desk phone's media (plays a script, keeps what
//! it hears), tones and speech, a test CA, and webrtc-rs `turn`'s own
//! server on loopback.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

#[path = "../../../signaling/tests/common/phone.rs"]
pub mod phone;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard_call::config::Config;
use switchboard_media::g711::Codec;
use switchboard_media::rtp_header::{RtpView, write_header};
use tokio::net::UdpSocket;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};

pub const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const TONE_HZ: f64 = 700.0;

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-call-test-{name}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Node {
    pub running: switchboard_signaling::Running,
    pub sip: SocketAddr,
    pub api: SocketAddr,
    pub token: String,
}

pub async fn node(name: &str) -> Node {
    node_with(name, |_| {}).await
}

pub async fn node_with(name: &str, tweak: impl FnOnce(&mut switchboard_signaling::Config)) -> Node {
    let dir = temp_dir(name);
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dialplan.json");
    std::fs::copy(plan, dir.join("dialplan.json")).unwrap();
    let mut config = switchboard_signaling::Config::for_tests(dir);
    tweak(&mut config);
    let running = switchboard_signaling::run(config).await.unwrap();
    let node = Node {
        sip: running.sip_addrs[0],
        api: running.api_addr,
        token: running.api_token.clone(),
        running,
    };
    for (user, ext) in [("agent", "1001"), ("desk", "1002")] {
        node.post_user(user, ext).await;
    }
    node
}

impl Node {
    /// GET `path` of the API: status and body.
    pub async fn api_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.api).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.token
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    pub async fn post_user(&self, user: &str, ext: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = serde_json::json!({"username": user, "password": format!("{user}-secret"), "extension": ext})
            .to_string();
        let mut s = tokio::net::TcpStream::connect(self.api).await.unwrap();
        let req = format!(
            "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    }
}

/// The agent's settings: `pairs` are its flags (the same as its env).
pub fn settings(pairs: &[(&str, String)]) -> switchboard_call::config::Settings {
    let mut args = vec!["switchboard-call".to_owned()];
    args.extend(pairs.iter().map(|(k, v)| format!("--{k}={v}")));
    Config::try_parse_from(args).unwrap().settings().unwrap()
}

pub fn agent_of(n: &Node, dest: &str, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("dest", dest.to_owned()),
        ("sip-server", n.sip.to_string()),
        ("sip-user", "agent".into()),
        ("sip-password", "agent-secret".into()),
    ];
    for (k, val) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        v.push((k, val.clone()));
    }
    v
}

/// A decoded frame and when it arrived.
pub type Frame = (Duration, Vec<i16>);

/// A desk phone's media: plays `tone_for` of a tone then silence, and keeps
/// what arrives (decoded, with arrival times).
pub struct DeskMedia {
    sock: Arc<UdpSocket>,
    heard: Arc<Mutex<Vec<Frame>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DeskMedia {
    pub async fn bind() -> DeskMedia {
        DeskMedia {
            sock: Arc::new(UdpSocket::bind((LO, 0)).await.unwrap()),
            heard: Arc::default(),
            tasks: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Sends `script` (8 kHz samples) then silence, 20 ms a packet.
    pub fn start(&mut self, to: SocketAddr, script: Vec<i16>) {
        let sock = Arc::clone(&self.sock);
        self.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0..u16::MAX {
                tick.tick().await;
                let mut pkt = Vec::new();
                write_header(&mut pkt, 0, n == 0, n, u32::from(n) * 160, 0x1234_5678);
                let at = usize::from(n) * 160;
                pkt.extend((at..at + 160).map(|i| {
                    switchboard_media::g711::ulaw_encode(script.get(i).copied().unwrap_or(0))
                }));
                let _ = sock.send_to(&pkt, to).await;
            }
        }));
        let (sock, heard) = (Arc::clone(&self.sock), Arc::clone(&self.heard));
        self.tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                let Some(rtp) = RtpView::parse(&buf[..n]) else {
                    continue;
                };
                let Some(codec) = Codec::from_payload_type(rtp.payload_type()) else {
                    continue;
                };
                let mut out = Vec::new();
                codec.decode(rtp.payload(), &mut out);
                heard.lock().unwrap().push((start.elapsed(), out));
            }
        }));
    }

    /// (seconds after the start, RMS) of the first loud frame.
    pub fn first_loud(&self) -> Option<(f64, f64)> {
        let h = self.heard.lock().unwrap();
        h.iter()
            .map(|(at, f)| (at.as_secs_f64(), switchboard_call::audio::rms(f)))
            .find(|(_, rms)| *rms > 1000.0)
    }

    /// Everything heard, decoded, in arrival order.
    pub fn samples(&self) -> Vec<i16> {
        let h = self.heard.lock().unwrap();
        h.iter().flat_map(|(_, f)| f.iter().copied()).collect()
    }

    pub fn loud_frames(&self) -> usize {
        let h = self.heard.lock().unwrap();
        h.iter()
            .filter(|(_, f)| switchboard_call::audio::rms(f) > 1000.0)
            .count()
    }
}

impl Drop for DeskMedia {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `secs` of the test tone.
pub fn tone(secs: f64) -> Vec<i16> {
    (0..(secs * 8000.0) as usize)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// `text` spoken by espeak-ng, 8 kHz.
pub fn speech(text: &str, dir: &Path) -> Vec<i16> {
    let wav = dir.join("speech.wav");
    let ok = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()
        .unwrap();
    assert!(ok.success());
    switchboard_media::wav::load_8k_mono(&wav).unwrap()
}

pub fn media_addr(sdp: &[u8]) -> SocketAddr {
    switchboard_sip::sdp::parse(sdp)
        .unwrap()
        .remote_rtp()
        .unwrap()
}

/// Goertzel power of `hz` in 8 kHz samples, per sample.
pub fn power(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = f64::from(x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / samples.len().max(1) as f64
}

/// A CA and a certificate it signed for 127.0.0.1, as PEM files in `dir`:
/// (ca.pem, server.pem, server.key).
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "call agent test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

pub struct Users;

impl AuthHandler for Users {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        if username == "relay-user" {
            Ok(generate_auth_key(username, realm, "relay-pass"))
        } else {
            Err(turn::Error::ErrNoSuchUser)
        }
    }
}

pub async fn turn_server() -> (Server, SocketAddr) {
    let conn = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    let addr = conn.local_addr().unwrap();
    let server = Server::new(ServerConfig {
        conn_configs: vec![ConnConfig {
            conn,
            relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                relay_address: LO,
                address: "127.0.0.1".to_owned(),
                net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
            }),
        }],
        realm: "switchboard.test".to_owned(),
        auth_handler: Arc::new(Users),
        channel_bind_timeout: Duration::from_secs(0),
        alloc_close_notify: None,
    })
    .await
    .unwrap();
    (server, addr)
}

/// `samples` as a phone decodes them after a PCMU hop.
pub fn through_pcmu(samples: &[i16]) -> Vec<i16> {
    samples
        .iter()
        .map(|&x| switchboard_media::g711::ulaw_decode(switchboard_media::g711::ulaw_encode(x)))
        .collect()
}

/// How many of `expected`'s 20 ms frames, from its first loud one on,
/// arrived sample for sample and in order in `heard`; and how many there
/// were to find.
pub fn frames_found(heard: &[i16], expected: &[i16]) -> (usize, usize) {
    let frames: Vec<&[i16]> = expected.chunks_exact(160).collect();
    let Some(first) = frames
        .iter()
        .position(|f| switchboard_call::audio::rms(f) > 1000.0)
    else {
        return (0, 0);
    };
    let want = frames.len() - first;
    let Some(at) = heard.windows(160).position(|w| w == frames[first]) else {
        return (0, want);
    };
    let found = frames[first..]
        .iter()
        .enumerate()
        .filter(|(k, f)| heard.get(at + k * 160..at + k * 160 + 160) == Some(**f))
        .count();
    (found, want)
}

/// The desk phone answers `invite` 200 with media on a socket of its own
/// that sends silence (so the platform latches) and keeps what it hears.
pub async fn answer_with_media(
    desk: &phone::SipPhone,
    invite: &switchboard_sip::message::Request,
) -> DeskMedia {
    let mut media = DeskMedia::bind().await;
    let answer = phone::sdp(LO, media.port(), "sendrecv");
    desk.answer(invite, 200, Some("desk"), Some(&answer)).await;
    media.start(media_addr(&invite.body), Vec::new());
    media
}

/// Waits up to 20 s for the agent's BYE and answers it 200.
pub async fn take_bye(desk: &phone::SipPhone) {
    let bye = desk
        .request_within(
            switchboard_sip::message::Method::Bye,
            Duration::from_secs(20),
        )
        .await;
    desk.answer(&bye, 200, None, None).await;
}
