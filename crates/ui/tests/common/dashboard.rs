//! What the browser tests add to the shared harness: one stack per test
//! (real signaling, the UI pointed at it, a headless Chromium, all on
//! loopback), logging in through the form, and sipp as the phones (the
//! scenarios under `tests/sipp/`, the ones signaling's own tests run).

#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_browser_test::Browser;

use crate::common::{self, PASSWORD, Signaling};

/// Longest wait for anything the page shows: a live table refreshes every
/// 2 to 5 s and the UI's backend cache is 1 s old at most.
pub const WAIT: Duration = Duration::from_secs(15);

pub const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The backend's name in the UI.
pub const BACKEND: &str = "main";

/// Signaling, the UI pointed at it and a browser, each a test's own.
pub struct Stack {
    pub sig: Signaling,
    pub ui: switchboard_ui::Running,
    pub browser: Browser,
    /// The UI's data directory, removed by [`Stack::stop`].
    ui_dir: PathBuf,
}

impl Stack {
    /// Starts the three; the browser starts while signaling does.
    pub async fn start(name: &str) -> Stack {
        let (sig, browser) = tokio::join!(common::signaling(name), Browser::start());
        let browser = browser.expect("start the browser");
        let mut ui_dir = PathBuf::new();
        let ui = common::ui(
            &[(
                BACKEND,
                format!("http://{}", sig.api),
                Some(sig.token.as_str()),
            )],
            |c| ui_dir = c.data_dir.clone(),
        )
        .await;
        Stack {
            sig,
            ui,
            browser,
            ui_dir,
        }
    }

    /// The UI's URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ui.addr)
    }

    pub async fn goto(&self, path: &str) {
        self.browser
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Logs in through the login form, as an operator would, and waits for
    /// the overview.
    pub async fn login(&self) {
        self.goto("/login").await;
        self.submit_login(PASSWORD).await;
        self.wait_text("h1", "Overview").await;
    }

    /// Types `password` into the login form and sends it.
    pub async fn submit_login(&self, password: &str) {
        let b = &self.browser;
        b.fill("form.login input[name=username]", "admin")
            .await
            .expect("user name");
        b.fill("form.login input[name=password]", password)
            .await
            .expect("password");
        b.click("form.login button[type=submit]")
            .await
            .expect("log in");
    }

    /// Waits until the text of `css` holds `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        self.browser
            .wait_until_text(css, needle, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn wait_for(&self, css: &str) {
        self.browser
            .wait_for(css, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    pub async fn wait_absent(&self, css: &str) {
        self.browser
            .wait_until_absent(css, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Runs `js` in the page (a returned promise is awaited).
    pub async fn js(&self, js: &str) -> Value {
        self.browser
            .execute(js)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Clicks `css`; a live table may swap the element out between finding
    /// and clicking it, so a click that failed is tried again on the
    /// element found anew.
    pub async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            match self.browser.click(css).await {
                Ok(()) => return,
                Err(e) if tries < 3 => {
                    tries += 1;
                    eprintln!("click on {css:?} tried again: {e:#}");
                }
                Err(e) => panic!("{e:#}"),
            }
        }
    }

    /// Marks the page's window: [`Stack::same_page`] tells whether the
    /// page was reloaded or left since.
    pub async fn mark_page(&self) {
        self.js("window.__stay = 'same page'; return true").await;
    }

    pub async fn same_page(&self) -> bool {
        self.js("return window.__stay === 'same page'").await == json!(true)
    }

    /// A user on the backend, through its API.
    pub async fn user(&self, username: &str, password: &str, extension: &str, display_name: &str) {
        let body = json!({"username": username, "password": password,
                          "extension": extension, "display_name": display_name});
        let (status, v) = self.sig.api("POST", "/api/v1/users", Some(&body)).await;
        assert_eq!(status, 201, "user {username}: {v}");
    }

    /// An account on the backend, through its API.
    pub async fn account(&self, name: &str, domain: &str) {
        let body = json!({"name": name, "domain": domain, "max_concurrent_calls": 20});
        let (status, v) = self.sig.api("POST", "/api/v1/accounts", Some(&body)).await;
        assert_eq!(status, 201, "account {name}: {v}");
    }

    /// A trunk `name` to a provider that never answers (the returned
    /// socket, kept open for the trunk's life), through the API.
    pub async fn trunk(&self, name: &str, domain: &str) -> UdpSocket {
        let provider = UdpSocket::bind((LO, 0)).expect("bind");
        let body = json!({"host": provider.local_addr().expect("addr").to_string(),
                          "username": "acct42", "password": "trunk-secret",
                          "domain": domain, "strip": 1, "prefix": "+49"});
        let (status, v) = self
            .sig
            .api("PUT", &format!("/api/v1/trunks/{name}"), Some(&body))
            .await;
        assert_eq!(status, 201, "trunk {name}: {v}");
        provider
    }

    /// The embedded RTP manager's name.
    pub async fn manager(&self) -> String {
        let (status, managers) = self.sig.api("GET", "/api/v1/rtpmanagers", None).await;
        assert_eq!(status, 200, "{managers}");
        managers[0]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("no RTP manager: {managers}"))
            .to_owned()
    }

    /// The backend's live calls.
    pub async fn live_calls(&self) -> Vec<Value> {
        let (status, calls) = self.sig.api("GET", "/api/v1/calls", None).await;
        assert_eq!(status, 200, "{calls}");
        calls.as_array().cloned().unwrap_or_default()
    }

    pub async fn stop(self) {
        self.browser.close().await.expect("close the browser");
        self.ui.shutdown(Duration::from_secs(2)).await;
        self.sig.stop().await;
        let _ = std::fs::remove_dir_all(&self.ui_dir);
    }
}

/// A CSS attribute selector's quoted value.
pub fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A UDP port free on loopback now (sipp needs an explicit local port).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind((LO, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn scenario(name: &str) -> String {
    format!("{}/../../tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// sipp running one scenario in the background, with its own trace
/// directory (kept when it fails).
pub struct Sipp {
    name: String,
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Sipp {
    /// `scenario` (a file under `tests/sipp/`) on `127.0.0.1:port`, for one
    /// call; `server` is the peer of a client scenario (none for a phone
    /// waiting for its call).
    pub fn spawn(name: &str, server: Option<SocketAddr>, port: u16, extra: &[&str]) -> Sipp {
        assert!(
            std::process::Command::new("sipp")
                .arg("-v")
                .output()
                .is_ok(),
            "sipp not found: run scripts/ensure-deps.sh (Debian package sip-tester)"
        );
        let dir = common::temp_dir(&format!("sipp-{}", name.trim_end_matches(".xml")));
        let mut cmd = tokio::process::Command::new("sipp");
        cmd.current_dir(&dir);
        if let Some(server) = server {
            cmd.arg(server.to_string());
        }
        cmd.args(["-sf", &scenario(name)])
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", "1", "-timeout", "25s", "-timeout_error"])
            .args(["-nostdin", "-trace_err"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("sipp starts");
        Sipp {
            name: name.to_owned(),
            child,
            dir,
        }
    }

    /// Waits for sipp to end; it exits 0 only when the call went through
    /// every step of its scenario (every message it expected came, every
    /// check on them passed).
    pub async fn passed(self) -> bool {
        let out: Output =
            tokio::time::timeout(Duration::from_secs(40), self.child.wait_with_output())
                .await
                .expect("sipp finished in time")
                .expect("sipp ran");
        if out.status.success() {
            let _ = std::fs::remove_dir_all(&self.dir);
            return true;
        }
        let mut traces = String::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            traces.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        eprintln!(
            "sipp {} failed: {:?}\nstdout:\n{}\nstderr:\n{}\ntraces ({}):\n{traces}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.dir.display()
        );
        false
    }
}

/// A sipp phone registers `user` (digest auth, REGISTER → 401 → 200 with
/// its binding) from `127.0.0.1:port`, with User-Agent
/// `sipp-switchboard-test`.
pub async fn sipp_register(server: SocketAddr, port: u16, user: &str, password: &str) {
    let sipp = Sipp::spawn(
        "register_auth.xml",
        Some(server),
        port,
        &["-s", user, "-au", user, "-ap", password],
    );
    assert!(sipp.passed().await, "{user}'s sipp phone did not register");
}

/// sipp as `user` calling `to` from a port of its own: INVITE → 407,
/// INVITE with credentials, then it expects 180 and a 480 (the call ended
/// before it was answered), and ACKs that.
pub fn sipp_call_ended_while_ringing(
    server: SocketAddr,
    user: &str,
    password: &str,
    to: &str,
) -> Sipp {
    sipp_call("call_480_uac.xml", server, user, password, to)
}

/// sipp as `user` calling `to` with `scenario` (one of the `call_*_uac.xml`
/// scenarios: INVITE → 407, INVITE with credentials, then what the
/// scenario expects) from a port of its own.
pub fn sipp_call(scenario: &str, server: SocketAddr, user: &str, password: &str, to: &str) -> Sipp {
    // the digest uri: the Request-URI of the scenario's INVITE
    let auth_uri = format!("{to}@{server}");
    Sipp::spawn(
        scenario,
        Some(server),
        free_udp_port(),
        &[
            "-s",
            to,
            "-au",
            user,
            "-ap",
            password,
            "-auth_uri",
            &auth_uri,
        ],
    )
}

/// Waits until the backend has written `n` CDRs; returns them (newest
/// first, as the API lists them).
pub async fn cdrs(s: &Stack, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = s.sig.api("GET", "/api/v1/cdrs", None).await;
        assert_eq!(status, 200, "{v}");
        let cdrs = v["cdrs"].as_array().cloned().unwrap_or_default();
        if cdrs.len() >= n {
            assert_eq!(cdrs.len(), n, "{v}");
            return cdrs;
        }
        assert!(std::time::Instant::now() < deadline, "not {n} CDRs: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PNG's width and height as its IHDR chunk says, or why it is no PNG.
pub fn png_size(png: &[u8]) -> Result<(u32, u32), String> {
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") || png.len() < 24 || &png[12..16] != b"IHDR" {
        return Err(format!("not a PNG: starts {:?}", &png[..png.len().min(16)]));
    }
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    Ok((be(16), be(20)))
}

/// Where the screenshots go: the README's under `UPDATE_SCREENSHOTS=1`,
/// else a temporary directory.
pub fn screenshot_dir() -> (PathBuf, bool) {
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("the workspace root");
        (root.join("docs/screenshots"), true)
    } else {
        (common::temp_dir("screenshots"), false)
    }
}
