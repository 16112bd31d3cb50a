//! Attacks on calls in progress, over real sockets. A stranger who learnt a
//! live call's Call-ID (from a capture, a log, the API of another tenant)
//! but not its tags or branches tries to end it, redirect it, cancel it,
//! or reuse the Call-ID to hide or overwrite its CDR. Every attempt must
//! be answered 481 (or be a call of its own) while the real call goes on
//! to its own end, which sipp checks on both sides, and its CDR says so.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{
    TestServer, free_port, metric, no_live_calls, sipp, spawn_sipp_uas, spawn_sipp_uas_with,
    two_phones, wait_sipp,
};
use serde_json::Value;
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A stranger with a UDP socket of its own on loopback.
struct Stranger {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Stranger {
    async fn new(server: SocketAddr) -> Self {
        let sock = UdpSocket::bind((LO, 0)).await.expect("bind");
        Self { sock, server }
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("local address")
    }

    /// Sends `raw` and returns the first final response to it (its status
    /// and text).
    async fn ask(&self, raw: &str) -> (u16, String) {
        self.sock
            .send_to(raw.as_bytes(), self.server)
            .await
            .expect("send");
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                    .await
                    .expect("an answer within 5 s")
                    .expect("recv");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let code: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if code >= 200 {
                return (code, text);
            }
        }
    }

    /// A request as a stranger would forge it.
    fn forge(
        &self,
        method: &str,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        cseq: u32,
    ) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let (ct, body) = if method == "INVITE" {
            (
                "Content-Type: application/sdp\r\n",
                "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            )
        } else {
            ("", "")
        };
        format!(
            "{method} sip:1002@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch:x};rport\r\n\
             From: \"Caller\" <sip:caller@{ip}>;tag={from_tag}\r\n\
             To: <sip:1002@{ip}>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:mallory@{local}>\r\n\
             Max-Forwards: 70\r\n\
             {ct}Content-Length: {len}\r\n\r\n{body}",
            server = self.server,
            local = self.local(),
            ip = self.server.ip(),
            branch = rand::random::<u64>(),
            len = body.len(),
        )
    }
}

/// The From tag sipp gives its first call: `<pid>SIPpTag001`, the pid
/// read off its Call-ID (`1-<pid>@<ip>`), as a stranger could.
fn sipp_from_tag(call_id: &str) -> String {
    let pid = call_id.split(['-', '@']).nth(1).expect("a sipp Call-ID");
    format!("{pid}SIPpTag001")
}

/// The live call as the API lists it, once it is in `state`.
async fn live_call(s: &TestServer, state: &str) -> Value {
    for _ in 0..200 {
        let (_, list) = s.http("GET", "/api/v1/calls", None).await;
        if let Some(c) = list
            .as_array()
            .and_then(|l| l.iter().find(|c| c["state"] == state))
        {
            return c.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no call in state {state}");
}

/// Every CDR (newest first) once `n` are written.
async fn cdrs(s: &TestServer, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let (_, body) = s.http("GET", "/api/v1/cdrs", None).await;
        let list = body["cdrs"].as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} CDRs");
}

/// alice calls bob (1002), who answers; the call lasts `talk_ms`. Returns
/// the caller's sipp run and bob's.
fn victim_call(
    s: &TestServer,
    bob_port: u16,
    callee_xml: &'static str,
    callee_ms: u32,
    talk_ms: u32,
) -> (tokio::task::JoinHandle<bool>, tokio::process::Child) {
    let bob = if callee_ms > 0 {
        spawn_sipp_uas_with(callee_xml, LO, bob_port, &["-d", &callee_ms.to_string()])
    } else {
        spawn_sipp_uas(callee_xml, LO, bob_port)
    };
    let server = s.sip;
    let caller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sipp(
            "call_talk_uac.xml",
            server,
            LO,
            &[
                "-s",
                "1002",
                "-au",
                "alice",
                "-ap",
                "alice-secret",
                "-d",
                &talk_ms.to_string(),
            ],
        )
        .await
        .status
        .success()
    });
    (caller, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_bye_reinvite_info_and_cancel_get_481_and_the_call_goes_on() {
    let bob_port = free_port(LO);
    let s = two_phones("attack-spoofed-in-dialog", bob_port, 10).await;
    let (caller, bob) = victim_call(&s, bob_port, "callee_answer.xml", 0, 3000);
    let call = live_call(&s, "answered").await;
    let a_call_id = call["sip_call_id"]
        .as_str()
        .expect("sip_call_id")
        .to_owned();
    let b_call_id = call["legs"][1]["call_id"]
        .as_str()
        .expect("B-leg")
        .to_owned();
    assert_ne!(
        call["id"],
        a_call_id.as_str(),
        "the call is named by our own id"
    );

    let mallory = Stranger::new(s.sip).await;
    let sipp_tag = sipp_from_tag(&a_call_id);
    let mut routed = 0;
    for call_id in [&a_call_id, &b_call_id] {
        for (method, from_tag, to_tag) in [
            // guessed tags
            ("BYE", "guess1", Some("guess2")),
            ("INVITE", "guess1", Some("guess2")),
            ("INFO", "guess1", Some("guess2")),
            ("CANCEL", "guess1", Some("guess2")),
            // sipp's From tag is predictable; ours in To is not
            ("BYE", sipp_tag.as_str(), Some("guess3")),
            // a request without To tag is no in-dialog request at all
            ("BYE", "guess1", None),
        ] {
            let raw = mallory.forge(method, call_id, from_tag, to_tag, 99);
            let (code, text) = mallory.ask(&raw).await;
            assert_eq!(code, 481, "{method} on {call_id}: {text}");
            routed += u64::from(to_tag.is_some());
        }
    }
    assert!(
        metric(&s, "switchboard_call_requests_no_dialog_total ")
            .await
            .unwrap_or(0)
            >= routed,
        "counted"
    );
    // the call was never touched: both phones finish their scenario (bob
    // would have failed on an early BYE, alice on a 481 to her own BYE)
    assert!(caller.await.expect("caller task"), "alice's call failed");
    assert!(
        wait_sipp(bob, "callee_answer.xml").await,
        "bob's phone failed"
    );
    let cdr = &cdrs(&s, 1).await[0];
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    assert_eq!(cdr["sip_call_id"], a_call_id.as_str(), "{cdr}");
    assert!(cdr["talk_ms"].as_i64().unwrap_or(0) >= 2900, "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_naming_another_branch_gets_481_and_the_call_rings_on() {
    let bob_port = free_port(LO);
    let s = two_phones("attack-cancel-branch", bob_port, 10).await;
    let (caller, bob) = victim_call(&s, bob_port, "callee_ring_answer.xml", 2000, 500);
    let call = live_call(&s, "ringing").await;
    let a_call_id = call["sip_call_id"]
        .as_str()
        .expect("sip_call_id")
        .to_owned();
    let mallory = Stranger::new(s.sip).await;
    // right Call-ID, From tag and CSeq (a stranger can read them off the
    // INVITE), but a branch of its own: it cancels nothing
    let raw = mallory.forge("CANCEL", &a_call_id, &sipp_from_tag(&a_call_id), None, 2);
    let (code, text) = mallory.ask(&raw).await;
    assert_eq!(code, 481, "{text}");
    assert!(caller.await.expect("caller task"), "alice's call failed");
    assert!(
        wait_sipp(bob, "callee_ring_answer.xml").await,
        "bob's phone failed"
    );
    let cdr = &cdrs(&s, 1).await[0];
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_invite_with_a_live_call_id_is_a_call_of_its_own() {
    let bob_port = free_port(LO);
    let s = two_phones("attack-reused-call-id", bob_port, 10).await;
    let (status, body) = s
        .http(
            "POST",
            "/api/v1/users",
            Some(&serde_json::json!({"username": "carol", "password": "carol-secret", "extension": "1003"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (caller, bob) = victim_call(&s, bob_port, "callee_answer.xml", 0, 2500);
    let call = live_call(&s, "answered").await;
    let a_call_id = call["sip_call_id"]
        .as_str()
        .expect("sip_call_id")
        .to_owned();

    // a stranger without credentials reusing the Call-ID: challenged, no more
    let mallory = Stranger::new(s.sip).await;
    let raw = mallory.forge("INVITE", &a_call_id, "other-tag", None, 1);
    let (code, text) = mallory.ask(&raw).await;
    assert_eq!(code, 407, "{text}");

    // carol, a user, calls the busy route with alice's Call-ID: a call of
    // its own, refused 486, with a CDR of its own
    let carol = sipp(
        "call_486_uac.xml",
        s.sip,
        LO,
        &[
            "-s",
            "1999",
            "-au",
            "carol",
            "-ap",
            "carol-secret",
            "-cid_str",
            &a_call_id,
        ],
    )
    .await;
    assert!(carol.status.success(), "carol's call failed");
    assert!(caller.await.expect("caller task"), "alice's call failed");
    assert!(
        wait_sipp(bob, "callee_answer.xml").await,
        "bob's phone failed"
    );

    let list = cdrs(&s, 2).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|c| c["sip_call_id"] == a_call_id.as_str()));
    assert_ne!(list[0]["call_id"], list[1]["call_id"], "two calls, two ids");
    let alice = list
        .iter()
        .find(|c| c["caller_user"] == "alice")
        .expect("alice's CDR");
    let carol = list
        .iter()
        .find(|c| c["caller_user"] == "carol")
        .expect("carol's CDR");
    assert_eq!(alice["disposition"], "answered", "{alice}");
    assert!(alice["talk_ms"].as_i64().unwrap_or(0) >= 2400, "{alice}");
    assert_eq!(carol["disposition"], "busy", "{carol}");
    // and the SIP Call-ID finds both
    let (status, found) = s
        .http(
            "GET",
            &format!("/api/v1/cdrs?sip_call_id={a_call_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["cdrs"].as_array().map(Vec::len), Some(2), "{found}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_dialog_request_with_a_stale_cseq_gets_500() {
    let bob_port = free_port(LO);
    let s = two_phones("attack-stale-cseq", bob_port, 10).await;
    let bob = spawn_sipp_uas("callee_answer.xml", LO, bob_port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alice = sipp(
        "call_stale_cseq_uac.xml",
        s.sip,
        LO,
        &["-s", "1002", "-au", "alice", "-ap", "alice-secret"],
    )
    .await;
    assert!(
        alice.status.success(),
        "alice's scenario (500 to CSeq 1) failed"
    );
    assert!(
        wait_sipp(bob, "callee_answer.xml").await,
        "bob's phone failed"
    );
    let cdr = &cdrs(&s, 1).await[0];
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}
