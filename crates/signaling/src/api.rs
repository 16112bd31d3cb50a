//! The REST API under `/api/v1` and `/metrics`.
//!
//! JSON in and out; every error is `{"error": "...", "code": "..."}` with a
//! 4xx that names the field at fault. Every route but `/api/v1/health`
//! needs `Authorization: Bearer <API_TOKEN>`. Writes go to the store first
//! and then to the in-memory directory the SIP path reads, so a phone can
//! register the moment its user was created.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

mod cluster;
mod dialplan;
mod directory;
mod listing;

use crate::Node;
use crate::registrar::Now;

// === errors ===

/// An API error: HTTP status, a stable machine code and a message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// More members of the error object (a dialplan error's `path`).
    extra: serde_json::Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }
    /// Adds a member to the error object.
    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }
    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("error".into(), Value::String(self.message));
        body.insert("code".into(), Value::String(self.code.into()));
        (self.status, Json(Value::Object(body))).into_response()
    }
}

impl From<switchboard_store::Error> for ApiError {
    fn from(e: switchboard_store::Error) -> Self {
        use switchboard_store::Error as E;
        match e {
            E::NotFound => Self::not_found("resource"),
            E::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            E::Invalid(m) => Self::invalid(m),
            other => {
                tracing::error!(cause = %other, "store error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database is unavailable",
                )
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `Json<T>` whose rejection is our error shape, with serde's message
/// (which names the field: "missing field `username`").
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match rejection {
                    JsonRejection::MissingJsonContentType(_) => "content_type",
                    JsonRejection::JsonSyntaxError(_) => "json_syntax",
                    _ => "json_invalid",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// `Path<T>` with our error shape.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r| ApiError::invalid(r.body_text()))
    }
}

/// `Query<T>` with our error shape (the message names the parameter).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r| ApiError::invalid(r.body_text()))
    }
}

// === router ===

/// The API router. `token` guards everything but `/api/v1/health`.
pub fn router(node: Arc<Node>, token: String) -> Router {
    let token = Arc::new(token);
    let guarded = Router::new()
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/stats/calls", get(listing::call_minutes))
        .route("/api/v1/cluster", get(cluster::cluster))
        .route(
            "/api/v1/accounts",
            get(directory::list_accounts).post(directory::create_account),
        )
        .route(
            "/api/v1/accounts/{id}",
            get(directory::get_account)
                .patch(directory::update_account)
                .delete(directory::delete_account),
        )
        .route(
            "/api/v1/users",
            get(listing::list_users).post(directory::create_user),
        )
        .route(
            "/api/v1/users/{id}",
            get(directory::get_user)
                .patch(directory::update_user)
                .delete(directory::delete_user),
        )
        .route("/api/v1/registrations", get(listing::list_registrations))
        .route(
            "/api/v1/registrations/{aor}",
            get(get_registration).delete(delete_registration),
        )
        .route("/api/v1/calls", get(list_calls).post(originate_call))
        .route("/api/v1/calls/{id}", get(get_call))
        .route(
            "/api/v1/calls/{id}/hangup",
            axum::routing::post(hangup_call),
        )
        .route("/api/v1/cdrs", get(list_cdrs))
        .route("/api/v1/cdrs/{call_id}", get(get_cdr))
        .route(
            "/api/v1/dialplan",
            get(dialplan::get_dialplan).put(dialplan::put_dialplan),
        )
        .route(
            "/api/v1/dialplan/validate",
            axum::routing::post(dialplan::validate_dialplan),
        )
        .route(
            "/api/v1/dialplan/dry-run",
            axum::routing::post(dialplan::dry_run),
        )
        .route("/api/v1/dialplan/versions", get(dialplan::versions))
        .route("/api/v1/dialplan/versions/{id}", get(dialplan::version))
        .route("/api/v1/rtpmanagers", get(list_rtpmanagers))
        .route(
            "/api/v1/rtpmanagers/{name}/drain",
            get(get_drain).post(start_drain).delete(stop_drain),
        )
        .route("/api/v1/sessions", get(list_sessions))
        .route("/api/v1/trunks", get(list_trunks))
        .route(
            "/api/v1/trunks/{name}",
            get(get_trunk).put(put_trunk).delete(delete_trunk),
        )
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { require_token(&token, req, next).await }
        }));
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .merge(guarded)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(node)
}

/// The METRICS_PORT router: `/metrics` without token, nothing else.
pub fn metrics_router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(node)
}

async fn require_token(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// === health, stats, metrics ===

/// Always 200: SIP keeps working on memory while a server is down, so an
/// orchestrator must not restart us; the body says what is degraded.
async fn health(State(node): State<Arc<Node>>) -> Response {
    let (_, body) = cluster::health(&node).await;
    (StatusCode::OK, Json(body)).into_response()
}

async fn stats(State(node): State<Arc<Node>>) -> Json<Value> {
    let (aors, contacts) = node.location.counts();
    let sip = node.sip_stats();
    Json(json!({
        "uptime_seconds": node.started.elapsed().as_secs(),
        "registrations": { "aors": aors, "contacts": contacts },
        "users": node.directory.user_count(),
        "transactions": { "live": sip.transactions_live },
        "tcp_connections": sip.tcp_connections,
        "messages": {
            "requests_in": sip.requests_in,
            "responses_out": sip.responses_out,
        },
        "auth": {
            "challenges": node.auth.stats.challenges.load(Ordering::Relaxed),
            "successes": node.auth.stats.successes.load(Ordering::Relaxed),
            "failures": node.auth.stats.failures.load(Ordering::Relaxed),
            "blocked_sources": node.auth.limiter.blocked_count(std::time::Instant::now()),
        },
    }))
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    (headers, node.render_metrics())
}

// === registrations ===

/// `alice@example.com` and `sip:alice@example.com` name the same AOR.
fn aor_key(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.strip_prefix("sip:").unwrap_or(raw);
    match raw.split_once('@') {
        Some((user, host)) => format!("sip:{user}@{}", host.to_ascii_lowercase()),
        None => format!("sip:{raw}"),
    }
}

async fn get_registration(
    State(node): State<Arc<Node>>,
    ApiPath(aor): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let aor = aor_key(&aor);
    if let Some(found) = cluster::registration(&node, &aor).await {
        return found
            .map(Json)
            .ok_or_else(|| ApiError::not_found("registration"));
    }
    node.location
        .view(&aor, Now::current().unix_ms)
        .map(|v| Json(json!(v)))
        .ok_or_else(|| ApiError::not_found("registration"))
}

async fn delete_registration(
    State(node): State<Arc<Node>>,
    ApiPath(aor): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let aor = aor_key(&aor);
    let here = node.location.remove_aor(&aor);
    let shared = cluster::remove_registration(&node, &aor).await;
    if here || shared {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("registration"))
    }
}

/// The OpenAPI 3 description of this API (checked against the router by
/// a test).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

// === RTP managers ===

/// One member of the RTP manager pool, with its own figures when it
/// answers. `discovery` is its endpoint's state (`ready`, `not_ready`,
/// `terminating`) for a member found through RTPMANAGER_SERVICE, null for
/// the others; `accepting` whether new calls may go to it.
async fn manager_view(m: &crate::media::Manager) -> Value {
    let health = m.health().await;
    let mut v = json!({
        "name": m.name,
        "address": m.addr,
        "embedded": m.is_local(),
        "healthy": m.is_healthy() && health.is_ok(),
        "draining": m.is_draining(),
        "discovery": m.is_discovered().then(|| m.endpoint_state().as_str()),
    });
    match health {
        Ok(h) => {
            v["sessions"] = json!(h.sessions);
            v["free_port_pairs"] = json!(h.free_port_pairs);
            v["advertise_address"] = json!(h.advertise_address);
            v["draining"] = json!(h.draining);
        }
        Err(e) => v["error"] = json!(e.message()),
    }
    v["accepting"] = json!(m.takes_new_calls());
    v
}

/// The pool's members now, each asked for its figures (all at once: a
/// discovered pool may be large).
async fn list_rtpmanagers(State(node): State<Arc<Node>>) -> Json<Value> {
    let members = node.calls.media.members();
    let out = futures_util::future::join_all(members.iter().map(|m| manager_view(m))).await;
    Json(json!(out))
}

fn manager(node: &Node, name: &str) -> ApiResult<Arc<crate::media::Manager>> {
    node.calls
        .media
        .get(name)
        .ok_or_else(|| ApiError::not_found("rtpmanager"))
}

fn unreachable(e: tonic::Status) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "rtpmanager_unreachable",
        format!("the RTP manager did not answer: {}", e.message()),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    #[serde(default)]
    mode: Option<String>,
}

async fn get_drain(
    State(node): State<Arc<Node>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let m = manager(&node, &name)?;
    Ok(Json(manager_view(&m).await))
}

/// Graceful: the manager takes no new sessions; live calls go on until
/// they end. Aggressive: live calls also move to another manager (a
/// re-INVITE on both legs), so the drained one empties at once.
async fn start_drain(
    State(node): State<Arc<Node>>,
    ApiPath(name): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let m = manager(&node, &name)?;
    // the body is optional: no body means a graceful drain
    let body: DrainBody = if body.iter().all(u8::is_ascii_whitespace) {
        DrainBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string()))?
    };
    let mode = body.mode.unwrap_or_else(|| "graceful".into());
    if mode != "graceful" && mode != "aggressive" {
        return Err(ApiError::invalid(format!(
            "mode: {mode:?} is neither \"graceful\" nor \"aggressive\""
        )));
    }
    m.set_draining(true).await.map_err(unreachable)?;
    let moved = if mode == "aggressive" {
        node.calls.migrate_from(&m.name)
    } else {
        0
    };
    let mut v = manager_view(&m).await;
    v["mode"] = json!(mode);
    v["calls_moving"] = json!(moved);
    Ok((StatusCode::ACCEPTED, Json(v)))
}

async fn stop_drain(
    State(node): State<Arc<Node>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let m = manager(&node, &name)?;
    m.set_draining(false).await.map_err(unreachable)?;
    Ok(Json(manager_view(&m).await))
}

/// Every media session of every manager.
async fn list_sessions(State(node): State<Arc<Node>>) -> Json<Value> {
    let mut out = Vec::new();
    for m in node.calls.media.members().iter() {
        let Ok(sessions) = m.list_sessions().await else {
            continue;
        };
        for s in sessions {
            out.push(json!({
                "manager": m.name,
                "session_id": s.session_id,
                "call_id": s.call_id,
                "leg": s.leg,
                "local_address": s.local_address,
                "remote_address": (!s.remote_address.is_empty()).then_some(s.remote_address),
                "codec": s.codec.map(|c| c.name),
                "bridged_to": (!s.bridged_to.is_empty()).then_some(s.bridged_to),
                "packets_received": s.packets_received,
                "packets_sent": s.packets_sent,
                "packets_lost": s.packets_lost,
                "jitter_ms": s.jitter_ms,
                "mos": s.mos,
                "age_ms": s.age_ms,
            }));
        }
    }
    Json(json!(out))
}

// === calls, CDRs, dialplan ===

async fn list_calls(State(node): State<Arc<Node>>) -> Json<Value> {
    if let Some(all) = cluster::calls(&node).await {
        return Json(json!(all));
    }
    Json(json!(node.calls.list()))
}

async fn originate_call(
    State(node): State<Arc<Node>>,
    ApiJson(body): ApiJson<crate::calls::Originate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    match node.calls.originate(body) {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(json!({"id": id})))),
        Err(crate::calls::OriginateError(status, code, message)) => Err(ApiError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message,
        )),
    }
}

async fn get_call(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    if let Some(found) = cluster::call(&node, &id).await {
        return found
            .map(|c| Json(json!(c)))
            .ok_or_else(|| ApiError::not_found("call"));
    }
    node.calls
        .get(&id)
        .map(|c| Json(json!(c)))
        .ok_or_else(|| ApiError::not_found("call"))
}

async fn hangup_call(
    State(node): State<Arc<Node>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if node.calls.hangup(&id) || cluster::hangup_elsewhere(&node, &id).await {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found("call"))
    }
}

async fn list_cdrs(
    State(node): State<Arc<Node>>,
    headers: axum::http::HeaderMap,
    ApiQuery(filter): ApiQuery<switchboard_store::CdrFilter>,
) -> ApiResult<Response> {
    let cdrs = node.store.list_cdrs(&filter).await?;
    let next = cdrs.last().map(|c| c.id);
    let full = filter.limit.is_some_and(|l| cdrs.len() >= l as usize);
    let wants_csv = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            cdrs_csv(&cdrs),
        )
            .into_response());
    }
    Ok(Json(json!({
        "cdrs": cdrs,
        "next_cursor": if full { next } else { None },
    }))
    .into_response())
}

/// CDRs as RFC 4180 CSV with a header row.
fn cdrs_csv(cdrs: &[switchboard_store::Cdr]) -> String {
    fn field(out: &mut String, v: &str) {
        if v.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&v.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(v);
        }
    }
    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map(ToString::to_string).unwrap_or_default()
    }
    let mut out = String::from(
        "call_id,account_id,caller,caller_name,caller_user,callee,callee_user,source,\
         invite_at,ring_at,answer_at,end_at,ring_ms,talk_ms,disposition,hangup_code,\
         hangup_reason,hangup_side,route,node\r\n",
    );
    for c in cdrs {
        let cols = [
            c.call_id.clone(),
            opt(&c.account_id),
            c.caller.clone(),
            opt(&c.caller_name),
            opt(&c.caller_user),
            c.callee.clone(),
            opt(&c.callee_user),
            c.source.clone(),
            c.invite_at.to_string(),
            opt(&c.ring_at),
            opt(&c.answer_at),
            opt(&c.end_at),
            opt(&c.ring_ms),
            opt(&c.talk_ms),
            c.disposition.clone(),
            opt(&c.hangup_code),
            opt(&c.hangup_reason),
            opt(&c.hangup_side),
            opt(&c.route),
            opt(&c.node),
        ];
        for (i, v) in cols.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, v);
        }
        out.push_str("\r\n");
    }
    out
}

async fn get_cdr(
    State(node): State<Arc<Node>>,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    match node.store.get_cdr(&call_id).await {
        Ok(c) => Ok(Json(json!(c))),
        Err(switchboard_store::Error::NotFound) => Err(ApiError::not_found("cdr")),
        Err(e) => Err(e.into()),
    }
}

// === trunks ===

fn trunk_view(t: &crate::trunks::Trunk) -> Value {
    let mut v = json!(t.config);
    v["status"] = json!(t.status());
    v
}

async fn list_trunks(State(node): State<Arc<Node>>) -> Json<Value> {
    let list: Vec<Value> = node
        .calls
        .trunks
        .list()
        .iter()
        .map(|t| trunk_view(t))
        .collect();
    Json(json!(list))
}

async fn get_trunk(
    State(node): State<Arc<Node>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    node.calls
        .trunks
        .get(&name)
        .map(|t| Json(trunk_view(&t)))
        .ok_or_else(|| ApiError::not_found("trunk"))
}

async fn put_trunk(
    State(node): State<Arc<Node>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(mut config): ApiJson<crate::trunks::TrunkConfig>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if config.name.is_empty() {
        config.name = name.clone();
    }
    if config.name != name {
        return Err(ApiError::invalid("name: must match the trunk in the path"));
    }
    let old = node.calls.trunks.get(&name);
    if let Some(old) = &old {
        // an update that leaves a password out keeps the stored one (the
        // inbound HA1s only while the inbound username stays the same)
        if config.password.is_none() {
            config.password = old.config.password.clone();
        }
        if config.inbound_password.is_none()
            && config.inbound_ha1.is_none()
            && config.inbound_username == old.config.inbound_username
        {
            config.inbound_ha1 = old.config.inbound_ha1.clone();
        }
    }
    if config.inbound_password.is_some() {
        let account = node
            .directory
            .account(config.account_id)
            .ok_or_else(|| ApiError::invalid("account_id: no such account"))?;
        config.seal(&account.realm);
    }
    if node.config.cluster.database_url.is_some() {
        crate::cluster::trunks::save(&node, &config).await?;
    }
    let (trunk, old) = node.calls.trunks.put(config).map_err(ApiError::invalid)?;
    // a host name is looked up before answering: the status shows the
    // addresses, or why there are none (the trunk is kept either way)
    trunk.resolve().await;
    node.calls
        .start_trunk_tasks(Arc::clone(&trunk), node.shutdown.clone(), true);
    save_trunks(&node)?;
    let status = if old.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(trunk_view(&trunk))))
}

/// Writes TRUNKS_PATH (without a shared database: with one, the database
/// holds the trunks).
fn save_trunks(node: &Node) -> ApiResult<()> {
    if node.config.cluster.database_url.is_some() {
        return Ok(());
    }
    node.calls
        .trunks
        .save(&node.config.trunks_path)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "trunks_not_saved",
                format!("TRUNKS_PATH: {e}"),
            )
        })
}

async fn delete_trunk(
    State(node): State<Arc<Node>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if node.config.cluster.database_url.is_some() {
        node.store.delete_trunk(&name).await?;
    }
    if node.calls.trunks.remove(&name).is_none() {
        return Err(ApiError::not_found("trunk"));
    }
    save_trunks(&node)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Distinguishes an absent field (no change) from `null` (clear it).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::aor_key;

    #[test]
    fn aor_keys_normalise() {
        assert_eq!(aor_key("alice@Example.COM"), "sip:alice@example.com");
        assert_eq!(aor_key("sip:alice@example.com"), "sip:alice@example.com");
        assert_eq!(aor_key("Alice@x"), "sip:Alice@x");
    }
}
