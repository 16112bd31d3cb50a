//! Accounts: `GET /accounts` (every backend's, with a create form), `POST
//! /accounts` (`POST /api/v1/accounts`), `GET`/`POST /accounts/edit`
//! (`PATCH /api/v1/accounts/{id}`: name, domain, call limit; the backend
//! refuses a new domain while the account has users, and says so).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Map, Value};

use super::admin::{Which, layout, opt_int, opt_text};
use super::{Down, Layout, items, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};

pub struct Row {
    pub backend: String,
    pub id: String,
    pub name: String,
    pub domain: String,
    pub max_concurrent_calls: String,
}

/// The create and edit forms' fields.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Fields {
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub max_concurrent_calls: String,
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct Page {
    l: Layout,
    rows: Vec<Row>,
    down: Vec<Down>,
    backends: Vec<String>,
    draft: Fields,
}

#[derive(Template)]
#[template(path = "account_edit.html")]
struct EditPage {
    l: Layout,
    a: Fields,
}

fn row(backend: &str, a: &Value) -> Row {
    let max = text(a, "max_concurrent_calls");
    Row {
        backend: backend.to_owned(),
        id: text(a, "id"),
        name: text(a, "name"),
        domain: text(a, "domain"),
        max_concurrent_calls: if max == "0" { "unlimited".into() } else { max },
    }
}

async fn full(
    state: &SharedState,
    ctx: &Ctx,
    failed: Option<(String, StatusCode)>,
    draft: Fields,
) -> Response {
    let (l, status) = layout("Accounts", "accounts", ctx, failed);
    let mut rows = Vec::new();
    let mut down = Vec::new();
    for (backend, answer) in state.backends.get_all("/accounts").await {
        match answer {
            Ok(v) => rows.extend(items(&v).iter().map(|a| row(&backend, a))),
            Err(e) => down.push(Down::new(&backend, &e)),
        }
    }
    let backends = state.backends.names().map(str::to_owned).collect();
    render(
        &Page {
            l,
            rows,
            down,
            backends,
            draft,
        },
        status,
    )
}

pub async fn page(State(state): State<SharedState>, Extension(ctx): Extension<Ctx>) -> Response {
    full(&state, &ctx, None, Fields::default()).await
}

/// The JSON body of a create (`patch`: false) or an edit: `domain` empty
/// is no domain; the call limit empty is unlimited (0) on create and
/// unchanged on edit.
fn body(f: &Fields, patch: bool) -> Result<Value, (String, StatusCode)> {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(f.name.trim().to_owned()));
    let domain = opt_text(&f.domain);
    if patch || !domain.is_null() {
        m.insert("domain".into(), domain);
    }
    match opt_int("max_concurrent_calls", &f.max_concurrent_calls) {
        Ok(Some(n)) => {
            m.insert("max_concurrent_calls".into(), Value::from(n));
        }
        Ok(None) => {}
        Err(e) => return Err((e, StatusCode::BAD_REQUEST)),
    }
    Ok(Value::Object(m))
}

pub async fn create(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Fields>,
) -> Response {
    let Some(idx) = state.backends.index(&f.backend) else {
        let failed = ("No such backend.".to_owned(), StatusCode::BAD_REQUEST);
        return full(&state, &ctx, Some(failed), f).await;
    };
    let body = match body(&f, false) {
        Ok(b) => b,
        Err(failed) => return full(&state, &ctx, Some(failed), f).await,
    };
    match state
        .backends
        .send(idx, Method::POST, "/accounts", Some(&body))
        .await
    {
        Ok(_) => redirect("/accounts"),
        Err(e) => {
            let msg = format!("account {} not created on {}: {e}", f.name, f.backend);
            full(&state, &ctx, Some((msg, e.action_status())), f).await
        }
    }
}

fn edit_page(ctx: &Ctx, a: Fields, failed: Option<(String, StatusCode)>) -> Response {
    let (l, status) = layout("Edit account", "accounts", ctx, failed);
    render(&EditPage { l, a }, status)
}

fn target(
    state: &SharedState,
    backend: &str,
    id: &str,
) -> Result<(usize, i64), (String, StatusCode)> {
    let idx = state
        .backends
        .index(backend)
        .ok_or_else(|| ("No such backend.".to_owned(), StatusCode::BAD_REQUEST))?;
    let id = id
        .trim()
        .parse::<i64>()
        .map_err(|_| ("id: not an account id".to_owned(), StatusCode::BAD_REQUEST))?;
    Ok((idx, id))
}

pub async fn form(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(w): Query<Which>,
) -> Response {
    let mut a = Fields {
        backend: w.backend.clone(),
        id: w.id.clone(),
        ..Fields::default()
    };
    let (idx, id) = match target(&state, &w.backend, &w.id) {
        Ok(t) => t,
        Err(failed) => return edit_page(&ctx, a, Some(failed)),
    };
    match state.backends.get(idx, &format!("/accounts/{id}")).await {
        Ok(v) => {
            a.name = text(&v, "name");
            a.domain = text(&v, "domain");
            a.max_concurrent_calls = text(&v, "max_concurrent_calls");
            edit_page(&ctx, a, None)
        }
        Err(e) => {
            let msg = format!("account {id} on {}: {e}", w.backend);
            edit_page(&ctx, a, Some((msg, e.action_status())))
        }
    }
}

pub async fn save(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Fields>,
) -> Response {
    let (idx, id) = match target(&state, &f.backend, &f.id) {
        Ok(t) => t,
        Err(failed) => return edit_page(&ctx, f, Some(failed)),
    };
    let body = match body(&f, true) {
        Ok(b) => b,
        Err(failed) => return edit_page(&ctx, f, Some(failed)),
    };
    let path = format!("/accounts/{id}");
    match state
        .backends
        .send(idx, Method::PATCH, &path, Some(&body))
        .await
    {
        Ok(_) => redirect("/accounts"),
        Err(e) => {
            let msg = format!("account {id} on {} not changed: {e}", f.backend);
            edit_page(&ctx, f, Some((msg, e.action_status())))
        }
    }
}
