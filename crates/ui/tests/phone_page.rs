//! The browser phone page over HTTP: served without a dashboard login,
//! its Content-Security-Policy lets the page connect to UI_SIP_WSS_URL's
//! origin and nowhere else, the vendored JsSIP is served with a long
//! cache, and without UI_SIP_WSS_URL the page says the phone is not
//! configured and loads no SIP library. (tests/phone.rs drives it in a
//! real browser.)

mod common;

use common::{closed_port, ip, request, ui};

#[tokio::test]
async fn the_phone_page_needs_no_login_and_may_connect_to_its_socket_only() {
    let backend = format!("http://127.0.0.1:{}", closed_port().await);
    let ui = ui(&[("main", backend, None)], |c| {
        c.sip_wss_url = Some("wss://sip.example.com:8089/ws".into());
        c.sip_domain = Some("example.com".into());
    })
    .await;
    let r = request(ui.addr, ip("127.0.0.1"), "GET", "/phone", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains(r#"data-wss-url="wss://sip.example.com:8089/ws""#),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(r#"data-domain="example.com""#),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(r#"<script src="/assets/jssip-3.13.8.min.js" defer>"#)
    );
    assert!(r.body.contains(r#"<script src="/assets/phone.js" defer>"#));
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("connect-src 'self' wss://sip.example.com:8089;"),
        "{csp}"
    );
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(
        r.header("permissions-policy"),
        Some("microphone=(self), camera=(), geolocation=()")
    );
    // the rest of the dashboard keeps its own policy and its login
    let other = request(ui.addr, ip("127.0.0.1"), "GET", "/", &[], "").await;
    assert_eq!(other.status, 303);
    assert!(
        other
            .header("content-security-policy")
            .is_some_and(|c| c.contains("connect-src 'self';"))
    );

    let js = request(
        ui.addr,
        ip("127.0.0.1"),
        "GET",
        "/assets/jssip-3.13.8.min.js",
        &[],
        "",
    )
    .await;
    assert_eq!(js.status, 200);
    assert!(js.body.contains("JsSIP") && js.body.len() > 100_000);
    assert_eq!(
        js.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let phone = request(ui.addr, ip("127.0.0.1"), "GET", "/assets/phone.js", &[], "").await;
    assert_eq!(phone.status, 200);
    assert!(phone.body.contains("new JsSIP.UA("));
    ui.shutdown(std::time::Duration::from_secs(1)).await;
}

#[tokio::test]
async fn without_a_websocket_url_the_page_says_so() {
    let backend = format!("http://127.0.0.1:{}", closed_port().await);
    let ui = ui(&[("main", backend, None)], |_| {}).await;
    let r = request(ui.addr, ip("127.0.0.1"), "GET", "/phone", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("UI_SIP_WSS_URL"), "{}", r.body);
    assert!(!r.body.contains("jssip"), "{}", r.body);
    assert!(!r.body.contains("id=\"phone\""), "{}", r.body);
    ui.shutdown(std::time::Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_bad_websocket_url_stops_start_up_naming_the_variable() {
    let mut c = switchboard_ui::Config::for_tests(common::temp_dir("phone-bad"));
    c.admin_password = Some("x".into());
    c.backends = Some("main=http://127.0.0.1:9".into());
    c.sip_wss_url = Some("wss://sip.example.com; script-src *".into());
    let e = switchboard_ui::run(c).await.err().expect("refused");
    assert!(e.to_string().contains("UI_SIP_WSS_URL"), "{e}");
}
