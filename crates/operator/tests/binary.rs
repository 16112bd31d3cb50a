//! The `switchboard-operator` binary: a configuration error stops it at
//! start with the variable named; `health` fails when nothing answers.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-operator");

#[test]
fn a_bad_setting_stops_it_naming_the_variable() {
    for (k, v) in [("JOB_TTL_SECONDS", "an hour"), ("NODE_SELECTOR", "zone")] {
        let out = Command::new(BIN)
            .env_clear()
            .env(k, v)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(64), "{k}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(k), "{k}: {err}");
    }
}

#[test]
fn health_fails_when_nothing_listens() {
    // a port nothing listens on: bind one, note it, let it go
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = Command::new(BIN)
        .env_clear()
        .env("PORT", port.to_string())
        .arg("health")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
}
