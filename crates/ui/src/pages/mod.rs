//! The pages: each aggregates every backend (a "backend" column), renders
//! a full page that works without JavaScript, and, for the live parts, a
//! fragment endpoint htmx polls. Values from the backends are put into
//! the templates as plain strings, which askama escapes; no template marks
//! backend data `|safe`.
//!
//! Actions (unregister, hang up, drain, new user) are HTML form posts
//! carrying the CSRF token; they answer 303 back to their page
//! (post/redirect/get), or the page again with the backend's error and
//! [`BackendError::action_status`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::backend::BackendError;

pub mod accounts;
pub mod admin;
pub mod calls;
pub mod cdrs;
pub mod dialplan;
pub mod login;
pub mod overview;
pub mod paged;
pub mod phone;
pub mod quality;
pub mod registrations;
pub mod rtp;
pub mod sessions;
pub mod trunks;
pub mod user_edit;
pub mod users;

/// What the base layout shows around every page.
pub struct Layout {
    pub title: &'static str,
    pub nav: &'static str,
    /// The session's CSRF token; empty on the login page (no session).
    pub csrf: String,
    pub notice: Option<String>,
    pub htmx_version: &'static str,
}

impl Layout {
    pub fn new(title: &'static str, nav: &'static str, csrf: &str) -> Self {
        Self {
            title,
            nav,
            csrf: csrf.to_owned(),
            notice: None,
            htmx_version: crate::HTMX_VERSION,
        }
    }
}

/// A backend that gave no answer, for the banner above a table.
pub struct Down {
    pub backend: String,
    pub error: String,
}

impl Down {
    pub fn new(backend: &str, e: &BackendError) -> Self {
        Self {
            backend: backend.to_owned(),
            error: e.to_string(),
        }
    }
}

/// A string field (numbers and booleans as text; missing or null: empty).
pub fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A number field as text, `—` when missing.
pub fn num(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_f64)
        .map(|n| {
            if n.fract() == 0.0 {
                format!("{n:.0}")
            } else {
                format!("{n:.2}")
            }
        })
        .unwrap_or_else(|| "—".into())
}

/// The elements of an array answer (anything else: none).
pub fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// `mm:ss` or `h:mm:ss`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Unix time now in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The form fields every action sends.
#[derive(Debug, serde::Deserialize)]
pub struct Action {
    pub backend: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub mode: String,
}

/// A page whose template failed to render (a bug): 500 without details.
pub fn render<T: askama::Template>(t: &T, status: StatusCode) -> Response {
    match t.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!("template failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response()
        }
    }
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such page").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(duration(0), "0:00");
        assert_eq!(duration(75), "1:15");
        assert_eq!(duration(3725), "1:02:05");
        let v = serde_json::json!({"a": 3, "b": 4.25, "c": null, "d": "x", "e": true});
        assert_eq!(num(&v, "a"), "3");
        assert_eq!(num(&v, "b"), "4.25");
        assert_eq!(num(&v, "c"), "—");
        assert_eq!(text(&v, "d"), "x");
        assert_eq!(text(&v, "e"), "true");
        assert_eq!(text(&v, "c"), "");
    }
}

/// Rows a listing page shows at once (registrations, users): 10,000 rows
/// would be a page no one reads and no browser renders quickly.
pub const PAGE_ROWS: usize = 100;

/// Where a listing page is in its matching rows: `offset` is the index of
/// the first row shown, `matched` how many rows match in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pager {
    pub offset: usize,
    pub shown: usize,
    pub matched: usize,
}

impl Pager {
    /// An offset from the query string, brought onto a page boundary.
    pub fn start(offset: usize) -> usize {
        offset - offset % PAGE_ROWS
    }
    /// Whether the `i`th matching row (from 0) is on the page at `offset`.
    pub fn takes(offset: usize, i: usize) -> bool {
        i >= offset && i < offset + PAGE_ROWS
    }
    /// The page once `matched` is known (a page that finds no row at an
    /// offset past the end loads the last page instead).
    pub fn new(offset: usize, shown: usize, matched: usize) -> Self {
        Self {
            offset,
            shown,
            matched,
        }
    }
    /// Whether there is more than one page.
    pub fn paged(&self) -> bool {
        self.matched > PAGE_ROWS || self.offset > 0
    }
    /// 1-based index of the first row shown (0 when none).
    pub fn first(&self) -> usize {
        if self.shown == 0 { 0 } else { self.offset + 1 }
    }
    pub fn last(&self) -> usize {
        self.offset + self.shown
    }
    pub fn prev(&self) -> Option<usize> {
        (self.offset > 0).then(|| self.offset.saturating_sub(PAGE_ROWS))
    }
    pub fn next(&self) -> Option<usize> {
        (self.offset + PAGE_ROWS < self.matched).then_some(self.offset + PAGE_ROWS)
    }
}

#[cfg(test)]
mod pager_tests {
    use super::*;

    #[test]
    fn pages_of_rows() {
        assert_eq!(Pager::start(0), 0);
        assert_eq!(Pager::start(150), 100);
        assert!(Pager::takes(100, 100) && Pager::takes(100, 199) && !Pager::takes(100, 200));
        let p = Pager::new(0, 100, 250);
        assert!(p.paged());
        assert_eq!(
            (p.first(), p.last(), p.prev(), p.next()),
            (1, 100, None, Some(100))
        );
        let p = Pager::new(200, 50, 250);
        assert_eq!(
            (p.first(), p.last(), p.prev(), p.next()),
            (201, 250, Some(100), None)
        );
        let p = Pager::new(0, 0, 0);
        assert!(!p.paged());
        assert_eq!(p.first(), 0);
    }
}
