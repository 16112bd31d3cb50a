//! The call agent's media through a TURN relay (SIP_TURN_SERVER): a TURN
//! server (webrtc-rs `turn`'s own, on loopback) allocates the relay, the
//! agent's SDP names the relayed address, so the platform's RTP manager
//! sends to and hears from the relay, and the desk phone behind the
//! platform hears the agent; wrong TURN credentials are a network failure
//! before anyone is called.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::phone::SipPhone;
use common::*;
use switchboard_call::config::Config;
use switchboard_call::report::Outcome;
use switchboard_sip::message::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_goes_through_the_turn_relay() {
    let (turn, turn_addr) = turn_server().await;
    let n = node("turn").await;
    let sip = n.sip;
    let desk = SipPhone::bind(LO, sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);

    let settings = |password: &str| {
        Config::try_parse_from([
            "switchboard-call".to_owned(),
            "--dest=1002".to_owned(),
            format!("--sip-server={sip}"),
            "--sip-user=agent".to_owned(),
            "--sip-password=agent-secret".to_owned(),
            "--text=Relayed hello".to_owned(),
            format!("--turn-server={turn_addr}"),
            "--turn-username=relay-user".to_owned(),
            format!("--turn-password={password}"),
        ])
        .unwrap()
        .settings()
        .unwrap()
    };

    // wrong TURN credentials: no call is placed
    let r = switchboard_call::run(&settings("wrong")).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.sip_code),
        (Outcome::Network, 13, None),
        "{}",
        r.to_line()
    );
    assert!(
        r.errors.iter().any(|e| e.contains("SIP_TURN_SERVER")),
        "{:?}",
        r.errors
    );

    let s = settings("relay-pass");
    let mut agent = tokio::spawn(async move { switchboard_call::run(&s).await });
    let invite = tokio::select! {
        i = desk.request_within(Method::Invite, Duration::from_secs(10)) => i,
        r = &mut agent => panic!("the agent ended first: {}", r.unwrap().to_line()),
    };
    let media = answer_with_media(&desk, &invite).await;
    take_bye(&desk).await;
    let r = agent.await.unwrap();
    assert_eq!(r.outcome, Outcome::Answered, "{}", r.to_line());
    // the platform saw the relayed address as the agent's media address
    let relay = r.media.turn_relay.clone().expect("a relay in the report");
    let relay: SocketAddr = relay.parse().unwrap();
    assert_eq!(relay.ip(), LO);
    assert_ne!(relay.port(), turn_addr.port());
    assert!(r.media.packets_received > 20, "{:?}", r.media);
    let loud = media.loud_frames();
    assert!(
        loud > 20,
        "the desk phone heard the agent through the relay: {loud}"
    );
    n.running.shutdown(Duration::from_secs(2)).await;
    turn.close().await.unwrap();
}
