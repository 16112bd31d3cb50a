//! The signaling APIs behind the dashboard: JSON over HTTP/1.1, plain or
//! over TLS (`https://` backends, verified as [`crate::tls`] says), with
//! each backend's bearer token, a 2 s deadline per request (waiting for a
//! connection slot and the TLS handshake included), at most [`PER_BACKEND`] requests in flight per
//! backend, and reads cached for [`TTL`] per backend and path, so however
//! many tabs poll a page a backend answers each path at most once a second.
//! Concurrent readers of the same key wait for one request instead of
//! sending their own.
//!
//! An unreachable backend, a certificate that fails verification, a
//! timeout or a non-2xx answer is an [`BackendError`], which the pages
//! show as "down", never as healthy.
//! The token goes into the `Authorization` header and nowhere else: errors
//! carry the backend's status and message, never the request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::Backend;

/// Deadline of one request to a backend.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long an answer (or a failure) is reused for the same backend and path.
pub const TTL: Duration = Duration::from_secs(1);
/// Requests in flight to one backend at most.
pub const PER_BACKEND: usize = 8;
/// Cached keys at most (backends × paths; the paths are the pages' own).
const MAX_KEYS: usize = 1024;
/// The largest answer read (10,000 registrations are a few MB).
const MAX_BODY: usize = 32 << 20;

/// Why a backend gave no usable answer; shown on the pages as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    pub message: String,
    /// The backend's status when it answered with a non-2xx.
    pub status: Option<StatusCode>,
    /// The backend's error object (`{"error", "code", ...}`), or null.
    pub detail: Value,
}

impl BackendError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
            detail: Value::Null,
        }
    }

    /// What the dashboard answers a browser whose action failed: the
    /// backend's refusal of what was asked (a 4xx other than 401/403) as
    /// it is, anything else (unreachable, a wrong token, a 5xx) 502.
    pub fn action_status(&self) -> StatusCode {
        match self.status {
            Some(s)
                if s.is_client_error()
                    && s != StatusCode::UNAUTHORIZED
                    && s != StatusCode::FORBIDDEN =>
            {
                s
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A backend's JSON answer with the counts a paged list sends in its
/// headers (`X-Total-Count`, `X-Contact-Count`). It reads as its body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub body: Value,
    /// Matches over all pages, when the backend said.
    pub total: Option<usize>,
    /// Contacts of the matching AORs (registrations), when the backend said.
    pub contacts: Option<usize>,
}

impl std::ops::Deref for Reply {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.body
    }
}

pub type Answer = Result<Arc<Reply>, BackendError>;

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Answer)>>>;

/// The backends and their shared cache.
pub struct Backends {
    list: Vec<Member>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    cache: Mutex<HashMap<(usize, String), Slot>>,
    /// Requests sent to backends since start (the `/metrics` counter).
    pub requests: AtomicU64,
}

struct Member {
    config: Backend,
    permits: Semaphore,
}

impl Backends {
    /// The backends of `list`; `https://` ones are reached with `tls`
    /// ([`crate::tls::client_config`]).
    pub fn new(list: Vec<Backend>, tls: ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(TIMEOUT));
        http.set_nodelay(true);
        // https:// URLs pass through it to the TLS layer
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(PER_BACKEND)
            .build(connector);
        Self {
            list: list
                .into_iter()
                .map(|config| Member {
                    config,
                    permits: Semaphore::new(PER_BACKEND),
                })
                .collect(),
            client,
            cache: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// The backends' names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|m| m.config.name.as_str())
    }

    /// The index of the backend called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|m| m.config.name == name)
    }

    /// `GET /api/v1{path}` of backend `idx`, from the cache when it is
    /// younger than [`TTL`].
    pub async fn get(&self, idx: usize, path: &str) -> Answer {
        let slot = self.slot(idx, path);
        let mut entry = slot.lock().await;
        if let Some((at, answer)) = entry.as_ref()
            && at.elapsed() < TTL
        {
            return answer.clone();
        }
        let answer = self
            .request(idx, Method::GET, path, None)
            .await
            .map(Arc::new);
        *entry = Some((Instant::now(), answer.clone()));
        answer
    }

    /// `GET` of the same path on every backend at once, in backend order.
    pub async fn get_all(&self, path: &str) -> Vec<(String, Answer)> {
        let futures = (0..self.list.len()).map(|i| self.get(i, path));
        let answers = futures_util::future::join_all(futures).await;
        self.names().map(str::to_owned).zip(answers).collect()
    }

    /// A request that changes something (never cached); the backend's
    /// cached reads are dropped, so the next page shows the change.
    pub async fn send(
        &self,
        idx: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, BackendError> {
        let answer = self.request(idx, method, path, body).await;
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(i, _), _| *i != idx);
        }
        answer.map(|r| r.body)
    }

    fn slot(&self, idx: usize, path: &str) -> Slot {
        let Ok(mut cache) = self.cache.lock() else {
            // a poisoned map: serve uncached rather than fail
            return Slot::default();
        };
        if let Some(s) = cache.get(&(idx, path.to_owned())) {
            return Arc::clone(s);
        }
        if cache.len() >= MAX_KEYS {
            // drop slots nobody holds whose answer is stale
            cache.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || s.try_lock()
                        .map(|e| e.as_ref().is_some_and(|(at, _)| at.elapsed() < TTL))
                        .unwrap_or(true)
            });
            if cache.len() >= MAX_KEYS {
                return Slot::default();
            }
        }
        let s = Slot::default();
        cache.insert((idx, path.to_owned()), Arc::clone(&s));
        s
    }

    async fn request(
        &self,
        idx: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, BackendError> {
        let Some(m) = self.list.get(idx) else {
            return Err(BackendError::new("no such backend"));
        };
        match tokio::time::timeout(TIMEOUT, self.exchange(m, method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::new(format!(
                "no answer within {} s",
                TIMEOUT.as_secs()
            ))),
        }
    }

    async fn exchange(
        &self,
        m: &Member,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, BackendError> {
        let _permit = m
            .permits
            .acquire()
            .await
            .map_err(|_| BackendError::new("shutting down"))?;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}/api/v1{path}", m.config.base))
            .header(header::ACCEPT, "application/json");
        if let Some(t) = &m.config.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| BackendError::new(format!("bad request: {e}")))?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.client.request(req).await.map_err(|e| {
            BackendError::new(
                crate::tls::describe(&e)
                    .unwrap_or_else(|| format!("unreachable: {}", connect_error(&e))),
            )
        })?;
        let status = resp.status();
        let count = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let (total, contacts) = (count("x-total-count"), count("x-contact-count"));
        let bytes = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| BackendError::new(format!("answer not read: {e}")))?
            .to_bytes();
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if !status.is_success() {
            return Err(BackendError {
                message: status_error(status, &value),
                status: Some(status),
                detail: value,
            });
        }
        Ok(Reply {
            body: value,
            total,
            contacts,
        })
    }
}

/// `HTTP 404: call not found` from the API's `{"error": ...}` shape.
fn status_error(status: StatusCode, body: &Value) -> String {
    match body.get("error").and_then(Value::as_str) {
        Some(msg) => format!("HTTP {}: {msg}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// The innermost cause of a client error (`Connection refused`), which is
/// what an operator needs, rather than hyper's outer wrapper.
fn connect_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Percent-encodes one path segment (an AOR, a call id, a manager name):
/// everything but letters, digits, `-`, `_` and `~`, dots included, so no
/// value can become a `..` segment.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(
            segment("sip:alice@switchboard"),
            "sip%3Aalice%40switchboard"
        );
        assert_eq!(segment("a/../b?c#d e"), "a%2F%2E%2E%2Fb%3Fc%23d%20e");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("rtp-0_y~"), "rtp-0_y~");
    }

    #[test]
    fn failed_actions_answer_the_refusal_or_502() {
        let e = |status: Option<StatusCode>| BackendError {
            message: String::new(),
            status,
            detail: Value::Null,
        };
        assert_eq!(
            e(Some(StatusCode::NOT_FOUND)).action_status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            e(Some(StatusCode::BAD_REQUEST)).action_status(),
            StatusCode::BAD_REQUEST
        );
        for s in [
            Some(StatusCode::UNAUTHORIZED),
            Some(StatusCode::SERVICE_UNAVAILABLE),
            None,
        ] {
            assert_eq!(e(s).action_status(), StatusCode::BAD_GATEWAY, "{s:?}");
        }
    }

    #[test]
    fn errors_name_the_status_and_message() {
        let body = serde_json::json!({"error": "call not found", "code": "not_found"});
        assert_eq!(
            status_error(StatusCode::NOT_FOUND, &body),
            "HTTP 404: call not found"
        );
        assert_eq!(
            status_error(StatusCode::BAD_GATEWAY, &Value::Null),
            "HTTP 502"
        );
    }
}
