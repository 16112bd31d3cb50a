//! A trunk whose `host` is a DNS name: `localhost:<port>` (resolved from
//! /etc/hosts, no network) where a test phone on 127.0.0.1 stands in for
//! the provider. A call out through the trunk reaches it at the resolved
//! address, with the name in the Request-URI; the trunk's status shows
//! what the name resolved to; a call from the phone's address is
//! recognised as the trunk's (no digest asked, routed by the route for
//! trunk calls).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::phone::{SipPhone, sdp};
use common::start;
use serde_json::{Value, json};
use switchboard_sip::message::Method;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn cdr_to(s: &common::TestServer, callee: &str) -> Value {
    for _ in 0..200 {
        let (_, body) = s.http("GET", "/api/v1/cdrs", None).await;
        if let Some(c) = body["cdrs"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["callee"] == callee))
        {
            return c.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no CDR to {callee}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_named_by_dns_gets_calls_and_is_recognised_by_its_resolved_address() {
    let s = start("trunk-dns", |_| {}).await;
    let (status, out) = s
        .http(
            "POST",
            "/api/v1/users",
            Some(&json!({"username": "alice", "password": "alice-secret", "extension": "1001"})),
        )
        .await;
    assert_eq!(status, 201, "{out}");
    let provider = SipPhone::bind(LO, s.sip).await;
    let host = format!("localhost:{}", provider.addr().port());
    let trunk = json!({"host": host, "strip": 1, "prefix": "+49"});
    let (status, out) = s.http("PUT", "/api/v1/trunks/provider", Some(&trunk)).await;
    assert_eq!(status, 201, "{out}");
    // resolved before the answer: the address is in the status
    let addresses = out["status"]["addresses"].to_string();
    assert!(addresses.contains(&provider.addr().to_string()), "{out}");
    assert!(out["status"].get("resolve_error").is_none(), "{out}");
    let plan = json!({"version": "1.0", "routes": [
        {"id": "outbound", "pattern": "0*", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": "gateway/provider", "timeout": 10}}]},
        {"id": "did", "from": "trunk/provider", "pattern": "4930123", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": "user/1001", "timeout": 10}}]}]});
    let (status, out) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{out}");
    let alice = SipPhone::bind(LO, s.sip).await;
    let r = alice.register("alice", "alice-secret", &[]).await;
    assert_eq!(r.code, 200, "{r:?}");

    // out: the provider gets the INVITE, for the name it is known by
    let offer = sdp(LO, 4000, "sendrecv");
    let provider_side = async {
        let inv = provider.request(Method::Invite).await;
        let answer = sdp(LO, 4002, "sendrecv");
        provider
            .answer(&inv, 200, Some("prov"), Some(&answer))
            .await;
        provider.request(Method::Ack).await;
        inv
    };
    let ((mut a, _ok), inv) = tokio::join!(
        alice.call("alice", "alice-secret", "0301234", &offer, &[]),
        provider_side
    );
    assert_eq!(
        inv.uri.to_string(),
        format!("sip:+49301234@{host}"),
        "{inv:?}"
    );
    let bye = a.request(&Method::Bye, None, &[]);
    alice.send(&bye.bytes).await;
    let b = provider.request(Method::Bye).await;
    provider.answer(&b, 200, None, None).await;
    let cdr = cdr_to(&s, "0301234").await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");

    // in: the provider's address is the trunk's, so no digest is asked and
    // the route for trunk calls rings alice
    let mut d = provider.dialog_to("provider", "4930123");
    let invite = d.invite(Some(("application/sdp", offer.as_bytes())), &[]);
    provider.send(&invite.bytes).await;
    let ring = alice.request(Method::Invite).await;
    alice
        .answer(&ring, 200, Some("alice"), Some(&sdp(LO, 4004, "sendrecv")))
        .await;
    let ok = provider.final_response(Method::Invite).await;
    assert_eq!(ok.code, 200, "{ok:?}");
    d.establish(&ok);
    provider.send(&d.ack(invite.cseq, None)).await;
    alice.request(Method::Ack).await;
    let bye = d.request(&Method::Bye, None, &[]);
    provider.send(&bye.bytes).await;
    let b = alice.request(Method::Bye).await;
    alice.answer(&b, 200, None, None).await;
    let cdr = cdr_to(&s, "4930123").await;
    assert_eq!(cdr["route"], "did", "{cdr}");
    assert_eq!(cdr["callee_user"], "alice", "{cdr}");
    s.stop().await;
}
