//! The editors against real signaling on loopback: a user edited (its
//! `<script>` display name shown as text), disabled and enabled, its
//! password reset (a short one refused with the API's message naming the
//! field; a generated one shown once, with which the phone registers),
//! deleted only after the confirmation; accounts created and edited (the
//! refusals naming their field); trunks created, listed with their
//! registration status, edited without their password ever coming back,
//! and deleted. Every change is refused without the CSRF token, and what
//! the API holds afterwards is checked, not only the page.

mod common;

use std::time::Duration;

use common::phone::SipPhone;
use common::{Browser, Signaling, ip, login, signaling, ui};
use serde_json::{Value, json};

const XSS: &str = "<script>alert(1)</script>";
const XSS_ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

async fn setup(name: &str) -> (Signaling, switchboard_ui::Running, Browser) {
    let sig = signaling(name).await;
    let ui = ui(
        &[(
            "main",
            format!("http://{}", sig.api),
            Some(sig.token.as_str()),
        )],
        |_| {},
    )
    .await;
    let b = login(ui.addr).await;
    (sig, ui, b)
}

fn no_token_shown(b: &Browser, sig: &Signaling) {
    for body in &b.seen {
        assert!(!body.contains(&sig.token), "a page shows the token");
    }
}

#[tokio::test]
async fn users_are_edited_disabled_reset_and_deleted() {
    let (sig, ui, mut b) = setup("users-edit").await;
    let (status, alice) = sig
        .api(
            "POST",
            "/api/v1/users",
            Some(&json!({"username": "alice", "password": "alice-secret", "extension": "1001"})),
        )
        .await;
    assert_eq!(status, 201, "{alice}");
    let id = alice["id"].as_i64().expect("an id").to_string();
    let user = || async { sig.api("GET", &format!("/api/v1/users/{id}"), None).await.1 };

    // the list links to the editor and offers disable
    let r = b.get("/users").await;
    assert_eq!(r.status, 200);
    let edit = format!("/users/edit?backend=main&amp;id={id}");
    assert!(r.body.contains(&edit), "{}", r.body);
    assert!(r.body.contains("value=\"disable\""), "{}", r.body);

    // edit: refused without the token, then done
    let r = b.get(&format!("/users/edit?backend=main&id={id}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"user-edit\""), "{}", r.body);
    assert!(r.body.contains("value=\"1001\""), "{}", r.body);
    let fields = [
        ("backend", "main"),
        ("id", id.as_str()),
        ("display_name", XSS),
        ("extension", "2001"),
    ];
    let r = b.post("/users/edit", &fields, false).await;
    assert_eq!(r.status, 403);
    assert_eq!(user().await["display_name"], Value::Null);
    let r = b.post("/users/edit", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let u = user().await;
    assert_eq!(u["display_name"], XSS);
    assert_eq!(u["extension"], "2001");
    assert_eq!(u["enabled"], false, "the box was not ticked");
    let r = b.get("/users").await;
    assert!(r.body.contains(XSS_ESCAPED), "{}", r.body);
    assert!(!r.body.contains(XSS), "unescaped: {}", r.body);
    assert!(r.body.contains("value=\"enable\""), "{}", r.body);
    let r = b.get(&format!("/users/edit?backend=main&id={id}")).await;
    assert!(r.body.contains(XSS_ESCAPED) && !r.body.contains(XSS));

    // a disabled user cannot register; enabled again, it can
    let phone = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    let refused = phone.register("alice", "alice-secret", &[]).await;
    assert_ne!(refused.code, 200, "disabled: {refused:?}");
    let fields = [("backend", "main"), ("id", id.as_str()), ("mode", "enable")];
    assert_eq!(b.post("/users/enable", &fields, false).await.status, 403);
    let r = b.post("/users/enable", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(user().await["enabled"], true);
    assert_eq!(phone.register("alice", "alice-secret", &[]).await.code, 200);
    let fields = [
        ("backend", "main"),
        ("id", id.as_str()),
        ("mode", "sideways"),
    ];
    assert_eq!(b.post("/users/enable", &fields, true).await.status, 400);

    // password: too short is the API's 400 naming the field
    let fields = [
        ("backend", "main"),
        ("id", id.as_str()),
        ("password", "short"),
    ];
    let r = b.post("/users/password", &fields, true).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("password: must be at least 8 characters"),
        "{}",
        r.body
    );
    assert!(
        !r.body.contains("value=\"short\""),
        "the password is not echoed"
    );
    // generated: shown once, and the phone registers with it
    let fields = [("backend", "main"), ("id", id.as_str()), ("generate", "1")];
    assert_eq!(b.post("/users/password", &fields, false).await.status, 403);
    let r = b.post("/users/password", &fields, true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let needle = "<code class=\"secret\" id=\"generated-password\">";
    let at = r.body.find(needle).expect("the generated password") + needle.len();
    let generated = r.body[at..].split('<').next().unwrap_or("").to_owned();
    assert_eq!(generated.len(), 20, "{generated}");
    let phone = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    assert_ne!(phone.register("alice", "alice-secret", &[]).await.code, 200);
    assert_eq!(phone.register("alice", &generated, &[]).await.code, 200);
    let r = b.get(&format!("/users/edit?backend=main&id={id}")).await;
    assert!(!r.body.contains(&generated), "shown once only");

    // delete: a confirmation page, refused without its confirmation
    let r = b.get(&format!("/users/delete?backend=main&id={id}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Delete user alice"), "{}", r.body);
    assert!(r.body.contains("name=\"confirm\" value=\"yes\""));
    let fields = [("backend", "main"), ("id", id.as_str())];
    assert_eq!(b.post("/users/delete", &fields, true).await.status, 400);
    let fields = [("backend", "main"), ("id", id.as_str()), ("confirm", "yes")];
    assert_eq!(b.post("/users/delete", &fields, false).await.status, 403);
    assert_eq!(
        sig.api("GET", &format!("/api/v1/users/{id}"), None).await.0,
        200
    );
    let r = b.post("/users/delete", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        sig.api("GET", &format!("/api/v1/users/{id}"), None).await.0,
        404
    );
    // a user that is gone: the backend's 404, as it said it
    let r = b.post("/users/delete", &fields, true).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("user not found"), "{}", r.body);
    let r = b.get("/users/edit?backend=nowhere&id=1").await;
    assert_eq!(r.status, 400);

    no_token_shown(&b, &sig);
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}

#[tokio::test]
async fn accounts_are_created_and_edited() {
    let (sig, ui, mut b) = setup("accounts").await;
    let r = b.get("/accounts").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"account-create\""), "{}", r.body);

    let fields = [
        ("backend", "main"),
        ("name", "acme"),
        ("domain", "Acme.Example"),
        ("max_concurrent_calls", ""),
    ];
    assert_eq!(b.post("/accounts", &fields, false).await.status, 403);
    let r = b.post("/accounts", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, list) = sig.api("GET", "/api/v1/accounts", None).await;
    let acme = list
        .as_array()
        .and_then(|l| l.iter().find(|a| a["name"] == "acme"))
        .cloned()
        .expect("acme created");
    assert_eq!(acme["domain"], "acme.example");
    assert_eq!(acme["max_concurrent_calls"], 0);
    let id = acme["id"].as_i64().expect("an id").to_string();
    // the same name again: the API's conflict, its message shown, the
    // form keeping what was typed
    let r = b.post("/accounts", &fields, true).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("HTTP 409"), "{}", r.body);
    assert!(r.body.contains("value=\"Acme.Example\""), "{}", r.body);

    let r = b.get(&format!("/accounts/edit?backend=main&id={id}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("value=\"acme.example\""), "{}", r.body);
    let edit = |max: &'static str, domain: &'static str| -> [(&str, &str); 5] {
        [
            ("backend", "main"),
            ("id", id.as_str()),
            ("name", "acme"),
            ("domain", domain),
            ("max_concurrent_calls", max),
        ]
    };
    let r = b
        .post("/accounts/edit", &edit("ten", "acme.example"), true)
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("max_concurrent_calls: must be a whole number"),
        "{}",
        r.body
    );
    let r = b
        .post("/accounts/edit", &edit("5", "acme.example"), true)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, a) = sig
        .api("GET", &format!("/api/v1/accounts/{id}"), None)
        .await;
    assert_eq!(a["max_concurrent_calls"], 5);
    assert_eq!(a["domain"], "acme.example");
    // with a user the domain is the realm: the API refuses, naming it
    let (status, _) = sig
        .api(
            "POST",
            "/api/v1/users",
            Some(&json!({"username": "carol", "password": "carol-secret", "account_id": a["id"]})),
        )
        .await;
    assert_eq!(status, 201);
    let r = b
        .post("/accounts/edit", &edit("5", "other.example"), true)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("domain: cannot change"), "{}", r.body);
    let r = b.get("/accounts").await;
    assert!(r.body.contains("<tr data-account=\"acme\">"), "{}", r.body);

    no_token_shown(&b, &sig);
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}

#[tokio::test]
async fn trunks_are_created_listed_edited_and_deleted() {
    let (sig, ui, mut b) = setup("trunks").await;
    const SECRET: &str = "trunk-secret-7f3a";
    const INBOUND: &str = "inbound-secret-9c1d";
    // a provider that never answers: the registration fails
    let provider = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = provider.local_addr().expect("addr").to_string();
    let r = b.get("/trunks/edit").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"trunk-form\""), "{}", r.body);
    let create = [
        ("backend", "main"),
        ("mode", "create"),
        ("name", "carrier"),
        ("host", host.as_str()),
        ("transport", "udp"),
        ("username", "acct42"),
        ("password", SECRET),
        ("register", "on"),
        ("expires", "300"),
        ("strip", "1"),
        ("prefix", "+49"),
        ("account_id", "1"),
        ("inbound_transport", "any"),
        ("inbound_auth", "digest"),
        ("inbound_username", "carrier-in"),
        ("inbound_password", INBOUND),
    ];
    assert_eq!(b.post("/trunks", &create, false).await.status, 403);
    let r = b.post("/trunks", &create, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (status, t) = sig.api("GET", "/api/v1/trunks/carrier", None).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["host"], host.as_str());
    assert_eq!(t["username"], "acct42");
    assert_eq!(t["register"], true);
    assert_eq!(t["expires"], 300);
    assert_eq!(t["strip"], 1);
    assert_eq!(t["prefix"], "+49");
    assert_eq!(t["inbound_auth"], "digest");
    // the provider hears the REGISTER with the username given
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), provider.recv_from(&mut buf))
        .await
        .expect("a REGISTER within 5 s")
        .expect("recv");
    let register = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(register.starts_with("REGISTER "), "{register}");

    // the list: its status as the API reports it, never a password
    let r = b.get("/trunks").await;
    assert_eq!(r.status, 200);
    let at = r.body.find("<tr data-trunk=\"carrier\">").expect("a row");
    let row = r.body[at..].split("</tr>").next().unwrap_or("");
    assert!(row.contains("trunk-status"), "{row}");
    assert!(row.contains("not registered"), "{row}");
    assert!(row.contains(&host), "{row}");
    // the same name again: refused, not replaced
    let r = b.post("/trunks", &create, true).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("name: trunk carrier exists"), "{}", r.body);

    // edit: the form holds the fields, never a password; an edit without
    // one keeps the stored password (the API's rule)
    let r = b.get("/trunks/edit?backend=main&id=carrier").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!("value=\"{host}\"")), "{}", r.body);
    assert!(r.body.contains("value=\"+49\""), "{}", r.body);
    assert!(r.body.contains("empty: keep the stored one"));
    let edit = [
        ("backend", "main"),
        ("name", "carrier"),
        ("host", host.as_str()),
        ("transport", "tcp"),
        ("username", "acct42"),
        ("password", ""),
        ("expires", "x60"),
        ("account_id", "1"),
    ];
    let r = b.post("/trunks", &edit, true).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("expires: must be a whole number"),
        "{}",
        r.body
    );
    let mut edit = edit;
    edit[6] = ("expires", "");
    let r = b.post("/trunks", &edit, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, t) = sig.api("GET", "/api/v1/trunks/carrier", None).await;
    assert_eq!(t["transport"], "tcp");
    assert_eq!(t["register"], false);
    let r = b.get("/trunks").await;
    assert!(r.body.contains("no registration"), "{}", r.body);
    // the API's refusal names the field
    let mut bad = edit;
    bad[3] = ("transport", "carrier-pigeon");
    let r = b.post("/trunks", &bad, true).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("HTTP 400: transport"), "{}", r.body);

    // delete, after the confirmation
    let r = b.get("/trunks/delete?backend=main&id=carrier").await;
    assert!(
        r.body.contains("Delete trunk carrier on main?"),
        "{}",
        r.body
    );
    let fields = [("backend", "main"), ("id", "carrier")];
    assert_eq!(b.post("/trunks/delete", &fields, true).await.status, 400);
    let fields = [("backend", "main"), ("id", "carrier"), ("confirm", "yes")];
    assert_eq!(b.post("/trunks/delete", &fields, false).await.status, 403);
    let r = b.post("/trunks/delete", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(sig.api("GET", "/api/v1/trunks/carrier", None).await.0, 404);

    for body in &b.seen {
        assert!(
            !body.contains(SECRET) && !body.contains(INBOUND),
            "a password in a page"
        );
    }
    no_token_shown(&b, &sig);
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}

/// 250 users: the page shows 100 with the count and next/previous links,
/// an offset past the end shows the last page, and a search narrows.
#[tokio::test]
async fn the_users_page_is_paged_and_searched() {
    let (sig, ui, mut b) = setup("users-paged").await;
    for i in 0..250 {
        let body = json!({"username": format!("pager{i:03}"), "password": "pager-secret-1"});
        assert_eq!(sig.api("POST", "/api/v1/users", Some(&body)).await.0, 201);
    }
    let rows = |html: &str| html.matches("<tr data-user=").count();
    let r = b.get("/users").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("250 of 250 users"), "{}", r.body);
    assert!(r.body.contains("Showing 1–100"), "{}", r.body);
    assert_eq!(rows(&r.body), 100);
    // askama writes the `&` of the link as a character reference
    assert!(r.body.contains("offset=100\" rel=\"next\""), "{}", r.body);
    assert!(!r.body.contains("rel=\"prev\""));
    let r = b.get("/users?offset=200").await;
    assert!(r.body.contains("Showing 201–250"), "{}", r.body);
    assert_eq!(rows(&r.body), 50);
    assert!(r.body.contains("offset=100\" rel=\"prev\""));
    assert!(!r.body.contains("rel=\"next\""));
    let r = b.get("/users?offset=999").await;
    assert!(r.body.contains("Showing 201–250"), "{}", r.body);
    let r = b.get("/users?q=PAGER24").await;
    assert!(r.body.contains("10 of 250 users"), "{}", r.body);
    assert_eq!(rows(&r.body), 10);
    assert!(!r.body.contains("Showing"), "one page: no pager");
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}
