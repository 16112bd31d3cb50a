//! SIP over TLS on real loopback sockets, with a test CA made here: the
//! same framing, pongs, caps and deadlines as TCP, a handshake deadline,
//! certificate checks both ways, and a certificate replaced while the
//! listener runs.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use switchboard_sip_stack::endpoint::Limits;
use switchboard_sip_stack::target::{Target, TransportKind};
use switchboard_sip_stack::transport::TransportConfig;
use switchboard_sip_stack::transport::tls::{
    ServerCert, TlsClient, TlsPeer, TlsSetup, certified_key,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate and key (PEM) for these names, signed by `ca`.
fn leaf(names: &[&str], ca: &Ca) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Transport settings with a TLS listener serving `cert`, and a client
/// trusting `trust`.
fn tls_config(cert: &Arc<ServerCert>, trust: &Ca) -> TransportConfig {
    TransportConfig {
        tls: Some(TlsSetup {
            listen: Some((0, cert.server_config().unwrap())),
            client: Arc::new(TlsClient::new(false, Some(trust.pem().as_bytes())).unwrap()),
        }),
        ..TransportConfig::default()
    }
}

/// A server on 127.0.0.1 with a certificate for 127.0.0.1 from a fresh CA;
/// returns the server, its CA and its certificate.
async fn tls_server(tweak: impl FnOnce(&mut TransportConfig)) -> (Server, Ca, Arc<ServerCert>) {
    let ca = ca("switchboard test CA");
    let (cert, key) = leaf(&["127.0.0.1"], &ca);
    let served = ServerCert::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let mut config = tls_config(&served, &ca);
    tweak(&mut config);
    let server = start(config, Limits::default(), TestCore::default()).await;
    (server, ca, served)
}

fn tls_addr(server: &Server) -> SocketAddr {
    server.transports.tls_addrs()[0]
}

#[allow(deprecated)] // ring lacks only post-quantum key exchange
fn connector(trust: &Ca) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(addr: SocketAddr, trust: &Ca) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = connect_from([127, 0, 0, 1], addr).await;
    let name = ServerName::IpAddress(addr.ip().into());
    connector(trust).connect(name, tcp).await
}

/// One SIP message from any stream.
async fn read_sip<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let len: usize = header(&head, "Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg = String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                return Some(msg);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn ask_over<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, req: &str) -> Option<String> {
    stream.write_all(req.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
    let mut buf = Vec::new();
    read_sip(stream, &mut buf).await
}

async fn closed<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
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

#[tokio::test]
async fn requests_over_tls_are_answered_on_their_connection_and_pings_get_pongs() {
    let (server, ca, _) = tls_server(|_| {}).await;
    let mut conn = tls_connect(tls_addr(&server), &ca).await.unwrap();
    let reply = ask_over(&mut conn, &request("OPTIONS", "TLS", "tls-1", 1, "hello")).await;
    let reply = reply.expect("a response over TLS");
    assert_eq!(code(&reply), 200, "{reply}");
    assert_eq!(header(&reply, "X-Body-Length"), Some("5"));
    // RFC 5626 keep-alive: a CRLFCRLF ping gets a CRLF pong inside TLS
    conn.write_all(b"\r\n\r\n").await.unwrap();
    conn.flush().await.unwrap();
    let mut two = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut two))
        .await
        .expect("a pong in time")
        .unwrap();
    assert_eq!(&two, b"\r\n");
    // a second request on the same connection (framing carries on)
    let again = ask_over(&mut conn, &request("OPTIONS", "TLS", "tls-2", 2, "")).await;
    assert_eq!(
        again.as_deref().and_then(|r| header(r, "Call-ID")),
        Some("tls-2")
    );
    let stats = &server.transports.stats;
    assert_eq!(stats.tls_in.load(Ordering::Relaxed), 2);
    assert_eq!(stats.tcp_in.load(Ordering::Relaxed), 0);
    assert_eq!(stats.pings.load(Ordering::Relaxed), 1);
    assert_eq!(server.transports.connection_count(), 1);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_fails_the_handshake() {
    let (server, _, _) = tls_server(|_| {}).await;
    let stranger = ca("some other CA");
    let refused = tls_connect(tls_addr(&server), &stranger).await;
    assert!(refused.is_err(), "the handshake succeeded");
    let stats = &server.transports.stats;
    assert!(
        eventually(Duration::from_secs(5), || stats
            .tls_handshake_failures
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || server
            .transports
            .connection_count()
            == 0)
        .await
    );
    // plain TCP sent to the TLS port is no handshake either
    let mut plain = connect_from([127, 0, 0, 1], tls_addr(&server)).await;
    plain
        .write_all(request("OPTIONS", "TCP", "plain", 1, "").as_bytes())
        .await
        .unwrap();
    assert!(closed(&mut plain, Duration::from_secs(5)).await);
    assert!(
        eventually(Duration::from_secs(5), || stats
            .tls_handshake_failures
            .load(Ordering::Relaxed)
            == 2)
        .await
    );
    assert_eq!(stats.tls_in.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_handshake_is_closed_at_the_deadline() {
    let (server, _, _) = tls_server(|c| {
        c.handshake_timeout = Duration::from_millis(400);
        // longer than the test: only the handshake deadline may close it
        c.idle_new = Duration::from_secs(60);
    })
    .await;
    let started = tokio::time::Instant::now();
    let mut silent = connect_from([127, 0, 0, 1], tls_addr(&server)).await;
    // and one that starts a ClientHello and stops: a TLS record header
    // promising 512 bytes, then nothing
    let mut stalled = connect_from([127, 0, 0, 1], tls_addr(&server)).await;
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        closed(&mut silent, Duration::from_secs(5)),
        closed(&mut stalled, Duration::from_secs(5))
    );
    assert!(a && b, "a connection without a handshake stayed open");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed too late: {took:?}");
    let stats = &server.transports.stats;
    assert!(
        eventually(Duration::from_secs(2), || stats
            .tls_handshake_timeouts
            .load(Ordering::Relaxed)
            == 2)
        .await
    );
    assert!(
        eventually(Duration::from_secs(2), || server
            .transports
            .connection_count()
            == 0)
        .await
    );
}

#[tokio::test]
async fn the_per_source_cap_counts_tls_connections_before_their_handshake() {
    let (server, ca, _) = tls_server(|c| c.max_per_source = 3).await;
    let addr = tls_addr(&server);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tls_connect(addr, &ca).await.unwrap());
    }
    // the third place taken by a connection that never says hello
    let _silent = connect_from([127, 0, 0, 1], addr).await;
    assert!(
        eventually(Duration::from_secs(5), || server
            .transports
            .connection_count()
            == 3)
        .await
    );
    let mut refused = connect_from([127, 0, 0, 1], addr).await;
    assert!(
        closed(&mut refused, Duration::from_secs(5)).await,
        "the fourth connection from 127.0.0.1 was not closed"
    );
    assert_eq!(
        server
            .transports
            .stats
            .refused_per_source
            .load(Ordering::Relaxed),
        1
    );
    // the held ones are still served
    let reply = ask_over(&mut held[0], &request("OPTIONS", "TLS", "held", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
    // and the cap is shared with plain TCP from the same source
    let mut tcp = connect_from([127, 0, 0, 1], server.addr).await;
    assert!(closed(&mut tcp, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_the_next_connection() {
    let (server, ca, served) = tls_server(|_| {}).await;
    let addr = tls_addr(&server);
    let mut before = tls_connect(addr, &ca).await.unwrap();
    let first = before.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (cert, key) = leaf(&["127.0.0.1"], &ca);
    served.replace(certified_key(cert.as_bytes(), key.as_bytes()).unwrap());
    let mut after = tls_connect(addr, &ca).await.unwrap();
    let second = after.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_ne!(first, second, "the old certificate was served");
    assert_eq!(Some(second), served.end_entity());
    // both connections work
    for (conn, id) in [(&mut before, "old"), (&mut after, "new")] {
        let reply = ask_over(conn, &request("OPTIONS", "TLS", id, 1, "")).await;
        assert_eq!(reply.as_deref().map(code), Some(200), "{id}");
    }
}

/// The target of a TLS flow from `from` to `to`'s listener.
fn tls_target(from: &Server, to: SocketAddr) -> Target {
    Target {
        transport: TransportKind::Tls,
        local: from
            .transports
            .local_for_kind(&to, TransportKind::Tls)
            .unwrap(),
        remote: to,
        conn: None,
    }
}

#[tokio::test]
async fn outbound_tls_checks_the_certificate_unless_told_not_to() {
    // the sender trusts its own CA only
    let (sender, _, _) = tls_server(|_| {}).await;
    // a peer whose certificate comes from a CA the sender does not know
    let (stranger, _, _) = tls_server(|_| {}).await;
    let to = tls_addr(&stranger);
    let target = tls_target(&sender, to);
    let stats = &sender.transports.stats;
    sender.transports.send(
        &target,
        Bytes::from(request("OPTIONS", "TLS", "refused", 1, "")),
    );
    assert!(
        eventually(Duration::from_secs(5), || stats
            .tls_handshake_failures
            .load(Ordering::Relaxed)
            == 1)
        .await,
        "the untrusted certificate was not refused"
    );
    assert_eq!(
        stats.send_errors.load(Ordering::Relaxed),
        1,
        "the queued message"
    );
    assert_eq!(stranger.transports.stats.tls_in.load(Ordering::Relaxed), 0);
    // verification off for this destination: the message gets through
    sender.transports.set_tls_peers(Arc::new(move |addr| {
        (addr == to).then_some(TlsPeer {
            insecure: true,
            ..TlsPeer::default()
        })
    }));
    sender.transports.send(
        &target,
        Bytes::from(request("OPTIONS", "TLS", "allowed", 2, "")),
    );
    assert!(
        eventually(Duration::from_secs(5), || stranger
            .transports
            .stats
            .tls_in
            .load(Ordering::Relaxed)
            == 1)
        .await,
        "nothing arrived with verification off"
    );
}

#[tokio::test]
async fn outbound_tls_sends_the_configured_name_and_checks_it() {
    let trusted = ca("switchboard test CA");
    let (cert, key) = leaf(&["sip.example.test"], &trusted);
    let named = ServerCert::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let peer = start(
        tls_config(&named, &trusted),
        Limits::default(),
        TestCore::default(),
    )
    .await;
    let (ip_cert, ip_key) = leaf(&["127.0.0.1"], &trusted);
    let own = ServerCert::from_pem(ip_cert.as_bytes(), ip_key.as_bytes()).unwrap();
    let sender = start(
        tls_config(&own, &trusted),
        Limits::default(),
        TestCore::default(),
    )
    .await;
    let to = tls_addr(&peer);
    let target = tls_target(&sender, to);
    // by IP address: the certificate names only sip.example.test
    sender.transports.send(
        &target,
        Bytes::from(request("OPTIONS", "TLS", "by-ip", 1, "")),
    );
    let stats = &sender.transports.stats;
    assert!(
        eventually(Duration::from_secs(5), || stats
            .tls_handshake_failures
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    // with the destination's name configured it verifies
    sender.transports.set_tls_peers(Arc::new(move |addr| {
        (addr == to).then(|| TlsPeer {
            server_name: Some("sip.example.test".into()),
            ..TlsPeer::default()
        })
    }));
    for i in 2..=4 {
        sender.transports.send(
            &target,
            Bytes::from(request("OPTIONS", "TLS", "by-name", i, "")),
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || peer
            .transports
            .stats
            .tls_in
            .load(Ordering::Relaxed)
            == 3)
        .await
    );
    // one connection carried them all, and the answers came back on it
    assert_eq!(sender.transports.connection_count(), 1);
    assert!(
        eventually(Duration::from_secs(5), || stats
            .tls_in
            .load(Ordering::Relaxed)
            == 3)
        .await,
        "the responses came back over the connection we opened"
    );
}
