//! ICE (SIP_ICE_ENABLED) on loopback: the agent calls a test callee that
//! is the SIP server itself (signaling's test phone, no registration) and
//! whose media side is a controlled webrtc-rs ICE agent gathering on
//! 127.0.0.1 only. The offer carries ice-ufrag, ice-pwd, rtcp-mux and
//! candidates (all on loopback, the default one among them); the callee
//! answers with its own, the checks complete, and the callee hears the
//! agent's tone over its ICE connection while sending silence back; the
//! report names the pair. A callee answering without ICE gets the plain
//! stream at its c=/m= address; one whose candidates never answer ends
//! the call as a network failure naming ICE. With a TURN server (webrtc-rs
//! `turn`'s, on loopback) the offer's default is the relay, and the ICE
//! agent offers a relay candidate of its own.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::phone::{self, SipPhone};
use common::{LO, turn_server};
use switchboard_call::config::Config;
use switchboard_call::report::{Outcome, Report};
use switchboard_media::g711::Codec;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_sip::message::{Method, Request};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc_ice::agent::Agent;
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::candidate::Candidate;
use webrtc_ice::candidate::candidate_base::unmarshal_candidate;
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_util::Conn;

/// A WAV of 2 s of a 700 Hz tone, what the agent plays.
fn tone_wav() -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "switchboard-call-ice-{}-{:x}.wav",
        std::process::id(),
        rand::random::<u32>()
    ));
    let samples: Vec<i16> = (0..16_000)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * 700.0 * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect();
    switchboard_call::audio::write_wav(&path, 8000, &samples).unwrap();
    path
}

/// The agent calling 1002 at `server` (the test phone) with ICE enabled.
fn start_agent(
    server: SocketAddr,
    wav: &std::path::Path,
    extra: &[String],
) -> tokio::task::JoinHandle<Report> {
    let mut args = vec![
        "switchboard-call".to_owned(),
        "--dest=1002".to_owned(),
        format!("--sip-server={server}"),
        format!("--wav={}", wav.display()),
        "--ice-enabled=true".to_owned(),
        "--post-delay=0.5".to_owned(),
    ];
    args.extend_from_slice(extra);
    let s = Config::try_parse_from(args).unwrap().settings().unwrap();
    tokio::spawn(async move { switchboard_call::run(&s).await })
}

/// The phone (as the agent's SIP server) and the agent's INVITE.
async fn invited(
    wav: &std::path::Path,
    extra: &[String],
) -> (SipPhone, Request, tokio::task::JoinHandle<Report>) {
    let mut phone = SipPhone::bind(LO, SocketAddr::new(LO, 9)).await;
    let agent = start_agent(phone.addr(), wav, extra);
    let (invite, from) = phone.request_from(Method::Invite).await;
    phone.server = from;
    (phone, invite, agent)
}

/// A controlled ICE agent on 127.0.0.1 only, gathered.
async fn callee_agent() -> Agent {
    let agent = Agent::new(AgentConfig {
        network_types: vec![NetworkType::Udp4],
        multicast_dns_mode: MulticastDnsMode::Disabled,
        include_loopback: true,
        interface_filter: Arc::new(Some(Box::new(|name: &str| name == "lo"))),
        ip_filter: Arc::new(Some(Box::new(|ip: IpAddr| ip == LO))),
        is_controlling: false,
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let (tx, mut rx) = mpsc::channel::<()>(1);
    agent.on_candidate(Box::new(move |c| {
        let tx = tx.clone();
        Box::pin(async move {
            if c.is_none() {
                let _ = tx.send(()).await;
            }
        })
    }));
    agent.gather_candidates().unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    agent
}

/// The values of the offer's `a=<name>:` lines.
fn attrs<'a>(sdp: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix(prefix.as_str()))
        .collect()
}

/// Counts loud frames arriving on `conn` for `secs` while sending PCMU
/// silence on it (to `to`, or on the ICE path when `None`).
async fn listen(conn: Arc<dyn Conn + Send + Sync>, to: Option<SocketAddr>, secs: u64) -> usize {
    let (mut loud, mut seq) = (0usize, 0u16);
    let mut buf = [0u8; 2048];
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        let mut pkt = Vec::new();
        write_header(&mut pkt, 0, seq == 0, seq, u32::from(seq) * 160, 7);
        pkt.extend([0xffu8; 160]);
        seq = seq.wrapping_add(1);
        let _ = match to {
            Some(to) => conn.send_to(&pkt, to).await,
            None => conn.send(&pkt).await,
        };
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(20), conn.recv_from(&mut buf)).await
            && let Some(v) = RtpView::parse(&buf[..n])
            && let Some(c) = Codec::from_payload_type(v.payload_type())
        {
            let mut s = Vec::new();
            c.decode(v.payload(), &mut s);
            if switchboard_call::audio::rms(&s) > 1000.0 {
                loud += 1;
            }
        }
    }
    loud
}

/// An ICE call: the offer checked, the ICE callee answers, hears the
/// agent's tone over the checked pair; returns the offer and the report.
async fn ice_call(extra: &[String]) -> (String, Report) {
    let wav = tone_wav();
    let (phone, invite, agent) = invited(&wav, extra).await;
    let offer = String::from_utf8(invite.body.clone()).unwrap();
    let parsed = switchboard_sip::sdp::parse(offer.as_bytes()).unwrap();
    let (ufrag, pwd) = (
        parsed.webrtc.ice_ufrag.clone().unwrap(),
        parsed.webrtc.ice_pwd.clone().unwrap(),
    );
    assert!(offer.contains("a=rtcp-mux\r\n"), "{offer}");
    let lines = attrs(&offer, "candidate");
    assert!(lines.len() >= 2, "{offer}");
    // every candidate on loopback (the route to the server), the default
    // one (c=/m=) among them
    let default = parsed.remote_rtp().unwrap();
    assert_eq!(default.ip(), LO);
    let mut found_default = false;
    for l in &lines {
        let c = switchboard_sip::sdp::webrtc::Candidate::parse(l).unwrap();
        assert_eq!(
            (c.ip(), c.component, c.transport.as_str()),
            (Some(LO), 1, "udp"),
            "{l}"
        );
        found_default |= c.port == default.port();
    }
    assert!(found_default, "{offer}");

    let callee = callee_agent().await;
    for l in &lines {
        let c: Arc<dyn Candidate + Send + Sync> = Arc::new(unmarshal_candidate(l).unwrap());
        callee.add_remote_candidate(&c).unwrap();
    }
    let ours = callee.get_local_candidates().await.unwrap();
    assert!(!ours.is_empty());
    assert!(ours.iter().all(|c| c.addr().ip() == LO));
    let (our_ufrag, our_pwd) = callee.get_local_user_credentials().await;
    let mut answer = format!(
        "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=rtcp-mux\r\n\
         a=ice-ufrag:{our_ufrag}\r\na=ice-pwd:{our_pwd}\r\n",
        ours[0].port()
    );
    for c in &ours {
        answer.push_str(&format!("a=candidate:{}\r\n", c.marshal()));
    }
    phone
        .answer(&invite, 200, Some("callee"), Some(&answer))
        .await;

    let (_cancel, cancel_rx) = mpsc::channel::<()>(1);
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        callee.accept(cancel_rx, ufrag, pwd),
    )
    .await
    .expect("ICE checks within 10 s")
    .unwrap();
    let conn: Arc<dyn Conn + Send + Sync> = conn;
    let heard = tokio::spawn(listen(conn, None, 3));
    let bye = phone
        .request_within(Method::Bye, Duration::from_secs(20))
        .await;
    phone.answer(&bye, 200, None, None).await;
    let r = agent.await.unwrap();
    assert_eq!(r.outcome, Outcome::Answered, "{}", r.to_line());
    let pair = r.media.ice.clone().expect("the ICE pair in the report");
    assert!(
        pair.contains("127.0.0.1") && pair.contains(" -> "),
        "{pair}"
    );
    assert!(r.media.packets_received > 20, "{:?}", r.media);
    let loud = heard.await.unwrap();
    assert!(
        loud > 20,
        "the callee heard the agent over ICE: {loud} loud frames"
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), callee.close()).await;
    let _ = std::fs::remove_file(wav);
    (offer, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_checks_complete_and_the_callee_hears_the_agent_over_them() {
    let (offer, r) = ice_call(&[]).await;
    // no STUN or TURN: host candidates, the default one a plain socket
    assert!(
        !offer.contains("typ srflx") && !offer.contains("typ relay"),
        "{offer}"
    );
    assert!(r.media.turn_relay.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_turn_the_offer_has_relay_candidates_and_a_relayed_default() {
    let (turn, turn_addr) = turn_server().await;
    let (offer, r) = ice_call(&[
        format!("--turn-server={turn_addr}"),
        "--turn-username=relay-user".to_owned(),
        "--turn-password=relay-pass".to_owned(),
    ])
    .await;
    let parsed = switchboard_sip::sdp::parse(offer.as_bytes()).unwrap();
    let default = parsed.remote_rtp().unwrap();
    let relays: Vec<&str> = attrs(&offer, "candidate")
        .into_iter()
        .filter(|c| c.contains(" typ relay"))
        .collect();
    // the default (the agent's plain relay) and the ICE agent's own relay
    assert_eq!(relays.len(), 2, "{offer}");
    assert!(
        relays.iter().any(|c| c.contains(&format!(
            " {} {} typ relay",
            default.ip(),
            default.port()
        ))),
        "{offer}"
    );
    // the report names a relay only when the checked pair went through one
    let pair = r.media.ice.clone().unwrap();
    assert_eq!(
        r.media.turn_relay.is_some(),
        pair.starts_with("relay "),
        "{pair}"
    );
    turn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_without_ice_gets_the_plain_stream() {
    let wav = tone_wav();
    let (phone, invite, agent) = invited(&wav, &[]).await;
    let to = switchboard_sip::sdp::parse(&invite.body)
        .unwrap()
        .remote_rtp()
        .unwrap();
    let rtp = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    let answer = phone::sdp(LO, rtp.local_addr().unwrap().port(), "sendrecv");
    phone
        .answer(&invite, 200, Some("plain"), Some(&answer))
        .await;
    let heard = tokio::spawn(listen(rtp, Some(to), 3));
    let bye = phone
        .request_within(Method::Bye, Duration::from_secs(20))
        .await;
    phone.answer(&bye, 200, None, None).await;
    let r = agent.await.unwrap();
    assert_eq!(r.outcome, Outcome::Answered, "{}", r.to_line());
    assert_eq!(r.media.ice, None);
    assert!(r.media.packets_received > 20, "{:?}", r.media);
    let loud = heard.await.unwrap();
    assert!(
        loud > 20,
        "the plain callee heard the agent: {loud} loud frames"
    );
    let _ = std::fs::remove_file(wav);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_that_never_connects_is_a_network_failure() {
    let wav = tone_wav();
    let (phone, invite, agent) = invited(&wav, &[]).await;
    // a candidate nobody answers on: a bound socket that never reads
    let silent = UdpSocket::bind((LO, 0)).await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let answer = format!(
        "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp-mux\r\n\
         a=ice-ufrag:deaf\r\na=ice-pwd:nobodyanswersthesechecks\r\n\
         a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\n"
    );
    phone
        .answer(&invite, 200, Some("deaf"), Some(&answer))
        .await;
    let bye = phone
        .request_within(Method::Bye, Duration::from_secs(20))
        .await;
    phone.answer(&bye, 200, None, None).await;
    let r = agent.await.unwrap();
    assert_eq!(
        (r.outcome, r.hangup_by),
        (Outcome::Network, Some("us")),
        "{}",
        r.to_line()
    );
    assert!(r.errors.iter().any(|e| e.contains("ICE")), "{:?}", r.errors);
    drop(silent);
    let _ = std::fs::remove_file(wav);
}
