//! SIP over WebSocket and secure WebSocket (RFC 7118) through the whole
//! node, on loopback: phones register over WS and WSS as JsSIP does and
//! get their answers on their connection, a UDP phone calls a WebSocket
//! phone (reached only over its connection) and either side hangs up, a
//! browser phone on WSS calls a UDP phone, a phone whose connection closed
//! is unreachable at once even while its binding is kept (480, nothing
//! connects anywhere; by default the binding goes too, see flow_close.rs),
//! and the upgrade's Origin and subprotocol checks. A contact on WebSocket is a
//! browser: its INVITE carries the manager's WebRTC offer, while the same
//! user's UDP phone is offered plain RTP/AVP.
//! The attacks over WebSocket are in attacks_ws.rs.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::phone::{SipPhone, sdp};
use common::ws_phone::{webrtc_answer, ws_connect, ws_node, ws_phone};
use common::{metric, metric_becomes, no_live_calls};
use switchboard_signaling::config::UnregisterOnClose;
use switchboard_sip::message::Method;
use switchboard_sip_stack::dialog::Dialog;
use tokio_tungstenite::tungstenite::Error as WsError;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const SIP: (&str, &str) = ("Sec-WebSocket-Protocol", "sip");

/// The HTTP status a refused upgrade got.
fn status(e: &WsError) -> Option<u16> {
    match e {
        WsError::Http(r) => Some(r.status().as_u16()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_register_over_ws_and_wss_and_are_answered_on_their_connection() {
    let (s, ws, wss, ca) = ws_node("ws-register", |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    let alice = ws_phone(ws, None, None).await;
    let bob = ws_phone(wss, Some(&ca), None).await;
    // the phones have no other socket: the 401 and the 200 came back on
    // the connection each registered over
    for (phone, user, token) in [(&alice, "alice", "ws"), (&bob, "bob", "wss")] {
        let ok = phone.register(user, &format!("{user}-secret")).await;
        assert_eq!(ok.code, 200, "{ok:?}");
        let contact = ok.header("Contact").unwrap_or_default();
        assert!(
            contact.contains(&format!("@{};transport={token}>", phone.host)),
            "the binding is the phone's .invalid Contact: {contact}"
        );
        let via = ok.header("Via").unwrap_or_default();
        assert!(
            via.starts_with(&format!("SIP/2.0/{} {}", token.to_uppercase(), phone.host))
                && via.contains("received=127.0.0.1"),
            "{via}"
        );
        let contacts = s.contacts(user).await;
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert_eq!(
            contacts[0]["received"],
            format!("{token}:{}", phone.addr()),
            "the flow is the connection: {contacts:?}"
        );
    }
    for token in ["ws", "wss"] {
        let line = format!("switchboard_ws_messages_total{{transport=\"{token}\"}} ");
        assert_eq!(metric(&s, &line).await, Some(2), "{token}: 2 REGISTERs");
        let line = format!("switchboard_ws_connections_total{{transport=\"{token}\"}} ");
        assert_eq!(metric(&s, &line).await, Some(1));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_phone_calls_a_ws_phone_over_its_connection() {
    let (s, ws, _, _) = ws_node("ws-call", |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    let bob = ws_phone(ws, None, None).await;
    assert_eq!(bob.register("bob", "bob-secret").await.code, 200);
    let alice = SipPhone::bind(LO, s.sip).await;
    let ws_port = format!(":{}", ws.port());

    for bob_hangs_up in [true, false] {
        let offer = sdp(LO, 40_100, "sendrecv");
        // bob has no listener: the INVITE can only reach him on the
        // connection he registered over; being on WebSocket, he is a
        // browser and answers the manager's WebRTC offer as one
        let callee = async {
            let invite = bob.request(Method::Invite).await;
            bob.answer(&invite, 180, Some("bob-tag"), None).await;
            let answer = webrtc_answer(&invite.body);
            bob.answer(&invite, 200, Some("bob-tag"), Some(&answer))
                .await;
            invite
        };
        let ((mut d, ok), invite) = tokio::join!(
            alice.call("alice", "alice-secret", "bob", &offer, &[]),
            callee
        );
        assert_eq!(ok.code, 200, "{ok:?}");
        let uri = invite.uri.to_string();
        assert!(
            uri.contains(&format!("bob@{}", bob.host)) && uri.contains("transport=ws"),
            "the Request-URI is the registered Contact: {uri}"
        );
        let via = invite.header("Via").unwrap_or_default();
        assert!(
            via.starts_with("SIP/2.0/WS ") && via.contains(&ws_port),
            "{via}"
        );
        let contact = invite.header("Contact").unwrap_or_default();
        assert!(
            contact.contains("transport=ws") && contact.contains(&ws_port),
            "bob is told to reach us over his WebSocket: {contact}"
        );
        bob.request(Method::Ack).await;

        if bob_hangs_up {
            let mut theirs = Dialog::uas(&invite, "bob-tag", bob.flow());
            let bye = theirs.request(&Method::Bye, None, &[]);
            bob.send(&bye.bytes).await;
            let bye = alice.request(Method::Bye).await;
            alice.answer(&bye, 200, None, None).await;
            assert_eq!(bob.final_response(Method::Bye).await.code, 200);
        } else {
            let bye = d.request(&Method::Bye, None, &[]);
            alice.send(&bye.bytes).await;
            let bye = bob.request(Method::Bye).await;
            assert!(
                bye.header("Via")
                    .is_some_and(|v| v.starts_with("SIP/2.0/WS ")),
                "{bye:?}"
            );
            bob.answer(&bye, 200, None, None).await;
            assert_eq!(alice.final_response(Method::Bye).await.code, 200);
        }
        no_live_calls(&s).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_phone_on_wss_calls_a_udp_phone() {
    let (s, _, wss, ca) = ws_node("wss-caller", |c| {
        c.tls.ws_allowed_origins = "https://phone.example.com".into();
    })
    .await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    let bob = SipPhone::bind(LO, s.sip).await;
    assert_eq!(bob.register("bob", "bob-secret", &[]).await.code, 200);
    let alice = ws_phone(wss, Some(&ca), Some("https://phone.example.com")).await;
    assert_eq!(alice.register("alice", "alice-secret").await.code, 200);

    let mut d = alice.dialog_to("alice", "bob", "sip");
    let offer = sdp(LO, 40_300, "sendrecv");
    let answer = sdp(LO, 40_302, "sendrecv");
    let callee = async {
        let invite = bob.request(Method::Invite).await;
        bob.answer(&invite, 200, Some("bob-tag"), Some(&answer))
            .await;
        invite
    };
    let ((ok, cseq), invite) = tokio::join!(
        alice.invite(&mut d, "alice", "alice-secret", &offer),
        callee
    );
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(
        invite
            .header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/UDP ")),
        "the callee is reached over UDP: {invite:?}"
    );
    let contact = ok.header("Contact").unwrap_or_default();
    assert!(
        contact.contains("transport=wss") && contact.contains(&format!(":{}", wss.port())),
        "the browser is told to reach us over its WSS connection: {contact}"
    );
    d.establish(&ok);
    alice.send(&d.ack(cseq, None)).await;
    bob.request(Method::Ack).await;
    // bob hangs up: the BYE reaches the browser over its connection
    let bye = Dialog::uas(&invite, "bob-tag", bob.flow()).request(&Method::Bye, None, &[]);
    bob.send(&bye.bytes).await;
    let theirs = alice.request(Method::Bye).await;
    assert!(
        theirs
            .header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/WSS ")),
        "{theirs:?}"
    );
    alice.answer(&theirs, 200, None, None).await;
    assert_eq!(bob.final_response(Method::Bye).await.code, 200);
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ws_phone_whose_connection_closed_is_unreachable_at_once() {
    // the binding would go with its connection (flow_close.rs); kept here,
    // a call must still skip it
    let (s, ws, _, _) = ws_node("ws-gone", |c| {
        c.flows.unregister_on_close = UnregisterOnClose::Never;
    })
    .await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    let bob = ws_phone(ws, None, None).await;
    assert_eq!(bob.register("bob", "bob-secret").await.code, 200);
    bob.close().await;
    assert_eq!(
        metric_becomes(&s, "switchboard_tcp_connections ", 0).await,
        Some(0),
        "the server saw the connection close"
    );
    // the binding is still there (UNREGISTER_ON_CLOSE=none), its flow is not
    assert_eq!(s.contacts("bob").await.len(), 1);
    let opened = metric(&s, "switchboard_tcp_connections_total ").await;

    let alice = SipPhone::bind(LO, s.sip).await;
    let mut d = alice.dialog_to("alice", "bob");
    let started = Instant::now();
    let (resp, _) = alice
        .invite(
            &mut d,
            "alice",
            "alice-secret",
            &sdp(LO, 40_200, "sendrecv"),
            &[],
        )
        .await;
    assert_eq!(resp.code, 480, "{resp:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once, not after a transaction timeout: {:?}",
        started.elapsed()
    );
    // nothing was sent towards the phone, and nothing tried to connect
    assert_eq!(
        metric(&s, "switchboard_tcp_connections_total ").await,
        opened
    );
    assert_eq!(
        metric(&s, "switchboard_tcp_connects_pending ").await,
        Some(0)
    );
    for line in [
        "switchboard_tcp_connect_failures_total{reason=\"error\"} ",
        "switchboard_tcp_connect_failures_total{reason=\"timeout\"} ",
        "switchboard_ws_unreachable_total ",
    ] {
        assert_eq!(metric(&s, line).await, Some(0), "{line}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_checked_for_origin_and_subprotocol() {
    let (s, ws, wss, ca) = ws_node("ws-origin", |c| {
        c.tls.ws_allowed_origins = "https://pbx.example.com".into();
    })
    .await;
    // a page of another site, in a visitor's browser
    let foreign = [SIP, ("Origin", "https://evil.example")];
    let err = ws_connect(ws, None, &foreign).await.err().expect("refused");
    assert_eq!(status(&err), Some(403), "{err:?}");
    // no subprotocol, or not sip
    let err = ws_connect(wss, Some(&ca), &[("Origin", "https://pbx.example.com")])
        .await
        .err()
        .expect("refused");
    assert_eq!(status(&err), Some(400), "{err:?}");
    let err = ws_connect(ws, None, &[("Sec-WebSocket-Protocol", "chat")])
        .await
        .err()
        .expect("refused");
    assert_eq!(status(&err), Some(400), "{err:?}");

    // the listed site's page gets in, and its phone registers
    s.create_user("carol", "carol-secret").await;
    let carol = ws_phone(wss, Some(&ca), Some("https://pbx.example.com")).await;
    assert_eq!(carol.register("carol", "carol-secret").await.code, 200);
    let refused = "switchboard_ws_handshakes_refused_total{reason=";
    assert_eq!(
        metric(&s, &format!("{refused}\"origin\"}} ")).await,
        Some(1)
    );
    assert_eq!(
        metric(&s, &format!("{refused}\"subprotocol\"}} ")).await,
        Some(2)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_ws_is_offered_webrtc_and_a_desk_phone_plain_rtp() {
    let (s, ws, _, _) = ws_node("ws-webrtc", |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    // bob has a browser (WS) and a desk phone (UDP): both ring
    let browser = ws_phone(ws, None, None).await;
    assert_eq!(browser.register("bob", "bob-secret").await.code, 200);
    let desk = SipPhone::bind(LO, s.sip).await;
    assert_eq!(desk.register("bob", "bob-secret", &[]).await.code, 200);
    assert_eq!(s.contacts("bob").await.len(), 2);
    let alice = SipPhone::bind(LO, s.sip).await;

    let offer = sdp(LO, 40_400, "sendrecv");
    let callee = async {
        let (to_browser, to_desk) = tokio::join!(
            browser.request(Method::Invite),
            desk.request(Method::Invite)
        );
        // (a CANCEL waits for a provisional response, RFC 3261 §9.1)
        desk.answer(&to_desk, 180, Some("desk-tag"), None).await;
        let answer = webrtc_answer(&to_browser.body);
        browser
            .answer(&to_browser, 200, Some("br-tag"), Some(&answer))
            .await;
        // the desk phone's fork is cancelled
        let cancel = desk.request(Method::Cancel).await;
        desk.answer(&cancel, 200, None, None).await;
        desk.answer(&to_desk, 487, Some("desk-tag"), None).await;
        (to_browser, to_desk)
    };
    let ((mut d, ok), (to_browser, to_desk)) = tokio::join!(
        alice.call("alice", "alice-secret", "bob", &offer, &[]),
        callee
    );
    assert_eq!(ok.code, 200, "{ok:?}");

    let text = String::from_utf8_lossy(&to_browser.body).into_owned();
    let b = switchboard_sip::sdp::parse(&to_browser.body).unwrap();
    assert!(b.is_webrtc(), "{text}");
    assert!(b.rtcp_mux && b.webrtc.ice_lite, "{text}");
    assert!(
        b.webrtc.ice_ufrag.is_some() && b.webrtc.ice_pwd.is_some(),
        "{text}"
    );
    assert_eq!(b.webrtc.fingerprints.len(), 1, "{text}");
    assert_eq!(
        b.webrtc.setup,
        Some(switchboard_sip::sdp::webrtc::Setup::ActPass),
        "{text}"
    );
    assert_eq!(b.webrtc.candidates.len(), 1, "{text}");
    assert!(
        text.contains(" UDP/TLS/RTP/SAVPF 0 8 111 101\r\n"),
        "{text}"
    );

    let text = String::from_utf8_lossy(&to_desk.body).into_owned();
    let p = switchboard_sip::sdp::parse(&to_desk.body).unwrap();
    assert_eq!(p.audio_proto(), "RTP/AVP", "{text}");
    assert!(!p.is_webrtc() && p.webrtc.ice_ufrag.is_none(), "{text}");
    assert!(!text.contains("a=fingerprint"), "{text}");

    browser.request(Method::Ack).await;
    let bye = d.request(&Method::Bye, None, &[]);
    alice.send(&bye.bytes).await;
    let bye = browser.request(Method::Bye).await;
    browser.answer(&bye, 200, None, None).await;
    assert_eq!(alice.final_response(Method::Bye).await.code, 200);
    no_live_calls(&s).await;
    s.stop().await;
}
