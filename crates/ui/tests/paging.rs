//! Lists that span several backends, a page at a time: each backend pages
//! and searches its own rows (`offset`, `limit`, `q`, `X-Total-Count`),
//! and the dashboard shows the backends' lists one after the other, so a
//! page may end one backend's rows and start the next one's.

mod common;

use std::time::Duration;

use common::phone::SipPhone;
use common::{ip, login, signaling, ui};
use serde_json::json;

#[tokio::test]
async fn pages_run_across_backends() {
    let (a, b) = tokio::join!(signaling("paging-a"), signaling("paging-b"));
    for i in 0..250 {
        let body = json!({"username": format!("alpha{i:03}"), "password": "pager-secret-1"});
        assert_eq!(a.api("POST", "/api/v1/users", Some(&body)).await.0, 201);
    }
    for i in 0..130 {
        let body = json!({"username": format!("beta{i:03}"), "password": "pager-secret-1"});
        assert_eq!(b.api("POST", "/api/v1/users", Some(&body)).await.0, 201);
    }
    let ui = ui(
        &[
            ("a", format!("http://{}", a.api), Some(a.token.as_str())),
            ("b", format!("http://{}", b.api), Some(b.token.as_str())),
        ],
        |_| {},
    )
    .await;
    let mut br = login(ui.addr).await;
    let users = |html: &str| {
        html.split("<tr data-user=\"")
            .skip(1)
            .filter_map(|r| r.split('"').next())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    // (offset, first and last user shown, rows, "Showing" text)
    let table = [
        (0, "alpha000", "alpha099", 100, "Showing 1–100"),
        // the end of a's rows, then the start of b's
        (200, "alpha200", "beta049", 100, "Showing 201–300"),
        // a has nothing left: b's rows from its own offset 50
        (300, "beta050", "beta129", 80, "Showing 301–380"),
    ];
    for (offset, first, last, n, showing) in table {
        let r = br.get(&format!("/users?offset={offset}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let u = users(&r.body);
        assert_eq!(u.len(), n, "offset {offset}: {u:?}");
        assert_eq!(
            (u[0].as_str(), u[n - 1].as_str()),
            (first, last),
            "offset {offset}"
        );
        assert!(r.body.contains("380 of 380 users"), "{}", r.body);
        assert!(r.body.contains(showing), "offset {offset}: {}", r.body);
    }
    // a search each backend answers for its own users
    let r = br.get("/users?q=A02").await;
    let u = users(&r.body);
    assert_eq!(u.len(), 10 + 10, "{u:?}");
    assert_eq!((u[0].as_str(), u[19].as_str()), ("alpha020", "beta029"));
    assert!(r.body.contains("20 of 380 users"), "{}", r.body);

    // registrations of both backends, one page, counted in contacts
    let carol = SipPhone::bind(ip("127.0.0.1"), a.sip).await;
    let dave = SipPhone::bind(ip("127.0.0.1"), b.sip).await;
    let dave2 = SipPhone::bind(ip("127.0.0.1"), b.sip).await;
    assert_eq!(
        carol.register("alpha001", "pager-secret-1", &[]).await.code,
        200
    );
    assert_eq!(
        dave.register("beta001", "pager-secret-1", &[]).await.code,
        200
    );
    assert_eq!(
        dave2.register("beta001", "pager-secret-1", &[]).await.code,
        200
    );
    let r = br.get("/registrations").await;
    assert!(r.body.contains("3 of 3 contacts"), "{}", r.body);
    let at = |s: &str| r.body.find(s).unwrap_or_else(|| panic!("no {s}"));
    assert!(at("sip:alpha001@") < at("sip:beta001@"), "a's rows first");
    let port = dave2.addr().port();
    let r = br.get(&format!("/registrations?q=:{port}")).await;
    assert!(r.body.contains("1 of 3 contacts"), "{}", r.body);
    assert!(r.body.contains(&format!("127.0.0.1:{port}")), "{}", r.body);
    assert!(!r.body.contains("sip:alpha001@"), "{}", r.body);

    ui.shutdown(Duration::from_secs(2)).await;
    a.stop().await;
    b.stop().await;
}
