//! The dialplan editor against real signaling: a good plan saves and
//! becomes a version; a bad route is shown at the route and field and the
//! running dialplan (as the API tells it) stays; the dry run answers the
//! route; a version is viewed and restored; posts without the CSRF token
//! are refused.

mod common;

use common::{login, signaling, ui};
use serde_json::{Value, json};

fn plan(busy: &str) -> Value {
    json!({"version": "1.0", "routes": [
        {"id": "busy", "pattern": busy, "priority": 10,
         "actions": [{"type": "hangup", "params": {"reason": "busy"}}]},
        {"id": "internal", "name": "Extensions", "pattern": "1*", "priority": 50,
         "actions": [{"type": "set", "params": {"name": "caller_name", "value": "<b>${caller_name}</b>"}},
                     {"type": "dial", "params": {"target": "user/${destination}", "timeout": 20}}]}
    ]})
}

/// The running dialplan's first pattern, as the API tells it.
async fn busy(sig: &common::Signaling) -> String {
    let (status, running) = sig.api("GET", "/api/v1/dialplan", None).await;
    assert_eq!(status, 200);
    running["routes"][0]["pattern"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// `<tag ... id="id" ...>...` up to the end of that element's first line.
fn element<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let start = html[..at].rfind('<').unwrap_or(at);
    let end = html[at..].find('\n').map_or(html.len(), |e| at + e);
    &html[start..end]
}

#[tokio::test]
async fn the_dialplan_is_edited_checked_dry_run_and_restored() {
    let sig = signaling("dialplan").await;
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let body =
            json!({"username": user, "password": format!("{user}-secret"), "extension": ext});
        assert_eq!(sig.api("POST", "/api/v1/users", Some(&body)).await.0, 201);
    }
    let ui = ui(
        &[(
            "main",
            format!("http://{}", sig.api),
            Some(sig.token.as_str()),
        )],
        |_| {},
    )
    .await;
    let mut b = login(ui.addr).await;

    // the running (built-in) plan is in the editor; nothing saved yet
    let r = b.get("/dialplan").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"dialplan-json\""), "{}", r.body);
    assert!(
        r.body.contains("data-route-id=\"extensions\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("No saved versions yet."));

    // a good plan: validated, then saved as a version
    let good = plan("1999").to_string();
    let fields = [("backend", "main"), ("dialplan", good.as_str())];
    let r = b.post("/dialplan/validate", &fields, true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Valid: 2 enabled routes"), "{}", r.body);
    let (_, running) = sig.api("GET", "/api/v1/dialplan", None).await;
    assert_eq!(
        running["routes"][0]["id"], "extensions",
        "validate does not save"
    );
    let r = b.post("/dialplan/save", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.header("location").unwrap_or("").to_owned();
    assert!(to.starts_with("/dialplan?backend=main&saved="), "{to}");
    let first: i64 = to
        .rsplit('=')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_eq!(busy(&sig).await, "1999", "saved");
    let r = b.get(&to).await;
    assert!(
        r.body
            .contains(&format!("Saved and in use as version {first}.")),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!("<tr data-version=\"{first}\">")),
        "{}",
        r.body
    );
    // a variable value with markup is text in the editor
    assert!(
        r.body.contains("&#60;b&#62;${caller_name}&#60;/b&#62;"),
        "{}",
        r.body
    );

    // a bad target in the second route: shown there, at the field; not saved
    let mut bad = plan("1998");
    bad["routes"][1]["actions"][1]["params"]["target"] = json!("phone/1002");
    let bad = bad.to_string();
    for path in ["/dialplan/validate", "/dialplan/save"] {
        let r = b
            .post(
                path,
                &[("backend", "main"), ("dialplan", bad.as_str())],
                true,
            )
            .await;
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        let err = element(&r.body, "class=\"field-error\"");
        assert!(
            err.contains("data-path=\"routes[1].actions[1].params.target\"")
                && err.contains("data-route=\"internal\"")
                && err.contains("actions[1].params.target")
                && err.contains("unknown target"),
            "{err}"
        );
        let row = element(&r.body, "data-route-index=\"1\"");
        assert!(
            row.contains("has-error") && row.contains("data-route-id=\"internal\""),
            "{row}"
        );
        assert!(
            r.body.contains("phone/1002"),
            "the draft is kept: {}",
            r.body
        );
        assert!(r.body.contains("the running dialplan is unchanged"));
    }
    assert_eq!(busy(&sig).await, "1999", "the running dialplan stays");
    // text that is not JSON: located at "dialplan"
    let r = b
        .post(
            "/dialplan/save",
            &[("backend", "main"), ("dialplan", "{\"routes\": [")],
            true,
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body
            .contains("class=\"field-error\" data-path=\"dialplan\""),
        "{}",
        r.body
    );

    // a backend nobody configured is refused, not replaced by another
    let r = b
        .post(
            "/dialplan/save",
            &[("backend", "nope"), ("dialplan", bad.as_str())],
            true,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("No such backend."));
    let r = b
        .post(
            "/dialplan/dry-run",
            &[("backend", "nope"), ("destination", "1002")],
            true,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = b.get("/cdrs?backend=nope").await;
    assert_eq!(r.status, 400);

    // posts without the token change nothing
    for (path, fields) in [
        (
            "/dialplan/save",
            vec![("backend", "main"), ("dialplan", bad.as_str())],
        ),
        (
            "/dialplan/validate",
            vec![("backend", "main"), ("dialplan", good.as_str())],
        ),
        (
            "/dialplan/dry-run",
            vec![("backend", "main"), ("destination", "1002")],
        ),
        (
            "/dialplan/restore",
            vec![("backend", "main"), ("version", "1")],
        ),
    ] {
        let r = b.post(path, &fields, false).await;
        assert_eq!(r.status, 403, "{path} without the CSRF token");
    }
    assert_eq!(busy(&sig).await, "1999");

    // the dry run
    let dry = |dest: &'static str, user: &'static str| {
        [
            ("backend", "main"),
            ("destination", dest),
            ("from_user", user),
            ("from_trunk", ""),
        ]
    };
    let r = b
        .post("/dialplan/dry-run", &dry("1002", "alice"), true)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = element(&r.body, "id=\"dryrun-result\"");
    assert!(
        res.contains("data-matched=\"true\" data-route=\"internal\""),
        "{res}"
    );
    assert!(
        r.body.contains("<li data-type=\"dial\">"),
        "its actions: {}",
        r.body
    );
    let r = b.post("/dialplan/dry-run", &dry("1999", "bob"), true).await;
    assert!(
        r.body.contains("data-matched=\"true\" data-route=\"busy\""),
        "{}",
        r.body
    );
    let r = b
        .post("/dialplan/dry-run", &dry("555", "alice"), true)
        .await;
    assert!(
        r.body
            .contains("id=\"dryrun-result\" data-matched=\"false\""),
        "{}",
        r.body
    );
    let r = b
        .post("/dialplan/dry-run", &dry("1002", "nobody"), true)
        .await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("data-matched=\"error\""), "{}", r.body);

    // a second version; the first is viewed and restored (as the newest)
    let second = plan("1997").to_string();
    let r = b
        .post(
            "/dialplan/save",
            &[("backend", "main"), ("dialplan", second.as_str())],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = b
        .get(&format!("/dialplan/versions/{first}?backend=main"))
        .await;
    assert_eq!(r.status, 200);
    let shown = element(&r.body, "id=\"version-json\"");
    assert!(shown.contains("version-json"), "{shown}");
    assert!(r.body.contains("&#34;1999&#34;"), "{}", r.body);
    let version = first.to_string();
    let r = b
        .post(
            "/dialplan/restore",
            &[("backend", "main"), ("version", version.as_str())],
            true,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(busy(&sig).await, "1999", "restored");
    let (_, v) = sig.api("GET", "/api/v1/dialplan/versions", None).await;
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(3), "{v}");
    let r = b.get("/dialplan/versions/99999?backend=main").await;
    assert_eq!(r.status, 404);

    for body in &b.seen {
        assert!(!body.contains(&sig.token), "a page shows the token");
    }
    ui.shutdown(std::time::Duration::from_secs(2)).await;
    sig.stop().await;
}
