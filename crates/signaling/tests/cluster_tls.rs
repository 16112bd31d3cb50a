//! A phone on TLS in a cluster, over real sockets on loopback with the
//! shared Postgres, Redis and NATS: registered over TLS on replica A and
//! called from replica B, it gets the INVITE on its own connection with A
//! double record-routed (RFC 5658: on top A's TLS address with
//! `transport=tls`, the address the phone is connected to, then the
//! replicas' route), so its in-dialog requests go back on that connection,
//! and no Route of A's reaches either end.

mod common;

use std::time::Duration;

use common::cluster::{LO, Platform, eventually, users_plan};
use common::phone::{SipPhone, sdp};
use common::tls_phone::{TlsPhone, ca, leaf};
use switchboard_sip::message::Method;
use switchboard_sip_stack::dialog::Dialog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_phone_on_a_called_from_b_talks_over_its_own_connection() {
    let p = Platform::new();
    let ca = ca("switchboard test CA");
    let certs = common::temp_dir("cluster-tls-certs");
    leaf(&certs, "a", &["127.0.0.1"], &ca);
    let (cert, key) = (certs.join("a.pem"), certs.join("a.key"));
    let a = p
        .replica("a", |c| {
            c.tls.tls_cert = Some(cert);
            c.tls.tls_key = Some(key);
        })
        .await;
    let b = p.replica("b", |_| {}).await;
    a.create_user("alice", "alice-secret").await;
    a.create_user("carol", "carol-secret").await;
    let (status, body) = a.http("PUT", "/api/v1/dialplan", Some(&users_plan())).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(3), "users reach B", || async {
        b.http("GET", "/api/v1/stats", None).await.1["users"] == 2
    })
    .await;
    for (s, other) in [(&a, "b"), (&b, "a")] {
        eventually(Duration::from_secs(8), "peers known", || async {
            s.http("GET", "/api/v1/cluster", None).await.1["peers"][other].is_string()
        })
        .await;
    }

    // carol registers over TLS on A
    let a_tls = a.running.tls_addrs[0];
    let carol = TlsPhone::connect(a_tls, &ca).await;
    assert_eq!(carol.register("carol", "carol-secret").await.code, 200);

    // alice, on B over UDP, calls her
    let alice = SipPhone::bind(LO, b.sip).await;
    let offer = sdp(LO, 40_100, "sendrecv");
    let answer = sdp(LO, 40_102, "sendrecv");
    let callee = async {
        let invite = carol.request(Method::Invite).await;
        carol
            .answer(&invite, 200, Some("carol-tag"), Some(&answer))
            .await;
        let ack = carol.request(Method::Ack).await;
        (invite, ack)
    };
    let ((_alice_dialog, ok), (invite, ack)) = tokio::join!(
        alice.call("alice", "alice-secret", "carol", &offer, &[]),
        callee
    );
    assert_eq!(ok.code, 200);
    assert!(
        invite.vias[0].transport.eq_ignore_ascii_case("TLS"),
        "{invite:?}"
    );
    let rr = invite.header_values("Record-Route");
    assert_eq!(rr.len(), 2, "double record-routed: {rr:?}");
    let tls_hop = format!("127.0.0.1:{};transport=tls;lr;", a_tls.port());
    assert!(
        rr[0].contains(&tls_hop),
        "on top, A as carol reaches it: {rr:?}"
    );
    assert!(
        !rr[1].contains("transport=") && rr[1].contains(&a.sip.to_string()),
        "then A as B reaches it: {rr:?}"
    );
    assert!(
        ack.header("Route").is_none(),
        "A removed both of its routes"
    );

    // carol hangs up by her route set, on her connection
    let mut d = Dialog::uas(&invite, "carol-tag", carol.flow());
    let bye = d.request(&Method::Bye, None, &[]);
    carol.send(&bye.bytes).await;
    let (their_bye, _) = alice.request_from(Method::Bye).await;
    alice.answer(&their_bye, 200, None, None).await;
    assert_eq!(carol.final_response(Method::Bye).await.code, 200);
    a.stop().await;
    b.stop().await;
    p.cleanup().await;
    let _ = std::fs::remove_dir_all(&certs);
}
