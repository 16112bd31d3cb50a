//! Request floods against the endpoint over real loopback sockets: the
//! per-source rate limit, the transaction cap, and stateless replies (no
//! transaction, the ACK absorbed).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use switchboard_sip_stack::endpoint::Limits;
use switchboard_sip_stack::flood::Rate;
use switchboard_sip_stack::transport::TransportConfig;

#[tokio::test]
async fn a_flood_from_one_source_gets_503_then_silence_while_another_source_is_served() {
    let server = start(
        TransportConfig::default(),
        Limits {
            rate: Some(Rate {
                per_second: 10,
                burst: 10,
            }),
            max_transactions: 0,
        },
        TestCore::default(),
    )
    .await;
    let udp = server.transports.local_addrs()[0];
    let attacker = udp_from([127, 0, 0, 1]).await;
    let sent = 200;
    for i in 0..sent {
        let req = request("OPTIONS", "UDP", &format!("flood-{i}"), 1, "");
        attacker.send_to(req.as_bytes(), udp).await.unwrap();
    }
    let replies = collect(&attacker, Duration::from_millis(1500)).await;
    let ok = replies.iter().filter(|r| code(r) == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| code(r) == 503).collect();
    assert!((10..=20).contains(&ok), "{ok} served (burst 10, 10/s)");
    assert!(!refused.is_empty(), "no 503");
    for r in &refused {
        assert_eq!(header(r, "Retry-After"), Some("1"), "{r}");
        let to = header(r, "To").unwrap();
        assert!(to.contains(server.endpoint.stateless_tag()), "{to}");
    }
    assert!(
        ok + refused.len() < sent,
        "beyond twice the rate requests are dropped unanswered ({ok} + {})",
        refused.len()
    );
    let stats = &server.endpoint.stats;
    assert_eq!(
        stats.rate_refused.load(Ordering::Relaxed),
        refused.len() as u64
    );
    assert!(stats.rate_dropped.load(Ordering::Relaxed) > 0);
    assert_eq!(
        server.endpoint.layer.metrics().created.server_non_invite,
        ok as u64,
        "503s create no transaction"
    );

    // another source is served meanwhile
    let phone = udp_from([127, 0, 0, 2]).await;
    let req = request("OPTIONS", "UDP", "other-source", 1, "");
    phone.send_to(req.as_bytes(), udp).await.unwrap();
    let got = collect(&phone, Duration::from_millis(500)).await;
    assert_eq!(got.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![200]);

    // an ACK from the flooding source (a 2xx ACK of a call it set up
    // before) still reaches the core: ACKs are never limited
    let ack = request("ACK", "UDP", "call-before", 1, "").replace(
        "To: <sip:svc@127.0.0.1>",
        "To: <sip:svc@127.0.0.1>;tag=dialog",
    );
    attacker.send_to(ack.as_bytes(), udp).await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || server
            .core
            .acks
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(server.endpoint.rate_sources().map(|(n, _)| n), Some(2));
}

#[tokio::test]
async fn the_transaction_cap_answers_503_without_a_transaction() {
    let server = start(
        TransportConfig::default(),
        Limits {
            rate: None,
            max_transactions: 3,
        },
        TestCore::default(),
    )
    .await;
    let udp = server.transports.local_addrs()[0];
    let phone = udp_from([127, 0, 0, 1]).await;
    // three INVITEs the core holds: three live server transactions
    let mut held = Vec::new();
    for i in 0..3 {
        let invite = request("INVITE", "UDP", &format!("held-{i}"), 1, "");
        phone.send_to(invite.as_bytes(), udp).await.unwrap();
        let got = collect(&phone, Duration::from_millis(300)).await;
        assert_eq!(got.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![100]);
        held.push(invite);
    }
    assert_eq!(server.endpoint.layer.server_live(), 3);
    // the fourth: 503 with Retry-After, stateless
    let invite = request("INVITE", "UDP", "over-cap", 1, "");
    phone.send_to(invite.as_bytes(), udp).await.unwrap();
    let got = collect(&phone, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(code(&got[0]), 503);
    assert_eq!(header(&got[0], "Retry-After"), Some("5"));
    assert_eq!(server.endpoint.layer.server_live(), 3);
    // its ACK is absorbed, not passed to the core as a 2xx ACK
    phone
        .send_to(ack_for(&invite, &got[0]).as_bytes(), udp)
        .await
        .unwrap();
    let stats = &server.endpoint.stats;
    assert!(
        eventually(Duration::from_secs(2), || stats
            .stateless_acks
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(server.core.acks.load(Ordering::Relaxed), 0);
    // any new request is refused, over TCP too
    let mut conn = connect_from([127, 0, 0, 1], server.addr).await;
    let reply = ask(&mut conn, &request("OPTIONS", "TCP", "after", 1, ""))
        .await
        .expect("a reply");
    assert_eq!(code(&reply), 503);
    assert_eq!(stats.overload_refused.load(Ordering::Relaxed), 2);
    // but a retransmission of a held INVITE is still absorbed by its
    // transaction (the 100 Trying again): the cap only stops new ones
    phone.send_to(held[0].as_bytes(), udp).await.unwrap();
    let got = collect(&phone, Duration::from_millis(300)).await;
    assert_eq!(got.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![100]);
    assert_eq!(server.core.held.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_screened_invite_gets_a_stateless_407_and_its_ack_is_absorbed() {
    let server = start(
        TransportConfig::default(),
        Limits::default(),
        TestCore {
            challenge: true,
            ..TestCore::default()
        },
    )
    .await;
    let udp = server.transports.local_addrs()[0];
    let phone = udp_from([127, 0, 0, 1]).await;
    let invite = request("INVITE", "UDP", "screened", 1, "");
    phone.send_to(invite.as_bytes(), udp).await.unwrap();
    let got = collect(&phone, Duration::from_millis(300)).await;
    // no 100 Trying: no transaction was created
    assert_eq!(got.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![407]);
    assert_eq!(server.endpoint.layer.server_live(), 0);
    assert_eq!(server.endpoint.layer.metrics().created.server_invite, 0);
    // the retransmission is challenged again, still statelessly
    phone.send_to(invite.as_bytes(), udp).await.unwrap();
    let again = collect(&phone, Duration::from_millis(300)).await;
    assert_eq!(again.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![407]);
    assert_eq!(
        header(&again[0], "To"),
        header(&got[0], "To"),
        "the same To tag"
    );
    phone
        .send_to(ack_for(&invite, &got[0]).as_bytes(), udp)
        .await
        .unwrap();
    let stats = &server.endpoint.stats;
    assert!(
        eventually(Duration::from_secs(2), || stats
            .stateless_acks
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(server.core.acks.load(Ordering::Relaxed), 0);
    assert_eq!(stats.screened.load(Ordering::Relaxed), 2);
    // with credentials the INVITE starts a transaction as usual
    let authed = request("INVITE", "UDP", "screened", 2, "").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nProxy-Authorization: Digest username=\"a\"\r\n",
    );
    phone.send_to(authed.as_bytes(), udp).await.unwrap();
    let got = collect(&phone, Duration::from_millis(300)).await;
    assert_eq!(got.iter().map(|r| code(r)).collect::<Vec<_>>(), vec![100]);
    assert_eq!(server.endpoint.layer.server_live(), 1);
}
