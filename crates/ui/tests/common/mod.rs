//! Shared harness of the dashboard tests: a real signaling server started
//! in-process on loopback, the UI on loopback pointed at it, a raw HTTP/1.1
//! client that can speak from any 127.0.0.x address (so a test can be a
//! trusted proxy or an untrusted client), signaling's own test phone, and
//! baresip.

#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The SIP phone signaling's tests drive message by message.
#[path = "../../../signaling/tests/common/phone.rs"]
pub mod phone;

/// baresip as a test peer, as signaling's tests drive it.
#[path = "../../../signaling/tests/common/baresip.rs"]
pub mod baresip;

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-ui-test-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub struct Signaling {
    pub running: switchboard_signaling::Running,
    pub sip: SocketAddr,
    pub api: SocketAddr,
    pub token: String,
    pub dir: PathBuf,
}

/// Real signaling on loopback with a token no page may show.
pub async fn signaling(name: &str) -> Signaling {
    signaling_with(name, |_, _| {}).await
}

/// [`signaling`] with `tweak` applied to its settings (given its data
/// directory, for files such as certificates).
pub async fn signaling_with(
    name: &str,
    tweak: impl FnOnce(&mut switchboard_signaling::Config, &std::path::Path),
) -> Signaling {
    let dir = temp_dir(name);
    let mut config = switchboard_signaling::Config::for_tests(dir.clone());
    let token = format!("secret-token-{:x}", rand::random::<u64>());
    config.api_token = Some(token.clone());
    tweak(&mut config, &dir);
    let running = switchboard_signaling::run(config)
        .await
        .expect("signaling starts");
    Signaling {
        sip: running.sip_addrs[0],
        api: running.api_addr,
        token,
        running,
        dir,
    }
}

impl Signaling {
    pub async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(Value::to_string).unwrap_or_default();
        let r = request(
            self.api,
            ip("127.0.0.1"),
            method,
            path,
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await;
        let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    pub async fn stop(self) {
        self.running.shutdown(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const PASSWORD: &str = "admin-test-password";

/// The UI on 127.0.0.1 with `backends` (`name`, base URL, token).
pub async fn ui(
    backends: &[(&str, String, Option<&str>)],
    tweak: impl FnOnce(&mut switchboard_ui::Config),
) -> switchboard_ui::Running {
    let mut c = switchboard_ui::Config::for_tests(temp_dir("ui"));
    c.backends = Some(
        backends
            .iter()
            .map(|(n, u, _)| format!("{n}={u}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let tokens: Vec<String> = backends
        .iter()
        .filter_map(|(n, _, t)| t.map(|t| format!("{n}={t}")))
        .collect();
    if !tokens.is_empty() {
        c.backend_tokens = Some(tokens.join(","));
    }
    c.admin_password = Some(PASSWORD.into());
    tweak(&mut c);
    switchboard_ui::run(c).await.expect("ui starts")
}

/// A port nothing listens on.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request from local address `from`.
pub async fn request(
    to: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(from, 0)).expect("bind client");
    let mut stream = sock.connect(to).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A logged-in browser.
pub struct Browser {
    pub ui: SocketAddr,
    pub cookie: String,
    pub csrf: String,
    /// Every body this browser was served (checked for tokens).
    pub seen: Vec<String>,
}

/// Logs in as admin from 127.0.0.1.
pub async fn login(ui: SocketAddr) -> Browser {
    let body = format!("username=admin&password={PASSWORD}");
    let r = request(
        ui,
        ip("127.0.0.1"),
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await;
    assert_eq!(r.status, 303, "login: {r:?}");
    let set = r.header("set-cookie").expect("a session cookie");
    let cookie = set.split(';').next().expect("name=value").to_owned();
    let mut b = Browser {
        ui,
        cookie,
        csrf: String::new(),
        seen: Vec::new(),
    };
    let page = b.get("/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    b.csrf = csrf_of(&page.body);
    b
}

/// The CSRF token a page's forms carry.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

impl Browser {
    pub async fn get(&mut self, path: &str) -> Resp {
        let r = request(
            self.ui,
            ip("127.0.0.1"),
            "GET",
            path,
            &[("Cookie", self.cookie.as_str())],
            "",
        )
        .await;
        self.seen.push(r.body.clone());
        r
    }

    /// A form post; `with_csrf` adds the token as the form field.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)], with_csrf: bool) -> Resp {
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone();
        if with_csrf {
            fields.push(("csrf", &csrf));
        }
        let body = serde_urlencoded::to_string(&fields).expect("form");
        let r = request(
            self.ui,
            ip("127.0.0.1"),
            "POST",
            path,
            &[
                ("Cookie", self.cookie.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &body,
        )
        .await;
        self.seen.push(r.body.clone());
        r
    }
}
