//! `switchboard-rtpmanager health [--ready]`, the real binary, against a
//! manager served on loopback: its exit codes and the JSON it prints.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::Value;
use switchboard_rtpmanager::{Engine, GrpcSecurity, Running, serve_secured};
use tokio::net::TcpListener;

const TOKEN: &str = "probe-token-0123456789abcdef";

/// A manager on 127.0.0.1 (an ephemeral port unless given).
async fn manager_on(slot: u16, listener: TcpListener, security: GrpcSecurity) -> Running {
    let config = engine_config(&["127.0.0.1"], range(slot), Duration::from_secs(60));
    serve_secured(Engine::new(config).unwrap(), listener, security)
        .await
        .unwrap()
}

async fn manager(slot: u16, security: GrpcSecurity) -> Running {
    manager_on(
        slot,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        security,
    )
    .await
}

fn with_token() -> GrpcSecurity {
    GrpcSecurity {
        token: Some(TOKEN.into()),
        tls: None,
    }
}

struct Probe {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Probe {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap()
    }
}

/// The binary's `health` with only `env` in its environment (and `args`
/// after the subcommand).
async fn probe(env: &[(&str, String)], args: &[&str]) -> Probe {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-rtpmanager"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("health")
        .args(args)
        .output()
        .await
        .unwrap();
    Probe {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn port_of(r: &Running) -> (&'static str, String) {
    ("GRPC_PORT", r.grpc_addr.port().to_string())
}

#[tokio::test]
async fn an_answering_manager_is_healthy_and_ready() {
    let r = manager(33, GrpcSecurity::default()).await;
    let p = probe(&[port_of(&r)], &[]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    let j = p.json();
    assert_eq!(j["address"], r.grpc_addr.to_string());
    assert_eq!(j["sessions"], 0);
    assert_eq!(j["draining"], false);
    assert_eq!(j["free_port_pairs"], 50);
    assert_eq!(j["advertise_address"], "127.0.0.1");
    assert_eq!(p.stdout.lines().count(), 1, "one line: {}", p.stdout);

    let p = probe(&[port_of(&r)], &["--ready"]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    r.shutdown().await;
}

#[tokio::test]
async fn a_draining_manager_is_alive_but_not_ready() {
    let r = manager(34, GrpcSecurity::default()).await;
    r.engine.set_draining(true);
    let p = probe(&[port_of(&r)], &[]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_eq!(p.json()["draining"], true);

    let p = probe(&[port_of(&r)], &["--ready"]).await;
    assert_eq!(p.code, Some(1));
    assert_eq!(p.json()["draining"], true, "the answer is printed still");
    assert!(p.stderr.contains("draining"), "{}", p.stderr);

    r.engine.set_draining(false);
    let p = probe(&[port_of(&r)], &["--ready"]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    r.shutdown().await;
}

#[tokio::test]
async fn nothing_listening_fails() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for args in [&[][..], &["--ready"]] {
        let p = probe(&[("GRPC_PORT", port.to_string())], args).await;
        assert_eq!(p.code, Some(1), "{args:?}");
        assert!(p.stdout.is_empty(), "{}", p.stdout);
        assert!(
            p.stderr
                .contains(&format!("cannot connect to 127.0.0.1:{port}")),
            "{}",
            p.stderr
        );
    }
}

#[tokio::test]
async fn the_token_is_sent_and_a_wrong_one_fails() {
    let r = manager(35, with_token()).await;
    let cases = [
        (Some(TOKEN), Some(0)),
        (Some("wrong-token-0123456789abcdef"), Some(1)),
        (None, Some(1)),
    ];
    for (token, want) in cases {
        let mut env = vec![port_of(&r)];
        if let Some(t) = token {
            env.push(("RTPMANAGER_TOKEN", t.to_string()));
        }
        let p = probe(&env, &[]).await;
        assert_eq!(p.code, want, "{token:?}: {}", p.stderr);
        if want == Some(1) {
            assert!(p.stderr.contains("Unauthenticated"), "{}", p.stderr);
        }
    }
    r.shutdown().await;
}

#[tokio::test]
async fn a_wildcard_bind_is_probed_on_loopback() {
    let r = manager(36, with_token()).await;
    let p = probe(
        &[
            port_of(&r),
            ("GRPC_BIND", "0.0.0.0".into()),
            ("RTPMANAGER_TOKEN", TOKEN.into()),
        ],
        &[],
    )
    .await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_eq!(p.json()["address"], r.grpc_addr.to_string());
    r.shutdown().await;
}

#[tokio::test]
async fn the_port_follows_the_pod_name_as_the_servers_does() {
    // a free port in the ordinal range: 9090 + N
    let mut bound = None;
    for n in (300..=554u16).rev() {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", 9090 + n)).await {
            bound = Some((n, l));
            break;
        }
    }
    let (n, listener) = bound.expect("a free port in 9390-9644");
    let r = manager_on(37, listener, GrpcSecurity::default()).await;
    // under hostNetwork the host name is the node's: POD_NAME wins
    let env = [
        ("POD_NAME", format!("rtpmanager-{n}")),
        ("HOSTNAME", "k3s-node-1".into()),
    ];
    let p = probe(&env, &[]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_eq!(p.json()["address"], format!("127.0.0.1:{}", 9090 + n));
    r.shutdown().await;
}

/// PEM files in a fresh directory, removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = temp_dir("probe-pki");
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_env(
    r: &Running,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Vec<(&'static str, String)> {
    vec![
        port_of(r),
        ("RTPMANAGER_TOKEN", TOKEN.into()),
        ("GRPC_TLS_CERT", cert.display().to_string()),
        ("GRPC_TLS_KEY", key.display().to_string()),
    ]
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate_for_another_name() {
    let pki = Pki::new();
    // a name the probe does not dial: only the certificate itself counts
    let make = |names: &[&str]| {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = make(&["rtpmanager-0.rtpmanager.switchboard.svc"]);
    let cert = pki.write("server.pem", &cert);
    let key = pki.write("server.key", &key);
    let security = GrpcSecurity::from_settings(
        "127.0.0.1".parse().unwrap(),
        Some(TOKEN),
        Some(&cert),
        Some(&key),
        None,
    )
    .unwrap();
    let r = manager(38, security).await;
    let p = probe(&tls_env(&r, &cert, &key), &[]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_eq!(p.json()["sessions"], 0);

    // another certificate than the one served: refused
    let (other_cert, other_key) = make(&["rtpmanager-0.rtpmanager.switchboard.svc"]);
    let other_cert = pki.write("other.pem", &other_cert);
    let other_key = pki.write("other.key", &other_key);
    let p = probe(&tls_env(&r, &other_cert, &other_key), &[]).await;
    assert_eq!(p.code, Some(1));
    assert!(p.stderr.contains("cannot connect"), "{}", p.stderr);

    // plaintext to the TLS port: fails
    let p = probe(&[port_of(&r), ("RTPMANAGER_TOKEN", TOKEN.into())], &[]).await;
    assert_eq!(p.code, Some(1), "{}", p.stdout);
    r.shutdown().await;
}

#[tokio::test]
async fn tls_with_client_certificates_and_a_chain_file() {
    let pki = Pki::new();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "switchboard test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["rtpmanager-1.example".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    // the chain file: the manager's certificate, then its CA
    let chain = pki.write("chain.pem", &format!("{}{}", leaf.pem(), ca.pem()));
    let key = pki.write("server.key", &key.serialize_pem());
    let ca_file = pki.write("ca.pem", &ca.pem());
    let security = GrpcSecurity::from_settings(
        "127.0.0.1".parse().unwrap(),
        Some(TOKEN),
        Some(&chain),
        Some(&key),
        Some(&ca_file),
    )
    .unwrap();
    let r = manager(39, security).await;
    let mut env = tls_env(&r, &chain, &key);
    env.push(("GRPC_TLS_CLIENT_CA", ca_file.display().to_string()));
    let p = probe(&env, &["--ready"]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);

    // without GRPC_TLS_CLIENT_CA the probe shows no certificate: refused
    let p = probe(&tls_env(&r, &chain, &key), &[]).await;
    assert_eq!(p.code, Some(1), "{}", p.stdout);
    r.shutdown().await;
}
