//! Calls through the B2BUA between real sipp phones: the callee registers
//! (sipp, digest auth) and then answers on the same port; the caller is
//! challenged with 407 and calls with credentials. Every test checks what
//! came back on the wire (sipp's own checks on codes, SDP and Contact), the
//! CDR through the API, and that no call is left in `GET /api/v1/calls`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{
    TestServer, call, free_port, metric, no_live_calls, only_cdr, sipp, sipp_on, spawn_sipp_uas,
    spawn_sipp_uas_with, start, two_phones, wait_sipp,
};
use serde_json::Value;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The callee scenario waits on `port`, alice calls `to` with the caller
/// scenario; both sipp runs must pass and no call may be left live. Returns
/// the call's CDR.
async fn call_between(
    s: &TestServer,
    port: u16,
    callee_xml: &str,
    callee_args: &[&str],
    caller_xml: &str,
    to: &str,
) -> Value {
    let callee = spawn_sipp_uas_with(callee_xml, LO, port, callee_args);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        call(s, caller_xml, to).await,
        "caller scenario {caller_xml} failed"
    );
    assert!(
        wait_sipp(callee, callee_xml).await,
        "callee scenario {callee_xml} failed"
    );
    let cdr = only_cdr(s).await;
    no_live_calls(s).await;
    cdr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_relays_sdp_and_writes_a_cdr() {
    let port = free_port(LO);
    let s = two_phones("call-answered", port, 10).await;
    let cdr = call_between(&s, port, "callee_answer.xml", &[], "call_uac.xml", "1002").await;
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
    // the same CDR as CSV
    let (status, ct, csv) = common::get_accept(s.api, "/api/v1/cdrs", &s.token, "text/csv").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"), "{ct}");
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap_or("")
            .starts_with("call_id,account_id,caller,")
    );
    let row = lines.next().unwrap_or("");
    assert!(row.starts_with(cdr["call_id"].as_str().unwrap()), "{csv}");
    assert!(row.contains(",answered,"), "{row}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_486_is_relayed() {
    let port = free_port(LO);
    let s = two_phones("call-busy", port, 10).await;
    let cdr = call_between(&s, port, "callee_busy.xml", &[], "call_486_uac.xml", "1002").await;
    assert_eq!(cdr["disposition"], "busy", "{cdr}");
    assert_eq!(cdr["hangup_code"], 486, "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_times_out_with_480_and_cancels_the_callee() {
    let port = free_port(LO);
    let s = two_phones("call-noanswer", port, 2).await;
    let cdr = call_between(
        &s,
        port,
        "callee_ring_cancelled.xml",
        &[],
        "call_480_uac.xml",
        "1002",
    )
    .await;
    assert_eq!(cdr["disposition"], "no_answer", "{cdr}");
    assert_eq!(cdr["hangup_code"], 480, "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancel_gets_487_and_cancels_the_callee() {
    let port = free_port(LO);
    let s = two_phones("call-cancel", port, 10).await;
    let cdr = call_between(
        &s,
        port,
        "callee_ring_cancelled.xml",
        &[],
        "call_cancel_uac.xml",
        "1002",
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_re_invite_is_relayed_both_ways() {
    let port = free_port(LO);
    let s = two_phones("call-hold", port, 10).await;
    let cdr = call_between(
        &s,
        port,
        "callee_hold.xml",
        &[],
        "call_hold_uac.xml",
        "1002",
    )
    .await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["callee_user"], "bob", "{cdr}");
    assert_eq!(cdr["route"], "extensions", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

/// bob registered from two phones (`desk_xml` and `mobile_xml` answer on
/// them); alice calls him and every scenario must pass.
async fn call_bobs_two_phones(name: &str, desk_xml: &str, mobile_xml: &str) -> TestServer {
    let (desk, mobile) = (free_port(LO), free_port(LO));
    let s = two_phones(name, desk, 10).await;
    let reg = sipp_on(
        "register_auth.xml",
        s.sip,
        LO,
        mobile,
        &["-s", "bob", "-au", "bob", "-ap", "bob-secret"],
    )
    .await;
    assert!(reg.status.success());
    assert_eq!(s.contacts("bob").await.len(), 2, "two phones registered");
    let desk_phone = spawn_sipp_uas(desk_xml, LO, desk);
    let mobile_phone = spawn_sipp_uas(mobile_xml, LO, mobile);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        call(&s, "call_uac.xml", "1002").await,
        "caller scenario failed"
    );
    assert!(wait_sipp(desk_phone, desk_xml).await, "{desk_xml} failed");
    assert!(
        wait_sipp(mobile_phone, mobile_xml).await,
        "{mobile_xml} failed"
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_call_answered_by_one_phone_cancels_the_other() {
    let s = call_bobs_two_phones(
        "call-fork",
        "callee_answer.xml",
        "callee_ring_cancelled.xml",
    )
    .await;
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(
        metric(&s, "switchboard_sip_requests_sent_total{method=\"INVITE\"}").await,
        Some(2),
        "one INVITE per registered phone"
    );
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_that_rings_after_the_answer_is_still_cancelled() {
    // the late phone's scenario passes only if it gets its CANCEL
    let s = call_bobs_two_phones(
        "call-fork-late",
        "callee_answer.xml",
        "callee_ring_late_cancelled.xml",
    )
    .await;
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_invite_and_200_make_one_call() {
    let port = free_port(LO);
    let s = two_phones("call-retrans", port, 10).await;
    // -nr: sipp would otherwise take our (identical, RFC 3261 §13.2.2.4)
    // second ACK for a retransmission of the first and answer it with its
    // last message again, forever
    let cdr = call_between(
        &s,
        port,
        "callee_answer_twice.xml",
        &["-nr"],
        "call_retrans_uac.xml",
        "1002",
    )
    .await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(
        metric(&s, "switchboard_sip_requests_sent_total{method=\"INVITE\"}").await,
        Some(1),
        "the retransmitted INVITE made a second leg"
    );
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_limit_refuses_the_next_call_with_503() {
    let port = free_port(LO);
    let s = two_phones("call-limit", port, 3).await;
    let (status, body) = s
        .http(
            "PATCH",
            "/api/v1/accounts/1",
            Some(&serde_json::json!({"max_concurrent_calls": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let callee = spawn_sipp_uas("callee_ring_cancelled.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sip = s.sip;
    let first = tokio::spawn(async move {
        sipp(
            "call_480_uac.xml",
            sip,
            LO,
            &["-s", "1002", "-au", "alice", "-ap", "alice-secret"],
        )
        .await
        .status
        .success()
    });
    // wait until the first call rings (its forks started)
    for _ in 0..100 {
        let (_, calls) = s.http("GET", "/api/v1/calls", None).await;
        if calls[0]["state"] == "ringing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (_, calls) = s.http("GET", "/api/v1/calls", None).await;
    assert_eq!(calls[0]["state"], "ringing", "{calls}");
    assert_eq!(
        calls[0]["legs"].as_array().map(Vec::len),
        Some(2),
        "{calls}"
    );
    assert!(
        call(&s, "call_503_uac.xml", "1002").await,
        "second call not refused with 503"
    );
    assert!(first.await.unwrap(), "first call scenario failed");
    assert!(wait_sipp(callee, "callee_ring_cancelled.xml").await);
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialplan_hangup_route_and_bad_dialplans() {
    let port = free_port(LO);
    let s = two_phones("call-plan", port, 10).await;
    // the "1999" route hangs up as busy before any leg is created
    assert!(call(&s, "call_486_uac.xml", "1999").await);
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "busy", "{cdr}");
    assert_eq!(cdr["hangup_side"], "system", "{cdr}");
    assert_eq!(cdr["route"], "busy-test", "{cdr}");

    let bad = serde_json::json!({"routes": [{"id": "x", "pattern": "1*",
        "actions": [{"type": "dial", "params": {"target": "phone/1"}}]}]});
    for path in ["/api/v1/dialplan", "/api/v1/dialplan/validate"] {
        let method = if path.ends_with("validate") {
            "POST"
        } else {
            "PUT"
        };
        let (status, body) = s.http(method, path, Some(&bad)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "invalid_dialplan");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .contains("routes[0] (id \"x\").actions[0].params.target"),
            "{body}"
        );
    }
    // the last good dialplan is still in use
    let (status, plan) = s.http("GET", "/api/v1/dialplan", None).await;
    assert_eq!(status, 200);
    assert_eq!(plan["routes"][0]["id"], "busy-test", "{plan}");
    assert!(
        std::fs::read_to_string(s.dir.join("dialplan.json"))
            .unwrap()
            .contains("busy-test"),
        "PUT writes DIALPLAN_PATH"
    );
    s.stop().await;
}

/// Puts a trunk named "provider" at `127.0.0.1:port`.
async fn put_trunk(s: &TestServer, port: u16, extra: serde_json::Value) -> Value {
    let mut body = serde_json::json!({
        "host": format!("127.0.0.1:{port}"),
        "username": "trunkuser", "password": "trunkpass",
        "domain": "provider.test", "strip": 1, "prefix": "+49"
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let (status, out) = s.http("PUT", "/api/v1/trunks/provider", Some(&body)).await;
    assert_eq!(status, 201, "{out}");
    assert!(out.get("password").is_none(), "password returned: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_registration_answers_the_providers_challenge() {
    let s = start("trunk-register", |_| {}).await;
    let port = free_port(LO);
    let provider = spawn_sipp_uas("provider_register.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    put_trunk(
        &s,
        port,
        serde_json::json!({"register": true, "expires": 60}),
    )
    .await;
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, t) = s.http("GET", "/api/v1/trunks/provider", None).await;
        status = t["status"].clone();
        if status["registered"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["registered"], true, "{status}");
    assert_eq!(status["last_code"], 200, "{status}");
    let left = status["expires_at"].as_i64().unwrap_or(0)
        - switchboard_signaling::registrar::Now::current().unix_ms;
    assert!((50_000..=60_000).contains(&left), "granted {left} ms");
    assert!(wait_sipp(provider, "provider_register.xml").await);
    // the trunk list shows it, without the password; the file keeps it
    let (_, list) = s.http("GET", "/api/v1/trunks", None).await;
    assert_eq!(list[0]["name"], "provider", "{list}");
    assert!(list[0].get("password").is_none());
    let saved = std::fs::read_to_string(s.dir.join("trunks.json")).unwrap();
    assert!(saved.contains("trunkpass"), "{saved}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_call_through_a_trunk_that_challenges_with_407() {
    let port = free_port(LO);
    let s = two_phones("trunk-out", free_port(LO), 10).await;
    put_trunk(&s, port, serde_json::json!({})).await;
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "outbound", "pattern": "0*", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": "gateway/provider"}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    let provider = spawn_sipp_uas("provider_invite_407.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        call(&s, "call_uac.xml", "0301234").await,
        "caller scenario failed"
    );
    assert!(
        wait_sipp(provider, "provider_invite_407.xml").await,
        "provider scenario failed (number rewriting or credentials)"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["callee"], "0301234", "{cdr}");
    assert_eq!(cdr["route"], "outbound", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_trunk_call_is_routed_to_the_user() {
    let (bob_port, provider_port) = (free_port(LO), free_port(LO));
    let s = two_phones("trunk-in", bob_port, 10).await;
    put_trunk(&s, provider_port, serde_json::json!({})).await;
    // calls from trunks take only the routes for them
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "extensions", "pattern": "1*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": "user/${destination}"}}]},
        {"id": "from-provider", "from": "trunk/provider", "pattern": "1*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": "user/${destination}"}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    let callee = spawn_sipp_uas("callee_answer.xml", LO, bob_port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = sipp_on(
        "provider_call_in.xml",
        s.sip,
        LO,
        provider_port,
        &["-s", "1002"],
    )
    .await;
    assert!(out.status.success(), "provider scenario failed");
    assert!(
        wait_sipp(callee, "callee_answer.xml").await,
        "callee scenario failed"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["caller"], "+4930555", "{cdr}");
    assert_eq!(cdr["caller_user"], Value::Null, "{cdr}");
    assert_eq!(cdr["callee_user"], "bob", "{cdr}");
    assert_eq!(cdr["route"], "from-provider", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_offer_answer_travels_in_the_ack() {
    let port = free_port(LO);
    let s = two_phones("call-late-offer", port, 10).await;
    // anchored: the caller gets the RTP manager's offer in our 200 and
    // answers in its ACK; the callee gets an ordinary offer
    let cdr = call_between(
        &s,
        port,
        "callee_answer.xml",
        &[],
        "call_late_offer_uac.xml",
        "1002",
    )
    .await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_media_route_passes_sdp_unchanged() {
    let port = free_port(LO);
    let s = two_phones("call-direct-media", port, 10).await;
    // a route with direct_media: the late offer goes through as is, the
    // callee's offer (port 6000) reaches the caller and the caller's
    // answer (port 7000) reaches the callee in our ACK
    let cdr = call_between(
        &s,
        port,
        "callee_late_offer.xml",
        &[],
        "call_late_offer_direct_uac.xml",
        "2002",
    )
    .await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert!(cdr["rtpmanager"].is_null(), "no media anchored: {cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_rings_the_user_then_dials_the_number() {
    let (bob_port, alice_port) = (free_port(LO), free_port(LO));
    let s = two_phones("click-to-call", bob_port, 10).await;
    let reg = sipp_on(
        "register_auth.xml",
        s.sip,
        LO,
        alice_port,
        &["-s", "alice", "-au", "alice", "-ap", "alice-secret"],
    )
    .await;
    assert!(reg.status.success());
    let alice = spawn_sipp_uas("clicker_answer.xml", LO, alice_port);
    let bob = spawn_sipp_uas("callee_answer.xml", LO, bob_port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // bad requests first: each names what is wrong
    for (body, status) in [
        (
            serde_json::json!({"user": "nobody", "destination": "1002"}),
            404,
        ),
        (serde_json::json!({"user": "alice"}), 422),
        (
            serde_json::json!({"user": "alice", "destination": "1002", "colour": 1}),
            422,
        ),
    ] {
        let (got, answer) = s.http("POST", "/api/v1/calls", Some(&body)).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert!(answer["error"].as_str().is_some(), "{answer}");
    }
    let (status, out) = s
        .http(
            "POST",
            "/api/v1/calls",
            Some(&serde_json::json!({"user": "alice", "destination": "1002"})),
        )
        .await;
    assert_eq!(status, 202, "{out}");
    let id = out["id"].as_str().unwrap_or_default().to_owned();
    assert!(
        wait_sipp(alice, "clicker_answer.xml").await,
        "the user's phone failed"
    );
    assert!(
        wait_sipp(bob, "callee_answer.xml").await,
        "the callee failed"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["call_id"], id, "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["caller_user"], "alice", "{cdr}");
    assert_eq!(cdr["callee_user"], "bob", "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_hangup_ends_both_legs() {
    let port = free_port(LO);
    let s = two_phones("call-api-hangup", port, 10).await;
    let callee = spawn_sipp_uas("callee_answer.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sip = s.sip;
    let caller = tokio::spawn(async move {
        sipp(
            "call_hungup_uac.xml",
            sip,
            LO,
            &["-s", "1002", "-au", "alice", "-ap", "alice-secret"],
        )
        .await
        .status
        .success()
    });
    let mut id = String::new();
    for _ in 0..100 {
        let (_, calls) = s.http("GET", "/api/v1/calls", None).await;
        if calls[0]["state"] == "answered" {
            id = calls[0]["id"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(!id.is_empty(), "the call was never answered");
    let (status, _) = s
        .http("POST", &format!("/api/v1/calls/{id}/hangup"), None)
        .await;
    assert_eq!(status, 202);
    assert!(caller.await.unwrap(), "the caller got no BYE");
    assert!(
        wait_sipp(callee, "callee_answer.xml").await,
        "the callee got no BYE"
    );
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["hangup_side"], "system", "{cdr}");
    let (status, _) = s
        .http("POST", "/api/v1/calls/no-such-call/hangup", None)
        .await;
    assert_eq!(status, 404);
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_user_without_a_registration_gets_480() {
    let s = two_phones("call-unregistered", free_port(LO), 10).await;
    // alice (1001) exists but has no phone registered
    assert!(call(&s, "call_480_unregistered_uac.xml", "1001").await);
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["disposition"], "no_answer", "{cdr}");
    assert_eq!(cdr["hangup_code"], 480, "{cdr}");
    assert_eq!(cdr["callee_user"], "alice", "{cdr}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dialog_message_and_update_are_relayed() {
    let port = free_port(LO);
    let s = two_phones("call-message", port, 10).await;
    let cdr = call_between(
        &s,
        port,
        "callee_message.xml",
        &[],
        "call_message_uac.xml",
        "1002",
    )
    .await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(
        metric(
            &s,
            "switchboard_sip_requests_sent_total{method=\"MESSAGE\"}"
        )
        .await,
        Some(1),
        "one MESSAGE relayed"
    );
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dialog_info_is_relayed_with_its_body() {
    let port = free_port(LO);
    let s = two_phones("call-info", port, 10).await;
    let callee = spawn_sipp_uas("callee_info.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        call(&s, "call_info_uac.xml", "1002").await,
        "caller scenario failed"
    );
    assert!(
        wait_sipp(callee, "callee_info.xml").await,
        "callee scenario failed"
    );
    // CDR filters: by disposition and caller, and one that matches nothing
    // (the CDR is written behind the call: wait until it is there)
    let _ = only_cdr(&s).await;
    let (_, hit) = s
        .http("GET", "/api/v1/cdrs?disposition=answered&caller=1001", None)
        .await;
    assert_eq!(hit["cdrs"].as_array().map(Vec::len), Some(1), "{hit}");
    let (_, miss) = s.http("GET", "/api/v1/cdrs?disposition=busy", None).await;
    assert_eq!(miss["cdrs"].as_array().map(Vec::len), Some(0), "{miss}");
    let (status, bad) = s.http("GET", "/api/v1/cdrs?from_ms=yesterday", None).await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap_or("").contains("from_ms"),
        "{bad}"
    );
    no_live_calls(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_calls_while_live_ones_finish() {
    let port = free_port(LO);
    let s = two_phones("call-drain", port, 3).await;
    let callee = spawn_sipp_uas("callee_ring_cancelled.xml", LO, port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sip = s.sip;
    let first = tokio::spawn(async move {
        sipp(
            "call_480_uac.xml",
            sip,
            LO,
            &["-s", "1002", "-au", "alice", "-ap", "alice-secret"],
        )
        .await
        .status
        .success()
    });
    for _ in 0..100 {
        let (_, calls) = s.http("GET", "/api/v1/calls", None).await;
        if calls[0]["ring_at"].is_i64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // what SIGTERM does first (Running::shutdown): stop taking calls
    s.running.node.calls.drain();
    assert!(
        call(&s, "call_503_uac.xml", "1002").await,
        "a new call was not refused with 503"
    );
    assert!(first.await.unwrap(), "the live call did not run to its end");
    assert!(wait_sipp(callee, "callee_ring_cancelled.xml").await);
    no_live_calls(&s).await;
    s.stop().await;
}
