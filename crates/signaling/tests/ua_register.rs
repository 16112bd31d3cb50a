//! The project's own UA as a second real peer: SHA-256 digest (which the
//! sipp 3.6 Debian ships cannot answer), both challenges at once, and a
//! request too large for UDP moving to TCP (RFC 3261 §18.1.1).

mod common;

use std::net::IpAddr;

use common::start;
use switchboard_sip::digest::Algorithm;
use switchboard_sip_stack::target::TransportKind;
use switchboard_sip_stack::ua::{RegisterParams, Ua};

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn params(server: std::net::SocketAddr, user: &str, password: &str) -> RegisterParams {
    RegisterParams {
        server,
        transport: TransportKind::Udp,
        user: user.into(),
        password: password.into(),
        domain: None,
        expires: 600,
        prefer: None,
        extra_headers: vec!["User-Agent: switchboard-ua-test".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_and_md5_challenges_both_work() {
    let s = start("ua-sha256", |c| {
        c.auth_algorithms = vec![Algorithm::Sha256, Algorithm::Md5];
    })
    .await;
    s.create_user("grace", "grace-secret").await;
    let ua = Ua::bind(LO).await.unwrap();

    let mut p = params(s.sip, "grace", "grace-secret");
    p.prefer = Some(Algorithm::Sha256);
    let out = ua.register(&p).await.unwrap();
    assert_eq!(out.code, 200, "{:?}", out.response);
    let contacts = out.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert!(contacts[0].contains(";expires=600"), "{contacts:?}");

    // The same phone answering the MD5 challenge instead is accepted too.
    p.prefer = Some(Algorithm::Md5);
    let out = ua.register(&p).await.unwrap();
    assert_eq!(out.code, 200);

    // A wrong password with SHA-256 is refused with a fresh challenge.
    let mut bad = params(s.sip, "grace", "wrong-password");
    bad.prefer = Some(Algorithm::Sha256);
    assert_eq!(ua.register(&bad).await.unwrap().code, 401);

    let (_, metrics) = s.http("GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap().to_string();
    assert!(
        text.contains("switchboard_auth_successes_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_auth_failures_total 1\n"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_only_server_refuses_nothing_but_offers_only_md5() {
    let s = start("ua-md5only", |_| {}).await;
    s.create_user("heidi", "heidi-secret").await;
    let ua = Ua::bind(LO).await.unwrap();
    let mut p = params(s.sip, "heidi", "heidi-secret");
    p.prefer = Some(Algorithm::Sha256);
    // Default AUTH_ALGORITHMS=MD5: no SHA-256 challenge is offered.
    let err = ua.register(&p).await.unwrap_err();
    assert!(err.to_string().contains("MD5"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_goes_over_tcp() {
    let s = start("ua-big", |_| {}).await;
    s.create_user("ivan", "ivan-secret-1").await;
    let ua = Ua::bind(LO).await.unwrap();
    let mut p = params(s.sip, "ivan", "ivan-secret-1");
    p.extra_headers
        .push(format!("X-Padding: {}", "x".repeat(1400)));
    let out = ua.register(&p).await.unwrap();
    assert_eq!(out.code, 200);
    assert_eq!(out.transport, TransportKind::Tcp);
    let contacts = s.contacts("ivan").await;
    assert!(
        contacts[0]["received"]
            .as_str()
            .unwrap()
            .starts_with("tcp:127.0.0.1:")
    );
    s.stop().await;
}
