//! The HTTP API: every validation rule of `POST /call` answers 422 naming
//! its field (and nothing reaches Kubernetes), the bearer token, the job
//! listing with its report, the limits.

mod common;

use axum::http::StatusCode;
use common::{FakeK8s, TOKEN, call, post_call, state};
use serde_json::{Value, json};
use switchboard_operator::OperatorConfig;

const NS: &str = "calls";

fn cfg() -> OperatorConfig {
    OperatorConfig {
        namespace: NS.into(),
        ..OperatorConfig::default()
    }
}

/// `{"dest": "600", "text": "hi"}` with `field` set to `value` (or removed,
/// when `value` is the string "<absent>").
fn with(field: &str, value: Value) -> Value {
    let mut body = json!({"dest": "600", "text": "hi"});
    if value == json!("<absent>") {
        body.as_object_mut().map(|m| m.remove(field));
    } else {
        body[field] = value;
    }
    body
}

/// Every rule of the request table, broken: (body, field named, type).
fn violations() -> Vec<(Value, &'static str, &'static str)> {
    let mut v = vec![
        (with("dest", json!("<absent>")), "dest", "missing"),
        (with("dest", Value::Null), "dest", "string_type"),
        (with("dest", json!(600)), "dest", "string_type"),
        (with("text", json!("<absent>")), "text", "value_error"),
        (with("text", json!("")), "text", "value_error"),
        (with("wav", json!("/a.wav")), "text", "value_error"),
        (with("text", json!(["hi"])), "text", "string_type"),
        (with("sip_port", json!(0)), "sip_port", "greater_than_equal"),
        (
            with("sip_port", json!(65536)),
            "sip_port",
            "less_than_equal",
        ),
        (
            with("sip_port", json!(5060.5)),
            "sip_port",
            "int_from_float",
        ),
        (with("sip_port", json!("fifty")), "sip_port", "int_parsing"),
        (with("sip_port", json!(true)), "sip_port", "int_type"),
        (
            with("sip_transport", json!("sctp")),
            "sip_transport",
            "literal_error",
        ),
        (
            with("sip_transport", json!("UDP")),
            "sip_transport",
            "literal_error",
        ),
        (
            with("sip_srtp", json!("maybe")),
            "sip_srtp",
            "literal_error",
        ),
        (
            with("sip_tls_verify", json!("perhaps")),
            "sip_tls_verify",
            "bool_parsing",
        ),
        (with("ice_enabled", json!(2)), "ice_enabled", "bool_parsing"),
        (
            with("turn_transport", json!("quic")),
            "turn_transport",
            "literal_error",
        ),
        (
            with("keepalive_sec", json!(-1)),
            "keepalive_sec",
            "greater_than_equal",
        ),
        (
            with("keepalive_sec", json!(601)),
            "keepalive_sec",
            "less_than_equal",
        ),
        (with("timeout", json!(0)), "timeout", "greater_than_equal"),
        (with("timeout", json!(601)), "timeout", "less_than_equal"),
        (with("timeout", Value::Null), "timeout", "int_type"),
        (with("repeat", json!(0)), "repeat", "greater_than_equal"),
        (with("repeat", json!(101)), "repeat", "less_than_equal"),
        (with("repeat", json!(1.5)), "repeat", "int_from_float"),
        (
            with("tts_sample_rate", json!(-1)),
            "tts_sample_rate",
            "greater_than_equal",
        ),
        (
            with("tts_sample_rate", json!(48001)),
            "tts_sample_rate",
            "less_than_equal",
        ),
        (with("transcribe", json!(true)), "transcribe", "value_error"),
        (
            with("transcribe", json!("sometimes")),
            "transcribe",
            "bool_parsing",
        ),
        (with("verbose", json!("loud")), "verbose", "bool_parsing"),
        (with("verbose", Value::Null), "verbose", "bool_type"),
        (
            with("node_selector", json!("zone=b")),
            "node_selector",
            "dict_type",
        ),
        (
            with("node_selector", json!({"zone": 1})),
            "node_selector",
            "string_type",
        ),
        (with("colour", json!("red")), "colour", "extra_forbidden"),
        (
            with("sip_pasword", json!("typo")),
            "sip_pasword",
            "extra_forbidden",
        ),
    ];
    for f in ["pre_delay", "inter_delay", "post_delay", "wait_for_silence"] {
        v.push((with(f, json!(-0.1)), f, "greater_than_equal"));
        v.push((with(f, json!(30.01)), f, "less_than_equal"));
        v.push((with(f, json!("soon")), f, "float_parsing"));
        v.push((with(f, json!({})), f, "float_type"));
    }
    for f in [
        "wav",
        "sip_server",
        "sip_user",
        "sip_password",
        "stun_servers",
        "turn_server",
        "turn_username",
        "turn_password",
        "public_address",
        "tts_model",
        "tts_data_dir",
        "stt_model",
        "stt_language",
        "stt_data_dir",
        "record",
    ] {
        v.push((with(f, json!(5)), f, "string_type"));
    }
    v
}

#[tokio::test]
async fn every_violation_is_a_422_naming_its_field_and_nothing_reaches_kubernetes() {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg(), Some(&fake));
    let cases = violations();
    for (body, field, kind) in &cases {
        let (code, answer) = post_call(&st, body).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let detail = answer["detail"].as_array().expect("a detail list");
        assert!(
            detail.iter().any(|d| d["loc"][0] == "body"
                && d["loc"][1] == *field
                && d["type"] == *kind
                && d["msg"].as_str().is_some_and(|m| !m.is_empty())),
            "{body}: want {field} {kind}, got {answer}"
        );
    }
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());
    let metrics = call(&st, "GET", "/metrics", None, None).await.1;
    let line = format!("switchboard_operator_calls_invalid_total {}", cases.len());
    assert!(
        metrics.as_str().is_some_and(|m| m.contains(&line)),
        "{metrics}"
    );
}

#[tokio::test]
async fn values_at_the_bounds_are_accepted() {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg(), Some(&fake));
    for (f, lo, hi) in [
        ("sip_port", json!(1), json!(65535)),
        ("keepalive_sec", json!(0), json!(600)),
        ("timeout", json!(1), json!(600)),
        ("pre_delay", json!(0), json!(30)),
        ("inter_delay", json!(0.0), json!(30.0)),
        ("post_delay", json!("0"), json!("30")),
        ("wait_for_silence", json!(0), json!(30)),
        ("repeat", json!(1), json!(100)),
        ("tts_sample_rate", json!(0), json!(48000)),
    ] {
        for v in [lo, hi] {
            let (code, answer) = post_call(&st, &with(f, v.clone())).await;
            assert_eq!(code, StatusCode::CREATED, "{f}={v}: {answer}");
        }
    }
}

#[tokio::test]
async fn bodies_that_are_not_an_object_or_too_big() {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg(), Some(&fake));
    let (code, answer) = call(
        &st,
        "POST",
        "/call",
        Some(TOKEN),
        Some(b"{\"dest\":".to_vec()),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["detail"][0]["type"], "json_invalid");
    let (code, answer) = post_call(&st, &json!(["dest", "600"])).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["detail"][0]["loc"], json!(["body"]));
    let big = with("text", json!("x".repeat(70 * 1024)));
    let (code, _) = post_call(&st, &big).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn the_api_wants_the_bearer_token_except_health_ready_and_metrics() {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg(), Some(&fake));
    let body = Some(with("dest", json!("600")).to_string().into_bytes());
    for (method, path) in [
        ("POST", "/call"),
        ("GET", "/jobs"),
        ("GET", "/jobs/sbcall-x"),
    ] {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let b = (method == "POST").then(|| body.clone()).flatten();
            let (code, answer) = call(&st, method, path, token, b).await;
            assert_eq!(code, StatusCode::UNAUTHORIZED, "{method} {path} {token:?}");
            assert_eq!(answer, json!({"detail": "Not authenticated"}));
        }
    }
    assert!(fake.seen().is_empty());
    let (code, answer) = call(&st, "GET", "/health", None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(answer["status"], "ok");
    assert!(answer["version"].is_string());
    assert_eq!(
        call(&st, "GET", "/ready", None, None).await.0,
        StatusCode::OK
    );
    let (code, metrics) = call(&st, "GET", "/metrics", None, None).await;
    assert_eq!(code, StatusCode::OK);
    let m = metrics.as_str().expect("text");
    assert!(
        m.contains("switchboard_operator_unauthorized_total 9"),
        "{m}"
    );
    assert!(m.contains("# TYPE switchboard_operator_creates_in_flight gauge"));
}

#[tokio::test]
async fn without_a_kubernetes_api_the_job_routes_and_ready_answer_503() {
    let st = state(cfg(), None);
    let (code, answer) = post_call(&st, &with("dest", json!("600"))).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(
        call(&st, "GET", "/jobs", Some(TOKEN), None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&st, "GET", "/ready", None, None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&st, "GET", "/health", None, None).await.0,
        StatusCode::OK
    );
}

const REPORT: &str = r#"{"dest":"600","started_at":"2026-12-06T10:00:02Z","ended_at":"2026-12-06T10:00:09Z","sip_code":200,"sip_reason":"OK","answered":true,"outcome":"answered","exit_code":0,"ring_seconds":1.2,"talk_seconds":5.0,"played":[{"kind":"text","what":"hi","seconds":1.1}],"recording":null,"transcript":null,"transcript_engine":null,"media":{"packets_sent":250,"packets_received":249,"lost":1,"jitter_ms":0.4,"mos":4.4},"errors":[]}"#;

#[tokio::test]
async fn a_finished_job_shows_its_report_from_the_pods_last_log_line() {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg(), Some(&fake));
    let (code, answer) = post_call(&st, &with("dest", json!("600"))).await;
    assert_eq!(code, StatusCode::CREATED);
    let name = answer["job_name"].as_str().expect("name").to_owned();

    // running: no report, no log read
    fake.set_job_status(
        &name,
        json!({"active": 1, "startTime": "2026-12-06T10:00:01Z"}),
    );
    let (code, info) = call(&st, "GET", &format!("/jobs/{name}"), Some(TOKEN), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(info["status"], "running");
    assert_eq!(info["report"], Value::Null);

    fake.set_job_status(
        &name,
        json!({"succeeded": 1, "startTime": "2026-12-06T10:00:01Z",
               "completionTime": "2026-12-06T10:00:10Z"}),
    );
    // an older failed attempt and the last one
    fake.add_pod(
        &name,
        &format!("{name}-old"),
        "2026-12-06T09:59:00Z",
        "{\"sip_code\":503}\n",
    );
    fake.add_pod(
        &name,
        &format!("{name}-abcde"),
        "2026-12-06T10:00:01Z",
        &format!("registering\ncalling 600\n{REPORT}\n"),
    );
    let (code, info) = call(&st, "GET", &format!("/jobs/{name}"), Some(TOKEN), None).await;
    assert_eq!(code, StatusCode::OK, "{info}");
    let report: Value = serde_json::from_str(REPORT).expect("report");
    assert_eq!(
        info,
        json!({
            "name": name, "namespace": NS, "status": "succeeded", "phase": "succeeded",
            "created_at": "2026-12-06T10:00:00Z", "completed_at": "2026-12-06T10:00:10Z",
            "started_at": "2026-12-06T10:00:01Z", "ended_at": "2026-12-06T10:00:10Z",
            "sip_code": 200, "sip_reason": "OK", "outcome": "answered", "report": report,
        })
    );
    let log_read = fake
        .seen()
        .into_iter()
        .rfind(|s| s.path.ends_with("/log"))
        .expect("a log read");
    assert_eq!(
        log_read.path,
        format!("/api/v1/namespaces/{NS}/pods/{name}-abcde/log")
    );
    assert_eq!(
        log_read.query.get("tailLines").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        log_read.query.get("container").map(String::as_str),
        Some("sip-caller")
    );

    // the list: only the operator's own Jobs, each with its report
    fake.put_job(json!({"apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": "someone-elses", "namespace": NS, "labels": {"app": "x"}},
                        "status": {"succeeded": 1}}));
    let (code, list) = call(&st, "GET", "/jobs", Some(TOKEN), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list, json!([info]));
    let listed = fake
        .seen()
        .into_iter()
        .rfind(|s| s.path == format!("/apis/batch/v1/namespaces/{NS}/jobs") && s.method == "GET")
        .expect("a list");
    let selector =
        "app.kubernetes.io/name=switchboard-call,app.kubernetes.io/managed-by=switchboard-operator";
    assert_eq!(
        listed.query.get("labelSelector").map(String::as_str),
        Some(selector)
    );
    // the pods of all the Jobs in one list, by the same labels
    let pod_lists: Vec<_> = fake
        .seen()
        .into_iter()
        .skip_while(|s| s.path != listed.path || s.method != "GET")
        .filter(|s| s.path == format!("/api/v1/namespaces/{NS}/pods"))
        .collect();
    assert_eq!(pod_lists.len(), 1);
    assert_eq!(
        pod_lists[0].query.get("labelSelector").map(String::as_str),
        Some(selector)
    );
}

#[tokio::test]
async fn creates_beyond_max_concurrent_creates_are_429() {
    let fake = FakeK8s::start(NS).await;
    fake.set_delay(std::time::Duration::from_millis(300));
    let st = state(
        OperatorConfig {
            max_concurrent_creates: 1,
            ..cfg()
        },
        Some(&fake),
    );
    let body = with("dest", json!("600"));
    let (a, b) = tokio::join!(post_call(&st, &body), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        post_call(&st, &body).await
    });
    assert_eq!(a.0, StatusCode::CREATED, "{}", a.1);
    assert_eq!(b.0, StatusCode::TOO_MANY_REQUESTS, "{}", b.1);
    // the permit is back once the first is done
    fake.set_delay(std::time::Duration::ZERO);
    assert_eq!(post_call(&st, &body).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_foreign_and_malformed_job_names_are_404() {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg(), Some(&fake));
    fake.put_job(json!({"apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": "someone-elses", "namespace": NS}}));
    for name in ["sbcall-nope", "someone-elses"] {
        let (code, answer) = call(&st, "GET", &format!("/jobs/{name}"), Some(TOKEN), None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{name}");
        assert_eq!(answer, json!({"detail": format!("Job '{name}' not found")}));
    }
    let before = fake.seen().len();
    for name in ["UPPER", "a..b", "x%2Fy"] {
        let (code, _) = call(&st, "GET", &format!("/jobs/{name}"), Some(TOKEN), None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{name}");
    }
    assert_eq!(
        fake.seen().len(),
        before,
        "malformed names never reach the API"
    );
}

#[tokio::test]
async fn a_job_name_taken_is_drawn_again_twice_at_most() {
    let fake = FakeK8s::start(NS).await;
    let st = state(cfg(), Some(&fake));
    let body = with("dest", json!("600"));
    fake.take_names(2);
    let (code, answer) = post_call(&st, &body).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    assert_eq!(fake.posted("/jobs").len(), 3);
    fake.take_names(3);
    let (code, answer) = post_call(&st, &body).await;
    assert_eq!(code, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(fake.posted("/jobs").len(), 6);
}
