//! Transport and flood attacks against the real server (configured as an
//! operator would, through its settings), with raw sockets on loopback:
//! each attack fails and /metrics shows it.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

fn options(transport: &str, call_id: &str) -> String {
    let branch = format!("z9hG4bK-{}", rand::random::<u64>());
    format!(
        "OPTIONS sip:switchboard@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:5999;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:attacker@127.0.0.1>;tag=a1\r\n\
         To: <sip:switchboard@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn code(msg: &str) -> u16 {
    msg.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn udp_from(ip: [u8; 4]) -> UdpSocket {
    UdpSocket::bind(SocketAddr::from((ip, 0))).await.unwrap()
}

async fn collect(socket: &UdpSocket, window: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        out.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    out
}

async fn tcp_from(ip: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((ip, 0))).unwrap();
    let stream = socket.connect(server).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends a request over TCP and reads one response (head and empty body).
async fn ask(stream: &mut TcpStream, req: &str) -> Option<String> {
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).to_string())
}

async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn metrics(server: &common::TestServer) -> String {
    let (status, _, body) =
        common::get_accept(server.api, "/metrics", &server.token, "text/plain").await;
    assert_eq!(status, 200);
    body
}

fn sample(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

#[tokio::test]
async fn a_request_flood_is_refused_per_source_and_counted() {
    let server = common::start("flood", |c| {
        c.sip_rate_per_ip = 20;
        c.sip_rate_burst = 20;
    })
    .await;
    let attacker = udp_from([127, 0, 0, 1]).await;
    for i in 0..300 {
        let req = options("UDP", &format!("flood-{i}"));
        attacker.send_to(req.as_bytes(), server.sip).await.unwrap();
    }
    let replies = collect(&attacker, Duration::from_millis(1500)).await;
    let ok = replies.iter().filter(|r| code(r) == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| code(r) == 503).collect();
    assert!((20..=40).contains(&ok), "{ok} served");
    assert!(!refused.is_empty());
    assert!(
        refused
            .iter()
            .all(|r| header(r, "Retry-After") == Some("1"))
    );
    assert!(
        ok + refused.len() < 300,
        "the excess beyond twice the rate is dropped"
    );

    // another source is served while the flood is on
    let phone = udp_from([127, 0, 0, 2]).await;
    phone
        .send_to(options("UDP", "phone").as_bytes(), server.sip)
        .await
        .unwrap();
    let got = collect(&phone, Duration::from_millis(500)).await;
    assert_eq!(got.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![200]);

    let m = metrics(&server).await;
    assert_eq!(
        sample(&m, "switchboard_sip_rate_limited_total{action=\"503\"}"),
        refused.len() as u64
    );
    assert!(sample(&m, "switchboard_sip_rate_limited_total{action=\"drop\"}") > 0);
    assert_eq!(
        sample(&m, "switchboard_sip_responses_sent_total{code=\"503\"}"),
        refused.len() as u64
    );
    server.stop().await;
}

#[tokio::test]
async fn the_transaction_cap_answers_503() {
    let server = common::start("txcap", |c| c.max_transactions = 5).await;
    let phone = udp_from([127, 0, 0, 1]).await;
    // each answered OPTIONS over UDP is kept 32 s for retransmissions
    for i in 0..5 {
        phone
            .send_to(options("UDP", &format!("cap-{i}")).as_bytes(), server.sip)
            .await
            .unwrap();
        let got = collect(&phone, Duration::from_millis(300)).await;
        assert_eq!(got.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![200]);
    }
    phone
        .send_to(options("UDP", "cap-over").as_bytes(), server.sip)
        .await
        .unwrap();
    let got = collect(&phone, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(code(&got[0]), 503);
    assert_eq!(header(&got[0], "Retry-After"), Some("5"));
    let m = metrics(&server).await;
    assert_eq!(sample(&m, "switchboard_sip_overload_refused_total "), 1);
    assert_eq!(sample(&m, "switchboard_transactions_server_live "), 5);
    server.stop().await;
}

#[tokio::test]
async fn tcp_bounds_hold_against_the_real_server() {
    let server = common::start("tcp-bounds", |c| {
        c.tcp_max_per_ip = 3;
        c.tcp_idle_new = 1;
    })
    .await;
    // keep-alive ping answered with a pong on a connection that then
    // proves itself with a request
    let mut phone = tcp_from([127, 0, 0, 1], server.sip).await;
    phone.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), phone.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
    let reply = ask(&mut phone, &options("TCP", "tcp-phone")).await.unwrap();
    assert_eq!(code(&reply), 200);
    // two silent connections fill the source's quota of 3; a fourth is refused
    let mut silent1 = tcp_from([127, 0, 0, 1], server.sip).await;
    let mut silent2 = tcp_from([127, 0, 0, 1], server.sip).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = tcp_from([127, 0, 0, 1], server.sip).await;
    assert!(closed_within(&mut refused, Duration::from_millis(900)).await);
    // another address still connects
    let mut other = tcp_from([127, 0, 0, 2], server.sip).await;
    let reply = ask(&mut other, &options("TCP", "tcp-other")).await.unwrap();
    assert_eq!(code(&reply), 200);
    // the silent ones are closed after TCP_IDLE_NEW (1 s); the phone stays
    assert!(closed_within(&mut silent1, Duration::from_secs(5)).await);
    assert!(closed_within(&mut silent2, Duration::from_secs(5)).await);
    let reply = ask(&mut phone, &options("TCP", "tcp-phone-2"))
        .await
        .unwrap();
    assert_eq!(code(&reply), 200);
    let m = metrics(&server).await;
    assert_eq!(
        sample(&m, "switchboard_tcp_refused_total{cap=\"per_ip\"}"),
        1
    );
    assert_eq!(
        sample(&m, "switchboard_tcp_closed_total{reason=\"idle_new\"}"),
        2
    );
    assert_eq!(sample(&m, "switchboard_tcp_pings_total "), 1);
    // the phone, the two silent ones, the other address (not the refused)
    assert_eq!(sample(&m, "switchboard_tcp_connections_total "), 4);
    server.stop().await;
}

fn invite(call_id: &str, from_tag: &str) -> String {
    let branch = format!("z9hG4bK-{}", rand::random::<u64>());
    format!(
        "INVITE sip:1002@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:attacker@127.0.0.1>;tag={from_tag}\r\n\
         To: <sip:1002@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:attacker@127.0.0.1:5999>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn an_unauthenticated_invite_costs_no_state() {
    let server = common::start("stateless-407", |_| {}).await;
    let attacker = udp_from([127, 0, 0, 1]).await;
    // one INVITE: a 407 and nothing else — no 100 Trying, and no resend of
    // the 407 at T1 (no Timer G: there is no transaction)
    attacker
        .send_to(invite("one@x", "t0").as_bytes(), server.sip)
        .await
        .unwrap();
    let got = collect(&attacker, Duration::from_millis(1600)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(code(&got[0]), 407);
    assert!(header(&got[0], "Proxy-Authenticate").is_some());
    let to = header(&got[0], "To").unwrap().to_owned();
    assert!(
        to.contains(";tag=sl-"),
        "the endpoint's stateless tag: {to}"
    );
    // its ACK is absorbed
    let ack = format!(
        "ACK sip:1002@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-ack;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:attacker@127.0.0.1>;tag=t0\r\n\
         To: {to}\r\n\
         Call-ID: one@x\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    attacker.send_to(ack.as_bytes(), server.sip).await.unwrap();
    // a burst of 300 INVITEs with fresh Call-IDs: 300 challenges, and not
    // one transaction or merge-guard entry left behind
    // (in rounds of 50, so the test's own socket buffer holds the answers)
    let mut replies = Vec::new();
    for round in 0..6 {
        for i in round * 50..(round + 1) * 50 {
            let req = invite(&format!("flood-{i}@x"), &format!("t{i}"));
            attacker.send_to(req.as_bytes(), server.sip).await.unwrap();
        }
        replies.extend(collect(&attacker, Duration::from_millis(300)).await);
    }
    assert_eq!(replies.len(), 300, "one answer each");
    assert!(replies.iter().all(|r| code(r) == 407));
    let m = metrics(&server).await;
    assert_eq!(sample(&m, "switchboard_transactions_server_live "), 0);
    assert_eq!(sample(&m, "switchboard_sip_merge_guard_entries "), 0);
    assert!(sample(&m, "switchboard_sip_stateless_acks_total ") >= 1);
    assert_eq!(
        sample(&m, "switchboard_sip_responses_sent_total{code=\"407\"}"),
        301
    );
    server.stop().await;
}
