//! The editors of the dashboard: users (edit, enable or disable, reset the
//! password, delete), accounts (list, create, edit) and trunks (list with
//! their registration, create, edit, delete). Their routes are gathered
//! here ([`routes`]) and merged into the main router, under its login and
//! CSRF guard like every other page.
//!
//! Every change is a form post carrying the CSRF token; a refusal of the
//! backend (its 4xx message names the field at fault) is shown above the
//! form, which keeps what was typed (never a password).

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::Layout;
use crate::SharedState;
use crate::auth::Ctx;

/// The editors' routes.
pub fn routes() -> Router<SharedState> {
    use super::{accounts, trunks, user_edit};
    Router::new()
        .route("/users/edit", get(user_edit::form).post(user_edit::save))
        .route("/users/enable", post(user_edit::enable))
        .route("/users/password", post(user_edit::password))
        .route(
            "/users/delete",
            get(user_edit::confirm).post(user_edit::delete),
        )
        .route("/accounts", get(accounts::page).post(accounts::create))
        .route("/accounts/edit", get(accounts::form).post(accounts::save))
        .route("/trunks", get(trunks::page).post(trunks::save))
        .route("/trunks/edit", get(trunks::form))
        .route("/trunks/delete", get(trunks::confirm).post(trunks::delete))
}

/// A page's layout with the notice of a failed action, and the status the
/// page is answered with (200 without one).
pub fn layout(
    title: &'static str,
    nav: &'static str,
    ctx: &Ctx,
    failed: Option<(String, StatusCode)>,
) -> (Layout, StatusCode) {
    let mut l = Layout::new(title, nav, &ctx.csrf);
    match failed {
        Some((m, s)) => {
            l.notice = Some(m);
            (l, s)
        }
        None => (l, StatusCode::OK),
    }
}

/// What an edit link or a confirmation names: a backend and an id.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Which {
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub id: String,
}

/// The delete confirmation page (the same for users and trunks).
#[derive(askama::Template)]
#[template(path = "confirm_delete.html")]
pub struct ConfirmDelete {
    pub l: Layout,
    /// `user alice (id 3) on main`.
    pub what: String,
    pub action: &'static str,
    pub back: &'static str,
    pub backend: String,
    pub id: String,
}

/// An optional text field as JSON: trimmed, empty is `null` (cleared).
pub fn opt_text(s: &str) -> serde_json::Value {
    match s.trim() {
        "" => serde_json::Value::Null,
        t => serde_json::Value::String(t.to_owned()),
    }
}

/// A whole-number field: `Ok(None)` when empty, else the number or a
/// message naming the field.
pub fn opt_int(field: &str, s: &str) -> Result<Option<i64>, String> {
    match s.trim() {
        "" => Ok(None),
        t => t
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{field}: must be a whole number")),
    }
}

/// A password shown once: 20 characters of letters, digits, `-` and `_`
/// (120 random bits).
pub fn generated_password() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    rand::random::<[u8; 20]>()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(opt_text("  "), serde_json::Value::Null);
        assert_eq!(opt_text(" 1001 "), serde_json::json!("1001"));
        assert_eq!(opt_int("expires", ""), Ok(None));
        assert_eq!(opt_int("expires", " 60"), Ok(Some(60)));
        assert_eq!(
            opt_int("expires", "sixty"),
            Err("expires: must be a whole number".into())
        );
        let a = generated_password();
        let b = generated_password();
        assert_eq!(a.chars().count(), 20);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
