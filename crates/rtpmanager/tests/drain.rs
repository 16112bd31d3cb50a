//! SIGTERM drains the real binary: no new sessions, the live ones keep
//! their gRPC control and their RTP, and the process exits 0 when the last
//! one ends, when SHUTDOWN_GRACE runs out, or at a second signal.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use switchboard_rtpmanager_api::RtpManagerClient;
use switchboard_rtpmanager_api::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

/// A `switchboard-rtpmanager` process on loopback, its log in a file.
struct Proc {
    child: Child,
    client: RtpManagerClient<Channel>,
    log: PathBuf,
    dir: PathBuf,
}

/// The log without its colours.
fn read_log(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: up to the final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Proc {
    /// The binary with its own gRPC port and the RTP ports of `slot`, in a
    /// clean environment.
    async fn start(slot: u16, shutdown_grace: u64) -> Proc {
        // a free port may be taken by another process before the manager
        // binds it: then what answers is not our manager, so try another
        for _ in 0..3 {
            if let Some(p) = Proc::try_start(slot, shutdown_grace).await {
                return p;
            }
        }
        panic!("the manager did not start on three ports");
    }

    async fn try_start(slot: u16, shutdown_grace: u64) -> Option<Proc> {
        let dir = temp_dir("drain");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("manager.log");
        let grpc: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let (min, max) = range(slot);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard-rtpmanager"))
            .env_clear()
            .env("LOGLEVEL", "info")
            .env("GRPC_BIND", "127.0.0.1")
            .env("GRPC_PORT", grpc.port().to_string())
            .env("RTP_BIND", "127.0.0.1")
            .env("RTP_PORT_MIN", min.to_string())
            .env("RTP_PORT_MAX", max.to_string())
            .env("AUDIO_PATH", audio_dir())
            .env("RECORD_PATH", dir.join("rec"))
            .env("SHUTDOWN_GRACE", shutdown_grace.to_string())
            .stdin(Stdio::null())
            // the log goes to stdout
            .stdout(File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // the binary needs a moment to bind
        for _ in 0..200 {
            if let Ok(mut client) = RtpManagerClient::connect(format!("http://{grpc}")).await {
                // ours only when it answers Health and is still running
                let ours = client.health(pb::HealthRequest {}).await.is_ok()
                    && child.try_wait().unwrap().is_none();
                if !ours {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                return Some(Proc {
                    child,
                    client,
                    log,
                    dir,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                if read_log(&log).contains("cannot bind") {
                    return None;
                }
                panic!("{status}: {}", read_log(&log));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the manager did not answer: {}", read_log(&log));
    }

    fn log(&self) -> String {
        read_log(&self.log)
    }

    fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    async fn health(&mut self) -> pb::HealthResponse {
        self.client
            .health(pb::HealthRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Health until it says draining (the signal is handled
    /// asynchronously).
    async fn until_draining(&mut self) -> pb::HealthResponse {
        for _ in 0..200 {
            let h = self.health().await;
            if h.draining {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("not draining: {}", self.log());
    }

    /// The exit status, if the process ends within `limit`.
    async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }

    async fn create(
        &mut self,
        offer: Option<String>,
    ) -> Result<pb::CreateSessionResponse, tonic::Status> {
        self.client
            .create_session(pb::CreateSessionRequest {
                call_id: "call-drain".into(),
                leg: "a".into(),
                remote_sdp: offer.unwrap_or_default(),
                address_family: String::new(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends a few packets into `to` and counts the echoed ones that come back.
async fn echoed(phone: &Phone, to: SocketAddr, seq0: u16) -> usize {
    phone.burst(to, seq0, 5, &[0x55; 160]).await;
    let got = phone.recv_all(Duration::from_millis(300)).await;
    got.iter().filter(|p| p.payload == [0x55; 160]).count()
}

#[tokio::test]
async fn sigterm_drains_and_the_last_session_ending_stops_the_manager() {
    let mut m = Proc::start(30, 3600).await;
    let phone = Phone::on("127.0.0.1").await;
    let s = m
        .create(Some(phone.offer(&[(0, "PCMU")], None)))
        .await
        .unwrap();
    m.client
        .echo(pb::EchoRequest {
            session_id: s.session_id.clone(),
        })
        .await
        .unwrap();
    let to = rtp_addr(&s.local_sdp);
    assert_eq!(echoed(&phone, to, 100).await, 5, "echo before SIGTERM");
    // signaling's kind of stream, open through the drain and the exit
    let mut events = m
        .client
        .watch_events(pb::WatchEventsRequest {
            session_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    m.signal("TERM");
    let h = m.until_draining().await;
    assert_eq!(h.sessions, 1);

    // no new session, and signaling cannot undo the drain
    let e = m.create(None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    let h = m
        .client
        .set_draining(pb::SetDrainingRequest { draining: false })
        .await
        .unwrap()
        .into_inner();
    assert!(h.draining, "SetDraining(false) while shutting down");
    let e = m.create(None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");

    // the live session is still served: gRPC and RTP
    let info = m
        .client
        .get_session(pb::GetSessionRequest {
            session_id: s.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.packets_received, 5);
    assert_eq!(echoed(&phone, to, 105).await, 5, "echo while draining");
    assert!(m.child.try_wait().unwrap().is_none(), "{}", m.log());

    // the last session ends: the manager exits 0
    m.client
        .destroy_session(pb::DestroySessionRequest {
            session_id: s.session_id.clone(),
        })
        .await
        .unwrap();
    let status = m.exit_within(Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        m.log()
    );
    let log = m.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("drained: no session left"), "{log}");
    // the event stream ended with the process
    assert!(matches!(events.message().await, Ok(None) | Err(_)));
}

#[tokio::test]
async fn shutdown_grace_ends_the_sessions_left() {
    let mut m = Proc::start(31, 1).await;
    let phone = Phone::on("127.0.0.1").await;
    m.create(Some(phone.offer(&[(0, "PCMU")], None)))
        .await
        .unwrap();
    m.signal("TERM");
    let status = m.exit_within(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        m.log()
    );
    let log = m.log();
    assert!(
        log.lines()
            .any(|l| l.contains("SHUTDOWN_GRACE passed") && l.contains("sessions=1")),
        "{log}"
    );
}

#[tokio::test]
async fn a_second_signal_ends_the_sessions_at_once() {
    let mut m = Proc::start(32, 3600).await;
    let phone = Phone::on("127.0.0.1").await;
    m.create(Some(phone.offer(&[(0, "PCMU")], None)))
        .await
        .unwrap();
    m.signal("TERM");
    m.until_draining().await;
    assert!(m.child.try_wait().unwrap().is_none(), "{}", m.log());
    m.signal("INT");
    let status = m.exit_within(Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        m.log()
    );
    let log = m.log();
    assert!(log.contains("second signal"), "{log}");
    assert!(log.contains("ending the remaining sessions now"), "{log}");
}
