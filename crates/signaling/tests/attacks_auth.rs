//! Attacks on digest authentication over real sockets on loopback: a
//! forged-source flood meant to get a victim's address blocked, password
//! guessers on one address and spread over many, and credentials computed
//! for another Request-URI. Attackers are the test's own UDP sockets bound
//! to 127.x addresses (every 127.0.0.0/8 address is loopback on Linux), the
//! real users are sipp; every exchange asserts what came back on the wire,
//! then the bindings and counters through the API.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{TestServer, sipp, start};
use switchboard_sip::digest::{Algorithm, Challenge, respond};
use switchboard_sip::message::{Message, parse};
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

/// A hand-driven SIP client on one UDP socket.
struct RawPhone {
    sock: UdpSocket,
    server: SocketAddr,
}

/// What came back: status code, reason, and the challenge's nonce if any.
#[derive(Debug)]
struct Answer {
    code: u16,
    reason: String,
    nonce: Option<String>,
}

impl RawPhone {
    async fn bind(ip: IpAddr, server: SocketAddr) -> Self {
        let sock = UdpSocket::bind((ip, 0))
            .await
            .expect("bind attacker socket");
        Self { sock, server }
    }

    /// Sends one REGISTER for `user` to `request_uri` with `authorization`
    /// (if any) and waits for its final response.
    async fn register(&self, user: &str, request_uri: &str, authorization: Option<&str>) -> Answer {
        let local = self.sock.local_addr().expect("bound");
        let host = match self.server {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let text = format!(
            "REGISTER {request_uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{b:x};rport\r\n\
             From: <sip:{user}@{host}>;tag={b:x}\r\n\
             To: <sip:{user}@{host}>\r\n\
             Call-ID: {b:x}@attack\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:{user}@{local}>\r\n\
             Max-Forwards: 70\r\n\
             Expires: 300\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            b = rand::random::<u64>()
        );
        self.sock
            .send_to(text.as_bytes(), self.server)
            .await
            .expect("send");
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                    .await
                    .expect("an answer within 5 s")
                    .expect("receive");
            let Ok(Message::Response(resp)) = parse(&buf[..n]) else {
                panic!("not a response: {}", String::from_utf8_lossy(&buf[..n]));
            };
            if resp.code < 200 {
                continue;
            }
            let nonce = resp
                .header("WWW-Authenticate")
                .and_then(|h| Challenge::parse(h).ok())
                .map(|c| c.nonce);
            return Answer {
                code: resp.code,
                reason: resp.reason.clone(),
                nonce,
            };
        }
    }

    /// A challenge for `user`: the nonce the server issued to this socket's
    /// address.
    async fn nonce(&self, user: &str) -> String {
        let a = self.register(user, &self.request_uri(), None).await;
        assert_eq!(a.code, 401, "{a:?}");
        a.nonce.expect("a digest challenge")
    }

    fn request_uri(&self) -> String {
        format!("sip:{}", self.server)
    }
}

/// `Authorization` for `user`/`password` against `nonce`, for `uri`.
fn credentials(nonce: &str, uri: &str, user: &str, password: &str) -> String {
    let challenge = Challenge {
        realm: "switchboard".into(),
        nonce: nonce.into(),
        algorithm: Algorithm::Md5,
        qop_auth: true,
        stale: false,
        opaque: None,
    };
    respond(&challenge, "REGISTER", uri, user, password, "c0ffee", 1).to_header_value()
}

/// The value of an unlabelled metric.
async fn metric(s: &TestServer, name: &str) -> u64 {
    let (_, body) = s.http("GET", "/metrics", None).await;
    let text = body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

async fn sipp_register(s: &TestServer, from: IpAddr, user: &str, password: &str) -> bool {
    sipp(
        "register_auth.xml",
        s.sip,
        from,
        &["-s", user, "-au", user, "-ap", password],
    )
    .await
    .status
    .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_source_flood_with_a_foreign_nonce_does_not_block_the_victim() {
    let s = start("auth-spoof-flood", |c| {
        c.auth_fail_limit = 3;
        c.auth_user_fail_limit = 3;
    })
    .await;
    s.create_user("victim", "victim-secret").await;
    // The attacker gets a nonce at its own address...
    let attacker = RawPhone::bind(ip("127.0.0.2"), s.sip).await;
    let nonce = attacker.nonce("victim").await;
    // ...and floods wrong passwords with it from the victim's address
    // (a socket on 127.0.0.1 stands for packets with a forged source).
    let forged = RawPhone::bind(LO, s.sip).await;
    let creds = credentials(&nonce, &forged.request_uri(), "victim", "guess-guess");
    for i in 0..30 {
        let a = forged
            .register("victim", &forged.request_uri(), Some(&creds))
            .await;
        assert_eq!(
            (a.code, i),
            (401, i),
            "{a:?}: only challenged, never blocked"
        );
    }
    assert_eq!(metric(&s, "switchboard_auth_failures_total").await, 0);
    assert_eq!(
        metric(&s, "switchboard_auth_foreign_nonces_total").await,
        30
    );
    assert_eq!(metric(&s, "switchboard_auth_blocked_sources").await, 0);
    assert_eq!(metric(&s, "switchboard_auth_blocked_usernames").await, 0);
    // The victim, from its address, registers as usual.
    assert!(sipp_register(&s, LO, "victim", "victim-secret").await);
    assert_eq!(s.contacts("victim").await.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_guesser_is_blocked_by_address_over_ipv4_and_ipv6() {
    let v6 = ip("::1");
    let s = start("auth-guesser", |c| {
        c.bind = vec![LO, v6];
        c.auth_fail_limit = 3;
        c.auth_user_fail_limit = 0;
    })
    .await;
    s.create_user("dora", "dora-secret").await;
    let sip6 = s.running.sip_addrs[1];
    // (guesser address, server address)
    for (from, server) in [(ip("127.0.0.3"), s.sip), (v6, sip6)] {
        let mut codes = Vec::new();
        for _ in 0..4 {
            // a new socket (a new source port) for every guess
            let g = RawPhone::bind(from, server).await;
            let nonce = g.nonce("dora").await;
            let creds = credentials(&nonce, &g.request_uri(), "dora", "guess-guess");
            codes.push(
                g.register("dora", &g.request_uri(), Some(&creds))
                    .await
                    .code,
            );
        }
        assert_eq!(codes, [401, 401, 401, 403], "guesser at {from}");
        // blocked from now on, even with the right password
        let g = RawPhone::bind(from, server).await;
        let a = g.register("dora", &g.request_uri(), None).await;
        assert_eq!(
            (a.code, a.reason.as_str()),
            (403, "Too many failed authentications"),
            "{from}"
        );
    }
    assert_eq!(metric(&s, "switchboard_auth_blocked_sources").await, 2);
    // Another address is not blocked.
    assert!(sipp_register(&s, ip("127.0.0.4"), "dora", "dora-secret").await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_spread_over_many_addresses_is_stopped_by_the_username_limit() {
    let s = start("auth-spread", |c| {
        c.auth_fail_limit = 10;
        c.auth_user_fail_limit = 5;
    })
    .await;
    s.create_user("carol", "carol-secret").await;
    // Carol's phone registers from its usual address.
    assert!(sipp_register(&s, LO, "carol", "carol-secret").await);
    // One guess from each of eight addresses, each with its own nonce.
    let mut codes = Vec::new();
    for i in 1..=8 {
        let g = RawPhone::bind(ip(&format!("127.0.1.{i}")), s.sip).await;
        let nonce = g.nonce("carol").await;
        let creds = credentials(&nonce, &g.request_uri(), "carol", "guess-guess");
        codes.push(
            g.register("carol", &g.request_uri(), Some(&creds))
                .await
                .code,
        );
    }
    assert_eq!(codes, [401, 401, 401, 401, 401, 403, 403, 403]);
    // A ninth address guessing right is refused too: the username is
    // blocked for every source that has not authenticated as carol...
    let g = RawPhone::bind(ip("127.0.1.50"), s.sip).await;
    let nonce = g.nonce("carol").await;
    let creds = credentials(&nonce, &g.request_uri(), "carol", "carol-secret");
    let a = g.register("carol", &g.request_uri(), Some(&creds)).await;
    assert_eq!(
        (a.code, a.reason.as_str()),
        (403, "Too many failed authentications")
    );
    assert_eq!(metric(&s, "switchboard_auth_blocked_usernames").await, 1);
    assert_eq!(metric(&s, "switchboard_auth_blocked_sources").await, 0);
    // ...but carol's phone, at its usual address, still registers.
    assert!(sipp_register(&s, LO, "carol", "carol-secret").await);
    // both registrations are bound (sipp runs from a new port each time)
    assert_eq!(s.contacts("carol").await.len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_for_another_request_uri_are_refused() {
    let s = start("auth-uri", |_| {}).await;
    s.create_user("erin", "erin-secret").await;
    let phone = RawPhone::bind(LO, s.sip).await;
    let host = s.sip.ip();
    let port = s.sip.port();
    // (Request-URI, digest uri, expected code, reason)
    let table = [
        (
            format!("sip:{host}:{port}"),
            "sip:evil.example.com".to_owned(),
            403,
            "Digest URI Mismatch",
        ),
        (
            format!("sip:{host}:{port}"),
            format!("sip:{host}:{}", port.wrapping_add(1)),
            403,
            "Digest URI Mismatch",
        ),
        // tolerated: the phone left out the port and transport
        (
            format!("sip:{host}:{port};transport=udp"),
            format!("sip:{host}"),
            200,
            "OK",
        ),
    ];
    for (request_uri, digest_uri, code, reason) in table {
        let nonce = phone.nonce("erin").await;
        let creds = credentials(&nonce, &digest_uri, "erin", "erin-secret");
        let a = phone.register("erin", &request_uri, Some(&creds)).await;
        assert_eq!(
            (a.code, a.reason.as_str()),
            (code, reason),
            "{request_uri} / {digest_uri}"
        );
    }
    assert_eq!(metric(&s, "switchboard_auth_uri_mismatches_total").await, 2);
    assert_eq!(metric(&s, "switchboard_auth_failures_total").await, 0);
    s.stop().await;
}
