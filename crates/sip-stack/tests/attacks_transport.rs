//! Attacks on the TCP transport over real loopback sockets: each test
//! performs the attack with raw tokio sockets and shows that it fails.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use switchboard_sip_stack::endpoint::Limits;
use switchboard_sip_stack::target::{Target, TransportKind};
use switchboard_sip_stack::transport::TransportConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> TransportConfig {
    TransportConfig::default()
}

#[tokio::test]
async fn a_slowloris_is_closed_by_the_message_deadline() {
    let server = start(
        TransportConfig {
            message_timeout: Duration::from_millis(500),
            ..config()
        },
        Limits::default(),
        TestCore::default(),
    )
    .await;
    let mut conn = connect_from([127, 0, 0, 1], server.addr).await;
    // a proven connection first (the long idle timeout applies), then a
    // head that never ends, one byte every 100 ms
    let reply = ask(&mut conn, &request("OPTIONS", "TCP", "slow-1", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
    conn.write_all(b"OPTIONS sip:svc@127.0.0.1 SIP/2.0\r\nX-Slow: ")
        .await
        .unwrap();
    let mut closed = false;
    let mut chunk = [0u8; 64];
    for _ in 0..50 {
        let _ = conn.write_all(b"a").await;
        match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("unexpected bytes: {:?}", &chunk[..n]),
            Err(_) => {}
        }
    }
    assert!(closed, "the dribbling connection was not closed");
    let stats = &server.transports.stats;
    assert_eq!(stats.closed_slow.load(Ordering::Relaxed), 1);
    assert_eq!(stats.closed_idle.load(Ordering::Relaxed), 0);
    assert!(
        eventually(Duration::from_secs(2), || server
            .transports
            .connection_count()
            == 0)
        .await
    );
}

#[tokio::test]
async fn a_dribbled_message_still_parses() {
    let server = start(config(), Limits::default(), TestCore::default()).await;
    let mut conn = connect_from([127, 0, 0, 1], server.addr).await;
    let body = "x".repeat(300);
    let req = request("OPTIONS", "TCP", "dribble-1", 7, &body);
    // one byte per write: the framer must find the head and the body
    // across hundreds of reads
    for b in req.as_bytes() {
        conn.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    let mut buf = Vec::new();
    let reply = read_message(&mut conn, &mut buf).await.expect("a response");
    assert_eq!(code(&reply), 200, "{reply}");
    assert_eq!(header(&reply, "Call-ID"), Some("dribble-1"));
    assert_eq!(header(&reply, "CSeq"), Some("7 OPTIONS"));
    assert_eq!(header(&reply, "X-Body-Length"), Some("300"));
    // and the connection still frames what follows
    let again = ask(&mut conn, &request("OPTIONS", "TCP", "dribble-2", 8, "")).await;
    assert_eq!(
        again.as_deref().and_then(|r| header(r, "Call-ID")),
        Some("dribble-2")
    );
    assert_eq!(
        server
            .transports
            .stats
            .framing_errors
            .load(Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn the_257th_connection_from_one_address_is_refused_while_another_address_connects() {
    let server = start(config(), Limits::default(), TestCore::default()).await;
    assert_eq!(
        server.transports.config().max_per_source,
        256,
        "the default"
    );
    let mut held = Vec::new();
    for _ in 0..256 {
        held.push(connect_from([127, 0, 0, 1], server.addr).await);
    }
    assert!(
        eventually(Duration::from_secs(5), || server
            .transports
            .connection_count()
            == 256)
        .await,
        "256 connections adopted, got {}",
        server.transports.connection_count()
    );
    let mut refused = connect_from([127, 0, 0, 1], server.addr).await;
    assert!(
        closed_within(&mut refused, Duration::from_secs(5)).await,
        "the 257th connection from 127.0.0.1 was not closed"
    );
    assert_eq!(
        server
            .transports
            .stats
            .refused_per_source
            .load(Ordering::Relaxed),
        1
    );
    // another source is still served
    let mut other = connect_from([127, 0, 0, 2], server.addr).await;
    let reply = ask(&mut other, &request("OPTIONS", "TCP", "other-1", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
    // and the held ones are live: one of them still gets answers
    let reply = ask(&mut held[0], &request("OPTIONS", "TCP", "held-1", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
    // closing one frees a place for its source
    held.pop();
    assert!(
        eventually(Duration::from_secs(5), || server
            .transports
            .connection_count()
            == 256)
        .await
    );
    let mut next = connect_from([127, 0, 0, 1], server.addr).await;
    let reply = ask(&mut next, &request("OPTIONS", "TCP", "next-1", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
}

#[tokio::test]
async fn a_connection_that_never_sends_sip_is_closed_after_the_short_idle_timeout() {
    let server = start(
        TransportConfig {
            idle_new: Duration::from_millis(400),
            ..config()
        },
        Limits::default(),
        TestCore::default(),
    )
    .await;
    let mut silent = connect_from([127, 0, 0, 1], server.addr).await;
    let mut pinging = connect_from([127, 0, 0, 1], server.addr).await;
    let mut garbage = connect_from([127, 0, 0, 1], server.addr).await;
    let mut phone = connect_from([127, 0, 0, 1], server.addr).await;
    let reply = ask(&mut phone, &request("REGISTER", "TCP", "phone-1", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
    // a well-framed message that is not SIP does not count
    garbage
        .write_all(b"HELLO\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    // pings are answered but do not extend a new connection's life
    let pinger = async {
        let mut pongs = 0;
        for _ in 0..30 {
            if pinging.write_all(b"\r\n\r\n").await.is_err() {
                break;
            }
            let mut two = [0u8; 2];
            match tokio::time::timeout(Duration::from_millis(100), pinging.read_exact(&mut two))
                .await
            {
                Ok(Ok(_)) if &two == b"\r\n" => pongs += 1,
                Ok(_) => break,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pongs
    };
    let (silent_closed, garbage_closed, pongs) = tokio::join!(
        closed_within(&mut silent, Duration::from_secs(5)),
        closed_within(&mut garbage, Duration::from_secs(5)),
        pinger
    );
    assert!(silent_closed, "a silent connection stayed open");
    assert!(garbage_closed, "a connection sending no SIP stayed open");
    assert!(pongs >= 1, "pings were answered before the close");
    assert!(pongs < 30, "the pinging connection was closed too");
    assert_eq!(
        server
            .transports
            .stats
            .closed_idle_new
            .load(Ordering::Relaxed),
        3
    );
    // the phone that sent SIP keeps its connection past the short timeout
    tokio::time::sleep(Duration::from_millis(600)).await;
    let reply = ask(&mut phone, &request("OPTIONS", "TCP", "phone-2", 2, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
}

#[tokio::test]
async fn a_keepalive_ping_gets_a_pong() {
    let server = start(config(), Limits::default(), TestCore::default()).await;
    let mut conn = connect_from([127, 0, 0, 1], server.addr).await;
    let mut two = [0u8; 2];
    conn.write_all(b"\r\n\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut two))
        .await
        .expect("a pong in time")
        .unwrap();
    assert_eq!(&two, b"\r\n");
    // a ping arriving in two halves is one ping
    conn.write_all(b"\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.write_all(b"\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut two))
        .await
        .expect("a pong in time")
        .unwrap();
    assert_eq!(&two, b"\r\n");
    // a ping right before a request: pong, then the response
    let req = format!("\r\n\r\n{}", request("OPTIONS", "TCP", "after-ping", 1, ""));
    conn.write_all(req.as_bytes()).await.unwrap();
    conn.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"\r\n");
    let mut buf = Vec::new();
    let reply = read_message(&mut conn, &mut buf).await.expect("response");
    assert_eq!(header(&reply, "Call-ID"), Some("after-ping"));
    assert_eq!(server.transports.stats.pings.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn concurrent_sends_to_one_destination_open_one_connection() {
    let server = start(config(), Limits::default(), TestCore::default()).await;
    let phone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target {
        transport: TransportKind::Tcp,
        local: server.addr,
        remote: phone.local_addr().unwrap(),
        conn: None,
    };
    for i in 1..=10 {
        let req = request("OPTIONS", "TCP", "to-phone", i, "");
        server.transports.send(&target, Bytes::from(req));
    }
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), phone.accept())
        .await
        .expect("a connection")
        .unwrap();
    let mut buf = Vec::new();
    for i in 1..=10 {
        let msg = read_message(&mut conn, &mut buf).await.expect("message");
        assert_eq!(header(&msg, "CSeq"), Some(format!("{i} OPTIONS").as_str()));
    }
    let second = tokio::time::timeout(Duration::from_millis(500), phone.accept()).await;
    assert!(second.is_err(), "a second connection was opened");
    assert_eq!(server.transports.connects_pending(), 0);
}

#[tokio::test]
async fn an_outbound_connect_that_hangs_times_out() {
    let server = start(
        TransportConfig {
            connect_timeout: Duration::from_millis(300),
            ..config()
        },
        Limits::default(),
        TestCore::default(),
    )
    .await;
    // a listener that never accepts, its queue filled: further SYNs are
    // dropped and a connect hangs
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let dead = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(dead),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let target = Target {
        transport: TransportKind::Tcp,
        local: server.addr,
        remote: dead,
        conn: None,
    };
    for i in 1..=3 {
        let req = request("OPTIONS", "TCP", "to-dead", i, "");
        server.transports.send(&target, Bytes::from(req));
    }
    let stats = &server.transports.stats;
    assert!(
        eventually(Duration::from_secs(5), || stats
            .connect_timeouts
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(server.transports.connects_pending(), 0);
    assert_eq!(
        stats.send_errors.load(Ordering::Relaxed),
        3,
        "the queued messages"
    );
    drop(fillers);
}
