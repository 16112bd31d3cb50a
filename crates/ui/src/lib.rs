//! `switchboard-ui`: the operators' dashboard. It reads the signaling
//! replicas' REST APIs (UI_BACKENDS) on the server side, with their tokens,
//! and renders HTML (askama templates; htmx, vendored and served from
//! `/assets/`, refreshes the live parts). The browser never talks to a
//! backend and never sees a token.
//!
//! Modules: [`config`] (settings), [`auth`] (login, sessions, CSRF),
//! [`backend`] (the API client and its cache), [`tls`] (its TLS towards
//! `https://` backends), [`pages`] (the handlers and their templates).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod auth;
pub mod backend;
pub mod config;
pub mod pages;
pub mod probe;
pub mod secrets;
pub mod tls;

pub use config::{Config, Settings};

/// Everything the handlers share.
pub struct AppState {
    pub settings: Settings,
    pub backends: backend::Backends,
    pub sessions: auth::Sessions,
    pub limiter: auth::LoginLimiter,
}

pub type SharedState = Arc<AppState>;

/// The htmx release vendored under `assets/` (npm package `htmx.org`,
/// licence 0BSD); its URL carries the version, so it is cached for a year.
pub const HTMX_VERSION: &str = "2.0.11";
const HTMX_JS: &str = include_str!("../assets/htmx-2.0.11.min.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const APP_JS: &str = include_str!("../assets/app.js");
/// JsSIP, the browser phone's SIP stack, vendored under `assets/` (npm
/// package `jssip`, licence MIT; bundled with its dependencies by
/// `scripts/vendor-jssip.sh`); cached for a year like htmx.
pub const JSSIP_VERSION: &str = "3.13.8";
const JSSIP_JS: &str = include_str!("../assets/jssip-3.13.8.min.js");
const PHONE_JS: &str = include_str!("../assets/phone.js");

/// The security headers of every response. Scripts and styles come from
/// this server only (htmx is vendored; no inline script or style, no eval).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's router over `state`.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route(
            &format!("/assets/htmx-{HTMX_VERSION}.min.js"),
            get(|| async { asset("text/javascript; charset=utf-8", IMMUTABLE, HTMX_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", DAILY, APP_CSS) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", DAILY, APP_JS) }),
        )
        .route(
            &format!("/assets/jssip-{JSSIP_VERSION}.min.js"),
            get(|| async { asset("text/javascript; charset=utf-8", IMMUTABLE, JSSIP_JS) }),
        )
        .route(
            "/assets/phone.js",
            get(|| async { asset("text/javascript; charset=utf-8", DAILY, PHONE_JS) }),
        )
        .route("/phone", get(pages::phone::page))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/", get(pages::overview::page))
        .route("/overview/fragment", get(pages::overview::fragment))
        .route("/registrations", get(pages::registrations::page))
        .route(
            "/registrations/fragment",
            get(pages::registrations::fragment),
        )
        .route(
            "/registrations/unregister",
            post(pages::registrations::unregister),
        )
        .route("/calls", get(pages::calls::page))
        .route("/calls/fragment", get(pages::calls::fragment))
        .route("/calls/hangup", post(pages::calls::hangup))
        .route("/rtpmanagers", get(pages::rtp::page))
        .route("/rtpmanagers/fragment", get(pages::rtp::fragment))
        .route(
            "/rtpmanagers/drain",
            get(pages::rtp::drain_form).post(pages::rtp::drain),
        )
        .route("/rtpmanagers/undrain", post(pages::rtp::undrain))
        .route("/sessions", get(pages::sessions::page))
        .route("/sessions/fragment", get(pages::sessions::fragment))
        .route("/users", get(pages::users::page).post(pages::users::create))
        .merge(pages::admin::routes())
        .route("/dialplan", get(pages::dialplan::page))
        .route("/dialplan/validate", post(pages::dialplan::validate))
        .route("/dialplan/save", post(pages::dialplan::save))
        .route("/dialplan/dry-run", post(pages::dialplan::dry_run))
        .route("/dialplan/restore", post(pages::dialplan::restore))
        .route("/dialplan/versions/{id}", get(pages::dialplan::version))
        .route("/cdrs", get(pages::cdrs::page))
        .route("/cdrs.csv", get(pages::cdrs::export))
        .route("/cdrs/{id}", get(pages::cdrs::detail))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::guard,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The versioned htmx URL changes with its version: cached for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// app.css, app.js and phone.js keep their names: revalidated daily.
const DAILY: &str = "public, max-age=86400";

/// A static file with its type and cache lifetime.
fn asset(content_type: &'static str, cache: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        // the phone page sets its own (its WebSocket origin added)
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // pages hold live data and the CSRF token: never stored
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Prometheus text: sessions, counted login sources, backend requests.
/// Counts only, no names or addresses, so it is served without login.
async fn metrics(axum::extract::State(s): axum::extract::State<SharedState>) -> Response {
    let body = format!(
        "# HELP switchboard_ui_sessions Live login sessions.\n\
         # TYPE switchboard_ui_sessions gauge\n\
         switchboard_ui_sessions {}\n\
         # HELP switchboard_ui_login_fail_sources Sources with failed logins in their window.\n\
         # TYPE switchboard_ui_login_fail_sources gauge\n\
         switchboard_ui_login_fail_sources {}\n\
         # HELP switchboard_ui_backend_requests_total Requests sent to the backends.\n\
         # TYPE switchboard_ui_backend_requests_total counter\n\
         switchboard_ui_backend_requests_total {}\n",
        s.sessions.count(),
        s.limiter.sources(),
        s.backends.requests.load(Ordering::Relaxed),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A started dashboard.
pub struct Running {
    pub addr: SocketAddr,
    pub state: SharedState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (up to `grace`).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

/// Checks the configuration, binds UI_BIND:UI_PORT and serves.
///
/// # Errors
/// A setting is wrong (the message names it) or the port cannot be bound.
pub async fn run(config: Config) -> anyhow::Result<Running> {
    let settings = config.settings().map_err(anyhow::Error::msg)?;
    let (tls, anchors) = tls::client_config(&settings.backend_ca).map_err(anyhow::Error::msg)?;
    if anchors == 0
        && settings
            .backends
            .iter()
            .any(|b| b.base.starts_with("https://"))
    {
        tracing::warn!(
            "no trusted CA certificates (none installed, no UI_BACKEND_CA_FILE): every https:// backend will show as down"
        );
    }
    let state = Arc::new(AppState {
        backends: backend::Backends::new(settings.backends.clone(), tls),
        settings,
        sessions: auth::Sessions::default(),
        limiter: auth::LoginLimiter::new(
            config.login_fail_limit,
            Duration::from_secs(config.login_fail_window),
        ),
    });
    let listener = tokio::net::TcpListener::bind((config.bind, config.port))
        .await
        .with_context(|| format!("UI_PORT: cannot bind {}:{}", config.bind, config.port))?;
    let addr = listener.local_addr()?;
    let app = router(Arc::clone(&state)).into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server failed: {e}");
        }
    });
    Ok(Running {
        addr,
        state,
        stop,
        task,
    })
}
