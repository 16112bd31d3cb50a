//! `GET /registrations?q=&offset=`: every backend's bindings, searchable by
//! user, AOR, contact, source address or user agent (the backends search),
//! [`PAGE_ROWS`](super::PAGE_ROWS) AORs at a time with their contacts, the
//! count of matching contacts and previous/next links; unregister removes
//! an AOR's bindings (`DELETE /api/v1/registrations/{aor}`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::Value;

use super::{Action, Down, Layout, Pager, items, render, text};
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
    /// The contacts of the AORs on this page.
    pub rows: Vec<Row>,
    pub down: Vec<Down>,
    /// Contacts matching, and contacts in all.
    pub contacts: usize,
    pub total: usize,
    /// Pages of AORs: an AOR's contacts stay together.
    pub pager: Pager,
}

impl Table {
    /// The page's own URL up to the offset, for the previous/next links.
    pub fn base(&self) -> String {
        super::paged::base("/registrations", &self.q)
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
    let searching = !q.trim().is_empty();
    let everything = async {
        // the unfiltered count of contacts, for "n of m"
        if searching {
            let all = state.backends.get_all("/registrations?limit=0").await;
            Some(
                all.iter()
                    .filter_map(|(_, a)| a.as_ref().ok())
                    .map(|r| r.contacts.unwrap_or_else(|| contacts_in(r)))
                    .sum::<usize>(),
            )
        } else {
            None
        }
    };
    let base = super::paged::base("/registrations", q);
    let (page, all_contacts) = tokio::join!(super::paged::load(state, &base, offset), everything,);
    let mut rows = Vec::new();
    for part in &page.parts {
        for aor in &part.items {
            let aor_s = text(aor, "aor");
            let user = user_of(&aor_s);
            for c in aor.get("contacts").map(items).unwrap_or(&[]) {
                let (transport, source) = split_received(&text(c, "received"));
                rows.push(Row {
                    backend: part.backend.clone(),
                    user: user.clone(),
                    aor: aor_s.clone(),
                    contact: text(c, "contact"),
                    transport,
                    source,
                    user_agent: text(c, "user_agent"),
                    expires_in: c.get("expires_in").and_then(Value::as_u64).unwrap_or(0),
                });
            }
        }
    }
    Table {
        q: q.to_owned(),
        pager: Pager::new(offset, page.shown, page.matched),
        rows,
        down: page.down,
        contacts: page.contacts,
        total: all_contacts.unwrap_or(page.contacts),
    }
}

/// Contacts of an answer that sent no count (a whole list).
fn contacts_in(list: &Value) -> usize {
    items(list)
        .iter()
        .map(|a| a.get("contacts").map_or(0, |c| items(c).len()))
        .sum()
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
