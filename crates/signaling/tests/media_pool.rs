//! Signaling's side of the RTP managers when parts fail or are locked
//! down, over real sockets on loopback: destroys retried until the
//! manager answers, event streams resumed after the connection breaks,
//! the token and TLS client certificates sent.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use switchboard_media::learning::Policy;
use switchboard_rtpmanager::{Engine, EngineConfig, GrpcSecurity, RtpAddress, serve_secured};
use switchboard_rtpmanager_api::v1::{self as pb, playback_event, session_event};
use switchboard_signaling::Config;
use switchboard_signaling::media::{MediaPool, watch_session_events};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Code;

const TOKEN: &str = "pool-test-token-0123456789";

fn temp_dir(what: &str) -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!("switchboard-{what}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn engine(ports: u16) -> Engine {
    let lo = "127.0.0.1".parse().unwrap();
    Engine::new(EngineConfig {
        addresses: vec![RtpAddress {
            bind: lo,
            advertise: lo,
        }],
        port_min: ports,
        port_max: ports + 99,
        audio_path: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../audio"),
        record_path: std::env::temp_dir(),
        rtp_timeout: Duration::from_secs(60),
        rtp_hold_timeout: Duration::from_secs(3600),
        rtcp_interval: Duration::from_secs(5),
        source_policy: Policy::SdpIp,
    })
    .unwrap()
}

fn pool_for(addr: SocketAddr, tweak: impl FnOnce(&mut Config)) -> MediaPool {
    let mut config = Config::for_tests(temp_dir("pool"));
    config.rtpmanager_addrs = vec![format!("m={addr}")];
    tweak(&mut config);
    config.validate().unwrap();
    MediaPool::from_config(&config).unwrap()
}

async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn a_failed_destroy_is_retried_until_the_manager_answers() {
    let engine = engine(43000);
    let addr = free_port().await;
    let pool = pool_for(addr, |_| {});
    let mgr = pool.get("m").unwrap();
    let s = engine
        .create_session("call", "a", None, None, Default::default(), false)
        .await
        .unwrap()
        .session_id;
    // the manager's gRPC port is down: the destroy fails...
    let e = mgr.destroy(&s).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert_eq!(pool.counters().destroy_pending.load(Ordering::Relaxed), 1);
    // ...and goes on in the background until the port is back
    tokio::time::sleep(Duration::from_millis(700)).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let running = serve_secured(engine.clone(), listener, GrpcSecurity::default())
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if engine.info(&s).is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the session was destroyed on a retry");
    let c = pool.counters();
    assert!(c.destroy_retries.load(Ordering::Relaxed) >= 1);
    for _ in 0..20 {
        if c.destroy_pending.load(Ordering::Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.destroy_pending.load(Ordering::Relaxed), 0);
    assert_eq!(c.destroy_abandoned.load(Ordering::Relaxed), 0);
    let mut metrics = String::new();
    pool.render_metrics(&mut metrics);
    assert!(
        metrics.contains("switchboard_media_destroy_retries_total "),
        "{metrics}"
    );
    running.shutdown().await;
}

/// A TCP relay in front of the manager whose connections can be cut.
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn to(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                list.lock().unwrap().push(tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }));
            }
        });
        Proxy {
            addr,
            conns,
            accept,
        }
    }

    /// Drops every live connection (as a crashed proxy or a reset would).
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Plays until an event arrives on `rx` (the watch may still be
/// subscribing): the event. Each play interrupts the one before, so the
/// watch may first hear an earlier play's `Interrupted`: only a `Started`
/// ends the wait.
async fn play_until_heard(
    engine: &Engine,
    session: &str,
    rx: &mut mpsc::Receiver<pb::SessionEvent>,
) -> pb::SessionEvent {
    let started = |ev: &pb::SessionEvent| {
        matches!(
            ev.event,
            Some(session_event::Event::Playback(pb::PlaybackEvent { kind, .. }))
                if kind == playback_event::Kind::Started as i32
        )
    };
    for _ in 0..30 {
        engine
            .play(session, &["demo".to_string()], 0)
            .await
            .unwrap();
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            && started(&ev)
        {
            engine.stop_playback(session).unwrap();
            // what the stop itself produced
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
            {}
            return ev;
        }
    }
    panic!("no event came through");
}

#[tokio::test]
async fn a_broken_event_stream_resumes_until_the_session_is_gone() {
    let engine = engine(43100);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = serve_secured(engine.clone(), listener, GrpcSecurity::default())
        .await
        .unwrap();
    let proxy = Proxy::to(running.grpc_addr).await;
    let pool = pool_for(proxy.addr, |_| {});
    let mgr = pool.get("m").unwrap();
    let s = engine
        .create_session("call", "a", None, None, Default::default(), false)
        .await
        .unwrap()
        .session_id;
    let (tx, mut rx) = mpsc::channel(8);
    let watch = tokio::spawn(watch_session_events(mgr, s.clone(), tx));
    let ev = play_until_heard(&engine, &s, &mut rx).await;
    assert!(
        matches!(
            ev.event,
            Some(session_event::Event::Playback(pb::PlaybackEvent { kind, .. }))
                if kind == playback_event::Kind::Started as i32
        ),
        "{ev:?}"
    );
    // the connection breaks; events come through again on a new one
    proxy.cut();
    let ev = play_until_heard(&engine, &s, &mut rx).await;
    assert_eq!(ev.session_id, s);
    assert!(pool.counters().watch_resubscribes.load(Ordering::Relaxed) >= 1);
    // the session ends: so does the watch
    engine.destroy(&s).unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch ends with the session")
        .unwrap();
    running.shutdown().await;
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(dir: &Path, name: &str, sans: &[&str], ca: &CertifiedIssuer<'static, KeyPair>) {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(sans)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn signaling_reaches_a_manager_locked_with_token_and_client_certificates() {
    let dir = temp_dir("pki");
    let ca = ca("switchboard test CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    leaf(&dir, "server", &["127.0.0.1"], &ca);
    leaf(&dir, "client", &["signaling"], &ca);
    let security = GrpcSecurity::from_settings(
        "127.0.0.1".parse().unwrap(),
        Some(TOKEN),
        Some(&dir.join("server.pem")),
        Some(&dir.join("server.key")),
        Some(&dir.join("ca.pem")),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = serve_secured(engine(43200), listener, security)
        .await
        .unwrap();
    let addr = running.grpc_addr;
    let tls = |c: &mut Config, client: bool| {
        c.rtpmanager_tls_ca = Some(dir.join("ca.pem"));
        if client {
            c.rtpmanager_tls_cert = Some(dir.join("client.pem"));
            c.rtpmanager_tls_key = Some(dir.join("client.key"));
        }
    };
    // everything configured: served
    let pool = pool_for(addr, |c| {
        tls(c, true);
        c.rtpmanager_token = Some(TOKEN.into());
    });
    let m = pool.get("m").unwrap();
    let h = m.health().await.unwrap();
    assert_eq!(h.free_port_pairs, 50);
    let s = m
        .create_session(pb::CreateSessionRequest::default())
        .await
        .unwrap();
    m.destroy(&s.session_id).await.unwrap();
    // without the token: refused by the manager
    let pool = pool_for(addr, |c| tls(c, true));
    let e = pool.get("m").unwrap().health().await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    // without a client certificate: refused in the handshake
    let pool = pool_for(addr, |c| {
        tls(c, false);
        c.rtpmanager_token = Some(TOKEN.into());
    });
    assert!(pool.get("m").unwrap().health().await.is_err());
    // in plaintext: refused
    let pool = pool_for(addr, |c| c.rtpmanager_token = Some(TOKEN.into()));
    assert!(pool.get("m").unwrap().health().await.is_err());
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
