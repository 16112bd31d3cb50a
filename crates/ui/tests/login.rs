//! Login and safety over HTTP on loopback: the probe, redirects to the
//! login page, wrong passwords (401, then 429 with Retry-After), the
//! session cookie's attributes (Secure only from a trusted proxy saying
//! HTTPS), CSRF, logout and the security headers.

mod common;

use common::{PASSWORD, Resp, closed_port, ip, login, request, ui};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn try_login(
    ui: std::net::SocketAddr,
    from: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers = vec![FORM];
    headers.extend_from_slice(extra);
    let body =
        serde_urlencoded::to_string([("username", "admin"), ("password", password)]).expect("form");
    request(ui, ip(from), "POST", "/login", &headers, &body).await
}

#[tokio::test]
async fn probe_redirects_and_security_headers() {
    let port = closed_port().await;
    let ui = ui(&[("a", format!("http://127.0.0.1:{port}"), None)], |_| {}).await;
    let addr = ui.addr;

    let r = request(addr, ip("127.0.0.1"), "GET", "/health", &[], "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));

    for path in [
        "/",
        "/registrations",
        "/calls",
        "/rtpmanagers",
        "/registrations?q=x",
    ] {
        let r = request(addr, ip("127.0.0.1"), "GET", path, &[], "").await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/login"), "{path}");
    }
    // htmx polling a fragment after the session ended is sent to the login page
    let r = request(
        addr,
        ip("127.0.0.1"),
        "GET",
        "/calls/fragment",
        &[("HX-Request", "true")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("hx-redirect"), Some("/login"));
    // an action without a session is refused before anything is read
    let r = request(
        addr,
        ip("127.0.0.1"),
        "POST",
        "/calls/hangup",
        &[FORM],
        "backend=a&id=x",
    )
    .await;
    assert_eq!(r.status, 403);
    // a forged cookie is no session
    let fake = format!("sb_session={}", "ab".repeat(32));
    let r = request(
        addr,
        ip("127.0.0.1"),
        "GET",
        "/",
        &[("Cookie", fake.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status, 303);

    let r = request(addr, ip("127.0.0.1"), "GET", "/login", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<form class=\"login\""), "{}", r.body);
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // the vendored htmx, cached for long, and the page refers to it
    let r = request(
        addr,
        ip("127.0.0.1"),
        "GET",
        "/assets/htmx-2.0.11.min.js",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("cache-control")
            .is_some_and(|c| c.contains("immutable"))
    );
    assert!(r.body.starts_with("var htmx="), "{}", &r.body[..40]);
    ui.shutdown(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_rate_limited() {
    let port = closed_port().await;
    let ui = ui(&[("a", format!("http://127.0.0.1:{port}"), None)], |c| {
        c.login_fail_limit = 3;
        c.trusted_proxies = Some("127.0.0.1".into());
    })
    .await;
    let addr = ui.addr;
    for i in 0..3 {
        let r = try_login(addr, "127.0.0.3", "wrong", &[]).await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.body.contains("Wrong user name or password"), "{}", r.body);
        assert!(r.header("set-cookie").is_none());
    }
    let r = try_login(addr, "127.0.0.3", "wrong", &[]).await;
    assert_eq!(r.status, 429);
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=300).contains(&wait), "{wait}");
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    // the right password does not get through a block either
    let r = try_login(addr, "127.0.0.3", PASSWORD, &[]).await;
    assert_eq!(r.status, 429);
    // nor does a forged X-Forwarded-For from an untrusted peer
    let r = try_login(
        addr,
        "127.0.0.3",
        PASSWORD,
        &[("X-Forwarded-For", "198.51.100.1")],
    )
    .await;
    assert_eq!(r.status, 429);
    // a trusted proxy's clients are counted each on their own
    let r = try_login(
        addr,
        "127.0.0.1",
        "wrong",
        &[("X-Forwarded-For", "198.51.100.9")],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = try_login(addr, "127.0.0.4", PASSWORD, &[]).await;
    assert_eq!(r.status, 303, "another source logs in");
    // the wrong user with the right password is wrong too
    let body = format!("username=root&password={PASSWORD}");
    let r = request(addr, ip("127.0.0.5"), "POST", "/login", &[FORM], &body).await;
    assert_eq!(r.status, 401);
    ui.shutdown(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn session_cookie_attributes_follow_the_trusted_proxy() {
    let port = closed_port().await;
    let ui = ui(&[("a", format!("http://127.0.0.1:{port}"), None)], |c| {
        c.trusted_proxies = Some("127.0.0.1/32".into());
    })
    .await;
    let addr = ui.addr;
    let https = ("X-Forwarded-Proto", "https");
    for (from, extra, secure) in [
        ("127.0.0.1", &[][..], false),
        ("127.0.0.1", &[https][..], true),
        ("127.0.0.2", &[https][..], false),
    ] {
        let r = try_login(addr, from, PASSWORD, extra).await;
        assert_eq!(r.status, 303, "{from} {extra:?}");
        assert_eq!(r.header("location"), Some("/"));
        let c = r.header("set-cookie").expect("cookie");
        assert!(c.starts_with("sb_session="), "{c}");
        assert!(c.contains("HttpOnly"), "{c}");
        assert!(c.contains("SameSite=Strict"), "{c}");
        assert!(c.contains("Path=/"), "{c}");
        assert_eq!(c.contains("Secure"), secure, "{from} {extra:?}: {c}");
    }
    ui.shutdown(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn csrf_is_required_and_logout_ends_the_session() {
    let port = closed_port().await;
    let ui = ui(&[("a", format!("http://127.0.0.1:{port}"), None)], |_| {}).await;
    let mut b = login(ui.addr).await;
    assert_eq!(b.csrf.len(), 64);
    let page = b.get("/").await;
    assert!(
        page.body.contains(&format!(
            "hx-headers='{{\"X-CSRF-Token\": \"{}\"}}'",
            b.csrf
        )),
        "htmx sends the token: {}",
        page.body
    );

    let r = b.post("/logout", &[], false).await;
    assert_eq!(r.status, 403, "logout without the token");
    let r = b
        .post("/logout", &[("csrf", "0".repeat(64).as_str())], false)
        .await;
    assert_eq!(r.status, 403, "a wrong token");
    assert_eq!(b.get("/").await.status, 200, "still logged in");

    let r = b.post("/logout", &[], true).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let r = b.get("/").await;
    assert_eq!(r.status, 303, "the session is gone on the server");
    ui.shutdown(std::time::Duration::from_secs(2)).await;
}
