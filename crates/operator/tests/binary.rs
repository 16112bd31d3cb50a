//! The `switchboard-operator` binary: a configuration error stops it at
//! start with the variable named; `health` fails when nothing answers;
//! `dumpjob` prints the objects of a request body.

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

#[test]
fn dumpjob_prints_the_job_and_secret_of_a_body() {
    use std::io::Write;
    let run = |body: &str| {
        let mut child = Command::new(BIN)
            .env_clear()
            .env("JOB_IMAGE", "reg/call:1")
            .arg("dumpjob")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write");
        child.wait_with_output().expect("output")
    };
    let out = run(r#"{"dest": "600", "text": "hi", "sip_password": "pw"}"#);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let name = v["job"]["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("sbcall-"), "{name}");
    assert_eq!(
        v["job"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "reg/call:1"
    );
    assert_eq!(v["secret"]["metadata"]["name"], name);
    assert_eq!(v["secret"]["stringData"]["SIP_PASSWORD"], "pw");

    let out = run(r#"{"dest": "600"}"#);
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON");
    assert_eq!(err["detail"][0]["loc"][1], "text");
}
