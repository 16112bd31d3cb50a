//! Files that hold secrets are readable by their owner only: the generated
//! API token, the trunks file the API writes (outbound passwords, inbound
//! HA1s) and the SQLite database with its -wal and -shm files (users'
//! HA1s) — after a start, after a trunk PUT, and after a restart over files
//! an older version left world-readable.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{free_port, start, start_in};
use serde_json::json;

const FILES: [&str; 5] = [
    "api_token",
    "trunks.json",
    "switchboard.db",
    "switchboard.db-wal",
    "switchboard.db-shm",
];

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_on_disk_are_owner_only() {
    let s = start("secret-files", |c| c.api_token = None).await;
    assert!(!s.token.is_empty(), "a token was generated");
    let port = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let trunk = json!({"host": format!("127.0.0.1:{port}"), "username": "u",
                       "password": "provider-password", "inbound_auth": "digest",
                       "inbound_username": "in", "inbound_password": "inbound-password"});
    let (status, body) = s.http("PUT", "/api/v1/trunks/provider", Some(&trunk)).await;
    assert_eq!(status, 201, "{body}");
    // a user, so the database has been written to since it was opened
    s.create_user("alice", "alice-secret").await;
    for f in FILES {
        assert_eq!(mode(&s.dir.join(f)), 0o600, "{f}");
    }
    // Files left group/world-readable (by hand, or by an older version)
    // are tightened at the next start, and the trunks file at the next PUT.
    let dir = s.dir.clone();
    s.running.shutdown(Duration::from_secs(5)).await;
    for f in FILES {
        let p = dir.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let s = start_in(dir, |c| c.api_token = None).await;
    for f in ["api_token", "switchboard.db"] {
        assert_eq!(mode(&s.dir.join(f)), 0o600, "{f} after a restart");
    }
    let (status, body) = s
        .http(
            "PUT",
            "/api/v1/trunks/provider",
            Some(&json!({"host": format!("127.0.0.1:{port}")})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.create_user("bob", "bob-secret-1").await;
    for f in FILES {
        assert_eq!(mode(&s.dir.join(f)), 0o600, "{f} after a restart and a PUT");
    }
    s.stop().await;
}
