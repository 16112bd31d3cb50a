//! The OpenAPI document is served without a token and describes every
//! route the API answers; every documented GET without parameters answers.

mod common;

use common::{http, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_router() {
    let s = start("openapi", |_| {}).await;
    let (status, doc) = http(s.api, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/health",
        "/api/v1/stats",
        "/api/v1/stats/calls",
        "/api/v1/cluster",
        "/api/v1/accounts",
        "/api/v1/accounts/{id}",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/registrations",
        "/api/v1/registrations/{aor}",
        "/api/v1/calls",
        "/api/v1/calls/{id}",
        "/api/v1/calls/{id}/hangup",
        "/api/v1/cdrs",
        "/api/v1/cdrs/{call_id}",
        "/api/v1/dialplan",
        "/api/v1/dialplan/validate",
        "/api/v1/dialplan/dry-run",
        "/api/v1/dialplan/versions",
        "/api/v1/dialplan/versions/{id}",
        "/api/v1/trunks",
        "/api/v1/trunks/{name}",
        "/api/v1/rtpmanagers",
        "/api/v1/rtpmanagers/{name}/drain",
        "/api/v1/sessions",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} not documented");
    }
    for (path, item) in paths {
        if path.contains('{') || item.get("get").is_none() {
            continue;
        }
        let (status, body) = s.http("GET", path, None).await;
        assert_eq!(
            status, 200,
            "documented GET {path} answered {status}: {body}"
        );
    }
    // an unknown route is a JSON 404, not a documented one
    let (status, body) = s.http("GET", "/api/v1/nope", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    s.stop().await;
}
