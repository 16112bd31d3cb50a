//! Closed stream flows reported to whoever keeps state learnt on them (a
//! registrar), over real loopback sockets: a connection that carried SIP
//! is reported once it closes, one that never did is not, only the
//! transports asked for are, and a full queue drops reports (counted)
//! instead of holding the closing connection.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use switchboard_sip_stack::endpoint::Limits;
use switchboard_sip_stack::target::{Target, TransportKind};
use switchboard_sip_stack::transport::{CloseReports, TransportConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

fn reporting(
    capacity: usize,
    kinds: &[TransportKind],
) -> (TransportConfig, mpsc::Receiver<Target>) {
    let (tx, rx) = mpsc::channel(capacity);
    let config = TransportConfig {
        closes: Some(CloseReports {
            tx,
            kinds: kinds.to_vec(),
        }),
        ..TransportConfig::default()
    };
    (config, rx)
}

#[tokio::test]
async fn a_connection_that_carried_sip_is_reported_once_it_closes() {
    let (config, mut rx) = reporting(8, &[TransportKind::Tcp]);
    let server = start(config, Limits::default(), TestCore::default()).await;

    // one that spoke SIP, one that only connected, one that sent garbage
    let mut phone = connect_from([127, 0, 0, 1], server.addr).await;
    let reply = ask(&mut phone, &request("OPTIONS", "TCP", "close-1", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
    let silent = connect_from([127, 0, 0, 1], server.addr).await;
    let mut garbage = connect_from([127, 0, 0, 1], server.addr).await;
    garbage.write_all(b"HELLO\r\n\r\n").await.unwrap();
    let phone_addr = phone.local_addr().unwrap();
    drop(silent);
    drop(garbage);
    drop(phone);

    let flow = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("reported within 2 s")
        .unwrap();
    assert_eq!(flow.transport, TransportKind::Tcp);
    assert_eq!(flow.remote, phone_addr);
    assert!(flow.conn.is_some(), "the report names the connection");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "connections that carried no SIP are not reported"
    );
    let stats = &server.transports.stats;
    assert_eq!(stats.close_reports.load(Ordering::Relaxed), 1);
    assert_eq!(stats.close_reports_dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn only_the_transports_asked_for_are_reported() {
    let (config, mut rx) = reporting(8, &[TransportKind::Ws, TransportKind::Wss]);
    let server = start(config, Limits::default(), TestCore::default()).await;
    let mut phone = connect_from([127, 0, 0, 1], server.addr).await;
    let reply = ask(&mut phone, &request("OPTIONS", "TCP", "close-2", 1, "")).await;
    assert_eq!(reply.as_deref().map(code), Some(200));
    drop(phone);
    assert!(
        eventually(Duration::from_secs(2), || server
            .transports
            .connection_count()
            == 0)
        .await
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "a TCP close is not reported when only WebSocket ones are asked for"
    );
    assert_eq!(
        server
            .transports
            .stats
            .close_reports
            .load(Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn a_full_queue_drops_reports_and_counts_them() {
    let (config, mut rx) = reporting(1, &[TransportKind::Tcp]);
    let server = start(config, Limits::default(), TestCore::default()).await;
    let mut phones = Vec::new();
    for i in 0..3 {
        let mut phone = connect_from([127, 0, 0, 1], server.addr).await;
        let req = request("OPTIONS", "TCP", &format!("close-3-{i}"), 1, "");
        assert_eq!(ask(&mut phone, &req).await.as_deref().map(code), Some(200));
        phones.push(phone);
    }
    // nobody reads the queue while the three close
    drop(phones);
    let stats = &server.transports.stats;
    assert!(
        eventually(Duration::from_secs(2), || {
            stats.close_reports.load(Ordering::Relaxed)
                + stats.close_reports_dropped.load(Ordering::Relaxed)
                == 3
        })
        .await
    );
    assert_eq!(stats.close_reports.load(Ordering::Relaxed), 1);
    assert_eq!(stats.close_reports_dropped.load(Ordering::Relaxed), 2);
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err());
}
