//! METRICS_PORT: `/metrics` without token, nothing else.

mod common;

#[tokio::test]
async fn the_metrics_port_serves_metrics_without_token_and_nothing_else() {
    let s = common::start("metrics-port", |c| c.metrics_port = Some(0)).await;
    let m = s.running.metrics_addr.expect("METRICS_PORT bound");
    assert_eq!(m.ip(), s.api.ip(), "bound to API_BIND by default");
    assert_ne!(m.port(), s.api.port());

    let (status, body) = common::http(m, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{body}");
    let text = body.as_str().expect("text exposition");
    assert!(
        text.lines()
            .any(|l| l.starts_with("switchboard_registrations_aors ")),
        "{text}"
    );

    for path in [
        "/api/v1/users",
        "/api/v1/health",
        "/api/v1/openapi.json",
        "/",
    ] {
        let (status, body) = common::http(m, "GET", path, None, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        // a token does not open anything either
        let (status, _) = common::http(m, "GET", path, Some(&s.token), None).await;
        assert_eq!(status, 404, "{path} with the token");
    }

    // the API port keeps /metrics behind the token
    let (status, _) = common::http(s.api, "GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = common::http(s.api, "GET", "/metrics", Some(&s.token), None).await;
    assert_eq!(status, 200);
    s.stop().await;
}

#[tokio::test]
async fn without_metrics_port_there_is_no_second_listener() {
    let s = common::start("metrics-off", |_| {}).await;
    assert_eq!(s.running.metrics_addr, None);
    s.stop().await;
}

#[tokio::test]
async fn metrics_bind_moves_the_metrics_port() {
    let s = common::start("metrics-bind", |c| {
        c.metrics_port = Some(0);
        c.metrics_bind = Some("::1".parse().unwrap());
    })
    .await;
    let m = s.running.metrics_addr.expect("METRICS_PORT bound");
    assert_eq!(m.ip().to_string(), "::1");
    let (status, _) = common::http(m, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    s.stop().await;
}
