//! Calls through the B2BUA between real sipp phones: the callee registers
//! (sipp, digest auth) and then answers on the same port; the caller is
//! challenged with 407 and calls with credentials. Every test checks what
//! came back on the wire (sipp's own checks on codes, SDP and Contact), the
//! CDR through the API, and that no call is left in `GET /api/v1/calls`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{TestServer, free_port, sipp, sipp_on, spawn_sipp_uas, start, wait_sipp};
use serde_json::Value;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Users 1001 (caller) and 1002 (callee); the callee registered from
/// `port` with sipp. Returns the server.
async fn two_phones(name: &str, port: u16, dial_timeout: u64) -> TestServer {
    let s = start(name, |_| {}).await;
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let (status, body) = s
            .http(
                "POST",
                "/api/v1/users",
                Some(&serde_json::json!({"username": user, "password": format!("{user}-secret"), "extension": ext})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "busy-test", "pattern": "1999", "priority": 5,
         "actions": [{"type": "hangup", "params": {"reason": "busy"}}]},
        {"id": "extensions", "pattern": "1*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": "user/${destination}", "timeout": dial_timeout}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    let reg = sipp_on(
        "register_auth.xml",
        s.sip,
        LO,
        port,
        &["-s", "bob", "-au", "bob", "-ap", "bob-secret"],
    )
    .await;
    assert!(reg.status.success(), "callee registration failed");
    s
}

async fn call(s: &TestServer, scenario: &str, to: &str) -> bool {
    sipp(
        scenario,
        s.sip,
        LO,
        &["-s", to, "-au", "alice", "-ap", "alice-secret"],
    )
    .await
    .status
    .success()
}

/// The CDR of the one call the server saw, once written.
async fn only_cdr(s: &TestServer) -> Value {
    for _ in 0..100 {
        let (status, body) = s.http("GET", "/api/v1/cdrs", None).await;
        assert_eq!(status, 200, "{body}");
        if let Some(list) = body["cdrs"].as_array()
            && !list.is_empty()
        {
            assert_eq!(list.len(), 1, "{body}");
            return list[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no CDR written");
}

async fn no_live_calls(s: &TestServer) {
    let (status, body) = s.http("GET", "/api/v1/calls", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!([]), "calls left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_relays_sdp_and_writes_a_cdr() {
    let port = free_port(LO);
    let s = two_phones("call-answered", port, 10).await;
    let callee = spawn_sipp_uas("callee_answer.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        call(&s, "call_uac.xml", "1002").await,
        "caller scenario failed"
    );
    assert!(
        wait_sipp(callee, "callee_answer.xml").await,
        "callee scenario failed"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["caller"], "1001", "{cdr}");
    assert_eq!(cdr["caller_name"], "Caller", "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    assert!(cdr["talk_ms"].as_i64().unwrap_or(0) >= 900, "{cdr}");
    assert!(cdr["ring_at"].as_i64().is_some(), "{cdr}");
    assert!(
        cdr["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("udp:127.0.0.1:"),
        "{cdr}"
    );
    let (status, one) = s
        .http(
            "GET",
            &format!("/api/v1/cdrs/{}", cdr["call_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["disposition"], "answered");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_486_is_relayed() {
    let port = free_port(LO);
    let s = two_phones("call-busy", port, 10).await;
    let callee = spawn_sipp_uas("callee_busy.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(call(&s, "call_486_uac.xml", "1002").await);
    assert!(wait_sipp(callee, "callee_busy.xml").await);
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "busy", "{cdr}");
    assert_eq!(cdr["hangup_code"], 486, "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_times_out_with_480_and_cancels_the_callee() {
    let port = free_port(LO);
    let s = two_phones("call-noanswer", port, 2).await;
    let callee = spawn_sipp_uas("callee_ring_cancelled.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(call(&s, "call_480_uac.xml", "1002").await);
    assert!(wait_sipp(callee, "callee_ring_cancelled.xml").await);
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "no_answer", "{cdr}");
    assert_eq!(cdr["hangup_code"], 480, "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancel_gets_487_and_cancels_the_callee() {
    let port = free_port(LO);
    let s = two_phones("call-cancel", port, 10).await;
    let callee = spawn_sipp_uas("callee_ring_cancelled.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(call(&s, "call_cancel_uac.xml", "1002").await);
    assert!(wait_sipp(callee, "callee_ring_cancelled.xml").await);
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "cancelled", "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_extension_gets_404_and_a_failed_cdr() {
    let port = free_port(LO);
    let s = two_phones("call-404", port, 10).await;
    assert!(call(&s, "call_404_uac.xml", "1055").await);
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "failed", "{cdr}");
    assert_eq!(cdr["hangup_code"], 404, "{cdr}");
    // a route that hangs up: 486 from the dialplan itself
    no_live_calls(&s).await;
    s.stop().await;
}
