//! Shared by the operator's integration tests: the fake Kubernetes API and
//! an operator router in front of it.

#![allow(dead_code, unreachable_pub)]

pub mod fake_k8s;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use switchboard_operator::{AppState, OperatorConfig, router};
use tower::ServiceExt;

pub use fake_k8s::FakeK8s;

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// The operator's state for `cfg` over `fake` (or no Kubernetes at all).
pub fn state(cfg: OperatorConfig, fake: Option<&FakeK8s>) -> Arc<AppState> {
    let kube = fake
        .map(FakeK8s::client)
        .ok_or_else(|| "no in-cluster Kubernetes configuration (test)".to_owned());
    Arc::new(AppState::new(cfg, TOKEN, kube))
}

/// One request through the router: status and body (JSON, else a string).
pub async fn call(
    st: &Arc<AppState>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request");
    let resp = router(Arc::clone(st)).oneshot(req).await.expect("answer");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

/// POST /call with `body` and the right token.
pub async fn post_call(st: &Arc<AppState>, body: &Value) -> (StatusCode, Value) {
    call(
        st,
        "POST",
        "/call",
        Some(TOKEN),
        Some(body.to_string().into_bytes()),
    )
    .await
}
