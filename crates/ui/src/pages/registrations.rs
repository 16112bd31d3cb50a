//! `GET /registrations?q=&offset=`: every backend's bindings, searchable by
//! user, AOR or source address, [`PAGE_ROWS`] at a time with the count of
//! matches and previous/next links; unregister removes an AOR's bindings
//! (`DELETE /api/v1/registrations/{aor}`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::Value;

use super::{Action, Down, Layout, PAGE_ROWS, Pager, items, render, text};
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
    pub pager: Pager,
}

impl Table {
    /// The page's own URL up to the offset, for the previous/next links.
    pub fn base(&self) -> String {
        format!("/registrations?q={}&", segment(&self.q))
    }
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
    /// Index of the first matching row shown.
    #[serde(default)]
    offset: usize,
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

async fn load(state: &SharedState, q: &str, offset: usize) -> Table {
    let t = load_at(state, q, Pager::start(offset)).await;
    if t.rows.is_empty() && t.pager.matched > 0 {
        // past the end (rows went away since the link was made): the last page
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
            let user = user_of(&aor_s);
            for c in aor.get("contacts").map(items).unwrap_or(&[]) {
                total += 1;
                let (transport, source) = split_received(&text(c, "received"));
                let contact = text(c, "contact");
                let hit = needle.is_empty()
                    || [&aor_s, &user, &source, &contact]
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
                    user: user.clone(),
                    aor: aor_s.clone(),
                    contact,
                    transport,
                    source,
                    user_agent: text(c, "user_agent"),
                    expires_in: c.get("expires_in").and_then(Value::as_u64).unwrap_or(0),
                });
            }
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

pub async fn page(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(s): Query<Search>,
) -> Response {
    full(&state, &ctx, &s.q, s.offset, None).await
}

async fn full(
    state: &SharedState,
    ctx: &Ctx,
    q: &str,
    offset: usize,
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
            t: load(state, q, offset).await,
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
            t: load(&state, &s.q, s.offset).await,
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
            0,
            Some(("No such backend.".into(), StatusCode::BAD_REQUEST)),
        )
        .await;
    };
    let path = format!("/registrations/{}", segment(&a.id));
    match state.backends.send(idx, Method::DELETE, &path, None).await {
        Ok(_) => redirect("/registrations"),
        Err(e) => {
            let msg = format!("{} on {}: not unregistered: {e}", a.id, a.backend);
            full(&state, &ctx, "", 0, Some((msg, e.action_status()))).await
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
