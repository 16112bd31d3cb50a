//! `GET /users`: every backend's users; `POST /users` creates one on a
//! backend (`POST /api/v1/users`). The password goes to the backend, which
//! keeps its HA1 only, and is never written back into a page.

use askama::Template;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Map, Value};

use super::{Down, Layout, items, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};

pub struct Row {
    pub backend: String,
    pub id: String,
    pub username: String,
    pub extension: String,
    pub display_name: String,
    pub account_id: String,
    pub enabled: bool,
}

pub struct Table {
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
}

/// What the create form keeps after a refusal (never the password).
#[derive(Default)]
pub struct Draft {
    pub backend: String,
    pub username: String,
    pub extension: String,
    pub display_name: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct Page {
    l: Layout,
    t: Table,
    backends: Vec<String>,
    draft: Draft,
}

async fn load(state: &SharedState) -> Table {
    let mut rows = Vec::new();
    let mut down = Vec::new();
    for (backend, answer) in state.backends.get_all("/users").await {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                down.push(Down::new(&backend, &e));
                continue;
            }
        };
        for u in items(&v) {
            rows.push(Row {
                backend: backend.clone(),
                id: text(u, "id"),
                username: text(u, "username"),
                extension: text(u, "extension"),
                display_name: text(u, "display_name"),
                account_id: text(u, "account_id"),
                enabled: u.get("enabled").and_then(Value::as_bool) != Some(false),
            });
        }
    }
    Table { rows, down }
}

async fn full(
    state: &SharedState,
    ctx: &Ctx,
    failed: Option<(String, StatusCode)>,
    draft: Draft,
) -> Response {
    let mut l = Layout::new("Users", "users", &ctx.csrf);
    let (notice, status) = match failed {
        Some((m, s)) => (Some(m), s),
        None => (None, StatusCode::OK),
    };
    l.notice = notice;
    render(
        &Page {
            l,
            t: load(state).await,
            backends: state.backends.names().map(str::to_owned).collect(),
            draft,
        },
        status,
    )
}

pub async fn page(State(state): State<SharedState>, Extension(ctx): Extension<Ctx>) -> Response {
    full(&state, &ctx, None, Draft::default()).await
}

#[derive(Debug, serde::Deserialize)]
pub struct NewUser {
    backend: String,
    username: String,
    password: String,
    #[serde(default)]
    extension: String,
    #[serde(default)]
    display_name: String,
}

pub async fn create(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<NewUser>,
) -> Response {
    let draft = Draft {
        backend: f.backend.clone(),
        username: f.username.clone(),
        extension: f.extension.clone(),
        display_name: f.display_name.clone(),
    };
    let Some(idx) = state.backends.index(&f.backend) else {
        return full(
            &state,
            &ctx,
            Some(("No such backend.".into(), StatusCode::BAD_REQUEST)),
            draft,
        )
        .await;
    };
    let mut body = Map::new();
    body.insert(
        "username".into(),
        Value::String(f.username.trim().to_owned()),
    );
    body.insert("password".into(), Value::String(f.password));
    for (k, v) in [
        ("extension", &f.extension),
        ("display_name", &f.display_name),
    ] {
        if !v.trim().is_empty() {
            body.insert(k.into(), Value::String(v.trim().to_owned()));
        }
    }
    let body = Value::Object(body);
    match state
        .backends
        .send(idx, Method::POST, "/users", Some(&body))
        .await
    {
        Ok(_) => redirect("/users"),
        Err(e) => {
            let msg = format!(
                "user {} not created on {}: {e}",
                draft.username, draft.backend
            );
            full(&state, &ctx, Some((msg, e.action_status())), draft).await
        }
    }
}
