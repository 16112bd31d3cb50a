//! SIP over TLS through the whole node, on loopback with a test CA made
//! here: phones register and call each other over TLS (the callee reached
//! on the connection it registered over), the project's UA registers over
//! TLS, a client that does not trust the CA fails the handshake, a
//! certificate swapped on disk is served to the next connection without a
//! restart, and trunks over TLS verify the provider's certificate unless
//! told not to.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::phone::sdp;
use common::tls_phone::{Ca, TlsPhone, ca, leaf, tls_connect};
use common::{metric, no_live_calls, start_in, temp_dir};
use rcgen::{CertificateParams, KeyPair};
use switchboard_sip::message::{Message, Method, parse};
use switchboard_sip::response::response;
use switchboard_sip_stack::target::TransportKind;
use switchboard_sip_stack::transport::TransportConfig;
use switchboard_sip_stack::transport::tls::{TlsClient, TlsSetup};
use switchboard_sip_stack::ua::{RegisterParams, Ua};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A node serving TLS with a certificate for 127.0.0.1 from `ca`.
async fn tls_node(
    name: &str,
    ca: &Ca,
    tweak: impl FnOnce(&mut switchboard_signaling::Config),
) -> (common::TestServer, SocketAddr) {
    let dir = temp_dir(name);
    leaf(&dir, "server", &["127.0.0.1"], ca);
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let s = start_in(dir, |c| {
        c.tls.tls_cert = Some(cert);
        c.tls.tls_key = Some(key);
        tweak(c);
    })
    .await;
    let tls = s.running.tls_addrs[0];
    (s, tls)
}

fn top_via(m: &switchboard_sip::message::Request) -> String {
    m.header("Via").unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_register_and_call_each_other_over_tls() {
    let ca = ca("switchboard test CA");
    let (s, tls) = tls_node("tls-call", &ca, |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    let bob = TlsPhone::connect(tls, &ca).await;
    let alice = TlsPhone::connect(tls, &ca).await;
    assert_eq!(bob.register("bob", "bob-secret").await.code, 200);
    assert_eq!(alice.register("alice", "alice-secret").await.code, 200);
    let contacts = s.contacts("bob").await;
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert!(
        contacts[0].to_string().contains("transport=tls"),
        "{contacts:?}"
    );

    // alice calls bob: bob has no listener, so the INVITE can only reach
    // him on the connection he registered over
    let mut d = alice.dialog_to("alice", "bob", "sip");
    let offer = sdp(LO, 40_000, "sendrecv");
    let answer = sdp(LO, 40_002, "sendrecv");
    let callee = async {
        let invite = bob.request(Method::Invite).await;
        bob.answer(&invite, 180, Some("bob-tag"), None).await;
        bob.answer(&invite, 200, Some("bob-tag"), Some(&answer))
            .await;
        invite
    };
    let ((ok, cseq), invite) = tokio::join!(
        alice.invite(&mut d, "alice", "alice-secret", &offer),
        callee
    );
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(top_via(&invite).starts_with("SIP/2.0/TLS"), "{invite:?}");
    let tls_port = format!(":{}", tls.port());
    let our_contact = invite.header("Contact").unwrap_or_default().to_owned();
    assert!(
        our_contact.contains("transport=tls") && our_contact.contains(&tls_port),
        "the callee is told to reach us over TLS: {our_contact}"
    );
    let contact = ok.header("Contact").unwrap_or_default().to_owned();
    assert!(
        contact.contains("transport=tls") && contact.contains(&tls_port),
        "the caller is told to reach us over TLS: {contact}"
    );
    d.establish(&ok);
    alice.send(&d.ack(cseq, None)).await;
    let ack = bob.request(Method::Ack).await;
    assert!(top_via(&ack).starts_with("SIP/2.0/TLS"));

    // alice hangs up; the BYE reaches bob over his connection
    let bye = d.request(&Method::Bye, None, &[]);
    alice.send(&bye.bytes).await;
    let theirs = bob.request(Method::Bye).await;
    bob.answer(&theirs, 200, None, None).await;
    assert_eq!(alice.final_response(Method::Bye).await.code, 200);
    no_live_calls(&s).await;
    assert!(
        metric(&s, "switchboard_tls_messages_total ").await.unwrap() >= 10,
        "messages counted"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sips_call_goes_over_tls() {
    let ca = ca("switchboard test CA");
    let (s, tls) = tls_node("tls-sips", &ca, |_| {}).await;
    s.create_user("carol", "carol-secret").await;
    s.create_user("dave", "dave-secret").await;
    let dave = TlsPhone::connect(tls, &ca).await;
    let carol = TlsPhone::connect(tls, &ca).await;
    assert_eq!(dave.register("dave", "dave-secret").await.code, 200);
    let mut d = carol.dialog_to("carol", "dave", "sips");
    let offer = sdp(LO, 40_010, "sendrecv");
    let answer = sdp(LO, 40_012, "sendrecv");
    let callee = async {
        let invite = dave.request(Method::Invite).await;
        dave.answer(&invite, 200, Some("dave-tag"), Some(&answer))
            .await;
        invite
    };
    let ((ok, cseq), invite) = tokio::join!(
        carol.invite(&mut d, "carol", "carol-secret", &offer),
        callee
    );
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(top_via(&invite).starts_with("SIP/2.0/TLS"));
    d.establish(&ok);
    carol.send(&d.ack(cseq, None)).await;
    let bye = d.request(&Method::Bye, None, &[]);
    carol.send(&bye.bytes).await;
    let theirs = dave.request(Method::Bye).await;
    dave.answer(&theirs, 200, None, None).await;
    assert_eq!(carol.final_response(Method::Bye).await.code, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projects_ua_registers_over_tls_and_an_untrusting_client_is_refused() {
    let ca = ca("switchboard test CA");
    let (s, tls) = tls_node("tls-ua", &ca, |_| {}).await;
    s.create_user("erin", "erin-secret").await;
    let ua = Ua::bind_with(TransportConfig {
        addrs: vec![LO],
        port: 0,
        tls: Some(TlsSetup {
            listen: None,
            client: Arc::new(TlsClient::new(false, Some(ca.pem().as_bytes())).unwrap()),
        }),
        ..TransportConfig::default()
    })
    .await
    .unwrap();
    let out = ua
        .register(&RegisterParams {
            server: tls,
            transport: TransportKind::Tls,
            user: "erin".into(),
            password: "erin-secret".into(),
            domain: Some("switchboard".into()),
            expires: 600,
            prefer: None,
            extra_headers: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(out.code, 200, "{:?}", out.response);
    assert_eq!(out.transport, TransportKind::Tls);
    // both exchanges (challenge and 200) on one connection
    assert_eq!(
        ua.transports()
            .stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // a client trusting another CA does not get through the handshake
    let stranger = common::tls_phone::ca("some other CA");
    assert!(tls_connect(tls, &stranger).await.is_err());
    let mut failures = 0;
    for _ in 0..50 {
        failures = metric(
            &s,
            "switchboard_tls_handshake_failures_total{reason=\"error\"} ",
        )
        .await
        .unwrap_or(0);
        if failures >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failures, 1);
    s.stop().await;
}

/// Connects until the served certificate differs from `old` (5 s at most).
async fn next_served(tls: SocketAddr, ca: &Ca, old: &[u8]) -> Vec<u8> {
    for _ in 0..50 {
        let phone = TlsPhone::connect(tls, ca).await;
        if phone.server_cert.as_ref() != old {
            return phone.server_cert.to_vec();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the new certificate was not served within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_is_served_to_the_next_connection() {
    let ca = ca("switchboard test CA");
    let (s, tls) = tls_node("tls-swap", &ca, |c| c.tls.tls_reload_interval = 1).await;
    s.create_user("frank", "frank-secret").await;
    let dir = s.dir.clone();
    let before = TlsPhone::connect(tls, &ca).await;
    let first = before.server_cert.to_vec();

    // renewed on disk: the next connection gets it, no restart
    let renewed = leaf(&dir, "server", &["127.0.0.1"], &ca);
    let second = next_served(tls, &ca, &first).await;
    assert_eq!(second, renewed.to_vec());
    // the connection made before keeps working
    assert_eq!(before.register("frank", "frank-secret").await.code, 200);

    // a bad file is logged and the certificate in use kept
    std::fs::write(
        dir.join("server.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after_bad = TlsPhone::connect(tls, &ca).await;
    assert_eq!(after_bad.server_cert.to_vec(), second);
    assert!(
        s.running.node.reload_tls().is_err(),
        "SIGHUP reports the bad file"
    );
    let still = TlsPhone::connect(tls, &ca).await;
    assert_eq!(still.server_cert.to_vec(), second);

    // SIGHUP's reload: served at once
    let third = leaf(&dir, "server", &["127.0.0.1"], &ca);
    assert!(s.running.node.reload_tls().unwrap());
    let now = TlsPhone::connect(tls, &ca).await;
    assert_eq!(now.server_cert.to_vec(), third.to_vec());
    s.stop().await;
}

/// A provider's TLS port on 127.0.0.1: reports the SNI and first message
/// of each connection that completes its handshake (answering a REGISTER
/// with 200), and each handshake that fails.
struct Provider {
    addr: SocketAddr,
    seen: mpsc::Receiver<Result<(Option<String>, String), String>>,
}

#[allow(deprecated)] // ring lacks only post-quantum key exchange
async fn provider(ca: &Ca, names: &[&str]) -> Provider {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string())).await;
                        return;
                    }
                };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                let mut buf = vec![0u8; 65_535];
                let Ok(n) = tls.read(&mut buf).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Ok(Message::Request(req)) = parse(&buf[..n]) {
                    let ok = response(&req, 200, "OK").header("Expires", "600").build();
                    let _ = tls.write_all(&ok).await;
                }
                let _ = tx.send(Ok((sni, text))).await;
                // hold the connection like a provider does
                let _ = tls.read(&mut buf).await;
            });
        }
    });
    Provider { addr, seen }
}

fn write_trunks(dir: &Path, trunks: serde_json::Value) {
    std::fs::write(
        dir.join("trunks.json"),
        serde_json::json!({ "trunks": trunks }).to_string(),
    )
    .unwrap();
}

async fn first_event(p: &mut Provider) -> Result<(Option<String>, String), String> {
    tokio::time::timeout(Duration::from_secs(10), p.seen.recv())
        .await
        .expect("the trunk connects within 10 s")
        .expect("provider running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunks_over_tls_verify_the_provider_unless_told_not_to() {
    let unknown = ca("a CA nobody trusts");
    let known = ca("the provider's CA, in TLS_CA_FILE");
    let mut strict = provider(&unknown, &["127.0.0.1"]).await;
    let mut lax = provider(&unknown, &["127.0.0.1"]).await;
    let mut named = provider(&known, &["sip.provider.test"]).await;
    let dir = temp_dir("tls-trunks");
    std::fs::write(dir.join("provider-ca.pem"), known.pem()).unwrap();
    let trunk = |name: &str, p: &Provider, extra: serde_json::Value| {
        let mut t = serde_json::json!({
            "name": name, "host": p.addr.to_string(), "transport": "tls",
            "username": name, "password": "trunk-secret", "register": true
        });
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    write_trunks(
        &dir,
        serde_json::json!([
            trunk("strict", &strict, serde_json::json!({})),
            trunk("lax", &lax, serde_json::json!({"tls_verify": false})),
            trunk(
                "named",
                &named,
                serde_json::json!({"tls_server_name": "sip.provider.test"})
            ),
        ]),
    );
    let ca_file = dir.join("provider-ca.pem");
    let s = start_in(dir, |c| c.tls.tls_ca_file = Some(ca_file)).await;
    assert!(
        s.running.tls_addrs.is_empty(),
        "no listener without TLS_CERT"
    );

    // verification on, certificate from an unknown CA: refused by us
    let refused = first_event(&mut strict).await;
    assert!(
        refused.is_err(),
        "the strict trunk completed a handshake: {refused:?}"
    );
    // verification off: the REGISTER arrives over TLS
    let (_, register) = first_event(&mut lax).await.expect("a handshake");
    assert!(register.starts_with("REGISTER "), "{register}");
    assert!(register.contains("SIP/2.0/TLS"), "{register}");
    assert!(
        register.contains(";transport=tls>"),
        "the provider calls back over TLS: {register}"
    );
    // verification on with TLS_CA_FILE and the configured name, sent as SNI
    let (sni, register) = first_event(&mut named).await.expect("a handshake");
    assert_eq!(sni.as_deref(), Some("sip.provider.test"));
    assert!(register.starts_with("REGISTER "), "{register}");
    // counted when the connection's task ends, which may be just after the
    // provider saw the handshake fail
    let mut failures = 0;
    for _ in 0..100 {
        failures = metric(
            &s,
            "switchboard_tls_handshake_failures_total{reason=\"error\"} ",
        )
        .await
        .unwrap_or(0);
        if failures >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures >= 1);
    // the trunks' settings are shown (tls_verify only when off)
    let (_, lax_view) = s.http("GET", "/api/v1/trunks/lax", None).await;
    assert_eq!(
        lax_view["tls_verify"],
        serde_json::json!(false),
        "{lax_view}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunks_own_ca_file_is_trusted_for_that_trunk_only() {
    let private = ca("a private CA one trunk trusts");
    let mut trusting = provider(&private, &["127.0.0.1"]).await;
    let mut other = provider(&private, &["127.0.0.1"]).await;
    let dir = temp_dir("tls-trunk-ca");
    let ca_file = dir.join("private-ca.pem");
    std::fs::write(&ca_file, private.pem()).unwrap();
    let s = start_in(dir.clone(), |_| {}).await;
    let trunk = |p: &Provider, extra: serde_json::Value| {
        let mut t = serde_json::json!({
            "host": p.addr.to_string(), "transport": "tls",
            "username": "u", "password": "trunk-secret", "register": true
        });
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };

    // a file that is not there is refused, naming the field
    let missing = dir.join("missing.pem");
    let body = trunk(&trusting, serde_json::json!({"tls_ca_file": missing}));
    let (status, err) = s.http("PUT", "/api/v1/trunks/own", Some(&body)).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().starts_with("tls_ca_file: "),
        "{err}"
    );
    // nor with a plain transport
    let mut udp = trunk(&trusting, serde_json::json!({"tls_ca_file": ca_file}));
    udp["transport"] = "udp".into();
    let (status, err) = s.http("PUT", "/api/v1/trunks/own", Some(&udp)).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("tls_ca_file"));

    // the trunk with the CA file verifies its provider's certificate...
    let body = trunk(&trusting, serde_json::json!({"tls_ca_file": ca_file}));
    let (status, view) = s.http("PUT", "/api/v1/trunks/own", Some(&body)).await;
    assert!(status == 200 || status == 201, "{status} {view}");
    assert_eq!(view["tls_ca_file"], serde_json::json!(ca_file), "{view}");
    let (_, register) = first_event(&mut trusting).await.expect("a handshake");
    assert!(register.starts_with("REGISTER "), "{register}");
    // ...and a trunk without it does not trust that CA
    let body = trunk(&other, serde_json::json!({}));
    let (status, view) = s.http("PUT", "/api/v1/trunks/other", Some(&body)).await;
    assert!(status == 200 || status == 201, "{status} {view}");
    let refused = first_event(&mut other).await;
    assert!(refused.is_err(), "the other trunk trusted it: {refused:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_named_by_dns_is_verified_for_that_name_and_sends_it_as_sni() {
    let private = ca("the named provider's CA");
    // a certificate for the name only, not for 127.0.0.1
    let mut named = provider(&private, &["localhost"]).await;
    let dir = temp_dir("tls-trunk-dns");
    let ca_file = dir.join("private-ca.pem");
    std::fs::write(&ca_file, private.pem()).unwrap();
    let s = start_in(dir.clone(), |_| {}).await;
    let host = format!("localhost:{}", named.addr.port());
    let body = serde_json::json!({
        "host": host, "transport": "tls", "tls_ca_file": ca_file,
        "username": "u", "password": "trunk-secret", "register": true
    });
    let (status, view) = s.http("PUT", "/api/v1/trunks/named", Some(&body)).await;
    assert_eq!(status, 201, "{view}");
    let (sni, register) = first_event(&mut named).await.expect("a handshake");
    assert_eq!(sni.as_deref(), Some("localhost"));
    assert!(
        register.starts_with(&format!("REGISTER sip:{host} ")),
        "{register}"
    );
    s.stop().await;
}
