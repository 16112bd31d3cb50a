//! `GET /users?q=&offset=`: every backend's users, searchable by user name,
//! extension or display name (the backends search),
//! [`PAGE_ROWS`](super::PAGE_ROWS) at a time; `POST /users` creates one on a
//! backend (`POST /api/v1/users`). The password goes to the backend, which
//! keeps its HA1 only, and is never written back into a page.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Map, Value};

use super::{Down, Layout, Pager, items, render, text};
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
    pub q: String,
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
    pub total: usize,
    pub pager: Pager,
}

impl Table {
    /// The page's own URL up to the offset, for the previous/next links.
    pub fn base(&self) -> String {
        super::paged::base("/users", &self.q)
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
    let searching = !q.trim().is_empty();
    let everyone = async {
        // the unfiltered count, for "n of m"
        if searching {
            let all = state.backends.get_all("/users?limit=0").await;
            Some(
                all.iter()
                    .filter_map(|(_, a)| a.as_ref().ok())
                    .map(|r| r.total.unwrap_or_else(|| items(r).len()))
                    .sum::<usize>(),
            )
        } else {
            None
        }
    };
    let base = super::paged::base("/users", q);
    let (page, total) = tokio::join!(super::paged::load(state, &base, offset), everyone,);
    let mut rows = Vec::new();
    for part in &page.parts {
        for u in &part.items {
            rows.push(Row {
                backend: part.backend.clone(),
                id: text(u, "id"),
                username: text(u, "username"),
                extension: text(u, "extension"),
                display_name: text(u, "display_name"),
                account_id: text(u, "account_id"),
                enabled: u.get("enabled").and_then(Value::as_bool) != Some(false),
            });
        }
    }
    Table {
        q: q.to_owned(),
        pager: Pager::new(offset, page.shown, page.matched),
        rows,
        down: page.down,
        total: total.unwrap_or(page.matched),
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
