//! RFC 5923 connection reuse over real sockets on loopback: a phone that
//! opened a TLS connection and sent a request on it with `;alias` on its
//! top Via gets requests for its Via's sent-by address on that connection,
//! though nothing listens there; without `alias` the node connects to the
//! address (and fails, nobody listening), and once the aliased connection
//! is gone so is the alias.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::phone::{SipPhone, sdp};
use common::tls_phone::{Ca, TlsPhone, ca, leaf};
use common::{TestServer, start_in, temp_dir};
use switchboard_sip::message::{Message, Method};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A TCP port on loopback that nothing listens on.
fn unused_port() -> u16 {
    std::net::TcpListener::bind((LO, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A TLS node with alice (a UDP phone's user) and routes 7* and 8* that
/// dial `sip:carol@127.0.0.1:<p>;transport=tls` for the two ports given.
async fn node(ca: &Ca, seven: u16, eight: u16) -> (TestServer, SocketAddr) {
    let dir = temp_dir("tls-alias");
    leaf(&dir, "server", &["127.0.0.1"], ca);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let s = start_in(dir, |c| {
        c.tls.tls_cert = Some(cert);
        c.tls.tls_key = Some(key);
    })
    .await;
    s.create_user("alice", "alice-secret").await;
    let dial = |port: u16| {
        serde_json::json!([{"type": "dial", "params": {
            "target": format!("sip:carol@127.0.0.1:{port};transport=tls"), "timeout": 2}}])
    };
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "aliased", "pattern": "7*", "actions": dial(seven)},
        {"id": "plain", "pattern": "8*", "actions": dial(eight)}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    let tls = s.running.tls_addrs[0];
    (s, tls)
}

/// An OPTIONS from `phone` whose top Via names `sent_by`, with `;alias`
/// when asked; returns the final response's code.
async fn options(phone: &TlsPhone, sent_by: SocketAddr, alias: bool) -> u16 {
    let alias = if alias { ";alias" } else { "" };
    let branch = switchboard_sip::request::new_branch();
    let call_id = format!("{:x}@alias-test", rand::random::<u64>());
    let msg = format!(
        "OPTIONS sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {sent_by};branch={branch};rport{alias}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:carol@{server}>;tag=c1\r\n\
         To: <sip:{server}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:carol@{sent_by};transport=tls>\r\n\
         Content-Length: 0\r\n\r\n",
        server = phone.server.ip(),
    );
    phone.send(msg.as_bytes()).await;
    phone.final_response(Method::Options).await.code
}

/// Alice calls `number` from a phone of her own (the failure it gets is
/// retransmitted, never ACKed); the final response to her INVITE with
/// credentials.
async fn call_code(s: &TestServer, number: &str) -> u16 {
    let alice = SipPhone::bind(LO, s.sip).await;
    let offer = sdp(LO, 40_104, "sendrecv");
    let mut d = alice.dialog_to("alice", number);
    let cseq = alice
        .start_invite(&mut d, "alice", "alice-secret", &offer, &[])
        .await;
    loop {
        match alice.recv(Duration::from_secs(10)).await {
            Some(Message::Response(r))
                if r.call_id == d.call_id && r.cseq == cseq && r.code >= 200 =>
            {
                return r.code;
            }
            Some(_) => {}
            None => panic!("no final answer to the call to {number}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_phone_with_an_alias_is_reached_on_its_own_connection() {
    let ca = ca("switchboard test CA");
    let (p7, p8) = (unused_port(), unused_port());
    let (s, tls) = node(&ca, p7, p8).await;
    let alice = SipPhone::bind(LO, s.sip).await;

    // carol names 127.0.0.1:p7 with alias, from her ephemeral port
    let carol = TlsPhone::connect(tls, &ca).await;
    assert_ne!(carol.addr().port(), p7);
    let code = options(&carol, SocketAddr::new(LO, p7), true).await;
    assert!(code < 300, "OPTIONS answered: {code}");

    // a call to sip:carol@127.0.0.1:p7;transport=tls arrives on her
    // connection, which she answers
    let answer = sdp(LO, 40_102, "sendrecv");
    let callee = async {
        let inv = carol.request(Method::Invite).await;
        carol.answer(&inv, 200, Some("carol"), Some(&answer)).await;
        inv
    };
    let offer = sdp(LO, 40_100, "sendrecv");
    let ((mut d, _ok), inv) = tokio::join!(
        alice.call("alice", "alice-secret", "7000", &offer, &[]),
        callee
    );
    assert!(
        inv.uri.to_string().contains(&format!(":{p7}")),
        "{}",
        inv.uri
    );
    assert!(
        inv.header("Via")
            .unwrap_or_default()
            .starts_with("SIP/2.0/TLS"),
        "{inv:?}"
    );
    // the BYE too
    let bye = d.request(&Method::Bye, None, &[]);
    alice.send(&bye.bytes).await;
    let theirs = carol.request(Method::Bye).await;
    carol.answer(&theirs, 200, None, None).await;
    assert_eq!(alice.final_response(Method::Bye).await.code, 200);

    // dave names 127.0.0.1:p8 without alias: the node connects to p8,
    // where nobody listens, and dave hears nothing
    let dave = TlsPhone::connect(tls, &ca).await;
    let code = options(&dave, SocketAddr::new(LO, p8), false).await;
    assert!(code < 300, "OPTIONS answered: {code}");
    let code = call_code(&s, "8000").await;
    assert!(code >= 400, "the call to p8 fails: {code}");
    let heard = dave.recv(Duration::from_millis(300)).await;
    assert!(
        !matches!(heard, Some(Message::Request(_))),
        "dave got a request: {heard:?}"
    );

    // carol goes away: her alias with her
    carol.close().await;
    drop(carol);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let code = call_code(&s, "7001").await;
    assert!(code >= 400, "no connection for p7 any more: {code}");
    s.stop().await;
}
