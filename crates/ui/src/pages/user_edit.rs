//! One user: `GET /users/edit` (display name, extension, enabled; the
//! password reset; a link to delete), `POST /users/edit` (`PATCH
//! /api/v1/users/{id}`), `POST /users/enable` (enable or disable from the
//! list), `POST /users/password` (a new password typed in, or generated and
//! shown once), `GET`/`POST /users/delete` (a confirmation, then `DELETE`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Value, json};

use super::admin::{ConfirmDelete, Which, generated_password, layout, opt_text};
use super::{Layout, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};
use crate::backend::{BackendError, segment};

/// The user as the form shows it.
#[derive(Default)]
pub struct Draft {
    pub backend: String,
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub extension: String,
    pub account_id: String,
    pub enabled: bool,
}

#[derive(Template)]
#[template(path = "user_edit.html")]
struct EditPage {
    l: Layout,
    u: Draft,
}

#[derive(Template)]
#[template(path = "user_password.html")]
struct PasswordPage {
    l: Layout,
    u: Draft,
    /// The generated password, shown this once; empty when it was typed.
    generated: String,
}

/// The backend's index and the user's id, or a message.
fn target(state: &SharedState, backend: &str, id: &str) -> Result<(usize, i64), String> {
    let idx = state
        .backends
        .index(backend)
        .ok_or_else(|| "No such backend.".to_owned())?;
    let id = id
        .trim()
        .parse::<i64>()
        .map_err(|_| "id: not a user id".to_owned())?;
    Ok((idx, id))
}

async fn fetch(state: &SharedState, w: &Which) -> Result<Draft, (String, StatusCode)> {
    let (idx, id) = target(state, &w.backend, &w.id).map_err(|m| (m, StatusCode::BAD_REQUEST))?;
    let v = state
        .backends
        .get(idx, &format!("/users/{id}"))
        .await
        .map_err(|e| {
            (
                format!("user {id} on {}: {e}", w.backend),
                e.action_status(),
            )
        })?;
    Ok(Draft {
        backend: w.backend.clone(),
        id: id.to_string(),
        username: text(&v, "username"),
        display_name: text(&v, "display_name"),
        extension: text(&v, "extension"),
        account_id: text(&v, "account_id"),
        enabled: v.get("enabled").and_then(Value::as_bool) != Some(false),
    })
}

fn edit_page(ctx: &Ctx, u: Draft, failed: Option<(String, StatusCode)>) -> Response {
    let (l, status) = layout("Edit user", "users", ctx, failed);
    render(&EditPage { l, u }, status)
}

/// A failure before the user could be read: the users list's notice.
fn failed_page(ctx: &Ctx, w: &Which, failed: (String, StatusCode)) -> Response {
    let u = Draft {
        backend: w.backend.clone(),
        id: w.id.clone(),
        ..Draft::default()
    };
    edit_page(ctx, u, Some(failed))
}

pub async fn form(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(w): Query<Which>,
) -> Response {
    match fetch(&state, &w).await {
        Ok(u) => edit_page(&ctx, u, None),
        Err(f) => failed_page(&ctx, &w, f),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct Edit {
    backend: String,
    id: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    extension: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    enabled: Option<String>,
}

pub async fn save(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Edit>,
) -> Response {
    let draft = Draft {
        backend: f.backend.clone(),
        id: f.id.clone(),
        username: f.username.clone(),
        display_name: f.display_name.clone(),
        extension: f.extension.clone(),
        account_id: String::new(),
        enabled: f.enabled.is_some(),
    };
    let body = json!({
        "display_name": opt_text(&f.display_name),
        "extension": opt_text(&f.extension),
        "enabled": f.enabled.is_some(),
    });
    match patch(&state, &f.backend, &f.id, &body).await {
        Ok(_) => redirect("/users"),
        Err(failed) => edit_page(&ctx, draft, Some(failed)),
    }
}

async fn patch(
    state: &SharedState,
    backend: &str,
    id: &str,
    body: &Value,
) -> Result<Value, (String, StatusCode)> {
    let (idx, id) = target(state, backend, id).map_err(|m| (m, StatusCode::BAD_REQUEST))?;
    state
        .backends
        .send(idx, Method::PATCH, &format!("/users/{id}"), Some(body))
        .await
        .map_err(|e: BackendError| {
            (
                format!("user {id} on {backend} not changed: {e}"),
                e.action_status(),
            )
        })
}

#[derive(Debug, serde::Deserialize)]
pub struct Enable {
    backend: String,
    id: String,
    /// `enable` or `disable`.
    mode: String,
}

pub async fn enable(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Enable>,
) -> Response {
    let w = Which {
        backend: f.backend.clone(),
        id: f.id.clone(),
    };
    let enabled = match f.mode.as_str() {
        "enable" => true,
        "disable" => false,
        _ => {
            return failed_page(
                &ctx,
                &w,
                ("mode: enable or disable".into(), StatusCode::BAD_REQUEST),
            );
        }
    };
    match patch(&state, &f.backend, &f.id, &json!({ "enabled": enabled })).await {
        Ok(_) => redirect("/users"),
        Err(failed) => failed_page(&ctx, &w, failed),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct NewPassword {
    backend: String,
    id: String,
    #[serde(default)]
    password: String,
    /// A button: present when "Generate" was pressed.
    #[serde(default)]
    generate: Option<String>,
}

pub async fn password(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<NewPassword>,
) -> Response {
    let w = Which {
        backend: f.backend.clone(),
        id: f.id.clone(),
    };
    let generated = if f.generate.is_some() || f.password.is_empty() {
        generated_password()
    } else {
        String::new()
    };
    let password = if generated.is_empty() {
        f.password
    } else {
        generated.clone()
    };
    match patch(&state, &f.backend, &f.id, &json!({ "password": password })).await {
        Ok(v) => {
            let u = Draft {
                backend: f.backend,
                id: text(&v, "id"),
                username: text(&v, "username"),
                ..Draft::default()
            };
            let l = Layout::new("Password reset", "users", &ctx.csrf);
            render(&PasswordPage { l, u, generated }, StatusCode::OK)
        }
        Err(failed) => match fetch(&state, &w).await {
            Ok(u) => edit_page(&ctx, u, Some(failed)),
            Err(_) => failed_page(&ctx, &w, failed),
        },
    }
}

pub async fn confirm(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(w): Query<Which>,
) -> Response {
    match fetch(&state, &w).await {
        Ok(u) => render(
            &ConfirmDelete {
                l: Layout::new("Delete user", "users", &ctx.csrf),
                what: format!("user {} (id {}) on {}", u.username, u.id, u.backend),
                action: "/users/delete",
                back: "/users",
                backend: u.backend,
                id: u.id,
            },
            StatusCode::OK,
        ),
        Err(f) => failed_page(&ctx, &w, f),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct Delete {
    backend: String,
    id: String,
    #[serde(default)]
    confirm: String,
}

pub async fn delete(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Delete>,
) -> Response {
    let w = Which {
        backend: f.backend.clone(),
        id: f.id.clone(),
    };
    if f.confirm != "yes" {
        return failed_page(
            &ctx,
            &w,
            (
                "confirm: deleting a user needs the confirmation".into(),
                StatusCode::BAD_REQUEST,
            ),
        );
    }
    let (idx, id) = match target(&state, &f.backend, &f.id) {
        Ok(t) => t,
        Err(m) => return failed_page(&ctx, &w, (m, StatusCode::BAD_REQUEST)),
    };
    let path = format!("/users/{}", segment(&id.to_string()));
    match state.backends.send(idx, Method::DELETE, &path, None).await {
        Ok(_) => redirect("/users"),
        Err(e) => failed_page(
            &ctx,
            &w,
            (
                format!("user {id} on {} not deleted: {e}", f.backend),
                e.action_status(),
            ),
        ),
    }
}
