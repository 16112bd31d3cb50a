//! `POST /call` against a fake Kubernetes API that records what it receives:
//! for each request of the table, the Job and the Secret sent are exactly
//! the objects written out here.

mod common;

use axum::http::StatusCode;
use common::{FakeK8s, post_call, state};
use serde_json::{Value, json};
use switchboard_operator::OperatorConfig;

const NS: &str = "calls";

fn cfg() -> OperatorConfig {
    OperatorConfig {
        namespace: NS.into(),
        job_image: "docker.io/library/switchboard-call:t1".into(),
        ..OperatorConfig::default()
    }
}

fn lit(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// A SIP setting not in the request: the shared Secret's key, optional.
fn fallback(name: &str, secret: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name, "optional": true}}})
}

/// A password from the request: the per-Job Secret's key, required.
fn per_job(name: &str, job: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": job, "key": name, "optional": false}}})
}

const SIP_KEYS: [&str; 15] = [
    "SIP_SERVER",
    "SIP_PORT",
    "SIP_USER",
    "SIP_PASSWORD",
    "SIP_TRANSPORT",
    "SIP_SRTP",
    "SIP_TLS_VERIFY_SERVER",
    "SIP_STUN_SERVERS",
    "SIP_ICE_ENABLED",
    "SIP_TURN_SERVER",
    "SIP_TURN_USERNAME",
    "SIP_TURN_PASSWORD",
    "SIP_TURN_TRANSPORT",
    "SIP_KEEPALIVE_SEC",
    "SIP_PUBLIC_ADDRESS",
];

fn all_fallbacks(secret: &str) -> Vec<Value> {
    SIP_KEYS.iter().map(|k| fallback(k, secret)).collect()
}

fn labels() -> Value {
    json!({
        "app.kubernetes.io/name": "switchboard-call",
        "app.kubernetes.io/managed-by": "switchboard-operator",
        "app.kubernetes.io/part-of": "switchboard",
        "app.kubernetes.io/component": "sip-caller",
    })
}

/// The Job of the default configuration with `env`; `pod` entries are set
/// on (or, when null, removed from) the pod spec, `container` entries on
/// the call container.
fn job(name: &str, env: Vec<Value>, pod: Value, container: Value) -> Value {
    let mut c = json!({
        "name": "sip-caller",
        "image": "docker.io/library/switchboard-call:t1",
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    });
    for (k, v) in container.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    let mut spec = json!({
        "containers": [c],
        "restartPolicy": "Never",
        "hostNetwork": true,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
    });
    for (k, v) in pod.as_object().into_iter().flatten() {
        if v.is_null() {
            spec.as_object_mut().map(|m| m.remove(k));
        } else {
            spec[k] = v.clone();
        }
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": labels()},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels()}, "spec": spec},
        },
    })
}

/// The per-Job Secret owned by the Job the fake created (uid-1).
fn secret(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name, "namespace": NS, "labels": labels(),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                 "uid": "uid-1", "controller": true}],
        },
        "immutable": true,
        "stringData": data,
        "type": "Opaque",
    })
}

/// POSTs `body`, then checks the one Job and the Secrets the fake got.
async fn check(
    cfg: OperatorConfig,
    body: Value,
    want_job: impl Fn(&str) -> Value,
    want_secret: impl Fn(&str) -> Option<Value>,
) -> Value {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg, Some(&fake));
    let (code, answer) = post_call(&st, &body).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let name = answer["job_name"].as_str().expect("job_name").to_owned();
    assert_eq!(
        answer,
        json!({"job_name": name, "namespace": NS, "status": "created"})
    );
    let jobs = fake.posted("/jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0], want_job(&name), "the Job sent");
    let secrets = fake.posted("/secrets");
    match want_secret(&name) {
        Some(s) => assert_eq!(secrets, vec![s], "the Secret sent"),
        None => assert!(secrets.is_empty(), "no Secret: {secrets:?}"),
    }
    jobs[0].clone()
}

#[tokio::test]
async fn minimal_request() {
    check(
        cfg(),
        json!({"dest": "+4912345", "text": "Hello world"}),
        |n| {
            let mut env = vec![
                lit("CALL_DEST", "+4912345"),
                lit("CALL_TEXT", "Hello world"),
                lit("CALL_TIMEOUT", "60"),
            ];
            env.extend(all_fallbacks("sip-credentials"));
            job(n, env, json!({}), json!({}))
        },
        |_| None,
    )
    .await;
}

#[tokio::test]
async fn every_field() {
    let body = json!({
        "dest": "sip:600@pbx.example", "wav": "/data/recordings/in.wav",
        "sip_server": "pbx.example", "sip_port": 5061, "sip_user": "alice",
        "sip_password": "s3cret-sip", "sip_transport": "tls", "sip_srtp": "mandatory",
        "sip_tls_verify": false, "stun_servers": "stun1:3478,stun2:3478", "ice_enabled": true,
        "turn_server": "turn.example:3478", "turn_username": "bob",
        "turn_password": "s3cret-turn", "turn_transport": "tcp", "keepalive_sec": 30,
        "public_address": "203.0.113.5", "timeout": 120, "pre_delay": 1.5,
        "post_delay": 2, "wait_for_silence": 0.5, "inter_delay": 3.25, "repeat": 3,
        "tts_model": "de_DE-thorsten-high", "tts_sample_rate": 16000,
        "tts_data_dir": "/data/piper/x", "stt_model": "small", "stt_language": "de",
        "stt_data_dir": "/data/whisper/y", "record": "/data/recordings/out.wav",
        "transcribe": true, "verbose": true, "node_selector": {"zone": "b"},
    });
    let sent = check(
        cfg(),
        body,
        |n| {
            let env = vec![
                lit("CALL_DEST", "sip:600@pbx.example"),
                lit("CALL_WAV", "/data/recordings/in.wav"),
                lit("CALL_TIMEOUT", "120"),
                lit("CALL_PRE_DELAY", "1.5"),
                lit("CALL_INTER_DELAY", "3.25"),
                lit("CALL_POST_DELAY", "2"),
                lit("CALL_WAIT_FOR_SILENCE", "0.5"),
                lit("CALL_REPEAT", "3"),
                lit("TTS_MODEL", "de_DE-thorsten-high"),
                lit("TTS_SAMPLE_RATE", "16000"),
                lit("TTS_DATA_DIR", "/data/piper/x"),
                lit("STT_MODEL", "small"),
                lit("STT_LANGUAGE", "de"),
                lit("STT_DATA_DIR", "/data/whisper/y"),
                lit("CALL_RECORD", "/data/recordings/out.wav"),
                lit("CALL_TRANSCRIBE", "true"),
                lit("CALL_VERBOSE", "true"),
                lit("SIP_SERVER", "pbx.example"),
                lit("SIP_PORT", "5061"),
                lit("SIP_USER", "alice"),
                per_job("SIP_PASSWORD", n),
                lit("SIP_TRANSPORT", "tls"),
                lit("SIP_SRTP", "mandatory"),
                lit("SIP_TLS_VERIFY_SERVER", "false"),
                lit("SIP_STUN_SERVERS", "stun1:3478,stun2:3478"),
                lit("SIP_ICE_ENABLED", "true"),
                lit("SIP_TURN_SERVER", "turn.example:3478"),
                lit("SIP_TURN_USERNAME", "bob"),
                per_job("SIP_TURN_PASSWORD", n),
                lit("SIP_TURN_TRANSPORT", "tcp"),
                lit("SIP_KEEPALIVE_SEC", "30"),
                lit("SIP_PUBLIC_ADDRESS", "203.0.113.5"),
                lit("SIP_TURN_ENABLED", "true"),
            ];
            job(n, env, json!({"nodeSelector": {"zone": "b"}}), json!({}))
        },
        |n| {
            Some(secret(
                n,
                json!({"SIP_PASSWORD": "s3cret-sip", "SIP_TURN_PASSWORD": "s3cret-turn"}),
            ))
        },
    )
    .await;
    let text = sent.to_string();
    assert!(!text.contains("s3cret"), "a password in the Job: {text}");
}

#[tokio::test]
async fn settings_not_given_fall_back_to_the_named_secret() {
    let cfg = OperatorConfig {
        sip_secret_name: "my-sip".into(),
        host_network: false,
        job_ttl_seconds: 60,
        job_backoff_limit: 2,
        ..cfg()
    };
    check(
        cfg,
        json!({"dest": "600", "text": "hi", "sip_server": "10.0.0.1", "sip_tls_verify": true,
               "keepalive_sec": 0, "timeout": "30"}),
        |n| {
            let mut env = vec![
                lit("CALL_DEST", "600"),
                lit("CALL_TEXT", "hi"),
                lit("CALL_TIMEOUT", "30"),
            ];
            for k in SIP_KEYS {
                env.push(match k {
                    "SIP_SERVER" => lit(k, "10.0.0.1"),
                    "SIP_TLS_VERIFY_SERVER" => lit(k, "true"),
                    "SIP_KEEPALIVE_SEC" => lit(k, "0"),
                    _ => fallback(k, "my-sip"),
                });
            }
            let mut j = job(
                n,
                env,
                json!({"hostNetwork": false, "dnsPolicy": null}),
                json!({}),
            );
            j["spec"]["backoffLimit"] = json!(2);
            j["spec"]["ttlSecondsAfterFinished"] = json!(60);
            j
        },
        |_| None,
    )
    .await;
}

#[tokio::test]
async fn a_password_in_the_request_goes_to_a_secret_owned_by_the_job() {
    let sent = check(
        cfg(),
        json!({"dest": "600", "text": "hi", "sip_user": "alice", "sip_password": "pw-only-here"}),
        |n| {
            let mut env = vec![
                lit("CALL_DEST", "600"),
                lit("CALL_TEXT", "hi"),
                lit("CALL_TIMEOUT", "60"),
            ];
            for k in SIP_KEYS {
                env.push(match k {
                    "SIP_USER" => lit(k, "alice"),
                    "SIP_PASSWORD" => per_job(k, n),
                    _ => fallback(k, "sip-credentials"),
                });
            }
            job(n, env, json!({}), json!({}))
        },
        |n| Some(secret(n, json!({"SIP_PASSWORD": "pw-only-here"}))),
    )
    .await;
    assert!(!sent.to_string().contains("pw-only-here"));
}

#[tokio::test]
async fn volumes_with_run_as_user_get_the_fix_permissions_init_container() {
    let cfg = OperatorConfig {
        piper_data_dir: Some("/mnt/nfs/piper".into()),
        whisper_data_dir: Some("/mnt/nfs/whisper".into()),
        recording_dir: Some("/mnt/nfs/rec".into()),
        run_as_user: Some(1200),
        run_as_group: Some(1201),
        fs_group: Some(1202),
        ..cfg()
    };
    check(
        cfg,
        json!({"dest": "600", "text": "hi", "record": "/data/recordings/a.wav"}),
        |n| {
            let mut env = vec![
                lit("CALL_DEST", "600"),
                lit("CALL_TEXT", "hi"),
                lit("CALL_TIMEOUT", "60"),
                lit("CALL_RECORD", "/data/recordings/a.wav"),
            ];
            env.extend(all_fallbacks("sip-credentials"));
            env.push(lit("PIPER_DATA_DIR", "/data/piper"));
            env.push(lit("WHISPER_DATA_DIR", "/data/whisper"));
            env.push(lit("RECORDING_DIR", "/data/recordings"));
            let mounts = json!([
                {"name": "piper-data", "mountPath": "/data/piper"},
                {"name": "whisper-data", "mountPath": "/data/whisper"},
                {"name": "recording-data", "mountPath": "/data/recordings"},
            ]);
            job(
                n,
                env,
                json!({
                    "initContainers": [{
                        "name": "fix-permissions",
                        "image": "busybox:latest",
                        "command": ["sh", "-c",
                                    "chown -R 1200:1202 /data/piper /data/whisper /data/recordings"],
                        "volumeMounts": mounts.clone(),
                        "securityContext": {"runAsUser": 0},
                    }],
                    "securityContext": {"runAsUser": 1200, "runAsGroup": 1201, "fsGroup": 1202},
                    "volumes": [
                        {"name": "piper-data",
                         "hostPath": {"path": "/mnt/nfs/piper", "type": "DirectoryOrCreate"}},
                        {"name": "whisper-data",
                         "hostPath": {"path": "/mnt/nfs/whisper", "type": "DirectoryOrCreate"}},
                        {"name": "recording-data",
                         "hostPath": {"path": "/mnt/nfs/rec", "type": "DirectoryOrCreate"}},
                    ],
                }),
                json!({"volumeMounts": mounts}),
            )
        },
        |_| None,
    )
    .await;
}

#[tokio::test]
async fn run_as_user_without_volumes_has_no_init_container() {
    check(
        OperatorConfig {
            run_as_user: Some(1000),
            ..cfg()
        },
        json!({"dest": "600", "text": "hi"}),
        |n| {
            let mut env = vec![
                lit("CALL_DEST", "600"),
                lit("CALL_TEXT", "hi"),
                lit("CALL_TIMEOUT", "60"),
            ];
            env.extend(all_fallbacks("sip-credentials"));
            job(
                n,
                env,
                json!({"securityContext": {"runAsUser": 1000}}),
                json!({}),
            )
        },
        |_| None,
    )
    .await;
}

#[tokio::test]
async fn without_fs_group_the_directories_go_to_the_run_as_group() {
    let cfg = OperatorConfig {
        recording_dir: Some("/srv/rec".into()),
        run_as_user: Some(1200),
        run_as_group: Some(1201),
        ..cfg()
    };
    check(
        cfg,
        json!({"dest": "600", "text": "hi"}),
        |n| {
            let mut env = vec![
                lit("CALL_DEST", "600"),
                lit("CALL_TEXT", "hi"),
                lit("CALL_TIMEOUT", "60"),
            ];
            env.extend(all_fallbacks("sip-credentials"));
            env.push(lit("RECORDING_DIR", "/data/recordings"));
            let mounts = json!([{"name": "recording-data", "mountPath": "/data/recordings"}]);
            job(
                n,
                env,
                json!({
                    "initContainers": [{
                        "name": "fix-permissions",
                        "image": "busybox:latest",
                        "command": ["sh", "-c", "chown -R 1200:1201 /data/recordings"],
                        "volumeMounts": mounts.clone(),
                        "securityContext": {"runAsUser": 0},
                    }],
                    "securityContext": {"runAsUser": 1200, "runAsGroup": 1201},
                    "volumes": [{"name": "recording-data",
                                 "hostPath": {"path": "/srv/rec", "type": "DirectoryOrCreate"}}],
                }),
                json!({"volumeMounts": mounts}),
            )
        },
        |_| None,
    )
    .await;
}

#[tokio::test]
async fn node_selector_from_the_config_overridden_or_cleared_by_the_request() {
    let cfg = OperatorConfig {
        node_selector: Some([("mayplacecalls".to_owned(), "true".to_owned())].into()),
        ..cfg()
    };
    for (given, want) in [
        (None, json!({"mayplacecalls": "true"})),
        (Some(json!({"zone": "b"})), json!({"zone": "b"})),
        (Some(json!({})), Value::Null),
    ] {
        let mut body = json!({"dest": "600", "text": "hi"});
        if let Some(g) = given.clone() {
            body["node_selector"] = g;
        }
        check(
            cfg.clone(),
            body,
            |n| {
                let mut env = vec![
                    lit("CALL_DEST", "600"),
                    lit("CALL_TEXT", "hi"),
                    lit("CALL_TIMEOUT", "60"),
                ];
                env.extend(all_fallbacks("sip-credentials"));
                job(n, env, json!({"nodeSelector": want.clone()}), json!({}))
            },
            |_| None,
        )
        .await;
    }
}

#[tokio::test]
async fn a_secret_that_cannot_be_created_takes_its_job_with_it() {
    let fake = FakeK8s::start(NS).await;
    fake.fail_secrets(true);
    let st = state(cfg(), Some(&fake));
    let (code, answer) = post_call(
        &st,
        &json!({"dest": "600", "text": "hi", "sip_password": "x"}),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_GATEWAY, "{answer}");
    let seen: Vec<(String, String)> = fake
        .seen()
        .into_iter()
        .map(|s| (s.method, s.path))
        .collect();
    let name = fake.posted("/jobs")[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    assert_eq!(
        seen,
        vec![
            (
                "POST".into(),
                format!("/apis/batch/v1/namespaces/{NS}/jobs")
            ),
            ("POST".into(), format!("/api/v1/namespaces/{NS}/secrets")),
            (
                "DELETE".into(),
                format!("/apis/batch/v1/namespaces/{NS}/jobs/{name}")
            ),
        ]
    );
    assert!(fake.job(&name).is_none());
}
