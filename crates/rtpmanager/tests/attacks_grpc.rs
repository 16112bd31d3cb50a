//! The control plane is not open: a token on every call, TLS with client
//! certificates, and no start-up on a public address without a token.
//! Certificates are made at test time (rcgen).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use switchboard_rtpmanager::{Engine, GrpcSecurity, serve_secured};
use switchboard_rtpmanager_api::RtpManagerClient;
use switchboard_rtpmanager_api::v1 as pb;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const TOKEN: &str = "test-token-0123456789abcdef";

async fn secured(slot: u16, security: GrpcSecurity) -> switchboard_rtpmanager::Running {
    let config = engine_config(&["127.0.0.1"], range(slot), Duration::from_secs(60));
    let engine = Engine::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_secured(engine, listener, security).await.unwrap()
}

fn health_with(token: Option<&str>) -> tonic::Request<pb::HealthRequest> {
    let mut r = tonic::Request::new(pb::HealthRequest {});
    if let Some(t) = token {
        let v: MetadataValue<_> = t.parse().unwrap();
        r.metadata_mut().insert("authorization", v);
    }
    r
}

#[tokio::test]
async fn every_call_needs_the_token() {
    let security = GrpcSecurity {
        token: Some(TOKEN.into()),
        tls: None,
    };
    let running = secured(20, security).await;
    let mut c = RtpManagerClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    let right = format!("Bearer {TOKEN}");
    let cases: [(Option<&str>, Option<Code>); 5] = [
        (None, Some(Code::Unauthenticated)),
        (
            Some("Bearer wrong-token-0123456789abcdef"),
            Some(Code::Unauthenticated),
        ),
        (Some(TOKEN), Some(Code::Unauthenticated)),
        (Some("Basic dGVzdDp0ZXN0"), Some(Code::Unauthenticated)),
        (Some(&right), None),
    ];
    for (token, want) in cases {
        let got = c.health(health_with(token)).await;
        match want {
            Some(code) => assert_eq!(got.unwrap_err().code(), code, "{token:?}"),
            None => assert_eq!(got.unwrap().into_inner().free_port_pairs, 50),
        }
    }
    // a session cannot be made without it either, and nothing leaks
    let e = c
        .create_session(pb::CreateSessionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(running.engine.health().sessions, 0);
    let mut r = tonic::Request::new(pb::CreateSessionRequest::default());
    r.metadata_mut()
        .insert("authorization", right.parse().unwrap());
    c.create_session(r).await.unwrap();
    assert_eq!(running.engine.health().sessions, 1);
}

/// A CA, the server's certificate for 127.0.0.1/localhost and a client
/// certificate, all signed by the CA; plus a client certificate of a CA
/// the server does not know. PEM files in a fresh directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = temp_dir("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = ca_issuer("switchboard test CA");
        let other_ca = ca_issuer("somebody else's CA");
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write("ca.pem", ca.pem());
        let (cert, key) = leaf(&["127.0.0.1", "localhost"], &ca);
        write("server.pem", cert);
        write("server.key", key);
        let (cert, key) = leaf(&["signaling"], &ca);
        write("client.pem", cert);
        write("client.key", key);
        let (cert, key) = leaf(&["signaling"], &other_ca);
        write("stranger.pem", cert);
        write("stranger.key", key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca_issuer(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(names: &[&str], ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn tls_client(
    addr: std::net::SocketAddr,
    pki: &Pki,
    identity: Option<(&str, &str)>,
) -> Result<RtpManagerClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.read("ca.pem")));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(pki.read(cert), pki.read(key)));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(RtpManagerClient::new(channel))
}

#[tokio::test]
async fn tls_admits_only_clients_with_a_certificate_of_the_configured_ca() {
    let pki = Pki::new();
    let lo = "127.0.0.1".parse().unwrap();
    let security = GrpcSecurity::from_settings(
        lo,
        Some(TOKEN),
        Some(&pki.path("server.pem")),
        Some(&pki.path("server.key")),
        Some(&pki.path("ca.pem")),
    )
    .unwrap();
    let running = secured(21, security).await;
    let addr = running.grpc_addr;
    let right = format!("Bearer {TOKEN}");

    // the right certificate (and the token): served
    let mut c = tls_client(addr, &pki, Some(("client.pem", "client.key")))
        .await
        .unwrap();
    let h = c.health(health_with(Some(&right))).await.unwrap();
    assert_eq!(h.into_inner().free_port_pairs, 50);

    // no certificate, or one of another CA: refused in the handshake
    for identity in [None, Some(("stranger.pem", "stranger.key"))] {
        let refused = match tls_client(addr, &pki, identity).await {
            Err(_) => true,
            Ok(mut c) => c.health(health_with(Some(&right))).await.is_err(),
        };
        assert!(refused, "{identity:?} was served");
    }

    // plaintext to a TLS port: refused
    let plain = RtpManagerClient::connect(format!("http://{addr}")).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c.health(health_with(Some(&right))).await.is_err(),
    };
    assert!(refused, "plaintext was served");
}

#[tokio::test]
async fn a_public_address_without_a_token_does_not_start() {
    let record = temp_dir("nostart");
    let args = |bind: &str| {
        switchboard_rtpmanager::Config::parse_from([
            "switchboard-rtpmanager",
            "--grpc-bind",
            bind,
            "--grpc-port",
            "0",
            "--rtp-bind",
            "127.0.0.1",
            "--rtp-port-min",
            "42200",
            "--rtp-port-max",
            "42299",
            "--record-path",
            record.to_str().unwrap(),
        ])
    };
    let e = switchboard_rtpmanager::run(args("0.0.0.0"))
        .await
        .err()
        .expect("refused");
    let msg = format!("{e:#}");
    assert!(
        msg.starts_with("RTPMANAGER_TOKEN: GRPC_BIND 0.0.0.0"),
        "{msg}"
    );
    // the default (loopback) starts
    let config = switchboard_rtpmanager::Config::parse_from([
        "switchboard-rtpmanager",
        "--grpc-port",
        "0",
        "--rtp-bind",
        "127.0.0.1",
        "--rtp-port-min",
        "42200",
        "--rtp-port-max",
        "42299",
    ]);
    assert!(config.grpc_bind.is_loopback());
    let running = switchboard_rtpmanager::run(config).await.unwrap();
    assert!(running.grpc_addr.ip().is_loopback());
    running.shutdown().await;
}
