//! The real binary, stopped with SIGTERM and started again on the same
//! DATA_DIR: registrations (written behind, flushed at shutdown) survive,
//! but not a browser's, whose WebSocket ended with the process, and the
//! process exits 0. SIGHUP reloads the dialplan, keeping the last
//! good one when the file is broken, and the TLS certificate.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ws_phone::ws_phone;
use common::{free_port, http, temp_dir};
use switchboard_sip_stack::target::TransportKind;
use switchboard_sip_stack::ua::{RegisterParams, Ua};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TOKEN: &str = "restart-test-token";

/// The server process, killed when dropped: a failing assertion must not
/// leave it running (holding the test's output open).
struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_with(dir: &Path, sip: u16, api: u16, extra: &[(&str, String)]) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_switchboard-signaling"))
            .env_clear()
            .env("PORT", sip.to_string())
            .env("BIND", "127.0.0.1")
            .env("API_PORT", api.to_string())
            .env("API_BIND", "127.0.0.1")
            .env("API_TOKEN", TOKEN)
            .env("DATA_DIR", dir)
            .env("DIALPLAN_PATH", dir.join("dialplan.json"))
            .env("TRUNKS_PATH", dir.join("trunks.json"))
            .env("LOGLEVEL", "warn")
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start switchboard-signaling"),
    )
}

async fn wait_healthy(api: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(api).await.is_ok() {
            let (status, _) = http(api, "GET", "/api/v1/health", None, None).await;
            if status == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the node's health like [`wait_healthy`]; false when the
/// process exited first (a port picked free was taken meanwhile by
/// another test's connection: the caller picks others).
async fn came_up(child: &mut Server, api: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("switchboard-signaling exited at start ({status}); trying other ports");
            return false;
        }
        if tokio::net::TcpStream::connect(api).await.is_ok() {
            let (status, _) = http(api, "GET", "/api/v1/health", None, None).await;
            if status == 200 {
                return true;
            }
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sigterm_and_wait(mut child: Server) -> i32 {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_sigterm_and_restart() {
    let dir = temp_dir("restart");
    let (sip, api) = (free_port(LO), free_port(LO));
    let api_addr = SocketAddr::new(LO, api);
    let ws = free_port(LO);
    let ws_env = [
        ("WS_PORT", ws.to_string()),
        ("WS_ALLOWED_ORIGINS", String::new()),
    ];
    let child = spawn_with(&dir, sip, api, &ws_env);
    wait_healthy(api_addr).await;

    for (user, ext) in [("judy", "1007"), ("kim", "1008")] {
        let (status, body) = http(
            api_addr,
            "POST",
            "/api/v1/users",
            Some(TOKEN),
            Some(&serde_json::json!({"username": user, "password": format!("{user}-secret"), "extension": ext})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // kim is a browser: her binding lives on her WebSocket
    let kim = ws_phone(SocketAddr::new(LO, ws), None, None).await;
    assert_eq!(kim.register("kim", "kim-secret").await.code, 200);

    let ua = Ua::bind(LO).await.expect("bind UA");
    let out = ua
        .register(&RegisterParams {
            server: SocketAddr::new(LO, sip),
            transport: TransportKind::Udp,
            user: "judy".into(),
            password: "judy-secret".into(),
            domain: None,
            expires: 900,
            prefer: None,
            extra_headers: vec!["User-Agent: restart-test".into()],
        })
        .await
        .expect("register");
    assert_eq!(out.code, 200, "{:?}", out.response);

    // SIGTERM right away: the binding may still be queued for the store,
    // so this checks the shutdown flush, not only the write-behind.
    assert_eq!(sigterm_and_wait(child), 0, "clean exit on SIGTERM");

    drop(kim);
    let child = spawn_with(&dir, sip, api, &ws_env);
    wait_healthy(api_addr).await;
    // the browser's socket ended with the process: her binding is not
    // restored (UNREGISTER_ON_CLOSE's default covers WS)
    let (status, body) = http(
        api_addr,
        "GET",
        "/api/v1/registrations/kim@switchboard",
        Some(TOKEN),
        None,
    )
    .await;
    assert!(
        status == 404 || body["contacts"].as_array().is_some_and(Vec::is_empty),
        "{status} {body}"
    );
    let (status, body) = http(
        api_addr,
        "GET",
        "/api/v1/registrations/judy@switchboard",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let contacts = body["contacts"].as_array().cloned().unwrap_or_default();
    assert_eq!(contacts.len(), 1, "{body}");
    assert_eq!(contacts[0]["user_agent"], "restart-test");
    let left = contacts[0]["expires_in"].as_u64().unwrap_or(0);
    assert!((880..=900).contains(&left), "expires_in {left}");
    assert!(
        contacts[0]["received"]
            .as_str()
            .is_some_and(|r| r.starts_with("udp:127.0.0.1:")),
        "{body}"
    );

    // SIGHUP reloads DIALPLAN_PATH; a broken file leaves the last good plan
    let good = r#"{"routes":[{"id":"reloaded","pattern":"9*","actions":[{"type":"hangup","params":{"reason":"busy"}}]}]}"#;
    std::fs::write(dir.join("dialplan.json"), good).unwrap();
    signal(&child, "-HUP");
    assert_eq!(route_ids(api_addr).await, vec!["reloaded".to_owned()]);
    std::fs::write(dir.join("dialplan.json"), "{ not json").unwrap();
    signal(&child, "-HUP");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(route_ids(api_addr).await, vec!["reloaded".to_owned()]);

    assert_eq!(sigterm_and_wait(child), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn signal(child: &Server, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The route ids of the dialplan in use, once they are what a reload made
/// them (polled: the reload is asynchronous).
async fn route_ids(api: SocketAddr) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..50 {
        let (_, plan) = http(api, "GET", "/api/v1/dialplan", Some(TOKEN), None).await;
        ids = plan["routes"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|x| x["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids == ["reloaded"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tls_certificate() {
    use common::tls_phone::{TlsPhone, ca, leaf};
    let dir = temp_dir("restart-tls");
    let ca = ca("switchboard test CA");
    let first = leaf(&dir, "server", &["127.0.0.1"], &ca);
    let mut attempt = 0;
    let (child, tls) = loop {
        attempt += 1;
        let (sip, api, tls) = (free_port(LO), free_port(LO), free_port(LO));
        let mut child = spawn_with(
            &dir,
            sip,
            api,
            &[
                ("TLS_CERT", dir.join("server.pem").display().to_string()),
                ("TLS_KEY", dir.join("server.key").display().to_string()),
                ("TLS_PORT", tls.to_string()),
                // SIGHUP only: no polling of the files
                ("TLS_RELOAD_INTERVAL", "0".into()),
            ],
        );
        if came_up(&mut child, SocketAddr::new(LO, api)).await {
            break (child, tls);
        }
        assert!(
            attempt < 3,
            "switchboard-signaling did not start three times"
        );
    };
    let tls = SocketAddr::new(LO, tls);
    assert_eq!(TlsPhone::connect(tls, &ca).await.server_cert, first);
    let second = leaf(&dir, "server", &["127.0.0.1"], &ca);
    // not polled: the files changed but the old certificate is served
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(TlsPhone::connect(tls, &ca).await.server_cert, first);
    signal(&child, "-HUP");
    let mut served = first.clone();
    for _ in 0..50 {
        served = TlsPhone::connect(tls, &ca).await.server_cert;
        if served != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, second, "SIGHUP did not bring the new certificate");
    assert_eq!(sigterm_and_wait(child), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
