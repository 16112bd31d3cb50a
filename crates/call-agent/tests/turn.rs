//! The call agent's media through a TURN relay (SIP_TURN_SERVER): a TURN
//! server (webrtc-rs `turn`'s own, on loopback) allocates the relay, the
//! agent's SDP names the relayed address, so the platform's RTP manager
//! sends to and hears from the relay, and the desk phone behind the
//! platform hears the agent; wrong TURN credentials are a network failure
//! before anyone is called.

#![allow(clippy::unwrap_used)]

#[path = "../../signaling/tests/common/phone.rs"]
#[allow(dead_code, unreachable_pub)]
mod phone;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use phone::SipPhone;
use switchboard_call::config::Config;
use switchboard_call::report::Outcome;
use switchboard_media::g711::Codec;
use switchboard_media::rtp_header::RtpView;
use switchboard_sip::message::Method;
use tokio::net::UdpSocket;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Users;

impl AuthHandler for Users {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        if username == "relay-user" {
            Ok(generate_auth_key(username, realm, "relay-pass"))
        } else {
            Err(turn::Error::ErrNoSuchUser)
        }
    }
}

async fn turn_server() -> (Server, SocketAddr) {
    let conn = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    let addr = conn.local_addr().unwrap();
    let server = Server::new(ServerConfig {
        conn_configs: vec![ConnConfig {
            conn,
            relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                relay_address: LO,
                address: "127.0.0.1".to_owned(),
                net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
            }),
        }],
        realm: "switchboard.test".to_owned(),
        auth_handler: Arc::new(Users),
        channel_bind_timeout: Duration::from_secs(0),
        alloc_close_notify: None,
    })
    .await
    .unwrap();
    (server, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_goes_through_the_turn_relay() {
    let (turn, turn_addr) = turn_server().await;
    let dir = std::env::temp_dir().join(format!("switchboard-call-turn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dialplan.json");
    std::fs::copy(plan, dir.join("dialplan.json")).unwrap();
    let running = switchboard_signaling::run(switchboard_signaling::Config::for_tests(dir.clone()))
        .await
        .unwrap();
    let sip = running.sip_addrs[0];
    // the agent's user, and a desk phone (the default plan dials user/<number>)
    for (user, ext) in [("agent", "1001"), ("desk", "1002")] {
        let body = serde_json::json!({"username": user, "password": format!("{user}-secret"), "extension": ext});
        let out = std::process::Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .arg(format!("http://{}/api/v1/users", running.api_addr))
            .args([
                "-H",
                &format!("Authorization: Bearer {}", running.api_token),
            ])
            .args([
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    }
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
    let rtp = UdpSocket::bind((LO, 0)).await.unwrap();
    let answer = phone::sdp(LO, rtp.local_addr().unwrap().port(), "sendrecv");
    desk.answer(&invite, 200, Some("desk"), Some(&answer)).await;
    let to = switchboard_sip::sdp::parse(&invite.body)
        .unwrap()
        .remote_rtp()
        .unwrap();
    let phone_media = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (mut loud, mut seq) = (0usize, 0u16);
        let end = tokio::time::Instant::now() + Duration::from_secs(6);
        while tokio::time::Instant::now() < end {
            let mut pkt = Vec::new();
            switchboard_media::rtp_header::write_header(
                &mut pkt,
                0,
                seq == 0,
                seq,
                u32::from(seq) * 160,
                9,
            );
            pkt.extend([0xffu8; 160]);
            seq = seq.wrapping_add(1);
            let _ = rtp.send_to(&pkt, to).await;
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(20), rtp.recv_from(&mut buf)).await
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
    });
    let bye = desk
        .request_within(Method::Bye, Duration::from_secs(20))
        .await;
    desk.answer(&bye, 200, None, None).await;
    let r = agent.await.unwrap();
    assert_eq!(r.outcome, Outcome::Answered, "{}", r.to_line());
    // the platform saw the relayed address as the agent's media address
    let relay = r.media.turn_relay.clone().expect("a relay in the report");
    let relay: SocketAddr = relay.parse().unwrap();
    assert_eq!(relay.ip(), LO);
    assert_ne!(relay.port(), turn_addr.port());
    assert!(r.media.packets_received > 20, "{:?}", r.media);
    let loud = phone_media.await.unwrap();
    assert!(
        loud > 20,
        "the desk phone heard the agent through the relay: {loud}"
    );
    running.shutdown(Duration::from_secs(2)).await;
    turn.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
