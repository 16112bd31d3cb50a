//! `switchboard-ui health` (the image's HEALTHCHECK): exit 0 when the UI
//! its settings describe answers /health with 200, 1 with the reason when
//! nothing listens there.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{closed_port, ui};

/// Runs the probe off the runtime's thread (the UI serves on it).
async fn health(port: u16) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_switchboard-ui"))
            .arg("health")
            .env_clear()
            .env("UI_PORT", port.to_string())
            .env("UI_BIND", "0.0.0.0")
            .output()
            .expect("switchboard-ui runs")
    })
    .await
    .expect("the probe's thread")
}

#[tokio::test]
async fn health_exits_0_on_a_serving_ui_and_1_otherwise() {
    // a backend nobody serves: the UI's own health does not depend on it
    let gone = format!("http://127.0.0.1:{}", closed_port().await);
    let running = ui(&[("gone", gone, None)], |_| {}).await;
    let out = health(running.addr.port()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    running.shutdown(Duration::from_secs(2)).await;

    let out = health(closed_port().await).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot connect to 127.0.0.1:"), "{said}");
}
