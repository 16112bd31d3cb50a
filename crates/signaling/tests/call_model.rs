//! The B2BUA's call model over real sockets, driven message by message:
//! two phones of the test's own (`common::phone`) call each other through
//! the server and do what sipp cannot script — hold a request unanswered,
//! withhold an ACK, offer at the same time as the other side, answer twice
//! as a forking proxy does, stop refreshing a session. Each test asserts
//! what came back on the wire, and the CDR.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::phone::{SipPhone, sdp};
use common::{TestServer, no_live_calls, start};
use serde_json::Value;
use switchboard_media::rtp_header::{RtpView, write_header};
use switchboard_sip::message::{Message, Method, Request, Response};
use switchboard_sip_stack::dialog::Dialog;
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// alice called bob (a phone dialled by URI) and bob answered: both
/// dialogs, and each phone's RTP socket.
struct Up {
    s: TestServer,
    alice: SipPhone,
    bob: SipPhone,
    a: Dialog,
    b: Dialog,
    alice_rtp: UdpSocket,
    bob_rtp: UdpSocket,
    /// Where bob sends RTP: his session on the RTP manager.
    bob_session: std::net::SocketAddr,
}

fn media_addr(sdp: &[u8]) -> std::net::SocketAddr {
    let text = String::from_utf8_lossy(sdp);
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split_whitespace().next())
        .expect("m= line");
    format!("{ip}:{port}").parse().expect("media address")
}

async fn server(
    name: &str,
    tweak: impl FnOnce(&mut switchboard_signaling::Config),
) -> (TestServer, SipPhone) {
    let s = start(name, tweak).await;
    s.create_user("alice", "alice-secret").await;
    let bob = SipPhone::bind(LO, s.sip).await;
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "raw", "pattern": "3*", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": format!("sip:bob@{}", bob.addr()), "timeout": 10}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    (s, bob)
}

/// alice calls 3000 with `extra` headers; bob answers with `bob_extra`.
async fn call_up(
    name: &str,
    tweak: impl FnOnce(&mut switchboard_signaling::Config),
    extra: &[(&str, &str)],
    bob_extra: Option<&str>,
) -> Up {
    let (s, bob) = server(name, tweak).await;
    let alice = SipPhone::bind(LO, s.sip).await;
    let alice_rtp = UdpSocket::bind((LO, 0)).await.expect("rtp");
    let bob_rtp = UdpSocket::bind((LO, 0)).await.expect("rtp");
    let offer = sdp(LO, alice_rtp.local_addr().expect("addr").port(), "sendrecv");
    let answer = sdp(LO, bob_rtp.local_addr().expect("addr").port(), "sendrecv");
    let callee = async {
        let inv = bob.request(Method::Invite).await;
        bob.answer(&inv, 180, Some("bobtag"), None).await;
        answer_with(&bob, &inv, "bobtag", &answer, bob_extra).await;
        bob.request(Method::Ack).await;
        inv
    };
    let ((a, _ok), inv) = tokio::join!(
        alice.call("alice", "alice-secret", "3000", &offer, extra),
        callee
    );
    let b = Dialog::uas(&inv, "bobtag", bob.flow());
    Up {
        bob_session: media_addr(&inv.body),
        s,
        alice,
        bob,
        a,
        b,
        alice_rtp,
        bob_rtp,
    }
}

/// A 200 with SDP and optional extra header lines (`Name: value\r\n`).
async fn answer_with(phone: &SipPhone, req: &Request, tag: &str, body: &str, extra: Option<&str>) {
    let mut b = switchboard_sip::response::response(req, 200, "OK").to_tag(tag);
    b = b
        .header("Contact", &format!("<sip:phone@{}>", phone.addr()))
        .header("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE");
    if let Some(e) = extra {
        for line in e.split("\r\n").filter(|l| !l.is_empty()) {
            if let Some((n, v)) = line.split_once(':') {
                b = b.header(n.trim(), v.trim());
            }
        }
    }
    phone
        .send(&b.body("application/sdp", body.as_bytes().to_vec()).build())
        .await;
}

async fn only_cdr(s: &TestServer) -> Value {
    for _ in 0..200 {
        let (_, body) = s.http("GET", "/api/v1/cdrs", None).await;
        if let Some(c) = body["cdrs"].as_array().and_then(|l| l.first()) {
            return c.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no CDR");
}

/// alice hangs up; bob answers the BYE.
async fn hang_up(up: &mut Up) {
    let bye = up.a.request(&Method::Bye, None, &[]);
    up.alice.send(&bye.bytes).await;
    let b = up.bob.request(Method::Bye).await;
    up.bob.answer(&b, 200, None, None).await;
    assert_eq!(up.alice.final_response(Method::Bye).await.code, 200);
}

/// Every response to `method` with CSeq `cseq` within `wait`.
async fn responses(phone: &SipPhone, cseq: u32, wait: Duration) -> Vec<Response> {
    let until = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while let Some(left) = until.checked_duration_since(tokio::time::Instant::now()) {
        match phone.recv(left).await {
            Some(Message::Response(r)) if r.cseq == cseq => out.push(r),
            Some(_) => {}
            None => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_reinvite_2xx_is_resent_until_its_ack() {
    let mut up = call_up("model-2xx-resend", |_| {}, &[], None).await;
    let offer = sdp(
        LO,
        up.bob_rtp.local_addr().expect("addr").port(),
        "sendrecv",
    );
    let re = up.b.request(
        &Method::Invite,
        Some(("application/sdp", offer.as_bytes())),
        &[],
    );
    up.bob.send(&re.bytes).await;
    let relayed = up.alice.request(Method::Invite).await;
    let answer = sdp(
        LO,
        up.alice_rtp.local_addr().expect("addr").port(),
        "sendrecv",
    );
    up.alice.answer(&relayed, 200, None, Some(&answer)).await;
    assert_eq!(
        up.alice.request(Method::Ack).await.cseq,
        relayed.cseq,
        "we ACK alice"
    );
    // bob withholds his ACK: our 2xx comes again at T1, 2·T1, 4·T1
    let copies = responses(&up.bob, re.cseq, Duration::from_millis(2300)).await;
    let oks = copies.iter().filter(|r| r.code == 200).count();
    assert!(oks >= 3, "2xx resent: {oks} copies of {copies:?}");
    assert!(copies.iter().all(|r| r.code == 200 || r.code == 100));
    up.bob.send(&up.b.ack(re.cseq, None)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = responses(&up.bob, re.cseq, Duration::from_millis(1500)).await;
    assert!(after.is_empty(), "no 2xx after the ACK: {after:?}");
    hang_up(&mut up).await;
    assert_eq!(only_cdr(&up.s).await["disposition"], "answered");
    no_live_calls(&up.s).await;
    up.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_glare_gets_491_and_overlap_gets_500_with_retry_after() {
    let mut up = call_up("model-glare", |_| {}, &[], None).await;
    // bob offers; while alice has not answered, she offers too: glare
    let bob_offer = sdp(
        LO,
        up.bob_rtp.local_addr().expect("addr").port(),
        "sendrecv",
    );
    let re = up.b.request(
        &Method::Invite,
        Some(("application/sdp", bob_offer.as_bytes())),
        &[],
    );
    up.bob.send(&re.bytes).await;
    let relayed = up.alice.request(Method::Invite).await;
    let alice_offer = sdp(
        LO,
        up.alice_rtp.local_addr().expect("addr").port(),
        "sendonly",
    );
    let mine = up.a.request(
        &Method::Invite,
        Some(("application/sdp", alice_offer.as_bytes())),
        &[],
    );
    up.alice.send(&mine.bytes).await;
    let glare = up.alice.final_response(Method::Invite).await;
    assert_eq!(glare.code, 491, "{glare:?}");
    assert_eq!(glare.cseq, mine.cseq);
    // alice answers bob's offer after all; bob gets his 200
    let answer = sdp(
        LO,
        up.alice_rtp.local_addr().expect("addr").port(),
        "sendrecv",
    );
    up.alice.answer(&relayed, 200, None, Some(&answer)).await;
    let ok = up.bob.final_response(Method::Invite).await;
    assert_eq!(ok.code, 200);
    up.bob.send(&up.b.ack(re.cseq, None)).await;

    // now bob sits on a re-INVITE of alice's; her second one overlaps
    let first = up.a.request(
        &Method::Invite,
        Some(("application/sdp", answer.as_bytes())),
        &[],
    );
    up.alice.send(&first.bytes).await;
    let at_bob = up.bob.request(Method::Invite).await;
    let second = up.a.request(
        &Method::Invite,
        Some(("application/sdp", answer.as_bytes())),
        &[],
    );
    up.alice.send(&second.bytes).await;
    let overlap = up.alice.final_response(Method::Invite).await;
    assert_eq!(overlap.code, 500, "{overlap:?}");
    assert_eq!(overlap.cseq, second.cseq);
    let retry: u32 = overlap
        .header("Retry-After")
        .and_then(|v| v.trim().parse().ok())
        .expect("Retry-After");
    assert!(retry <= 10, "{retry}");
    up.bob.answer(&at_bob, 200, None, Some(&bob_offer)).await;
    let ok = up.alice.final_response(Method::Invite).await;
    assert_eq!((ok.code, ok.cseq), (200, first.cseq));
    up.alice.send(&up.a.ack(first.cseq, None)).await;
    hang_up(&mut up).await;
    no_live_calls(&up.s).await;
    up.s.stop().await;
}

async fn rtp_to(sock: &UdpSocket, to: std::net::SocketAddr, seq0: u16, n: u16) {
    for seq in seq0..seq0 + n {
        let mut buf = Vec::new();
        write_header(&mut buf, 0, false, seq, u32::from(seq) * 160, 0x1234_5678);
        buf.extend_from_slice(&[0xff; 160]);
        sock.send_to(&buf, to).await.expect("send RTP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// RTP packets that reach `sock` within `wait`.
async fn rtp_count(sock: &UdpSocket, wait: Duration) -> usize {
    let mut buf = [0u8; 2048];
    let until = tokio::time::Instant::now() + wait;
    let mut n = 0;
    while let Some(left) = until.checked_duration_since(tokio::time::Instant::now()) {
        match tokio::time::timeout(left, sock.recv_from(&mut buf)).await {
            Ok(Ok((len, _))) if RtpView::parse(&buf[..len]).is_some() => n += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hold_is_rolled_back_and_audio_keeps_flowing() {
    let mut up = call_up("model-rollback", |_| {}, &[], None).await;
    rtp_to(&up.bob_rtp, up.bob_session, 1, 10).await;
    assert!(
        rtp_count(&up.alice_rtp, Duration::from_millis(500)).await > 0,
        "audio before"
    );
    // alice puts bob on hold (sendonly: she stops receiving); bob refuses
    let hold = sdp(
        LO,
        up.alice_rtp.local_addr().expect("addr").port(),
        "sendonly",
    );
    let re = up.a.request(
        &Method::Invite,
        Some(("application/sdp", hold.as_bytes())),
        &[],
    );
    up.alice.send(&re.bytes).await;
    let at_bob = up.bob.request(Method::Invite).await;
    assert!(
        String::from_utf8_lossy(&at_bob.body).contains("a=sendonly"),
        "the hold is passed on"
    );
    up.bob.answer(&at_bob, 488, None, None).await;
    let refused = up.alice.final_response(Method::Invite).await;
    assert_eq!(refused.code, 488);
    // the manager is back where it was: alice hears bob
    tokio::time::sleep(Duration::from_millis(100)).await;
    while rtp_count(&up.alice_rtp, Duration::from_millis(50)).await > 0 {}
    rtp_to(&up.bob_rtp, up.bob_session, 11, 10).await;
    assert!(
        rtp_count(&up.alice_rtp, Duration::from_millis(500)).await >= 5,
        "audio after the refused hold"
    );
    hang_up(&mut up).await;
    up.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bye_while_a_request_is_relayed_answers_it_487() {
    let mut up = call_up("model-bye-487", |_| {}, &[], None).await;
    let offer = sdp(
        LO,
        up.alice_rtp.local_addr().expect("addr").port(),
        "sendrecv",
    );
    let re = up.a.request(
        &Method::Invite,
        Some(("application/sdp", offer.as_bytes())),
        &[],
    );
    up.alice.send(&re.bytes).await;
    let _held = up.bob.request(Method::Invite).await;
    let bye = up.b.request(&Method::Bye, None, &[]);
    up.bob.send(&bye.bytes).await;
    assert_eq!(up.bob.final_response(Method::Bye).await.code, 200);
    let mut got_487 = false;
    let mut got_bye = false;
    for _ in 0..4 {
        match up.alice.recv(Duration::from_secs(3)).await {
            Some(Message::Response(r)) if r.cseq == re.cseq && r.code >= 200 => {
                assert_eq!(r.code, 487);
                got_487 = true;
            }
            Some(Message::Request(r)) if r.method == Method::Bye => {
                up.alice.answer(&r, 200, None, None).await;
                got_bye = true;
            }
            _ => {}
        }
        if got_487 && got_bye {
            break;
        }
    }
    assert!(got_487 && got_bye, "487 {got_487}, BYE {got_bye}");
    let cdr = only_cdr(&up.s).await;
    assert_eq!(cdr["hangup_side"], "callee", "{cdr}");
    no_live_calls(&up.s).await;
    up.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_requiring_an_unknown_extension_gets_420() {
    let (s, _bob) = server("model-420", |_| {}).await;
    let alice = SipPhone::bind(LO, s.sip).await;
    let mut d = Dialog::uac(
        "req-420@test",
        "t1",
        "<sip:alice@127.0.0.1>;tag=t1",
        "<sip:3000@127.0.0.1>",
        &format!("sip:3000@{}", s.sip),
        Vec::new(),
        alice.flow(),
    );
    let inv = d.invite(None, &[("Require", "100rel, timer")]);
    alice.send(&inv.bytes).await;
    let r = alice.final_response(Method::Invite).await;
    assert_eq!(r.code, 420);
    assert_eq!(r.header("Unsupported"), Some("100rel"), "timer is ours");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_extra_2xx_of_a_forking_proxy_gets_its_own_ack_and_bye() {
    let (s, bob) = server("model-fork-2xx", |_| {}).await;
    let alice = SipPhone::bind(LO, s.sip).await;
    let offer = sdp(LO, 4000, "sendrecv");
    let answer = sdp(LO, 4002, "sendrecv");
    let proxy = async {
        let inv = bob.request(Method::Invite).await;
        answer_with(&bob, &inv, "first", &answer, None).await;
        answer_with(&bob, &inv, "second", &answer, None).await;
        // both answers are ACKed, each in its own dialog; the second is hung up
        let mut acks = Vec::new();
        let mut bye = None;
        while acks.len() < 2 || bye.is_none() {
            match bob.recv(Duration::from_secs(3)).await {
                Some(Message::Request(r)) if r.method == Method::Ack => {
                    acks.push(r.to.tag().unwrap_or_default().to_owned())
                }
                Some(Message::Request(r)) if r.method == Method::Bye => {
                    bob.answer(&r, 200, None, None).await;
                    bye = Some(r.to.tag().unwrap_or_default().to_owned());
                }
                Some(_) => {}
                None => break,
            }
        }
        acks.sort();
        (acks, bye)
    };
    let ((mut a, _), (acks, bye)) = tokio::join!(
        alice.call("alice", "alice-secret", "3000", &offer, &[]),
        proxy
    );
    assert_eq!(acks, ["first", "second"]);
    assert_eq!(
        bye.as_deref(),
        Some("second"),
        "only the extra dialog is hung up"
    );
    // alice's call is with the first answer
    let hangup = a.request(&Method::Bye, None, &[]);
    alice.send(&hangup.bytes).await;
    let b = bob.request(Method::Bye).await;
    assert_eq!(b.to.tag(), Some("first"));
    bob.answer(&b, 200, None, None).await;
    assert_eq!(alice.final_response(Method::Bye).await.code, 200);
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_binding_with_a_path_goes_through_that_path() {
    let (s, _bob) = server("model-path", |_| {}).await;
    s.create_user("carol", "carol-secret").await;
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "users", "pattern": "*", "actions": [{"type": "dial", "params": {"target": "user/${destination}", "timeout": 5}}]}]});
    assert_eq!(s.http("PUT", "/api/v1/dialplan", Some(&plan)).await.0, 200);
    let carol = SipPhone::bind(LO, s.sip).await;
    let edge = SipPhone::bind(LO, s.sip).await;
    let path = format!("<sip:{};lr>", edge.addr());
    let ok = carol
        .register(
            "carol",
            "carol-secret",
            &[("Path", &path), ("Supported", "path")],
        )
        .await;
    assert_eq!(ok.code, 200, "{ok:?}");
    assert_eq!(ok.header("Path"), Some(path.as_str()), "Path echoed");
    let alice = SipPhone::bind(LO, s.sip).await;
    let caller = tokio::spawn(async move {
        let mut d = alice.dialog_to("alice", "carol");
        let offer = sdp(LO, 4000, "sendrecv");
        alice
            .invite(&mut d, "alice", "alice-secret", &offer, &[])
            .await
            .0
            .code
    });
    // the INVITE reaches the edge proxy of the Path, not carol's own address
    let inv = edge.request(Method::Invite).await;
    assert_eq!(inv.header("Route"), Some(path.as_str()));
    assert!(inv.uri.to_string().starts_with("sip:carol@"), "{}", inv.uri);
    assert!(
        carol.recv(Duration::from_millis(300)).await.is_none(),
        "nothing to carol directly"
    );
    edge.answer(&inv, 486, Some("x"), None).await;
    assert_eq!(
        caller.await.expect("caller"),
        486,
        "the edge's answer reaches alice"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_whose_session_refresh_fails_ends_the_call() {
    // timers shortened for the test: 4 s sessions, refreshed at 2 s
    let tweak = |c: &mut switchboard_signaling::Config| {
        c.session_expires = 4;
        c.min_se = 2;
    };
    let extra = [
        ("Supported", "timer"),
        ("Session-Expires", "4"),
        ("Allow", "INVITE, ACK, BYE, UPDATE"),
    ];
    let mut up = call_up(
        "model-session-timer",
        tweak,
        &extra,
        Some("Session-Expires: 4;refresher=uac\r\nRequire: timer\r\n"),
    )
    .await;
    // (the 2xx alice got told her: we refresh)
    // bob's leg: we are its refresher too (refresher=uac in his answer);
    // both get an UPDATE around 2 s; bob answers his, alice refuses hers
    let mut alice_update = None;
    let mut bob_updated = false;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while alice_update.is_none() || !bob_updated {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            m = up.alice.recv(left) => match m {
                Some(Message::Request(r)) if r.method == Method::Update => alice_update = Some(r),
                None => break,
                _ => {}
            },
            m = up.bob.recv(left) => match m {
                Some(Message::Request(r)) if r.method == Method::Update => {
                    assert!(r.header("Session-Expires").is_some(), "{r:?}");
                    up.bob.answer(&r, 200, None, None).await;
                    bob_updated = true;
                }
                None => break,
                _ => {}
            },
        }
    }
    let update = alice_update.expect("a refresh to alice");
    assert!(update.header("Session-Expires").is_some());
    up.alice.answer(&update, 481, None, None).await;
    // her leg is gone: bob is hung up, and the CDR says why
    let bye = up.bob.request(Method::Bye).await;
    up.bob.answer(&bye, 200, None, None).await;
    let cdr = only_cdr(&up.s).await;
    assert_eq!(cdr["hangup_reason"], "Session Refresh Failed", "{cdr}");
    no_live_calls(&up.s).await;
    let _ = &mut up;
    up.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_stops_refreshing_is_hung_up() {
    let tweak = |c: &mut switchboard_signaling::Config| {
        c.session_expires = 4;
        c.min_se = 2;
    };
    // alice asks to be the refresher, then never refreshes
    let extra = [
        ("Supported", "timer"),
        ("Session-Expires", "4;refresher=uac"),
    ];
    let up = call_up("model-session-expired", tweak, &extra, None).await;
    let started = tokio::time::Instant::now();
    let bye = up.bob.request(Method::Bye).await;
    up.bob.answer(&bye, 200, None, None).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(2000), "{waited:?}");
    let to_alice = up.alice.request(Method::Bye).await;
    up.alice.answer(&to_alice, 200, None, None).await;
    let cdr = only_cdr(&up.s).await;
    assert_eq!(cdr["hangup_reason"], "Session Expired", "{cdr}");
    no_live_calls(&up.s).await;
    up.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_call_duration_ends_a_call_with_a_cdr() {
    let up = call_up("model-max-duration", |c| c.max_call_duration = 2, &[], None).await;
    let bye = up.bob.request(Method::Bye).await;
    up.bob.answer(&bye, 200, None, None).await;
    let to_alice = up.alice.request(Method::Bye).await;
    up.alice.answer(&to_alice, 200, None, None).await;
    let cdr = only_cdr(&up.s).await;
    assert_eq!(cdr["hangup_reason"], "Max Call Duration", "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    no_live_calls(&up.s).await;
    up.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_still_up_after_the_shutdown_grace_get_bye_and_a_cdr() {
    let up = call_up("model-shutdown", |_| {}, &[], None).await;
    let dir = up.s.dir.clone();
    let (alice, bob) = (up.alice, up.bob);
    let phones = async {
        let (a, b) = tokio::join!(alice.request(Method::Bye), bob.request(Method::Bye));
        alice.answer(&a, 200, None, None).await;
        bob.answer(&b, 200, None, None).await;
    };
    let ((), ()) = tokio::join!(up.s.running.shutdown(Duration::from_millis(300)), phones);
    // the CDR reached the store before it closed
    let store = switchboard_store::Store::open_sqlite(&dir)
        .await
        .expect("store reopens");
    let cdrs = store
        .list_cdrs(&switchboard_store::CdrFilter::default())
        .await
        .expect("CDRs");
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0].disposition, "answered");
    assert_eq!(cdrs[0].hangup_reason.as_deref(), Some("Node Shutting Down"));
    let _ = std::fs::remove_dir_all(&dir);
}
