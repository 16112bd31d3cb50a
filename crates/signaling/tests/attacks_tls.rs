//! Attacks on the node's TLS port over loopback, each performed with raw
//! sockets and shown to fail: connections that open and never finish their
//! handshake are closed at TLS_HANDSHAKE_TIMEOUT (and counted), and one
//! source cannot hold more TLS connections than TCP_MAX_PER_IP, handshake
//! or not, while a phone that completes its handshake is still served.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::tls_phone::{Ca, TlsPhone, ca, leaf};
use common::{metric, start_in, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn tls_node(
    name: &str,
    ca: &Ca,
    tweak: impl FnOnce(&mut switchboard_signaling::Config),
) -> (common::TestServer, SocketAddr) {
    let dir = temp_dir(name);
    leaf(&dir, "server", &["127.0.0.1"], ca);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let s = start_in(dir, |c| {
        c.tls.tls_cert = Some(cert);
        c.tls.tls_key = Some(key);
        tweak(c);
    })
    .await;
    let tls = s.running.tls_addrs[0];
    (s, tls)
}

/// Whether the server closed `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_never_finish_are_closed_at_the_deadline() {
    let ca = ca("switchboard test CA");
    let (s, tls) = tls_node("attack-tls-stall", &ca, |c| {
        c.tls.tls_handshake_timeout = 1;
        // longer than the test: only the handshake deadline may close them
        c.tcp_idle_new = 60;
    })
    .await;
    let started = Instant::now();
    // silent after connecting, and a ClientHello that stops after its
    // record header
    let mut silent = TcpStream::connect(tls).await.unwrap();
    let mut stalled = TcpStream::connect(tls).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        closed_within(&mut silent, Duration::from_secs(5)),
        closed_within(&mut stalled, Duration::from_secs(5))
    );
    assert!(a && b, "a connection without a handshake stayed open");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}, the deadline is 1 s"
    );
    let mut counted = 0;
    for _ in 0..50 {
        counted = metric(
            &s,
            "switchboard_tls_handshake_failures_total{reason=\"timeout\"} ",
        )
        .await
        .unwrap_or(0);
        if counted == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 2);
    // a real phone is still served
    s.create_user("gina", "gina-secret").await;
    let phone = TlsPhone::connect(tls, &ca).await;
    assert_eq!(phone.register("gina", "gina-secret").await.code, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_hold_more_tls_connections_than_the_per_ip_cap() {
    let ca = ca("switchboard test CA");
    let (s, tls) = tls_node("attack-tls-cap", &ca, |c| c.tcp_max_per_ip = 4).await;
    s.create_user("hank", "hank-secret").await;
    // one phone with a finished handshake, three connections that say
    // nothing: the source's four places
    let phone = TlsPhone::connect(tls, &ca).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(tls).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // the fifth is closed at accept, before any handshake
    let mut refused = TcpStream::connect(tls).await.unwrap();
    assert!(
        closed_within(&mut refused, Duration::from_secs(5)).await,
        "the fifth connection from 127.0.0.1 was not closed"
    );
    assert_eq!(
        metric(&s, "switchboard_tcp_refused_total{cap=\"per_ip\"} ").await,
        Some(1)
    );
    // the phone holding a place is served
    assert_eq!(phone.register("hank", "hank-secret").await.code, 200);
    // a place freed is a place for the next one
    drop(idle.pop());
    let mut next = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(p) = common::tls_phone::tls_connect(tls, &ca).await {
            next = Some(p);
            break;
        }
    }
    assert!(next.is_some(), "no place after one was freed");
    s.stop().await;
}
