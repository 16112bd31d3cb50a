//! Trunks: `GET /trunks` (every backend's, with the registration status
//! the API reports), `GET /trunks/edit` (the form, filled from `GET
//! /api/v1/trunks/{name}`), `POST /trunks` (`PUT /api/v1/trunks/{name}`,
//! create or replace), `GET`/`POST /trunks/delete` (a confirmation, then
//! `DELETE`).
//!
//! Passwords are write-only: the API never returns them and the form never
//! shows one; an edit that leaves a password empty keeps the stored one
//! (the API's rule for a PUT without it).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Map, Value};

use super::admin::{ConfirmDelete, Which, layout, opt_int};
use super::{Down, Layout, items, now_ms, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};
use crate::backend::segment;

pub struct Row {
    pub backend: String,
    pub name: String,
    pub host: String,
    pub transport: String,
    pub username: String,
    pub account_id: String,
    pub inbound_auth: String,
    /// `ok`, `degraded`, `down` or `off` (no registration asked for).
    pub state: &'static str,
    pub status: String,
}

/// The form's fields (the passwords are only ever read from a post).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Fields {
    #[serde(default)]
    pub backend: String,
    /// `create` for the new-trunk form: an existing name is refused rather
    /// than replaced.
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub transport: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub register: Option<String>,
    #[serde(default)]
    pub expires: String,
    #[serde(default)]
    pub strip: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub inbound_transport: String,
    #[serde(default)]
    pub inbound_auth: String,
    #[serde(default)]
    pub inbound_username: String,
    #[serde(default)]
    pub inbound_password: String,
}

impl Fields {
    /// What the form shows again: everything but the passwords.
    fn redisplayed(mut self) -> Self {
        self.password.clear();
        self.inbound_password.clear();
        self
    }
}

#[derive(Template)]
#[template(path = "trunks.html")]
struct Page {
    l: Layout,
    rows: Vec<Row>,
    down: Vec<Down>,
}

#[derive(Template)]
#[template(path = "trunk_edit.html")]
struct EditPage {
    l: Layout,
    t: Fields,
    backends: Vec<String>,
    creating: bool,
}

/// The registration as one word and a line.
pub fn registration(t: &Value, now_ms: i64) -> (&'static str, String) {
    if t.get("register").and_then(Value::as_bool) != Some(true) {
        return ("off", "no registration".into());
    }
    let s = t.get("status").cloned().unwrap_or(Value::Null);
    let code = s.get("last_code").and_then(Value::as_i64);
    let failures = s.get("failures").and_then(Value::as_i64).unwrap_or(0);
    if s.get("registered").and_then(Value::as_bool) == Some(true) {
        let left = s
            .get("expires_at")
            .and_then(Value::as_i64)
            .map(|at| format!(", expires in {}", super::duration((at - now_ms) / 1000)))
            .unwrap_or_default();
        return ("ok", format!("registered{left}"));
    }
    let mut why = Vec::new();
    if let Some(c) = code {
        why.push(format!("last answer {c}"));
    }
    let err = text(&s, "last_error");
    if !err.is_empty() {
        why.push(err);
    }
    if failures > 0 {
        why.push(format!("{failures} failures"));
    }
    let state = if failures > 0 { "down" } else { "degraded" };
    if why.is_empty() {
        (state, "not registered yet".into())
    } else {
        (state, format!("not registered: {}", why.join(", ")))
    }
}

pub async fn page(State(state): State<SharedState>, Extension(ctx): Extension<Ctx>) -> Response {
    list(&state, &ctx, None).await
}

async fn list(state: &SharedState, ctx: &Ctx, failed: Option<(String, StatusCode)>) -> Response {
    let (l, status) = layout("Trunks", "trunks", ctx, failed);
    let now = now_ms();
    let mut rows = Vec::new();
    let mut down = Vec::new();
    for (backend, answer) in state.backends.get_all("/trunks").await {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                down.push(Down::new(&backend, &e));
                continue;
            }
        };
        for t in items(&v) {
            let (st, line) = registration(t, now);
            rows.push(Row {
                backend: backend.clone(),
                name: text(t, "name"),
                host: text(t, "host"),
                transport: text(t, "transport"),
                username: text(t, "username"),
                account_id: text(t, "account_id"),
                inbound_auth: text(t, "inbound_auth"),
                state: st,
                status: line,
            });
        }
    }
    render(&Page { l, rows, down }, status)
}

fn edit_page(
    state: &SharedState,
    ctx: &Ctx,
    t: Fields,
    creating: bool,
    failed: Option<(String, StatusCode)>,
) -> Response {
    let title = if creating { "New trunk" } else { "Edit trunk" };
    let (l, status) = layout(title, "trunks", ctx, failed);
    let backends = state.backends.names().map(str::to_owned).collect();
    render(
        &EditPage {
            l,
            t: t.redisplayed(),
            backends,
            creating,
        },
        status,
    )
}

/// `GET /trunks/edit?backend=&id=<name>`; without an id, the new-trunk form.
pub async fn form(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(w): Query<Which>,
) -> Response {
    let mut t = Fields {
        backend: w.backend.clone(),
        name: w.id.clone(),
        transport: "udp".into(),
        ..Fields::default()
    };
    if w.id.is_empty() {
        t.mode = "create".into();
        t.account_id = "1".into();
        t.expires = "3600".into();
        return edit_page(&state, &ctx, t, true, None);
    }
    let Some(idx) = state.backends.index(&w.backend) else {
        let failed = ("No such backend.".to_owned(), StatusCode::BAD_REQUEST);
        return edit_page(&state, &ctx, t, false, Some(failed));
    };
    match state
        .backends
        .get(idx, &format!("/trunks/{}", segment(&w.id)))
        .await
    {
        Ok(v) => {
            let f = |k: &str| text(&v, k);
            t = Fields {
                backend: w.backend,
                mode: String::new(),
                name: f("name"),
                host: f("host"),
                transport: f("transport"),
                username: f("username"),
                password: String::new(),
                domain: f("domain"),
                register: (v.get("register").and_then(Value::as_bool) == Some(true))
                    .then(|| "on".to_owned()),
                expires: f("expires"),
                strip: f("strip"),
                prefix: f("prefix"),
                account_id: f("account_id"),
                inbound_transport: f("inbound_transport"),
                inbound_auth: f("inbound_auth"),
                inbound_username: f("inbound_username"),
                inbound_password: String::new(),
            };
            edit_page(&state, &ctx, t, false, None)
        }
        Err(e) => {
            let msg = format!("trunk {} on {}: {e}", w.id, w.backend);
            edit_page(&state, &ctx, t, false, Some((msg, e.action_status())))
        }
    }
}

/// The `PUT` body: empty optional fields are left out (the API's
/// defaults; for a password: keep the stored one).
pub fn body(f: &Fields) -> Result<Value, String> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("name", Value::String(f.name.trim().to_owned()));
    put("host", Value::String(f.host.trim().to_owned()));
    put("register", Value::Bool(f.register.is_some()));
    put("prefix", Value::String(f.prefix.trim().to_owned()));
    for (k, v) in [
        ("transport", &f.transport),
        ("username", &f.username),
        ("domain", &f.domain),
        ("inbound_transport", &f.inbound_transport),
        ("inbound_auth", &f.inbound_auth),
        ("inbound_username", &f.inbound_username),
    ] {
        if !v.trim().is_empty() {
            put(k, Value::String(v.trim().to_owned()));
        }
    }
    // passwords as typed (spaces may be part of them)
    for (k, v) in [
        ("password", &f.password),
        ("inbound_password", &f.inbound_password),
    ] {
        if !v.is_empty() {
            put(k, Value::String(v.clone()));
        }
    }
    for (k, v) in [
        ("expires", &f.expires),
        ("strip", &f.strip),
        ("account_id", &f.account_id),
    ] {
        if let Some(n) = opt_int(k, v)? {
            if n < 0 && k != "account_id" {
                return Err(format!("{k}: must not be negative"));
            }
            put(k, Value::from(n));
        }
    }
    Ok(Value::Object(m))
}

pub async fn save(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Fields>,
) -> Response {
    let creating = f.mode == "create";
    let Some(idx) = state.backends.index(&f.backend) else {
        let failed = ("No such backend.".to_owned(), StatusCode::BAD_REQUEST);
        return edit_page(&state, &ctx, f, creating, Some(failed));
    };
    let name = f.name.trim().to_owned();
    if name.is_empty() {
        let failed = ("name: required".to_owned(), StatusCode::BAD_REQUEST);
        return edit_page(&state, &ctx, f, creating, Some(failed));
    }
    let body = match body(&f) {
        Ok(b) => b,
        Err(m) => {
            return edit_page(
                &state,
                &ctx,
                f,
                creating,
                Some((m, StatusCode::BAD_REQUEST)),
            );
        }
    };
    let path = format!("/trunks/{}", segment(&name));
    if creating {
        // PUT replaces: a new trunk must not silently take an old one's name
        let exists = state.backends.send(idx, Method::GET, &path, None).await;
        if exists.is_ok() {
            let msg = format!(
                "name: trunk {name} exists on {} (edit it instead)",
                f.backend
            );
            return edit_page(&state, &ctx, f, creating, Some((msg, StatusCode::CONFLICT)));
        }
    }
    match state
        .backends
        .send(idx, Method::PUT, &path, Some(&body))
        .await
    {
        Ok(_) => redirect("/trunks"),
        Err(e) => {
            let msg = format!("trunk {name} not saved on {}: {e}", f.backend);
            edit_page(&state, &ctx, f, creating, Some((msg, e.action_status())))
        }
    }
}

pub async fn confirm(Extension(ctx): Extension<Ctx>, Query(w): Query<Which>) -> Response {
    render(
        &ConfirmDelete {
            l: Layout::new("Delete trunk", "trunks", &ctx.csrf),
            what: format!("trunk {} on {}", w.id, w.backend),
            action: "/trunks/delete",
            back: "/trunks",
            backend: w.backend,
            id: w.id,
        },
        StatusCode::OK,
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct Delete {
    backend: String,
    id: String,
    #[serde(default)]
    confirm: String,
}

pub async fn delete(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Delete>,
) -> Response {
    if f.confirm != "yes" {
        let failed = (
            "confirm: deleting a trunk needs the confirmation".to_owned(),
            StatusCode::BAD_REQUEST,
        );
        return list(&state, &ctx, Some(failed)).await;
    }
    let Some(idx) = state.backends.index(&f.backend) else {
        let failed = ("No such backend.".to_owned(), StatusCode::BAD_REQUEST);
        return list(&state, &ctx, Some(failed)).await;
    };
    let path = format!("/trunks/{}", segment(&f.id));
    match state.backends.send(idx, Method::DELETE, &path, None).await {
        Ok(_) => redirect("/trunks"),
        Err(e) => {
            let msg = format!("trunk {} on {} not deleted: {e}", f.id, f.backend);
            list(&state, &ctx, Some((msg, e.action_status()))).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registration_lines() {
        let now = 1_000_000;
        assert_eq!(registration(&json!({"register": false}), now).0, "off");
        let ok = json!({"register": true, "status": {"registered": true, "expires_at": now + 90_000, "failures": 0}});
        assert_eq!(
            registration(&ok, now),
            ("ok", "registered, expires in 1:30".into())
        );
        let bad = json!({"register": true, "status": {"registered": false, "last_code": 403, "failures": 2, "last_error": null}});
        assert_eq!(
            registration(&bad, now),
            ("down", "not registered: last answer 403, 2 failures".into())
        );
        let new = json!({"register": true, "status": {"registered": false, "failures": 0}});
        assert_eq!(
            registration(&new, now),
            ("degraded", "not registered yet".into())
        );
    }

    #[test]
    fn put_bodies_leave_empty_fields_out() {
        let f = Fields {
            name: " sip-1 ".into(),
            host: "192.0.2.1:5060".into(),
            transport: "udp".into(),
            expires: "600".into(),
            register: Some("on".into()),
            ..Fields::default()
        };
        assert_eq!(
            body(&f),
            Ok(
                json!({"name": "sip-1", "host": "192.0.2.1:5060", "transport": "udp",
                      "register": true, "prefix": "", "expires": 600})
            )
        );
        let f = Fields {
            strip: "x".into(),
            ..Fields::default()
        };
        assert_eq!(body(&f), Err("strip: must be a whole number".into()));
        let f = Fields {
            password: " p w ".into(),
            ..Fields::default()
        };
        assert_eq!(body(&f).map(|b| b["password"].clone()), Ok(json!(" p w ")));
    }
}
