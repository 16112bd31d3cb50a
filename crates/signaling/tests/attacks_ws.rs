//! Attacks on SIP over WebSocket (RFC 7118) against the real server, over
//! real sockets on loopback: a message larger than any SIP message, an
//! HTTP upgrade that never ends and a WSS connection that never starts
//! TLS (both closed at TLS_HANDSHAKE_TIMEOUT), the per-source connection
//! cap, one pool with TCP and TLS, and a WebSocket that never sends SIP
//! (closed at TCP_IDLE_NEW, pings or not). Each attack fails and /metrics
//! shows it.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use common::metric_becomes;
use common::ws_phone::{closed_within, ws_connect, ws_node};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SIP: (&str, &str) = ("Sec-WebSocket-Protocol", "sip");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_stalled_upgrades_and_the_per_source_cap() {
    let (s, ws, wss, ca) = ws_node("ws-attacks", |c| {
        c.tls.tls_handshake_timeout = 1;
        c.tcp_max_per_ip = 3;
    })
    .await;

    // a message larger than any SIP message closes its connection
    let (mut big, _) = ws_connect(ws, None, &[SIP]).await.unwrap();
    let _ = big.send(WsMessage::text("x".repeat(70_000))).await;
    assert!(closed_within(&mut big, Duration::from_secs(5)).await);
    assert_eq!(
        metric_becomes(&s, "switchboard_ws_oversize_total ", 1).await,
        Some(1)
    );

    // an upgrade request that never ends, and a WSS connection that never
    // starts TLS: both closed after TLS_HANDSHAKE_TIMEOUT (1 s)
    let mut stalled = TcpStream::connect(ws).await.unwrap();
    stalled
        .write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(wss).await.unwrap();
    let mut buf = [0u8; 256];
    for conn in [&mut stalled, &mut silent] {
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("closed by the server within its deadline");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(
        metric_becomes(
            &s,
            "switchboard_ws_handshakes_refused_total{reason=\"timeout\"} ",
            1
        )
        .await,
        Some(1)
    );
    assert_eq!(
        metric_becomes(
            &s,
            "switchboard_tls_handshake_failures_total{reason=\"timeout\"} ",
            1
        )
        .await,
        Some(1)
    );
    drop(big);
    drop(stalled);
    drop(silent);
    assert_eq!(
        metric_becomes(&s, "switchboard_tcp_connections ", 0).await,
        Some(0)
    );

    // one pool per source for TCP, WS and WSS: a TCP connection and two
    // WebSockets fill TCP_MAX_PER_IP (3), the next WebSocket is refused
    let _tcp = TcpStream::connect(s.sip).await.unwrap();
    assert_eq!(
        metric_becomes(&s, "switchboard_tcp_connections ", 1).await,
        Some(1)
    );
    let _one = ws_connect(ws, None, &[SIP]).await.unwrap();
    let _two = ws_connect(wss, Some(&ca), &[SIP]).await.unwrap();
    assert!(ws_connect(ws, None, &[SIP]).await.is_err());
    assert_eq!(
        metric_becomes(&s, "switchboard_tcp_refused_total{cap=\"per_ip\"} ", 1).await,
        Some(1)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_sends_no_sip_is_closed_at_tcp_idle_new_pings_or_not() {
    let (s, ws, _, _) = ws_node("ws-idle", |c| c.tcp_idle_new = 1).await;
    let (mut silent, _) = ws_connect(ws, None, &[SIP]).await.unwrap();
    // pings are answered, but they are not SIP: they do not keep it open
    silent
        .send(WsMessage::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), silent.next())
        .await
        .expect("an answer to the ping");
    assert!(
        matches!(&pong, Some(Ok(WsMessage::Pong(p))) if &p[..] == b"are you there"),
        "{pong:?}"
    );
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert_eq!(
        metric_becomes(&s, "switchboard_tcp_closed_total{reason=\"idle_new\"} ", 1).await,
        Some(1)
    );
    s.stop().await;
}
