//! Shared harness for the signaling integration tests: the real server
//! started in-process on loopback with ephemeral ports, a minimal HTTP
//! client for its REST API, and sipp as the SIP peer.

#![allow(dead_code, unreachable_pub)]

pub mod baresip;
pub mod cluster;
pub mod fake_k8s;
pub mod manifests;
pub mod phone;
pub mod servers;
pub mod tls_phone;
pub mod ws_phone;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use switchboard_signaling::{Config, Running, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct TestServer {
    pub running: Running,
    pub sip: SocketAddr,
    pub api: SocketAddr,
    pub token: String,
    pub dir: PathBuf,
}

/// A fresh data directory under the system temp dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-test-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub async fn start(name: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = temp_dir(name);
    start_in(dir, tweak).await
}

pub async fn start_in(dir: PathBuf, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::for_tests(dir.clone());
    tweak(&mut config);
    let running = run(config).await.expect("server starts");
    let sip = running.sip_addrs[0];
    let api = running.api_addr;
    let token = running.api_token.clone();
    TestServer {
        running,
        sip,
        api,
        token,
        dir,
    }
}

impl TestServer {
    /// One HTTP/1.1 request to the API; returns status and parsed JSON
    /// (Value::Null for an empty body, a string for non-JSON).
    pub async fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(self.api, method, path, Some(&self.token), body).await
    }

    pub async fn create_user(&self, username: &str, password: &str) -> Value {
        let (status, body) = self
            .http(
                "POST",
                "/api/v1/users",
                Some(&serde_json::json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, 201, "create user {username}: {body}");
        body
    }

    /// The contacts the API lists for `user` in the default realm.
    pub async fn contacts(&self, user: &str) -> Vec<Value> {
        let (status, body) = self
            .http(
                "GET",
                &format!("/api/v1/registrations/{user}@switchboard"),
                None,
            )
            .await;
        match status {
            200 => body["contacts"].as_array().cloned().unwrap_or_default(),
            404 => Vec::new(),
            other => panic!("unexpected status {other}: {body}"),
        }
    }

    pub async fn stop(self) {
        self.running.shutdown(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    http_raw(addr, method, path, token, "application/json", &body).await
}

pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect API");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
    };
    (status, value)
}

/// A UDP port free on `ip` right now (sipp needs an explicit local port).
pub fn free_port(ip: IpAddr) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn scenario(name: &str) -> String {
    format!("{}/../../tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs one sipp scenario against `server` from `local_ip`; extra args are
/// appended. sipp exits 0 only when every call passed every check.
pub async fn sipp(name: &str, server: SocketAddr, local_ip: IpAddr, extra: &[&str]) -> Output {
    sipp_on(name, server, local_ip, free_port(local_ip), extra).await
}

/// [`sipp`] from a given local port (a phone that registers, then answers
/// on the same port).
pub async fn sipp_on(
    name: &str,
    server: SocketAddr,
    local_ip: IpAddr,
    port: u16,
    extra: &[&str],
) -> Output {
    let which = std::process::Command::new("sipp").arg("-v").output();
    assert!(
        which.is_ok(),
        "sipp not found: run scripts/ensure-deps.sh (Debian package sip-tester)"
    );
    let remote = match server {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let trace_dir = temp_dir(&format!("sipp-{}", name.trim_end_matches(".xml")));
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.current_dir(&trace_dir)
        .arg(&remote)
        .args(["-sf", &scenario(name)])
        .args(["-i", &local_ip.to_string()])
        .args(["-p", &port.to_string()])
        .args(["-m", "1", "-l", "1", "-r", "10"]);
    if let Some(uri) = auth_uri(name, &remote, extra) {
        cmd.args(["-auth_uri", &uri]);
    }
    cmd.args([
        "-timeout",
        "20s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
    ])
    .args(extra)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(40), cmd.output())
        .await
        .expect("sipp finished in time")
        .expect("sipp runs");
    if !out.status.success() {
        let mut errors = String::new();
        if let Ok(entries) = std::fs::read_dir(&trace_dir) {
            for e in entries.flatten() {
                if let Ok(s) = std::fs::read_to_string(e.path()) {
                    errors.push_str(&s);
                }
            }
        }
        eprintln!(
            "sipp {name} failed: {:?}\nstdout:\n{}\nstderr:\n{}\nerrors:\n{errors}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if out.status.success() {
        let _ = std::fs::remove_dir_all(&trace_dir);
    } else {
        eprintln!("sipp traces kept in {}", trace_dir.display());
    }
    out
}

/// sipp writes `sip:<remote ip>:<remote port>` as the digest `uri` of
/// every request it authenticates, whatever its Request-URI (and without
/// brackets around an IPv6 address), unless told otherwise with
/// `-auth_uri`. The server holds the digest `uri` to the Request-URI (RFC
/// 3261 §22.4), so the Request-URI of the scenario's authenticated requests
/// is passed here: `[service]@[remote_ip]:[remote_port]` for the INVITE
/// scenarios (the service from `-s`, sipp's default "service" without it),
/// `[remote_ip]:[remote_port]` for the REGISTER ones (only IPv6 needs it).
fn auth_uri(name: &str, remote: &str, extra: &[&str]) -> Option<String> {
    let text = std::fs::read_to_string(scenario(name)).ok()?;
    if extra.contains(&"-auth_uri") || !text.contains("[authentication") {
        return None;
    }
    if text.contains("INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0") {
        let service = extra
            .iter()
            .position(|a| *a == "-s")
            .and_then(|i| extra.get(i + 1))
            .copied()
            .unwrap_or("service");
        return Some(format!("{service}@{remote}"));
    }
    remote.starts_with('[').then(|| remote.to_owned())
}

/// sipp as a phone waiting for one call on `ip:port` (server mode), in the
/// background; `wait_sipp` collects its result.
pub fn spawn_sipp_uas(name: &str, ip: IpAddr, port: u16) -> tokio::process::Child {
    spawn_sipp_uas_with(name, ip, port, &[])
}

/// [`spawn_sipp_uas`] with extra sipp arguments.
pub fn spawn_sipp_uas_with(
    name: &str,
    ip: IpAddr,
    port: u16,
    extra: &[&str],
) -> tokio::process::Child {
    let trace_dir = temp_dir(&format!("sipp-uas-{}", name.trim_end_matches(".xml")));
    tokio::process::Command::new("sipp")
        .current_dir(&trace_dir)
        .args(["-sf", &scenario(name)])
        .args(["-i", &ip.to_string()])
        .args(["-p", &port.to_string()])
        .args([
            "-m",
            "1",
            "-timeout",
            "25s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp starts")
}

/// Waits for a background sipp; true when it exited 0.
pub async fn wait_sipp(child: tokio::process::Child, name: &str) -> bool {
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("sipp finished in time")
        .expect("sipp ran");
    if !out.status.success() {
        eprintln!(
            "sipp {name} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// A GET with an `Accept` header; returns status, Content-Type and body.
pub async fn get_accept(
    addr: SocketAddr,
    path: &str,
    token: &str,
    accept: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect API");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let ct = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ct, body.to_owned())
}

/// A GET with the token: status, the response's headers (names in lower
/// case) and the JSON body.
pub async fn get_with_headers(
    s: &TestServer,
    path: &str,
) -> (u16, std::collections::HashMap<String, String>, Value) {
    let mut stream = tokio::net::TcpStream::connect(s.api)
        .await
        .expect("connect API");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        s.token
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, headers, value)
}

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Users 1001 (caller) and 1002 (callee); the callee registered from
/// `port` with sipp. Returns the server.
pub async fn two_phones(name: &str, port: u16, dial_timeout: u64) -> TestServer {
    let s = start(name, |_| {}).await;
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let (status, body) = s
            .http(
                "POST",
                "/api/v1/users",
                Some(&serde_json::json!({"username": user, "password": format!("{user}-secret"), "extension": ext})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let plan = serde_json::json!({"version": "1.0", "routes": [
        {"id": "busy-test", "pattern": "1999", "priority": 5,
         "actions": [{"type": "hangup", "params": {"reason": "busy"}}]},
        {"id": "extensions", "pattern": "1*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": "user/${destination}", "timeout": dial_timeout}}]},
        {"id": "direct", "pattern": "2*", "priority": 50, "direct_media": true,
         "actions": [{"type": "dial", "params": {"target": "user/1002", "timeout": dial_timeout}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
    let reg = sipp_on(
        "register_auth.xml",
        s.sip,
        LO,
        port,
        &["-s", "bob", "-au", "bob", "-ap", "bob-secret"],
    )
    .await;
    assert!(reg.status.success(), "callee registration failed");
    s
}

pub async fn call(s: &TestServer, scenario: &str, to: &str) -> bool {
    sipp(
        scenario,
        s.sip,
        LO,
        &["-s", to, "-au", "alice", "-ap", "alice-secret"],
    )
    .await
    .status
    .success()
}

/// The CDR of the one call the server saw, once written.
pub async fn only_cdr(s: &TestServer) -> Value {
    for _ in 0..100 {
        let (status, body) = s.http("GET", "/api/v1/cdrs", None).await;
        assert_eq!(status, 200, "{body}");
        if let Some(list) = body["cdrs"].as_array()
            && !list.is_empty()
        {
            assert_eq!(list.len(), 1, "{body}");
            return list[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no CDR written");
}

/// No call is left: a call leaves the list once its last transaction is
/// answered and its CDR is with the writer, a moment after its BYE's 200.
pub async fn no_live_calls(s: &TestServer) {
    let mut body = Value::Null;
    for _ in 0..40 {
        let (status, b) = s.http("GET", "/api/v1/calls", None).await;
        assert_eq!(status, 200);
        body = b;
        if body == serde_json::json!([]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body, serde_json::json!([]), "calls left behind");
}

/// A counter or gauge from `/metrics` (the first line starting with
/// `line_prefix`).
pub async fn metric(s: &TestServer, line_prefix: &str) -> Option<u64> {
    let (_, body) = s.http("GET", "/metrics", None).await;
    body.as_str()?
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits (5 s at most) until the metric line starting with `prefix`
/// reads `want`; returns what it read last.
pub async fn metric_becomes(s: &TestServer, prefix: &str, want: u64) -> Option<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = metric(s, prefix).await;
        if now == Some(want) || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
