//! The `health` subcommand of the real binary against a running server.

mod common;

use std::net::SocketAddr;

use serde_json::Value;

struct Probe {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `switchboard-signaling health` with only `env` in its environment.
async fn probe(env: &[(&str, String)]) -> Probe {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-signaling"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("health")
        .output()
        .await
        .expect("run switchboard-signaling health");
    Probe {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn port(a: SocketAddr) -> (&'static str, String) {
    ("API_PORT", a.port().to_string())
}

#[tokio::test]
async fn health_exits_0_when_the_api_answers_200() {
    let s = common::start("probe-ok", |c| c.metrics_port = Some(0)).await;
    // API_BIND unset: the wildcard default is asked on loopback
    for env in [
        vec![port(s.api)],
        vec![port(s.api), ("API_BIND", "127.0.0.1".into())],
        vec![port(s.api), ("API_BIND", "0.0.0.0".into())],
    ] {
        let p = probe(&env).await;
        assert_eq!(p.code, Some(0), "{env:?}: {}", p.stderr);
        let body: Value = serde_json::from_str(p.stdout.trim()).expect("health JSON");
        assert!(body.is_object(), "{body}");
    }

    // an answer other than 200: the metrics port has no /api/v1/health
    let metrics = s.running.metrics_addr.expect("METRICS_PORT bound");
    let p = probe(&[port(metrics)]).await;
    assert_eq!(p.code, Some(1), "{}", p.stdout);
    assert!(p.stderr.contains("HTTP 404"), "{}", p.stderr);
    s.stop().await;
}

#[tokio::test]
async fn health_exits_1_when_nothing_listens() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let p = probe(&[port(free)]).await;
    assert_eq!(p.code, Some(1), "{}", p.stdout);
    assert!(p.stdout.is_empty(), "{}", p.stdout);
    assert!(
        p.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{}", free.port())),
        "{}",
        p.stderr
    );
}

#[tokio::test]
async fn health_speaks_https_with_api_tls_cert() {
    use common::tls_phone::{ca, leaf};
    let dir = common::temp_dir("probe-tls");
    let ca = ca("switchboard API test CA");
    leaf(&dir, "api", &["127.0.0.1"], &ca);
    // a certificate of the same CA the server does not serve
    leaf(&dir, "other", &["127.0.0.1"], &ca);
    let (cert, key) = (dir.join("api.pem"), dir.join("api.key"));
    let s = common::start_in(dir.clone(), |c| {
        c.api_tls.api_tls_cert = Some(cert.clone());
        c.api_tls.api_tls_key = Some(key.clone());
    })
    .await;
    let file = |p: &std::path::Path| p.display().to_string();
    let env = vec![
        port(s.api),
        ("API_TLS_CERT", file(&cert)),
        ("API_TLS_KEY", file(&key)),
    ];
    let p = probe(&env).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    let body: Value = serde_json::from_str(p.stdout.trim()).expect("health JSON");
    assert!(body.is_object(), "{body}");
    // the certificate alone is enough: the probe reads no key
    let p = probe(&[port(s.api), ("API_TLS_CERT", file(&cert))]).await;
    assert_eq!(p.code, Some(0), "{}", p.stderr);

    // the server shows another certificate than the file's: refused
    let p = probe(&[port(s.api), ("API_TLS_CERT", file(&dir.join("other.pem")))]).await;
    assert_eq!(p.code, Some(1), "{}", p.stdout);
    assert!(p.stderr.contains("TLS"), "{}", p.stderr);
    // plain HTTP to the HTTPS port gets no HTTP answer
    let p = probe(&[port(s.api)]).await;
    assert_eq!(p.code, Some(1), "{}", p.stdout);
    // an unreadable file is named
    let p = probe(&[port(s.api), ("API_TLS_CERT", file(&dir.join("gone.pem")))]).await;
    assert_eq!(p.code, Some(1), "{}", p.stdout);
    assert!(p.stderr.contains("API_TLS_CERT"), "{}", p.stderr);
    s.stop().await;
}
