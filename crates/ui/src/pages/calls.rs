//! `GET /calls`: every backend's live calls with their legs; the table
//! refreshes every 2 s (`/calls/fragment`); hang up ends a call
//! (`POST /api/v1/calls/{id}/hangup`).

use askama::Template;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::Value;

use super::{Action, Down, Layout, duration, items, now_ms, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};
use crate::backend::segment;

pub struct Leg {
    pub leg: String,
    pub target: String,
    pub state: String,
}

pub struct Row {
    pub backend: String,
    pub id: String,
    pub caller: String,
    pub caller_name: String,
    pub callee: String,
    pub route: String,
    pub state: String,
    pub age: String,
    pub legs: Vec<Leg>,
}

pub struct Table {
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct Page {
    l: Layout,
    t: Table,
}

#[derive(Template)]
#[template(path = "calls_table.html")]
struct Fragment {
    l: Layout,
    t: Table,
}

async fn load(state: &SharedState) -> Table {
    let now = now_ms();
    let mut rows = Vec::new();
    let mut down = Vec::new();
    for (backend, answer) in state.backends.get_all("/calls").await {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                down.push(Down::new(&backend, &e));
                continue;
            }
        };
        for c in items(&v) {
            let invite_at = c.get("invite_at").and_then(Value::as_i64).unwrap_or(now);
            rows.push(Row {
                backend: backend.clone(),
                id: text(c, "id"),
                caller: text(c, "caller"),
                caller_name: text(c, "caller_name"),
                callee: text(c, "callee"),
                route: text(c, "route"),
                state: text(c, "state"),
                age: duration((now - invite_at) / 1000),
                legs: c
                    .get("legs")
                    .map(items)
                    .unwrap_or(&[])
                    .iter()
                    .map(|l| Leg {
                        leg: text(l, "leg"),
                        target: text(l, "target"),
                        state: text(l, "state"),
                    })
                    .collect(),
            });
        }
    }
    Table { rows, down }
}

async fn full(state: &SharedState, ctx: &Ctx, failed: Option<(String, StatusCode)>) -> Response {
    let mut l = Layout::new("Live calls", "calls", &ctx.csrf);
    let (notice, status) = match failed {
        Some((m, s)) => (Some(m), s),
        None => (None, StatusCode::OK),
    };
    l.notice = notice;
    render(
        &Page {
            l,
            t: load(state).await,
        },
        status,
    )
}

pub async fn page(State(state): State<SharedState>, Extension(ctx): Extension<Ctx>) -> Response {
    full(&state, &ctx, None).await
}

pub async fn fragment(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let l = Layout::new("Live calls", "calls", &ctx.csrf);
    render(
        &Fragment {
            l,
            t: load(&state).await,
        },
        StatusCode::OK,
    )
}

/// Ends a live call on one backend.
pub async fn hangup(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(a): Form<Action>,
) -> Response {
    let Some(idx) = state.backends.index(&a.backend) else {
        return full(
            &state,
            &ctx,
            Some(("No such backend.".into(), StatusCode::BAD_REQUEST)),
        )
        .await;
    };
    let path = format!("/calls/{}/hangup", segment(&a.id));
    match state.backends.send(idx, Method::POST, &path, None).await {
        Ok(_) => redirect("/calls"),
        Err(e) => {
            let msg = format!("call {} on {}: not hung up: {e}", a.id, a.backend);
            full(&state, &ctx, Some((msg, e.action_status()))).await
        }
    }
}
