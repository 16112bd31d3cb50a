//! The Job's container spec runs: a `POST /call` body goes through
//! switchboard-operator's own validation and Job builder, the container's
//! environment is resolved as the kubelet would (the request's password
//! from the per-Job Secret, the server, port, user and transport from the
//! `sip-credentials` Secret the request left them to), and
//! `switchboard-call` runs with exactly that environment and nothing else
//! against switchboard-signaling on loopback: the desk phone it calls hears
//! it, and the report on its last line is what `GET /jobs/{name}` shows.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::phone::SipPhone;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchboard_operator::{CallRequest, OperatorConfig, build_job, resolve_env};
use switchboard_sip::message::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_job_env_places_the_call() {
    let n = node("job-env").await;
    let sip = n.sip;
    let desk = SipPhone::bind(LO, sip).await;
    assert_eq!(desk.register("desk", "desk-secret", &[]).await.code, 200);

    // the request a sipstuff user sends, the password in it
    let request = CallRequest::from_json(&serde_json::json!({
        "dest": "1002",
        "text": "The backup failed",
        "sip_password": "agent-secret",
        "timeout": 20,
        "post_delay": 0.5,
    }))
    .unwrap();
    let (job, secret) = build_job(&request, &OperatorConfig::default(), "sbcall-test-0001");
    let per_job = secret.expect("the request's password goes into a per-Job Secret");
    // what the cluster's sip-credentials Secret holds
    let credentials = Secret {
        metadata: ObjectMeta {
            name: Some("sip-credentials".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("SIP_SERVER".to_owned(), sip.ip().to_string()),
            ("SIP_PORT".to_owned(), sip.port().to_string()),
            ("SIP_USER".to_owned(), "agent".to_owned()),
            ("SIP_PASSWORD".to_owned(), "not-this-one".to_owned()),
            ("SIP_TRANSPORT".to_owned(), "udp".to_owned()),
        ])),
        ..Secret::default()
    };
    let env = resolve_env(&job, &[per_job, credentials]).unwrap();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names.contains(&"CALL_DEST") && names.contains(&"SIP_PASSWORD"),
        "{names:?}"
    );
    assert_eq!(
        env.iter()
            .find(|(k, _)| k == "SIP_PASSWORD")
            .map(|(_, v)| v.as_str()),
        Some("agent-secret"),
        "the request's password wins over the Secret's"
    );

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-call"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true)
        .output();
    let child = tokio::spawn(child);
    let invite = desk
        .request_within(Method::Invite, Duration::from_secs(15))
        .await;
    // the phone sends silence (latching) and counts the agent's loud frames
    let media = answer_with_media(&desk, &invite).await;
    take_bye(&desk).await;
    let out = child.await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["outcome"], "answered");
    assert_eq!(report["registered"], true);
    assert_eq!(report["played"][0]["what"], "The backup failed");
    let heard = media.loud_frames();
    assert!(
        heard > 20,
        "the desk phone heard the agent speak: {heard} loud frames"
    );
    n.running.shutdown(Duration::from_secs(2)).await;
}
