//! Shared by the RTP manager's integration tests: a manager served over
//! gRPC on loopback, and UDP "phones" on 127.0.0.1 / ::1.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use switchboard_media::learning::Policy;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_rtpmanager::{Engine, EngineConfig, RtpAddress, serve};
use switchboard_rtpmanager_api::RtpManagerClient;
use switchboard_rtpmanager_api::v1 as pb;
use switchboard_sip::sdp;
use tokio::net::{TcpListener, UdpSocket};
use tonic::transport::Channel;

pub mod srtp;
pub mod webrtc;

pub struct Manager {
    pub client: RtpManagerClient<Channel>,
    pub running: switchboard_rtpmanager::Running,
    pub record_dir: PathBuf,
}

pub fn audio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../audio")
}

pub fn rand_u32() -> u32 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A fresh directory under the system's temp dir.
pub fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "switchboard-{what}-{}-{}",
        std::process::id(),
        rand_u32()
    ))
}

/// A distinct port range per test, so tests run in parallel.
pub fn range(slot: u16) -> (u16, u16) {
    let base = 41000 + slot * 100;
    (base, base + 99)
}

/// The engine settings of a test manager: `addresses` bound and advertised
/// as they are, RTCP reports every 300 ms, the given RTP timeout.
pub fn engine_config(addresses: &[&str], ports: (u16, u16), timeout: Duration) -> EngineConfig {
    EngineConfig {
        addresses: addresses
            .iter()
            .map(|a| {
                let ip: IpAddr = a.parse().unwrap();
                RtpAddress {
                    bind: ip,
                    advertise: ip,
                }
            })
            .collect(),
        port_min: ports.0,
        port_max: ports.1,
        audio_path: audio_dir(),
        record_path: temp_dir("rec"),
        rtp_timeout: timeout,
        rtp_hold_timeout: switchboard_rtpmanager::engine::RTP_HOLD_TIMEOUT,
        rtcp_interval: Duration::from_millis(300),
        source_policy: Policy::SdpIp,
    }
}

/// A manager with `config`, served without token on a loopback port.
pub async fn start(config: EngineConfig) -> Manager {
    let record_dir = config.record_path.clone();
    let engine = Engine::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = serve(engine, listener).await.unwrap();
    let client = RtpManagerClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    Manager {
        client,
        running,
        record_dir,
    }
}

pub async fn manager_with(addresses: &[&str], ports: (u16, u16), timeout: Duration) -> Manager {
    start(engine_config(addresses, ports, timeout)).await
}

pub async fn manager(slot: u16) -> Manager {
    manager_with(&["127.0.0.1"], range(slot), Duration::from_secs(60)).await
}

impl Manager {
    pub async fn health(&mut self) -> pb::HealthResponse {
        self.client
            .health(pb::HealthRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn bridge(&mut self, a: &str, b: &str) {
        self.client
            .bridge(pb::BridgeRequest {
                session_a: a.into(),
                session_b: b.into(),
            })
            .await
            .unwrap();
    }

    pub async fn info(&mut self, session: &str) -> Result<pb::SessionInfo, tonic::Status> {
        self.client
            .get_session(pb::GetSessionRequest {
                session_id: session.into(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

/// A phone: one UDP socket for RTP.
pub struct Phone {
    pub sock: UdpSocket,
    pub ssrc: u32,
}

impl Phone {
    pub async fn on(ip: &str) -> Phone {
        Phone {
            sock: UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0))
                .await
                .unwrap(),
            ssrc: 0x1234_5678,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// An SDP offer naming this phone's socket.
    pub fn offer(&self, fmts: &[(u8, &str)], te: Option<u8>) -> String {
        offer_at(self.addr(), fmts, te)
    }

    pub async fn send(
        &self,
        to: SocketAddr,
        pt: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) {
        let mut buf = Vec::new();
        write_header(&mut buf, pt, marker, seq, ts, self.ssrc);
        buf.extend_from_slice(payload);
        self.sock.send_to(&buf, to).await.unwrap();
    }

    /// `n` PCMU packets in sequence from `seq0`, each with `payload`, a
    /// few ms apart.
    pub async fn burst(&self, to: SocketAddr, seq0: u16, n: u16, payload: &[u8]) {
        for i in 0..n {
            let seq = seq0.wrapping_add(i);
            self.send(to, 0, seq, u32::from(seq) * 160, i == 0, payload)
                .await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn recv(&self, wait: Duration) -> Option<Rtp> {
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let v = RtpView::parse(&buf[..n])?;
        Some(Rtp {
            pt: v.payload_type(),
            seq: v.sequence(),
            ts: v.timestamp(),
            ssrc: v.ssrc(),
            marker: v.marker(),
            payload: v.payload().to_vec(),
            from,
        })
    }

    /// Every packet that arrives until `quiet` passes without one.
    pub async fn recv_all(&self, quiet: Duration) -> Vec<Rtp> {
        let mut got = Vec::new();
        while let Some(p) = self.recv(quiet).await {
            got.push(p);
        }
        got
    }
}

/// An SDP offer naming `a` as the phone's RTP address.
pub fn offer_at(a: SocketAddr, fmts: &[(u8, &str)], te: Option<u8>) -> String {
    let fam = if a.is_ipv6() { "IP6" } else { "IP4" };
    let mut pts: Vec<String> = fmts.iter().map(|(p, _)| p.to_string()).collect();
    if let Some(t) = te {
        pts.push(t.to_string());
    }
    let mut s = format!(
        "v=0\r\no=phone 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\n",
        ip = a.ip(),
        port = a.port(),
        pts = pts.join(" ")
    );
    for (p, n) in fmts {
        s.push_str(&format!("a=rtpmap:{p} {n}/8000\r\n"));
    }
    if let Some(t) = te {
        s.push_str(&format!(
            "a=rtpmap:{t} telephone-event/8000\r\na=fmtp:{t} 0-16\r\n"
        ));
    }
    s.push_str("a=sendrecv\r\n");
    s
}

#[derive(Debug)]
pub struct Rtp {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub from: SocketAddr,
}

pub fn rtp_addr(sdp_text: &str) -> SocketAddr {
    let d = sdp::parse(sdp_text.as_bytes()).unwrap();
    SocketAddr::new(d.connection.unwrap(), d.audio_port)
}

pub async fn create(
    m: &mut Manager,
    leg: &str,
    offer: Option<String>,
) -> pb::CreateSessionResponse {
    m.client
        .create_session(pb::CreateSessionRequest {
            call_id: "call-1".into(),
            leg: leg.into(),
            remote_sdp: offer.unwrap_or_default(),
            address_family: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

pub fn tone(n: usize, freq: f64, amp: f64) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f64 * freq * std::f64::consts::TAU / 8000.0).sin() * amp) as i16)
        .collect()
}

/// The strength of `freq` in samples at `rate` Hz (Goertzel), relative to
/// the block's energy: near 1 for a pure tone at `freq`.
pub fn tone_share(samples: &[i16], freq: f64, rate: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
    for &x in samples {
        let x = f64::from(x);
        let s0 = x + c * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    let power = s1 * s1 + s2 * s2 - c * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        2.0 * power / (energy * samples.len() as f64)
    }
}
