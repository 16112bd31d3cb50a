//! Calls claiming to come from a trunk, over real sockets on loopback. The
//! provider is 127.0.0.2 (every 127.0.0.0/8 address is loopback on Linux):
//! a UDP socket there stands in for it, sending the forged INVITEs an
//! attacker would send with the provider's source address and watching for
//! any INVITE the server sends the provider's way. Bob (1002) is a sipp
//! phone; alice's route `0*` dials out through the trunk, and the DID
//! 4930123 is routed to bob by a route for calls from the trunk.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{TestServer, free_port, sipp_on, spawn_sipp_uas, start, wait_sipp};
use serde_json::{Value, json};
use switchboard_sip::digest::{Algorithm, Challenge, respond};
use switchboard_sip::message::{Message, Response, parse};
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const PROVIDER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Alice (1001) and bob (1002, registered by sipp from `bob_port`), the
/// trunk "provider" at `provider` with `extra` settings, and the dialplan
/// above.
async fn setup(name: &str, bob_port: u16, provider: SocketAddr, extra: Value) -> TestServer {
    let s = start(name, |_| {}).await;
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let body =
            json!({"username": user, "password": format!("{user}-secret"), "extension": ext});
        let (status, out) = s.http("POST", "/api/v1/users", Some(&body)).await;
        assert_eq!(status, 201, "{out}");
    }
    let mut trunk = json!({
        "host": provider.to_string(), "username": "trunkuser", "password": "trunkpass",
        "domain": "provider.test", "strip": 1, "prefix": "+49"
    });
    for (k, v) in extra.as_object().expect("an object") {
        trunk[k] = v.clone();
    }
    let (status, out) = s.http("PUT", "/api/v1/trunks/provider", Some(&trunk)).await;
    assert_eq!(status, 201, "{out}");
    let plan = json!({"version": "1.0", "routes": [
        {"id": "outbound", "pattern": "0*", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": "gateway/provider"}}]},
        {"id": "extensions", "pattern": "1*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": "user/${destination}", "timeout": 10}}]},
        {"id": "did", "from": "trunk/provider", "pattern": "4930123", "priority": 10,
         "actions": [{"type": "dial", "params": {"target": "user/1002", "timeout": 10}}]}]});
    let (status, out) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{out}");
    let reg = sipp_on(
        "register_auth.xml",
        s.sip,
        LO,
        bob_port,
        &["-s", "bob", "-au", "bob", "-ap", "bob-secret"],
    )
    .await;
    assert!(reg.status.success(), "bob's registration failed");
    s
}

/// An INVITE to `number` with an offer, as a provider (or someone forging
/// its address) sends it from `local`; `cseq` 2 carries `auth` (a
/// Proxy-Authorization value).
fn invite(
    number: &str,
    server: SocketAddr,
    local: SocketAddr,
    call_id: &str,
    cseq: u32,
    auth: Option<&str>,
) -> String {
    let sdp = format!(
        "v=0\r\no=provider 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = local.ip()
    );
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "INVITE sip:{number}@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}{cseq}\r\n\
         From: <sip:+4930555@provider.test>;tag=f{call_id}\r\n\
         To: <sip:{number}@{server}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} INVITE\r\n\
         Contact: <sip:+4930555@{local}>\r\n\
         {auth}Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The ACK for a failure response to the INVITE with `cseq` (RFC 3261
/// §17.1.1.3), so the server stops retransmitting it.
fn ack(number: &str, server: SocketAddr, local: SocketAddr, r: &Response, cseq: u32) -> String {
    let to = r.header("To").unwrap_or_default();
    format!(
        "ACK sip:{number}@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}{cseq}\r\n\
         From: <sip:+4930555@provider.test>;tag=f{call_id}\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} ACK\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        call_id = r.call_id
    )
}

/// What the provider's socket saw while sending a forged INVITE.
#[derive(Debug, Default)]
struct Seen {
    /// The INVITE's Call-ID.
    call_id: String,
    /// Final status of the forged INVITE.
    code: Option<u16>,
    /// The challenge's nonce, with a 407.
    nonce: Option<String>,
    /// INVITEs the server sent to the provider (calls out through the trunk).
    invites_in: Vec<String>,
}

/// Sends a forged INVITE to `number` from `sock` (with `auth`, as the
/// second request of `call_id`, when given) and listens for `wait` after
/// its final response, which it ACKs.
async fn forge(
    sock: &UdpSocket,
    server: SocketAddr,
    number: &str,
    wait: Duration,
    auth: Option<(&str, &str)>,
) -> Seen {
    let (call_id, cseq, auth) = match auth {
        Some((call_id, a)) => (call_id.to_owned(), 2, Some(a)),
        None => (format!("{:x}", rand::random::<u64>()), 1, None),
    };
    let local = sock.local_addr().expect("bound");
    let msg = invite(number, server, local, &call_id, cseq, auth);
    sock.send_to(msg.as_bytes(), server).await.expect("send");
    let mut seen = Seen {
        call_id: call_id.clone(),
        ..Seen::default()
    };
    let mut buf = vec![0u8; 65_535];
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        match parse(&buf[..n]) {
            Ok(Message::Response(r)) if r.call_id == call_id && r.cseq == cseq && r.code >= 200 => {
                let a = ack(number, server, local, &r, cseq);
                sock.send_to(a.as_bytes(), server).await.expect("send");
                if seen.code.is_none() {
                    deadline = tokio::time::Instant::now() + wait;
                }
                seen.code = Some(r.code);
                seen.nonce = r
                    .header("Proxy-Authenticate")
                    .and_then(|h| Challenge::parse(h).ok())
                    .map(|c| c.nonce);
            }
            Ok(Message::Request(r)) if r.method.to_string() == "INVITE" => {
                seen.invites_in.push(r.uri.to_string());
            }
            _ => {}
        }
    }
    seen
}

/// A forged INVITE to `number`, challenged, then answered with
/// `user`/`password`: the final status of the answer.
async fn forge_with_credentials(
    sock: &UdpSocket,
    server: SocketAddr,
    number: &str,
    user: &str,
    password: &str,
) -> Option<u16> {
    let first = forge(sock, server, number, Duration::ZERO, None).await;
    assert_eq!(first.code, Some(407), "{first:?}");
    let nonce = first.nonce.expect("a challenge");
    let challenge = Challenge {
        realm: "switchboard".into(),
        nonce,
        algorithm: Algorithm::Md5,
        qop_auth: true,
        stale: false,
        opaque: None,
    };
    let uri = format!("sip:{number}@{server}");
    let creds = respond(&challenge, "INVITE", &uri, user, password, "c0ffee", 1);
    let auth = creds.to_header_value();
    forge(
        sock,
        server,
        number,
        Duration::from_millis(300),
        Some((&first.call_id, &auth)),
    )
    .await
    .code
}

/// The CDRs of calls to `callee`.
async fn cdrs_to(s: &TestServer, callee: &str) -> Vec<Value> {
    let (status, body) = s
        .http("GET", &format!("/api/v1/cdrs?callee={callee}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["cdrs"].as_array().cloned().unwrap_or_default()
}

/// Waits for the one CDR of a call to `callee`.
async fn one_cdr_to(s: &TestServer, callee: &str) -> Value {
    for _ in 0..100 {
        let list = cdrs_to(s, callee).await;
        if let [cdr] = list.as_slice() {
            return cdr.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no single CDR for {callee}");
}

/// The legitimate provider, at its address, calls the DID: bob answers.
async fn provider_calls_bob(
    s: &TestServer,
    bob_port: u16,
    provider: SocketAddr,
    scenario: &str,
    extra: &[&str],
) {
    let bob = spawn_sipp_uas("callee_answer.xml", LO, bob_port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let port = provider.port();
    let mut args = vec!["-s", "4930123"];
    args.extend_from_slice(extra);
    let out = sipp_on(scenario, s.sip, PROVIDER, port, &args).await;
    assert!(out.status.success(), "provider scenario {scenario} failed");
    assert!(
        wait_sipp(bob, "callee_answer.xml").await,
        "bob did not answer"
    );
    let cdr = one_cdr_to(s, "4930123").await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["route"], "did", "{cdr}");
    assert_eq!(cdr["callee_user"], "bob", "{cdr}");
    assert_eq!(cdr["caller"], "+4930555", "{cdr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_trunk_invite_cannot_call_out_through_the_trunk() {
    let provider = UdpSocket::bind((PROVIDER, 0)).await.expect("bind");
    let provider_addr = provider.local_addr().expect("bound");
    let bob_port = free_port(LO);
    let s = setup("trunk-forged", bob_port, provider_addr, json!({})).await;
    // (number, why it must fail)
    for number in ["0301234", "1001"] {
        let seen = forge(&provider, s.sip, number, Duration::from_secs(2), None).await;
        assert_eq!(seen.code, Some(404), "{number}: {seen:?}");
        assert!(
            seen.invites_in.is_empty(),
            "{number}: an INVITE went out through the trunk: {seen:?}"
        );
        let cdr = one_cdr_to(&s, number).await;
        assert_eq!(cdr["hangup_code"], 404, "{cdr}");
    }
    // the provider itself (same address) still reaches bob through the DID
    drop(provider);
    provider_calls_bob(&s, bob_port, provider_addr, "provider_call_in.xml", &[]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_only_trunk_ignores_udp_from_its_address() {
    let provider = UdpSocket::bind((PROVIDER, 0)).await.expect("bind");
    let provider_addr = provider.local_addr().expect("bound");
    let bob_port = free_port(LO);
    let s = setup(
        "trunk-tcp-only",
        bob_port,
        provider_addr,
        json!({"inbound_transport": "tcp"}),
    )
    .await;
    // Over UDP the provider's address is just another caller: a user's
    // digest is asked for, and no call is made.
    let seen = forge(
        &provider,
        s.sip,
        "4930123",
        Duration::from_millis(500),
        None,
    )
    .await;
    assert_eq!(seen.code, Some(407), "{seen:?}");
    assert!(cdrs_to(&s, "4930123").await.is_empty());
    drop(provider);
    // Over TCP it is the trunk.
    provider_calls_bob(
        &s,
        bob_port,
        provider_addr,
        "provider_call_in.xml",
        &["-t", "t1"],
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_with_inbound_digest_must_answer_the_challenge() {
    let provider = UdpSocket::bind((PROVIDER, 0)).await.expect("bind");
    let provider_addr = provider.local_addr().expect("bound");
    let bob_port = free_port(LO);
    let s = setup(
        "trunk-digest",
        bob_port,
        provider_addr,
        json!({"inbound_auth": "digest", "inbound_username": "provider-in",
               "inbound_password": "in-secret-123"}),
    )
    .await;
    // The API shows the setting, never the password or its hashes...
    let (_, t) = s.http("GET", "/api/v1/trunks/provider", None).await;
    assert_eq!(t["inbound_auth"], "digest", "{t}");
    assert!(t.get("inbound_password").is_none() && t.get("inbound_ha1").is_none());
    // ...and the file keeps HA1s only.
    let saved = std::fs::read_to_string(s.dir.join("trunks.json")).expect("trunks file");
    assert!(saved.contains("inbound_ha1") && !saved.contains("in-secret-123"));
    // A forged INVITE without credentials is challenged.
    let seen = forge(
        &provider,
        s.sip,
        "4930123",
        Duration::from_millis(500),
        None,
    )
    .await;
    assert_eq!(seen.code, Some(407), "{seen:?}");
    // A user's credentials are not the trunk's; a wrong password neither.
    for (user, password) in [("alice", "alice-secret"), ("provider-in", "guess-guess")] {
        let code = forge_with_credentials(&provider, s.sip, "4930123", user, password).await;
        assert_eq!(code, Some(407), "{user}/{password}");
    }
    assert!(cdrs_to(&s, "4930123").await.is_empty());
    drop(provider);
    // The provider with its inbound credentials reaches bob.
    provider_calls_bob(
        &s,
        bob_port,
        provider_addr,
        "provider_call_in_auth.xml",
        &["-au", "provider-in", "-ap", "in-secret-123"],
    )
    .await;
    s.stop().await;
}
