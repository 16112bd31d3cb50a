//! `/api/v1/dialplan`: the dialplan in use, validation, saving, a dry run
//! ("which route takes 1002 from alice?") and the saved versions.
//!
//! A refused dialplan is a 422 whose error object also says where:
//! `path` (`routes[1].actions[0].params.target`, the route by its index),
//! `route` (the route's id, when the fault is inside a route),
//! `route_index` and `reason`, so an editor can put the message at the
//! field.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

use super::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::Node;
use crate::dialplan::{Dialplan, DialplanError, Origin};

pub(super) async fn get_dialplan(State(node): State<Arc<Node>>) -> Json<Value> {
    Json(json!(node.calls.dialplan().file))
}

/// `routes[2] (id "internal").actions[0]` of `body` → `routes[2].actions[0]`
/// and the route (index, id); other paths (`version`, `dialplan`) as they are.
fn locate(body: &str, path: &str) -> (String, Option<(usize, Option<String>)>) {
    let Some((n, rest)) = path.strip_prefix("routes[").and_then(|r| r.split_once(']')) else {
        return (path.to_owned(), None);
    };
    let Ok(i) = n.parse::<usize>() else {
        return (path.to_owned(), None);
    };
    let id = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.get("routes")
            .and_then(|r| r.get(i))
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let rest = match &id {
        Some(id) => rest.strip_prefix(&format!(" (id {id:?})")).unwrap_or(rest),
        None => rest,
    };
    (format!("routes[{i}]{rest}"), Some((i, id)))
}

fn invalid_dialplan(body: &str, e: &DialplanError) -> ApiError {
    let (path, route) = locate(body, &e.path);
    let mut err = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_dialplan",
        e.to_string(),
    )
    .with("path", json!(path))
    .with("reason", json!(e.reason));
    if let Some((i, id)) = route {
        err = err.with("route_index", json!(i)).with("route", json!(id));
    }
    err
}

fn parse_dialplan(body: &str) -> ApiResult<Dialplan> {
    Dialplan::parse(body).map_err(|e| invalid_dialplan(body, &e))
}

pub(super) async fn validate_dialplan(body: String) -> ApiResult<Json<Value>> {
    let d = parse_dialplan(&body)?;
    Ok(Json(json!({"valid": true, "routes": d.len()})))
}

fn not_saved(message: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "dialplan_not_saved",
        message,
    )
}

/// Saves and applies a dialplan. With a shared database the new version
/// goes there (every replica loads it); otherwise to DIALPLAN_PATH, and a
/// copy into the embedded store's version history.
pub(super) async fn put_dialplan(
    State(node): State<Arc<Node>>,
    body: String,
) -> ApiResult<Json<Value>> {
    let d = parse_dialplan(&body)?;
    let routes = d.len();
    let text = serde_json::to_string(&d.file).map_err(|e| not_saved(e.to_string()))?;
    let version = if node.config.cluster.database_url.is_some() {
        // the database is the truth: every replica loads this version
        let id = node.store.save_dialplan(&text).await?;
        node.config_changed.notify_one();
        Some(id)
    } else {
        node.save_dialplan(&d)
            .map_err(|e| not_saved(format!("DIALPLAN_PATH: {e}")))?;
        // the file is the truth; the store keeps the history
        match node.store.save_dialplan(&text).await {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(cause = %e, "dialplan version not kept in the store");
                None
            }
        }
    };
    node.calls.set_dialplan(d);
    Ok(Json(
        json!({"valid": true, "routes": routes, "version": version}),
    ))
}

/// `POST /api/v1/dialplan/dry-run`: which route of the running dialplan a
/// call would take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DryRun {
    destination: String,
    /// The calling user (username or extension); absent: a local user of
    /// the account.
    #[serde(default)]
    from_user: Option<String>,
    /// The trunk the call comes from, instead of a user.
    #[serde(default)]
    from_trunk: Option<String>,
    /// The caller's account (default: the default account; a trunk's
    /// calls belong to the trunk's account).
    #[serde(default)]
    account_id: Option<i64>,
}

fn given(v: Option<&String>) -> Option<&str> {
    v.map(|s| s.trim()).filter(|s| !s.is_empty())
}

pub(super) async fn dry_run(
    State(node): State<Arc<Node>>,
    ApiJson(q): ApiJson<DryRun>,
) -> ApiResult<Json<Value>> {
    let destination = q.destination.trim();
    if destination.is_empty() || destination.contains(char::is_whitespace) {
        return Err(ApiError::invalid("destination: a number or username"));
    }
    let account = q
        .account_id
        .unwrap_or(switchboard_store::DEFAULT_ACCOUNT_ID);
    let (origin, account, caller) =
        match (given(q.from_user.as_ref()), given(q.from_trunk.as_ref())) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "from_user and from_trunk: a call comes from one of them",
                ));
            }
            (Some(user), None) => {
                let u = node
                    .directory
                    .user_by_extension(account, user)
                    .or_else(|| node.directory.user(account, user))
                    .ok_or_else(|| ApiError::not_found("user"))?;
                (Origin::User, u.account_id, json!({"user": user}))
            }
            (None, Some(trunk)) => {
                let t = node
                    .calls
                    .trunks
                    .get(trunk)
                    .ok_or_else(|| ApiError::not_found("trunk"))?;
                (
                    Origin::Trunk(trunk),
                    t.config.account_id,
                    json!({"trunk": trunk}),
                )
            }
            (None, None) => (Origin::User, account, json!({})),
        };
    let dialplan = node.calls.dialplan();
    let found = dialplan
        .route_for(destination, account, origin)
        .and_then(|r| {
            dialplan
                .file
                .routes
                .iter()
                .enumerate()
                .find(|(_, f)| f.id == r.id)
        });
    let mut out = json!({
        "destination": destination,
        "account_id": account,
        "from": caller,
        "matched": found.is_some(),
    });
    if let Some((i, route)) = found {
        out["route_index"] = json!(i);
        out["route"] = json!(route);
    }
    Ok(Json(out))
}

/// The saved versions, newest first.
pub(super) async fn versions(State(node): State<Arc<Node>>) -> ApiResult<Json<Value>> {
    let list: Vec<Value> = node
        .store
        .dialplan_versions()
        .await?
        .into_iter()
        .map(|(id, at, size)| json!({"id": id, "created_at": at, "size": size}))
        .collect();
    Ok(Json(json!({"versions": list})))
}

/// One saved version with its dialplan.
pub(super) async fn version(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let (at, text) = node
        .store
        .dialplan_version(id)
        .await?
        .ok_or_else(|| ApiError::not_found("dialplan version"))?;
    let dialplan =
        serde_json::from_str::<Value>(&text).unwrap_or_else(|_| Value::String(text.clone()));
    Ok(Json(
        json!({"id": id, "created_at": at, "dialplan": dialplan}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_located_at_the_route_and_field() {
        let body = r#"{"routes":[{"id":"ok"},{"id":"we \"ird\"","pattern":"1"}]}"#;
        let (path, route) = locate(
            body,
            r#"routes[1] (id "we \"ird\"").actions[0].params.target"#,
        );
        assert_eq!(path, "routes[1].actions[0].params.target");
        assert_eq!(route, Some((1, Some("we \"ird\"".into()))));
        assert_eq!(locate(body, "routes[0].id").0, "routes[0].id");
        assert_eq!(locate(body, r#"routes[0] (id "ok")"#).0, "routes[0]");
        assert_eq!(locate(body, "version"), ("version".into(), None));
        assert_eq!(locate("not json", "dialplan"), ("dialplan".into(), None));
    }
}
