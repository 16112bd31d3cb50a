//! `GET /login`, `POST /login`, `POST /logout`.

use std::net::SocketAddr;
use std::time::Instant;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};

use super::{Layout, render};
use crate::SharedState;
use crate::auth::{self, Ctx};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
}

fn page(notice: Option<String>, status: StatusCode) -> Response {
    let mut l = Layout::new("Log in", "login", "");
    l.notice = notice;
    render(&LoginPage { l }, status)
}

pub async fn form(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if auth::session_id(&headers).is_some_and(|id| state.sessions.touch(id).is_some()) {
        return auth::redirect("/");
    }
    page(None, StatusCode::OK)
}

#[derive(serde::Deserialize)]
pub struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn submit(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    let o = auth::origin(peer, &headers, &state.settings.trusted_proxies);
    if let Err(wait) = state.limiter.check(o.ip, Instant::now()) {
        tracing::warn!(source = %o.ip, "login refused: too many failures");
        let mut r = page(
            Some(format!(
                "Too many failed logins from your address; try again in {wait} s."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        return r;
    }
    if !auth::check_login(&state, o.ip, &c.username, &c.password) {
        tracing::warn!(source = %o.ip, "failed login");
        return page(
            Some("Wrong user name or password.".into()),
            StatusCode::UNAUTHORIZED,
        );
    }
    let (id, _csrf) = state.sessions.create();
    tracing::info!(source = %o.ip, sessions = state.sessions.count(), "admin logged in");
    let mut r = auth::redirect("/");
    if let Ok(v) = auth::session_cookie(&id, o.secure).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub async fn logout(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Extension(_ctx): Extension<Ctx>,
) -> Response {
    if let Some(id) = auth::session_id(&headers) {
        state.sessions.remove(id);
    }
    let o = auth::origin(peer, &headers, &state.settings.trusted_proxies);
    let mut r = auth::redirect("/login");
    if let Ok(v) = auth::clear_cookie(o.secure).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.into_response()
}
