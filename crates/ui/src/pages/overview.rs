//! `GET /`: each backend's health, registrations, live calls and RTP
//! managers. A backend whose health does not answer is down, whatever
//! else it says.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{Layout, items, num, render, text};
use crate::SharedState;
use crate::auth::Ctx;

/// One backend's line.
pub struct BackendRow {
    pub name: String,
    /// `ok`, `degraded` or `down`.
    pub status: String,
    /// Why it is down or degraded.
    pub detail: String,
    pub aors: String,
    pub contacts: String,
    pub calls: String,
    pub managers: Vec<ManagerRow>,
    pub managers_error: String,
}

pub struct ManagerRow {
    pub name: String,
    pub healthy: bool,
    pub draining: bool,
    pub sessions: String,
    pub free_port_pairs: String,
    /// Sessions over capacity.
    pub load: String,
}

pub struct Overview {
    pub rows: Vec<BackendRow>,
    /// The last hour: calls per minute, ASR, MOS, RTP load.
    pub q: super::quality::Quality,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Page {
    l: Layout,
    t: Overview,
}

#[derive(Template)]
#[template(path = "overview_table.html")]
struct Fragment {
    t: Overview,
}

async fn load(state: &SharedState) -> Overview {
    let b = &state.backends;
    let (health, stats, calls, managers, mut q) = tokio::join!(
        b.get_all("/health"),
        b.get_all("/stats"),
        b.get_all("/calls"),
        b.get_all("/rtpmanagers"),
        super::quality::gather(state, super::now_ms()),
    );
    let all_managers: Vec<Value> = managers
        .iter()
        .filter_map(|(_, m)| m.as_ref().ok())
        .flat_map(|v| items(v).iter().cloned())
        .collect();
    q.rtp_load = super::quality::pool_load(&all_managers);
    let mut rows = Vec::new();
    for (((name, h), (_, s)), ((_, c), (_, m))) in health
        .into_iter()
        .zip(stats)
        .zip(calls.into_iter().zip(managers))
    {
        let (status, detail) = match &h {
            Err(e) => ("down".to_owned(), e.to_string()),
            Ok(v) => {
                let status = match v.get("status").and_then(Value::as_str) {
                    Some("ok") => "ok",
                    _ => "degraded",
                };
                let detail = ["store", "redis", "nats"]
                    .iter()
                    .filter_map(|k| {
                        let s = text(v, k);
                        s.starts_with("degraded").then(|| format!("{k}: {s}"))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                (status.to_owned(), detail)
            }
        };
        let reg = s.as_ref().ok().and_then(|v| v.get("registrations"));
        let (aors, contacts) = match reg {
            Some(r) => (num(r, "aors"), num(r, "contacts")),
            None => ("—".into(), "—".into()),
        };
        let calls = match &c {
            Ok(v) => items(v).len().to_string(),
            Err(_) => "—".into(),
        };
        let (managers, managers_error) = match &m {
            Ok(v) => (
                items(v)
                    .iter()
                    .map(|m| ManagerRow {
                        name: text(m, "name"),
                        healthy: m.get("healthy").and_then(Value::as_bool) == Some(true),
                        draining: m.get("draining").and_then(Value::as_bool) == Some(true),
                        sessions: num(m, "sessions"),
                        free_port_pairs: num(m, "free_port_pairs"),
                        load: super::quality::load(
                            m.get("sessions").and_then(Value::as_f64),
                            m.get("free_port_pairs").and_then(Value::as_f64),
                        ),
                    })
                    .collect(),
                String::new(),
            ),
            Err(e) => (Vec::new(), e.to_string()),
        };
        rows.push(BackendRow {
            name,
            status,
            detail,
            aors,
            contacts,
            calls,
            managers,
            managers_error,
        });
    }
    Overview { rows, q }
}

pub async fn page(State(state): State<SharedState>, Extension(ctx): Extension<Ctx>) -> Response {
    let t = load(&state).await;
    render(
        &Page {
            l: Layout::new("Overview", "overview", &ctx.csrf),
            t,
        },
        StatusCode::OK,
    )
}

pub async fn fragment(State(state): State<SharedState>) -> Response {
    render(
        &Fragment {
            t: load(&state).await,
        },
        StatusCode::OK,
    )
}
