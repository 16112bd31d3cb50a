//! The pages against real signaling on loopback: registrations (escaped
//! user agents, search, unregister), RTP managers (drain with and without
//! the CSRF token, as the API sees it), an unreachable backend shown as
//! down, the per-second throttle towards the backends, and no backend
//! token in any page.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::phone::SipPhone;
use common::{closed_port, ip, login, signaling, ui};
use serde_json::{Value, json};

const XSS: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn pages_show_the_backends_and_act_on_them() {
    let sig = signaling("pages").await;
    let gone = closed_port().await;
    let ui = ui(
        &[
            (
                "main",
                format!("http://{}", sig.api),
                Some(sig.token.as_str()),
            ),
            (
                "gone",
                format!("http://127.0.0.1:{gone}"),
                Some("gone-token-xyz"),
            ),
        ],
        |_| {},
    )
    .await;
    let mut b = login(ui.addr).await;

    // overview: the live backend is ok, the closed port is down
    let r = b.get("/").await;
    assert_eq!(r.status, 200);
    let row = |html: &str, name: &str| -> String {
        let at = html
            .find(&format!("<tr data-backend=\"{name}\">"))
            .expect("a row");
        html[at..].split("</tr>").next().unwrap_or("").to_owned()
    };
    let main = row(&r.body, "main");
    assert!(main.contains("status ok"), "{main}");
    assert!(!main.contains("down"), "{main}");
    let down = row(&r.body, "gone");
    assert!(down.contains("status down"), "{down}");
    assert!(down.contains("unreachable"), "{down}");
    assert!(!down.contains("status ok"), "{down}");
    let frag = b.get("/overview/fragment").await;
    assert!(frag.body.contains("<tr data-backend=\"gone\">") && !frag.body.contains("<html"));

    // a user whose phone calls itself <script>: shown as text
    let (status, _) = sig
        .api(
            "POST",
            "/api/v1/users",
            Some(&json!({"username": "alice", "password": "alice-secret", "display_name": XSS})),
        )
        .await;
    assert_eq!(status, 201);
    let phone = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    let r = phone
        .register("alice", "alice-secret", &[("User-Agent", XSS)])
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    let r = b.get("/registrations").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("sip:alice@switchboard"), "{}", r.body);
    // askama escapes `<` and `>` as numeric references
    assert!(
        r.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains(XSS), "unescaped: {}", r.body);
    assert!(
        r.body.contains("Backend gone is"),
        "the down backend is named"
    );
    assert!(r.body.contains("<td>UDP</td>"), "transport");
    let hit = b.get("/registrations?q=ALI").await;
    assert!(hit.body.contains("sip:alice@switchboard"));
    let miss = b.get("/registrations/fragment?q=nobody").await;
    assert!(!miss.body.contains("sip:alice@switchboard"));
    assert!(miss.body.contains("0 of 1 contacts"), "{}", miss.body);

    // unregister: refused without the token, done with it
    let fields = [("backend", "main"), ("id", "sip:alice@switchboard")];
    let r = b.post("/registrations/unregister", &fields, false).await;
    assert_eq!(r.status, 403);
    let (status, _) = sig
        .api("GET", "/api/v1/registrations/alice@switchboard", None)
        .await;
    assert_eq!(status, 200, "still registered");
    let r = b.post("/registrations/unregister", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (status, _) = sig
        .api("GET", "/api/v1/registrations/alice@switchboard", None)
        .await;
    assert_eq!(status, 404, "unregistered");

    // RTP managers: the embedded one, drained from the page
    let (_, managers) = sig.api("GET", "/api/v1/rtpmanagers", None).await;
    let name = managers[0]["name"].as_str().expect("a manager").to_owned();
    let r = b.get("/rtpmanagers").await;
    assert!(
        r.body.contains(&format!("<tr data-manager=\"{name}\">")),
        "{}",
        r.body
    );
    assert!(r.body.contains("<dialog id=\"drain-dialog\">"));
    let fields = [
        ("backend", "main"),
        ("id", name.as_str()),
        ("mode", "graceful"),
    ];
    let r = b.post("/rtpmanagers/drain", &fields, false).await;
    assert_eq!(r.status, 403, "drain without the token");
    let draining = |v: &Value| v[0]["draining"].as_bool();
    let (_, m) = sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(draining(&m), Some(false), "the backend saw nothing");
    let r = b.post("/rtpmanagers/drain", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, m) = sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(draining(&m), Some(true), "the backend drains: {m}");
    let r = b.get("/rtpmanagers/fragment").await;
    assert!(r.body.contains("status degraded draining"), "{}", r.body);
    assert!(r.body.contains("Stop draining"));
    // stop draining with the header htmx would send
    let body = format!("backend=main&id={name}");
    let r = common::request(
        ui.addr,
        common::ip("127.0.0.1"),
        "POST",
        "/rtpmanagers/undrain",
        &[
            ("Cookie", b.cookie.as_str()),
            ("X-CSRF-Token", b.csrf.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, m) = sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(draining(&m), Some(false));

    // a failed action says why, without pretending it worked
    let r = b
        .post(
            "/calls/hangup",
            &[("backend", "main"), ("id", "no-such-call")],
            true,
        )
        .await;
    assert_eq!(r.status, 404, "the backend's answer");
    assert!(r.body.contains("not hung up: HTTP 404"), "{}", r.body);
    let r = b
        .post("/calls/hangup", &[("backend", "gone"), ("id", "x")], true)
        .await;
    assert_eq!(r.status, 502);
    assert!(r.body.contains("unreachable"), "{}", r.body);

    // the drain form without JavaScript
    let r = b
        .get(&format!("/rtpmanagers/drain?backend=main&id={name}"))
        .await;
    assert!(r.body.contains("value=\"aggressive\""), "{}", r.body);

    for page in ["/calls", "/calls/fragment"] {
        let r = b.get(page).await;
        assert_eq!(r.status, 200, "{page}");
        assert!(r.body.contains("0 live calls"), "{page}: {}", r.body);
    }

    // no page ever held a backend token
    for body in &b.seen {
        assert!(!body.contains(&sig.token), "a page shows the token");
        assert!(!body.contains("gone-token-xyz"), "a page shows the token");
    }
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}

#[tokio::test]
async fn tabs_polling_cost_a_backend_one_request_per_second() {
    let sig = signaling("throttle").await;
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
    // the login's overview read /calls too: let that answer age out
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = ui.state.backends.requests.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    // ten tabs polling the live calls at once, three times
    let headers = [("Cookie", b.cookie.as_str()), ("HX-Request", "true")];
    for _ in 0..3 {
        let polls = (0..10).map(|_| {
            common::request(
                ui.addr,
                common::ip("127.0.0.1"),
                "GET",
                "/calls/fragment",
                &headers,
                "",
            )
        });
        for r in futures_util::future::join_all(polls).await {
            assert_eq!(r.status, 200);
        }
    }
    let sent = ui.state.backends.requests.load(Ordering::Relaxed) - before;
    let seconds = started.elapsed().as_secs() + 1;
    assert!(sent >= 1, "the backend was asked");
    assert!(sent <= seconds, "{sent} requests in {seconds} s");
    // after a second the next poll asks again
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = b.get("/calls/fragment").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ui.state.backends.requests.load(Ordering::Relaxed) - before,
        sent + 1
    );
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}

#[tokio::test]
async fn users_are_listed_escaped_and_created_from_the_form() {
    let sig = signaling("users").await;
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
    let (status, _) = sig
        .api(
            "POST",
            "/api/v1/users",
            Some(
                &json!({"username": "mallory", "password": "mallory-secret", "display_name": XSS}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    let r = b.get("/users").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<td>mallory</td>"), "{}", r.body);
    assert!(
        r.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains(XSS), "unescaped: {}", r.body);

    let mut fields = vec![
        ("backend", "main"),
        ("username", "bob"),
        ("password", "tiny-pw"),
        ("extension", "1002"),
        ("display_name", "Bob"),
    ];
    let r = b.post("/users", &fields, false).await;
    assert_eq!(r.status, 403, "no CSRF token");
    // the backend's refusal is shown; the password is not written back
    let r = b.post("/users", &fields, true).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("password: must be at least 8 characters"),
        "{}",
        r.body
    );
    assert!(r.body.contains("value=\"bob\""), "the draft is kept");
    assert!(!r.body.contains("tiny-pw"), "the password is echoed");
    fields[2] = ("password", "bob-secret-1");
    let r = b.post("/users", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = b.get("/users").await;
    assert!(
        r.body.contains("<td>bob</td>") && r.body.contains("<td>1002</td>"),
        "{}",
        r.body
    );
    // the user made in the form can register
    let phone = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    let reg = phone.register("bob", "bob-secret-1", &[]).await;
    assert_eq!(reg.code, 200, "{reg:?}");
    for body in &b.seen {
        assert!(!body.contains(&sig.token), "a page shows the token");
        assert!(!body.contains("bob-secret-1"), "a page shows a password");
    }
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}
