//! `GET /rtpmanagers`: every backend's RTP manager pool with sessions and
//! free ports (refreshing every 2 s, so a drain's progress shows); drain
//! (`POST /api/v1/rtpmanagers/{name}/drain` with `{"mode": "graceful" |
//! "aggressive"}`) from a dialog, or from `GET /rtpmanagers/drain` without
//! JavaScript; stop draining (`DELETE` of the same path).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Value, json};

use super::{Action, Down, Layout, items, num, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};
use crate::backend::segment;

pub struct Row {
    pub backend: String,
    pub name: String,
    pub address: String,
    pub healthy: bool,
    pub draining: bool,
    pub accepting: bool,
    pub discovery: String,
    pub sessions: String,
    pub free_port_pairs: String,
    pub error: String,
}

pub struct Table {
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
}

#[derive(Template)]
#[template(path = "rtp.html")]
struct Page {
    l: Layout,
    t: Table,
}

#[derive(Template)]
#[template(path = "rtp_table.html")]
struct Fragment {
    l: Layout,
    t: Table,
}

#[derive(Template)]
#[template(path = "rtp_drain.html")]
struct DrainPage {
    l: Layout,
    backend: String,
    name: String,
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool) == Some(true)
}

async fn load(state: &SharedState) -> Table {
    let mut rows = Vec::new();
    let mut down = Vec::new();
    for (backend, answer) in state.backends.get_all("/rtpmanagers").await {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                down.push(Down::new(&backend, &e));
                continue;
            }
        };
        for m in items(&v) {
            rows.push(Row {
                backend: backend.clone(),
                name: text(m, "name"),
                address: text(m, "address"),
                healthy: flag(m, "healthy"),
                draining: flag(m, "draining"),
                accepting: flag(m, "accepting"),
                discovery: text(m, "discovery"),
                sessions: num(m, "sessions"),
                free_port_pairs: num(m, "free_port_pairs"),
                error: text(m, "error"),
            });
        }
    }
    Table { rows, down }
}

async fn full(state: &SharedState, ctx: &Ctx, failed: Option<(String, StatusCode)>) -> Response {
    let mut l = Layout::new("RTP managers", "rtpmanagers", &ctx.csrf);
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
    let l = Layout::new("RTP managers", "rtpmanagers", &ctx.csrf);
    render(
        &Fragment {
            l,
            t: load(&state).await,
        },
        StatusCode::OK,
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct Which {
    #[serde(default)]
    backend: String,
    #[serde(default)]
    id: String,
}

/// The drain form on a page of its own (what the dialog shows, for
/// browsers without JavaScript).
pub async fn drain_form(Extension(ctx): Extension<Ctx>, Query(w): Query<Which>) -> Response {
    render(
        &DrainPage {
            l: Layout::new("Drain an RTP manager", "rtpmanagers", &ctx.csrf),
            backend: w.backend,
            name: w.id,
        },
        StatusCode::OK,
    )
}

pub async fn drain(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(a): Form<Action>,
) -> Response {
    let mode = match a.mode.as_str() {
        "" | "graceful" => "graceful",
        "aggressive" => "aggressive",
        _ => {
            return full(
                &state,
                &ctx,
                Some(("Unknown drain mode.".into(), StatusCode::BAD_REQUEST)),
            )
            .await;
        }
    };
    act(
        &state,
        &ctx,
        &a,
        Method::POST,
        Some(json!({ "mode": mode })),
    )
    .await
}

pub async fn undrain(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(a): Form<Action>,
) -> Response {
    act(&state, &ctx, &a, Method::DELETE, None).await
}

async fn act(
    state: &SharedState,
    ctx: &Ctx,
    a: &Action,
    method: Method,
    body: Option<Value>,
) -> Response {
    let Some(idx) = state.backends.index(&a.backend) else {
        return full(
            state,
            ctx,
            Some(("No such backend.".into(), StatusCode::BAD_REQUEST)),
        )
        .await;
    };
    let path = format!("/rtpmanagers/{}/drain", segment(&a.id));
    match state.backends.send(idx, method, &path, body.as_ref()).await {
        Ok(_) => redirect("/rtpmanagers"),
        Err(e) => {
            let msg = format!("RTP manager {} on {}: {e}", a.id, a.backend);
            full(state, ctx, Some((msg, e.action_status()))).await
        }
    }
}
