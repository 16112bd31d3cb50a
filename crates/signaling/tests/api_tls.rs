//! The REST API over HTTPS (API_TLS_CERT/API_TLS_KEY) on loopback, with a
//! test CA and certificates made by rcgen: the API answers over TLS with
//! its token; plain HTTP to the port, and a client that says nothing, get
//! no HTTP answer and are closed while the server keeps answering; a
//! renewed certificate is served without a restart; METRICS_PORT stays
//! plain HTTP; a key or certificate missing stops start-up naming the
//! variable.

#![allow(clippy::unwrap_used)] // test code may unwrap

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::tls_phone::{Ca, ca, leaf, tls_connect};
use rustls::pki_types::CertificateDer;
use switchboard_signaling::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer over HTTPS: status, body and the certificate presented.
struct Answer {
    status: u16,
    body: String,
    cert: CertificateDer<'static>,
}

/// A GET over TLS trusting `trust`, checked for the address.
async fn https(api: SocketAddr, trust: &Ca, path: &str, token: Option<&str>) -> Answer {
    https_send(api, trust, "GET", path, token, "").await
}

/// One request over TLS trusting `trust`, with a JSON body.
async fn https_send(
    api: SocketAddr,
    trust: &Ca,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Answer {
    let mut tls = tls_connect(api, trust).await.expect("TLS handshake");
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\n{auth}Connection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Answer {
        status,
        body: body.to_owned(),
        cert,
    }
}

/// Sends `bytes` (maybe none) on a plain TCP connection and reads until
/// the server closes it; panics if it stays open for `within`.
async fn plain_until_closed(to: SocketAddr, bytes: &[u8], within: Duration) -> Vec<u8> {
    let mut tcp = TcpStream::connect(to).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(within, tcp.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "still open after {within:?}: {raw:?}");
    raw
}

fn api_tls(c: &mut Config, dir: &Path) {
    c.api_tls.api_tls_cert = Some(dir.join("api.pem"));
    c.api_tls.api_tls_key = Some(dir.join("api.key"));
}

#[tokio::test]
async fn the_api_speaks_https_only() {
    let dir = common::temp_dir("api-tls");
    let ca = ca("switchboard API test CA");
    let first = leaf(&dir, "api", &["127.0.0.1", "localhost"], &ca);
    let s = common::start_in(dir.clone(), |c| {
        api_tls(c, &dir);
        c.metrics_port = Some(0);
        c.tls.tls_handshake_timeout = 1;
        c.tls.tls_reload_interval = 1;
    })
    .await;

    // with the token: the users; without: 401; the certificate is ours
    let user = r#"{"username": "alice", "password": "alice-secret"}"#;
    let r = https_send(s.api, &ca, "POST", "/api/v1/users", Some(&s.token), user).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = https(s.api, &ca, "/api/v1/users", Some(&s.token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"alice\""), "{}", r.body);
    assert_eq!(r.cert, first);
    let r = https(s.api, &ca, "/api/v1/users", None).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // plain HTTP on the HTTPS port: no HTTP answer, closed at once
    let started = Instant::now();
    let raw = plain_until_closed(
        s.api,
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(!raw.starts_with(b"HTTP/"), "an HTTP answer: {raw:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "not at once");
    // a client that sends nothing: closed after TLS_HANDSHAKE_TIMEOUT (1 s)
    let raw = plain_until_closed(s.api, b"", Duration::from_secs(5)).await;
    assert!(raw.is_empty(), "{raw:?}");
    // a stranger's CA: the handshake fails on the client's side
    let stranger = common::tls_phone::ca("some other CA");
    assert!(tls_connect(s.api, &stranger).await.is_err());
    // and the server answers as before
    let r = https(s.api, &ca, "/api/v1/health", None).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // METRICS_PORT stays plain HTTP
    let metrics = s.running.metrics_addr.unwrap();
    let (status, body) = common::http(metrics, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{body}");

    // a renewed certificate is served from the next handshake on
    let renewed = leaf(&dir, "api", &["127.0.0.1"], &ca);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = https(s.api, &ca, "/api/v1/health", None).await;
        assert_eq!(r.status, 200);
        if r.cert == renewed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a key that is not the certificate's: refused, the one in use stays
    std::fs::write(
        dir.join("api.key"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err = s.running.node.reload_api_tls().unwrap_err();
    assert!(
        format!("{err:#}").contains("API_TLS_CERT/API_TLS_KEY"),
        "{err:#}"
    );
    let r = https(s.api, &ca, "/api/v1/health", None).await;
    assert_eq!((r.status, r.cert), (200, renewed));
    s.stop().await;
}

#[tokio::test]
async fn start_up_names_the_missing_file() {
    let dir = common::temp_dir("api-tls-missing");
    let ca = ca("switchboard API test CA");
    leaf(&dir, "api", &["127.0.0.1"], &ca);
    let start = |tweak: &dyn Fn(&mut Config)| {
        let mut c = Config::for_tests(dir.clone());
        tweak(&mut c);
        async move {
            match switchboard_signaling::run(c).await {
                Ok(_) => panic!("started"),
                Err(e) => format!("{e:#}"),
            }
        }
    };
    // a certificate without its key, and the other way round
    let err = start(&|c| c.api_tls.api_tls_cert = Some(dir.join("api.pem"))).await;
    assert!(err.starts_with("API_TLS_KEY"), "{err}");
    let err = start(&|c| c.api_tls.api_tls_key = Some(dir.join("api.key"))).await;
    assert!(err.starts_with("API_TLS_CERT"), "{err}");
    // files that are not there, or not a certificate
    let err = start(&|c| {
        api_tls(c, &dir);
        c.api_tls.api_tls_key = Some(dir.join("missing.key"));
    })
    .await;
    assert!(
        err.contains("API_TLS_KEY") && err.contains("missing.key"),
        "{err}"
    );
    std::fs::write(dir.join("junk.pem"), "not a certificate").unwrap();
    let err = start(&|c| {
        api_tls(c, &dir);
        c.api_tls.api_tls_cert = Some(dir.join("junk.pem"));
    })
    .await;
    assert!(err.contains("API_TLS_CERT"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
