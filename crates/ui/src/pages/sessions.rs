//! `GET /sessions`: every backend's media sessions (one per call leg) with
//! codec, packets, loss, jitter and MOS, the worst MOS first; refreshing
//! every 2 s (`/sessions/fragment`).

use std::cmp::Ordering;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{Down, Layout, items, num, render, text};
use crate::SharedState;
use crate::auth::Ctx;

pub struct Row {
    pub backend: String,
    pub manager: String,
    pub call_id: String,
    pub leg: String,
    pub codec: String,
    pub local: String,
    pub remote: String,
    pub received: String,
    pub sent: String,
    pub lost: String,
    pub jitter: String,
    pub mos: String,
    /// For the order: sessions without a MOS yet go last.
    mos_value: Option<f64>,
}

pub struct Table {
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct Page {
    l: Layout,
    t: Table,
}

#[derive(Template)]
#[template(path = "sessions_table.html")]
struct Fragment {
    t: Table,
}

/// Worst first: a lower MOS before a higher one, no MOS last.
fn worst_first(a: &Row, b: &Row) -> Ordering {
    match (a.mos_value, b.mos_value) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

async fn load(state: &SharedState) -> Table {
    let mut rows = Vec::new();
    let mut down = Vec::new();
    for (backend, answer) in state.backends.get_all("/sessions").await {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                down.push(Down::new(&backend, &e));
                continue;
            }
        };
        for s in items(&v) {
            let mos_value = s.get("mos").and_then(Value::as_f64).filter(|m| *m > 0.0);
            rows.push(Row {
                backend: backend.clone(),
                manager: text(s, "manager"),
                call_id: text(s, "call_id"),
                leg: text(s, "leg"),
                codec: text(s, "codec"),
                local: text(s, "local_address"),
                remote: text(s, "remote_address"),
                received: num(s, "packets_received"),
                sent: num(s, "packets_sent"),
                lost: num(s, "packets_lost"),
                jitter: num(s, "jitter_ms"),
                mos: mos_value.map_or_else(|| "—".into(), |m| format!("{m:.2}")),
                mos_value,
            });
        }
    }
    rows.sort_by(worst_first);
    Table { rows, down }
}

pub async fn page(State(state): State<SharedState>, Extension(ctx): Extension<Ctx>) -> Response {
    render(
        &Page {
            l: Layout::new("Media sessions", "sessions", &ctx.csrf),
            t: load(&state).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mos: Option<f64>) -> Row {
        Row {
            backend: String::new(),
            manager: String::new(),
            call_id: format!("{mos:?}"),
            leg: String::new(),
            codec: String::new(),
            local: String::new(),
            remote: String::new(),
            received: String::new(),
            sent: String::new(),
            lost: String::new(),
            jitter: String::new(),
            mos: String::new(),
            mos_value: mos,
        }
    }

    #[test]
    fn worst_mos_first_unknown_last() {
        let mut rows = [row(Some(4.3)), row(None), row(Some(2.1)), row(Some(3.5))];
        rows.sort_by(worst_first);
        let order: Vec<Option<f64>> = rows.iter().map(|r| r.mos_value).collect();
        assert_eq!(order, vec![Some(2.1), Some(3.5), Some(4.3), None]);
    }
}
