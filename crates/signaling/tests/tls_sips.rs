//! `sips:` end to end (RFC 3261 §26.2, RFC 5630) over real sockets on
//! loopback: a phone registers a `sips:` Contact over TLS and is called
//! over TLS at that Contact; a `sips:` call is never downgraded: to a user
//! reachable only over UDP it gets 480, and a `sips:` Request-URI that
//! arrives over UDP or TCP gets 416 before any challenge.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::phone::{SipPhone, sdp};
use common::tls_phone::{TlsPhone, ca, leaf};
use common::{TestServer, start_in, temp_dir};
use switchboard_sip::message::{Message, Method, parse};
use switchboard_sip_stack::dialog::Dialog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn tls_node(ca: &common::tls_phone::Ca) -> (TestServer, SocketAddr) {
    let dir = temp_dir("tls-sips");
    leaf(&dir, "server", &["127.0.0.1"], ca);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let s = start_in(dir, |c| {
        c.tls.tls_cert = Some(cert);
        c.tls.tls_key = Some(key);
    })
    .await;
    for user in ["alice", "dave", "erin", "bob"] {
        s.create_user(user, &format!("{user}-secret")).await;
    }
    let tls = s.running.tls_addrs[0];
    (s, tls)
}

/// An INVITE from `phone`'s dialog to a `sips:` Request-URI, without
/// credentials.
fn sips_invite(phone: &SipPhone, server: SocketAddr, to: &str) -> Vec<u8> {
    let tag = format!("{:x}", rand::random::<u64>());
    let mut d = Dialog::uac(
        &format!("{:x}@sips-test", rand::random::<u128>()),
        &tag,
        &format!("<sip:bob@{}>;tag={tag}", server.ip()),
        &format!("<sips:{to}@{}>", server.ip()),
        &format!("sips:{to}@{server}"),
        Vec::new(),
        phone.flow(),
    );
    let offer = sdp(LO, 40_300, "sendrecv");
    d.invite(Some(("application/sdp", offer.as_bytes())), &[])
        .bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sips_contact_is_called_over_tls_and_sips_is_never_downgraded() {
    let ca = ca("switchboard test CA");
    let (s, tls) = tls_node(&ca).await;

    // dave registers a sips: Contact over TLS: stored as given
    let dave = TlsPhone::connect(tls, &ca).await;
    let contact = format!("<sips:dave@{}>", dave.addr());
    let r = dave.register_contact("dave", "dave-secret", &contact).await;
    assert_eq!(r.code, 200, "{r:?}");
    let contacts = s.contacts("dave").await;
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert!(
        contacts[0].to_string().contains("sips:dave@"),
        "{contacts:?}"
    );

    // alice, on TLS, calls sips:dave: over TLS, to his sips: Contact
    let alice = TlsPhone::connect(tls, &ca).await;
    let mut d = alice.dialog_to("alice", "dave", "sips");
    let offer = sdp(LO, 40_310, "sendrecv");
    let answer = sdp(LO, 40_312, "sendrecv");
    let callee = async {
        let invite = dave.request(Method::Invite).await;
        dave.answer(&invite, 200, Some("dave-tag"), Some(&answer))
            .await;
        invite
    };
    let ((ok, cseq), invite) = tokio::join!(
        alice.invite(&mut d, "alice", "alice-secret", &offer),
        callee
    );
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(
        invite.uri.to_string().starts_with("sips:dave@"),
        "{}",
        invite.uri
    );
    let via = invite.header("Via").unwrap_or_default().to_owned();
    assert!(via.starts_with("SIP/2.0/TLS"), "{via}");
    d.establish(&ok);
    alice.send(&d.ack(cseq, None)).await;
    let bye = d.request(&Method::Bye, None, &[]);
    alice.send(&bye.bytes).await;
    let theirs = dave.request(Method::Bye).await;
    dave.answer(&theirs, 200, None, None).await;
    assert_eq!(alice.final_response(Method::Bye).await.code, 200);

    // erin is registered over UDP: a sips: call to her is not placed
    // over UDP but fails (480), and she hears nothing
    let erin = SipPhone::bind(LO, s.sip).await;
    assert_eq!(erin.register("erin", "erin-secret", &[]).await.code, 200);
    let mut d = alice.dialog_to("alice", "erin", "sips");
    let (r, _) = alice.invite(&mut d, "alice", "alice-secret", &offer).await;
    assert_eq!(r.code, 480, "{r:?}");
    assert!(
        erin.recv(Duration::from_millis(300)).await.is_none(),
        "erin was called"
    );
    // a sip: call reaches her as before
    let mut d = alice.dialog_to("alice", "erin", "sip");
    let callee = async {
        let invite = erin.request(Method::Invite).await;
        erin.answer(&invite, 486, Some("erin-tag"), None).await;
    };
    let ((r, _), ()) = tokio::join!(
        alice.invite(&mut d, "alice", "alice-secret", &offer),
        callee
    );
    assert_eq!(r.code, 486, "{r:?}");

    // a sips: Request-URI over UDP: 416 at once, no challenge
    let bob = SipPhone::bind(LO, s.sip).await;
    bob.send(&sips_invite(&bob, s.sip, "dave")).await;
    let r = bob.final_response(Method::Invite).await;
    assert_eq!(r.code, 416, "{r:?}");
    assert!(
        r.header("Warning").unwrap_or_default().contains("sips"),
        "{r:?}"
    );

    // ...and over plain TCP (a REGISTER this time)
    let mut tcp = tokio::net::TcpStream::connect(s.sip).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let register = format!(
        "REGISTER sips:{ip} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bKsips1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sips:bob@{ip}>;tag=b1\r\n\
         To: <sips:bob@{ip}>\r\n\
         Call-ID: sips-tcp@test\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sips:bob@{local}>\r\n\
         Content-Length: 0\r\n\r\n",
        ip = s.sip.ip(),
    );
    tcp.write_all(register.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer over TCP")
        .unwrap();
    match parse(&buf[..n]) {
        Ok(Message::Response(r)) => assert_eq!(r.code, 416, "{r:?}"),
        other => panic!("not a response: {other:?}"),
    }
    assert!(s.contacts("bob").await.is_empty());
    s.stop().await;
}
