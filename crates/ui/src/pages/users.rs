//! `GET /users?q=&offset=`: every backend's users, searchable by user name,
//! extension or display name, [`PAGE_ROWS`] at a time; `POST /users` creates one on a
//! backend (`POST /api/v1/users`). The password goes to the backend, which
//! keeps its HA1 only, and is never written back into a page.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Map, Value};

use super::{Down, Layout, PAGE_ROWS, Pager, items, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};
use crate::backend::segment;

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
    pub q: String,
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
    pub total: usize,
    pub pager: Pager,
}

impl Table {
    /// The page's own URL up to the offset, for the previous/next links.
    pub fn base(&self) -> String {
        format!("/users?q={}&", segment(&self.q))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
    /// Index of the first matching row shown.
    #[serde(default)]
    offset: usize,
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

async fn load(state: &SharedState, q: &str, offset: usize) -> Table {
    let t = load_at(state, q, Pager::start(offset)).await;
    if t.rows.is_empty() && t.pager.matched > 0 {
        return load_at(state, q, Pager::start(t.pager.matched - 1)).await;
    }
    t
}

async fn load_at(state: &SharedState, q: &str, offset: usize) -> Table {
    let needle = q.trim().to_lowercase();
    let mut rows = Vec::new();
    let mut down = Vec::new();
    let mut total = 0;
    let mut matched = 0;
    for (backend, answer) in state.backends.get_all("/users").await {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                down.push(Down::new(&backend, &e));
                continue;
            }
        };
        for u in items(&v) {
            total += 1;
            let username = text(u, "username");
            let extension = text(u, "extension");
            let display_name = text(u, "display_name");
            let hit = needle.is_empty()
                || [&username, &extension, &display_name]
                    .iter()
                    .any(|s| s.to_lowercase().contains(&needle));
            if !hit {
                continue;
            }
            matched += 1;
            if !Pager::takes(offset, matched - 1) {
                continue;
            }
            rows.push(Row {
                backend: backend.clone(),
                id: text(u, "id"),
                username,
                extension,
                display_name,
                account_id: text(u, "account_id"),
                enabled: u.get("enabled").and_then(Value::as_bool) != Some(false),
            });
        }
    }
    debug_assert!(rows.len() <= PAGE_ROWS);
    Table {
        q: q.to_owned(),
        pager: Pager::new(offset, rows.len(), matched),
        rows,
        down,
        total,
    }
}

async fn full(
    state: &SharedState,
    ctx: &Ctx,
    s: &Search,
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
            t: load(state, &s.q, s.offset).await,
            backends: state.backends.names().map(str::to_owned).collect(),
            draft,
        },
        status,
    )
}

pub async fn page(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(s): Query<Search>,
) -> Response {
    full(&state, &ctx, &s, None, Draft::default()).await
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
            &Search::default(),
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
            full(
                &state,
                &ctx,
                &Search::default(),
                Some((msg, e.action_status())),
                draft,
            )
            .await
        }
    }
}
