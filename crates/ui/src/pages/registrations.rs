//! `GET /registrations?q=`: every backend's bindings, searchable by user,
//! AOR or source address; unregister removes an AOR's bindings
//! (`DELETE /api/v1/registrations/{aor}`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::Value;

use super::{Action, Down, Layout, items, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};
use crate::backend::segment;

pub struct Row {
    pub backend: String,
    pub aor: String,
    pub user: String,
    pub contact: String,
    pub transport: String,
    pub source: String,
    pub user_agent: String,
    pub expires_in: u64,
}

pub struct Table {
    pub q: String,
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
    pub total: usize,
}

#[derive(Template)]
#[template(path = "registrations.html")]
struct Page {
    l: Layout,
    t: Table,
}

#[derive(Template)]
#[template(path = "registrations_table.html")]
struct Fragment {
    l: Layout,
    t: Table,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

/// `udp:192.0.2.1:5060` → (`UDP`, `192.0.2.1:5060`).
fn split_received(r: &str) -> (String, String) {
    match r.split_once(':') {
        Some((t, addr)) => (t.to_ascii_uppercase(), addr.to_owned()),
        None => (String::new(), r.to_owned()),
    }
}

/// `sip:alice@example.com` → `alice`.
fn user_of(aor: &str) -> String {
    let s = aor.strip_prefix("sip:").unwrap_or(aor);
    s.split_once('@').map_or(s, |(u, _)| u).to_owned()
}

async fn load(state: &SharedState, q: &str) -> Table {
    let needle = q.trim().to_lowercase();
    let mut rows = Vec::new();
    let mut down = Vec::new();
    let mut total = 0;
    for (backend, answer) in state.backends.get_all("/registrations").await {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                down.push(Down::new(&backend, &e));
                continue;
            }
        };
        for aor in items(&v) {
            let aor_s = text(aor, "aor");
            for c in aor.get("contacts").map(items).unwrap_or(&[]) {
                total += 1;
                let (transport, source) = split_received(&text(c, "received"));
                let row = Row {
                    backend: backend.clone(),
                    user: user_of(&aor_s),
                    aor: aor_s.clone(),
                    contact: text(c, "contact"),
                    transport,
                    source,
                    user_agent: text(c, "user_agent"),
                    expires_in: c.get("expires_in").and_then(Value::as_u64).unwrap_or(0),
                };
                let hit = needle.is_empty()
                    || [&row.aor, &row.user, &row.source, &row.contact]
                        .iter()
                        .any(|s| s.to_lowercase().contains(&needle));
                if hit {
                    rows.push(row);
                }
            }
        }
    }
    Table {
        q: q.to_owned(),
        rows,
        down,
        total,
    }
}

pub async fn page(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(s): Query<Search>,
) -> Response {
    full(&state, &ctx, &s.q, None).await
}

async fn full(
    state: &SharedState,
    ctx: &Ctx,
    q: &str,
    failed: Option<(String, StatusCode)>,
) -> Response {
    let mut l = Layout::new("Registrations", "registrations", &ctx.csrf);
    let (notice, status) = match failed {
        Some((m, s)) => (Some(m), s),
        None => (None, StatusCode::OK),
    };
    l.notice = notice;
    render(
        &Page {
            l,
            t: load(state, q).await,
        },
        status,
    )
}

pub async fn fragment(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(s): Query<Search>,
) -> Response {
    let l = Layout::new("Registrations", "registrations", &ctx.csrf);
    render(
        &Fragment {
            l,
            t: load(&state, &s.q).await,
        },
        StatusCode::OK,
    )
}

/// Removes an AOR's bindings on one backend (`id` is the AOR).
pub async fn unregister(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(a): Form<Action>,
) -> Response {
    let Some(idx) = state.backends.index(&a.backend) else {
        return full(
            &state,
            &ctx,
            "",
            Some(("No such backend.".into(), StatusCode::BAD_REQUEST)),
        )
        .await;
    };
    let path = format!("/registrations/{}", segment(&a.id));
    match state.backends.send(idx, Method::DELETE, &path, None).await {
        Ok(_) => redirect("/registrations"),
        Err(e) => {
            let msg = format!("{} on {}: not unregistered: {e}", a.id, a.backend);
            full(&state, &ctx, "", Some((msg, e.action_status()))).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_and_user() {
        assert_eq!(
            split_received("udp:192.0.2.1:5060"),
            ("UDP".into(), "192.0.2.1:5060".into())
        );
        assert_eq!(
            split_received("tcp:[::1]:5070"),
            ("TCP".into(), "[::1]:5070".into())
        );
        assert_eq!(user_of("sip:alice@switchboard"), "alice");
        assert_eq!(user_of("bob"), "bob");
    }
}
