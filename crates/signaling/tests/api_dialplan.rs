//! The dialplan API beyond PUT: a refused dialplan is located at the route
//! and field and leaves the running one; the dry run answers the route a
//! call would take (by caller user, by trunk, none); every save is a
//! version that can be listed and read back.

mod common;

use common::start;
use serde_json::{Value, json};

fn plan() -> Value {
    json!({"version": "1.0", "routes": [
        {"id": "busy", "pattern": "1999", "priority": 10,
         "actions": [{"type": "hangup", "params": {"reason": "busy"}}]},
        {"id": "internal", "name": "Extensions", "pattern": "1*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": "user/${destination}", "timeout": 20}}]},
        {"id": "vip", "pattern": "1*", "priority": 5, "account_id": 99,
         "actions": [{"type": "answer"}]},
        {"id": "from-provider", "pattern": "*", "priority": 60, "from": "trunk/provider",
         "actions": [{"type": "dial", "params": {"target": "user/1001"}}]}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_versions_and_located_errors() {
    let s = start("api-dialplan", |_| {}).await;
    let body = json!({"username": "alice", "password": "alice-secret", "extension": "1001"});
    assert_eq!(s.http("POST", "/api/v1/users", Some(&body)).await.0, 201);
    let trunk = json!({"host": "127.0.0.1:5099", "username": "u", "password": "p", "domain": "provider.test"});
    let (status, out) = s.http("PUT", "/api/v1/trunks/provider", Some(&trunk)).await;
    assert_eq!(status, 201, "{out}");
    let (_, v) = s.http("GET", "/api/v1/dialplan/versions", None).await;
    assert_eq!(v["versions"], json!([]), "nothing saved yet: {v}");

    let (status, out) = s.http("PUT", "/api/v1/dialplan", Some(&plan())).await;
    assert_eq!(status, 200, "{out}");
    let first = out["version"].as_i64().expect("a version id");

    // a bad target in the second route: located, and the plan stays
    let mut bad = plan();
    bad["routes"][1]["actions"][0]["params"]["target"] = json!("phone/1002");
    bad["routes"][0]["pattern"] = json!("1998");
    for (method, path) in [
        ("POST", "/api/v1/dialplan/validate"),
        ("PUT", "/api/v1/dialplan"),
    ] {
        let (status, e) = s.http(method, path, Some(&bad)).await;
        assert_eq!(status, 422, "{method} {path}: {e}");
        assert_eq!(e["code"], "invalid_dialplan");
        assert_eq!(e["path"], "routes[1].actions[0].params.target", "{e}");
        assert_eq!(e["route"], "internal", "{e}");
        assert_eq!(e["route_index"], 1, "{e}");
        assert!(
            e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("unknown target"),
            "{e}"
        );
    }
    let (_, running) = s.http("GET", "/api/v1/dialplan", None).await;
    assert_eq!(running["routes"][0]["pattern"], "1999", "unchanged");
    let (_, e) = s
        .http(
            "POST",
            "/api/v1/dialplan/validate",
            Some(&json!({"version": "2.0", "routes": []})),
        )
        .await;
    assert_eq!(
        (e["path"].as_str(), e.get("route")),
        (Some("version"), None)
    );

    // the dry run: by priority, by account, by trunk, and no route
    let server = &s;
    let dry = move |body: Value| async move {
        server
            .http("POST", "/api/v1/dialplan/dry-run", Some(&body))
            .await
    };
    let (status, v) = dry(json!({"destination": "1002", "from_user": "alice"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["matched"].as_bool(), v["route"]["id"].as_str()),
        (Some(true), Some("internal"))
    );
    assert_eq!(v["route_index"], 1);
    assert_eq!(
        v["route"]["actions"][0]["params"]["target"],
        "user/${destination}"
    );
    let (_, v) = dry(json!({"destination": "1999", "from_user": "1001"})).await;
    assert_eq!(v["route"]["id"], "busy", "by extension too: {v}");
    let (_, v) = dry(json!({"destination": "1002", "account_id": 99})).await;
    assert_eq!(v["route"]["id"], "vip", "{v}");
    let (_, v) = dry(json!({"destination": "1999", "from_trunk": "provider"})).await;
    assert_eq!(
        v["route"]["id"], "from-provider",
        "trunk calls only their route: {v}"
    );
    let (_, v) = dry(json!({"destination": "555", "from_user": "alice"})).await;
    assert_eq!(
        (v["matched"].as_bool(), v.get("route")),
        (Some(false), None),
        "{v}"
    );
    let (status, _) = dry(json!({"destination": "1002", "from_user": "nobody"})).await;
    assert_eq!(status, 404);
    let (status, _) = dry(json!({"destination": "1002", "from_trunk": "nope"})).await;
    assert_eq!(status, 404);
    let (status, _) =
        dry(json!({"destination": "1002", "from_user": "alice", "from_trunk": "provider"})).await;
    assert_eq!(status, 400);
    let (status, _) = dry(json!({"destination": " "})).await;
    assert_eq!(status, 400);

    // a second save is a newer version; both are listed and readable
    let mut second = plan();
    second["routes"][0]["pattern"] = json!("1998");
    let (status, out) = s.http("PUT", "/api/v1/dialplan", Some(&second)).await;
    assert_eq!(status, 200, "{out}");
    let newer = out["version"].as_i64().expect("a version id");
    assert!(newer > first);
    let (status, v) = s.http("GET", "/api/v1/dialplan/versions", None).await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = v["versions"]
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![newer, first], "{v}");
    assert!(v["versions"][0]["created_at"].as_i64().unwrap_or(0) > 0);
    let (status, v) = s
        .http("GET", &format!("/api/v1/dialplan/versions/{first}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["dialplan"]["routes"][0]["pattern"], "1999", "{v}");
    let (status, _) = s
        .http(
            "GET",
            &format!("/api/v1/dialplan/versions/{}", newer + 50),
            None,
        )
        .await;
    assert_eq!(status, 404);
    s.stop().await;
}
