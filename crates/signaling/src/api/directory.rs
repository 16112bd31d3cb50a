//! Accounts and users: `/api/v1/accounts` and `/api/v1/users/{id}`
//! (the user list is in `listing.rs`). Passwords are stored as digest HA1
//! (MD5 and SHA-256) under the account's realm, never in clear.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_sip::digest::{Algorithm, ha1};
use switchboard_store::{AccountPatch, NewAccount, NewUser, User, UserPatch};

use super::*;
use crate::Node;

pub(super) async fn list_accounts(State(node): State<Arc<Node>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(node.store.list_accounts().await?)))
}

pub(super) async fn get_account(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    match node.store.get_account(id).await {
        Ok(a) => Ok(Json(json!(a))),
        Err(switchboard_store::Error::NotFound) => Err(ApiError::not_found("account")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountBody {
    name: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    max_concurrent_calls: Option<i64>,
    /// `optional` (default) or `required`.
    #[serde(default)]
    srtp: Option<String>,
}

pub(super) async fn create_account(
    State(node): State<Arc<Node>>,
    ApiJson(body): ApiJson<AccountBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let a = node
        .store
        .create_account(NewAccount {
            name: body.name,
            domain: body.domain.map(|d| d.to_ascii_lowercase()),
            max_concurrent_calls: body.max_concurrent_calls.unwrap_or(0),
            srtp: body.srtp,
        })
        .await?;
    node.directory.upsert_account(&a);
    Ok((StatusCode::CREATED, Json(json!(a))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountPatchBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, with = "super::double_option")]
    domain: Option<Option<String>>,
    #[serde(default)]
    max_concurrent_calls: Option<i64>,
    #[serde(default)]
    srtp: Option<String>,
}

pub(super) async fn update_account(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AccountPatchBody>,
) -> ApiResult<Json<Value>> {
    let current = node.store.get_account(id).await.map_err(|e| match e {
        switchboard_store::Error::NotFound => ApiError::not_found("account"),
        e => e.into(),
    })?;
    if let Some(domain) = &body.domain
        && domain.as_deref().map(str::to_ascii_lowercase) != current.domain
        && !node.store.list_users(Some(id)).await?.is_empty()
    {
        // HA1 = H(username:realm:password) and the realm is the domain:
        // changing it would silently invalidate every password.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "domain: cannot change while the account has users (their digest hashes are bound to the realm)",
        ));
    }
    let a = node
        .store
        .update_account(
            id,
            AccountPatch {
                name: body.name,
                domain: body.domain.map(|d| d.map(|d| d.to_ascii_lowercase())),
                max_concurrent_calls: body.max_concurrent_calls,
                srtp: body.srtp,
            },
        )
        .await?;
    node.directory.upsert_account(&a);
    Ok(Json(json!(a)))
}

pub(super) async fn delete_account(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    match node.store.delete_account(id).await {
        Ok(()) => {
            node.directory.remove_account(id);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(switchboard_store::Error::NotFound) => Err(ApiError::not_found("account")),
        Err(e) => Err(e.into()),
    }
}

// === users ===

/// A user as the API shows it: never a password or a digest hash.
pub(super) fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "account_id": u.account_id,
        "username": u.username,
        "extension": u.extension,
        "display_name": u.display_name,
        "enabled": u.enabled,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    })
}

pub(super) async fn get_user(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    match node.store.get_user(id).await {
        Ok(u) => Ok(Json(user_json(&u))),
        Err(switchboard_store::Error::NotFound) => Err(ApiError::not_found("user")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserBody {
    username: String,
    password: String,
    #[serde(default)]
    extension: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    account_id: Option<i64>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// Shortest password accepted. Weak SIP passwords are how PBXes get used
/// for toll fraud; eight characters is a floor, not a recommendation.
pub(super) const MIN_PASSWORD: usize = 8;

pub(super) fn check_password(p: &str) -> ApiResult<()> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(ApiError::invalid(format!(
            "password: must be at least {MIN_PASSWORD} characters"
        )));
    }
    if p.len() > 256 {
        return Err(ApiError::invalid("password: must be at most 256 bytes"));
    }
    Ok(())
}

pub(super) async fn account_realm(node: &Node, account_id: i64) -> ApiResult<String> {
    match node.store.get_account(account_id).await {
        Ok(a) => Ok(node.directory.realm_for(&a)),
        Err(switchboard_store::Error::NotFound) => Err(ApiError::invalid(format!(
            "account_id: no account {account_id}"
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn default_account_id(node: &Node) -> ApiResult<i64> {
    let accounts = node.store.list_accounts().await?;
    accounts
        .iter()
        .find(|a| a.name == "default" && a.domain.is_none())
        .or_else(|| accounts.iter().find(|a| a.domain.is_none()))
        .map(|a| a.id)
        .ok_or_else(|| ApiError::invalid("account_id: required (there is no default account)"))
}

pub(super) async fn create_user(
    State(node): State<Arc<Node>>,
    ApiJson(body): ApiJson<UserBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_password(&body.password)?;
    let account_id = match body.account_id {
        Some(id) => id,
        None => default_account_id(&node).await?,
    };
    let realm = account_realm(&node, account_id).await?;
    let u = node
        .store
        .create_user(NewUser {
            account_id,
            ha1_md5: ha1(Algorithm::Md5, &body.username, &realm, &body.password),
            ha1_sha256: ha1(Algorithm::Sha256, &body.username, &realm, &body.password),
            username: body.username,
            extension: body.extension,
            display_name: body.display_name,
            enabled: body.enabled.unwrap_or(true),
        })
        .await?;
    node.directory.upsert_user(&u);
    Ok((StatusCode::CREATED, Json(user_json(&u))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatchBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, with = "super::double_option")]
    extension: Option<Option<String>>,
    #[serde(default, with = "super::double_option")]
    display_name: Option<Option<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

pub(super) async fn update_user(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UserPatchBody>,
) -> ApiResult<Json<Value>> {
    let current = match node.store.get_user(id).await {
        Ok(u) => u,
        Err(switchboard_store::Error::NotFound) => return Err(ApiError::not_found("user")),
        Err(e) => return Err(e.into()),
    };
    let renamed = body
        .username
        .as_ref()
        .is_some_and(|n| *n != current.username);
    if renamed && body.password.is_none() {
        return Err(ApiError::invalid(
            "password: required when username changes (the digest hash covers the username)",
        ));
    }
    let (ha1_md5, ha1_sha256) = match &body.password {
        Some(p) => {
            check_password(p)?;
            let realm = account_realm(&node, current.account_id).await?;
            let name = body.username.as_deref().unwrap_or(&current.username);
            (
                Some(ha1(Algorithm::Md5, name, &realm, p)),
                Some(ha1(Algorithm::Sha256, name, &realm, p)),
            )
        }
        None => (None, None),
    };
    let u = node
        .store
        .update_user(
            id,
            UserPatch {
                username: body.username,
                extension: body.extension,
                display_name: body.display_name,
                ha1_md5,
                ha1_sha256,
                enabled: body.enabled,
            },
        )
        .await?;
    node.directory.upsert_user(&u);
    Ok(Json(user_json(&u)))
}

pub(super) async fn delete_user(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    match node.store.delete_user(id).await {
        Ok(()) => {
            node.directory.remove_user(id);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(switchboard_store::Error::NotFound) => Err(ApiError::not_found("user")),
        Err(e) => Err(e.into()),
    }
}
