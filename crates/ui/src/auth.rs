//! Login, sessions, CSRF and who is asking.
//!
//! - One user, `admin`, whose password is compared in constant time.
//! - Sessions live on the server: a random 256-bit id in a cookie that is
//!   `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when the browser
//!   spoke HTTPS to a trusted proxy (`X-Forwarded-Proto: https` from an
//!   address of UI_TRUSTED_PROXIES; the UI itself listens on plain HTTP).
//!   The map is bounded ([`MAX_SESSIONS`]); a session ends [`IDLE`] after its
//!   last request, [`MAX_AGE`] after the login at the latest, or at logout.
//! - Every request that changes something (any method but GET/HEAD) carries
//!   the session's CSRF token, as the form field `csrf` or the header
//!   `X-CSRF-Token` (htmx sends it from the body's `hx-headers`); without
//!   it: 403. The login form is the exception: it has no session yet.
//! - Failed logins are limited per source (an IPv4 address, an IPv6 /64):
//!   over UI_LOGIN_FAIL_LIMIT in a window the source gets 429 with
//!   Retry-After. The map of sources is bounded; when it is full of live
//!   windows, unknown sources get 429 too (failing closed).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::Cidr;
use crate::{AppState, SharedState};

/// The session cookie's name.
pub const COOKIE: &str = "sb_session";
/// A session ends this long after its last request.
pub const IDLE: Duration = Duration::from_secs(2 * 3600);
/// A session ends this long after the login, used or not.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; a new login beyond it ends the one closest to
/// its end.
pub const MAX_SESSIONS: usize = 1000;
/// Sources whose failed logins are counted at most.
pub const MAX_SOURCES: usize = 10_000;
/// The largest form body read for its CSRF field.
const MAX_FORM: usize = 64 << 10;

/// What a handler knows of the logged-in browser.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The session's CSRF token, put into every form and `hx-headers`.
    pub csrf: String,
}

struct Session {
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

impl Session {
    fn expires(&self) -> Instant {
        (self.last_seen + IDLE).min(self.created + MAX_AGE)
    }
}

/// The server-side sessions, keyed by the SHA-256 of their id (the id
/// itself is only in the browser's cookie).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session: its id (for the cookie) and CSRF token.
    pub fn create(&self) -> (String, String) {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let csrf = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, s| s.expires() > now);
            if map.len() >= MAX_SESSIONS
                && let Some(k) = map.iter().min_by_key(|(_, s)| s.expires()).map(|(k, _)| *k)
            {
                map.remove(&k);
            }
            map.insert(
                key(&id),
                Session {
                    csrf: csrf.clone(),
                    created: now,
                    last_seen: now,
                },
            );
        }
        (id, csrf)
    }

    /// The CSRF token of a live session, which this request keeps alive.
    pub fn touch(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.map.lock().ok()?;
        let k = key(id);
        let s = map.get_mut(&k)?;
        if s.expires() <= now {
            map.remove(&k);
            return None;
        }
        s.last_seen = now;
        Some(s.csrf.clone())
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&key(id));
        }
    }

    /// Live sessions now.
    pub fn count(&self) -> usize {
        let now = Instant::now();
        self.map
            .lock()
            .map(|m| m.values().filter(|s| s.expires() > now).count())
            .unwrap_or(0)
    }
}

/// Failed logins per source in fixed windows.
pub struct LoginLimiter {
    limit: u32,
    window: Duration,
    map: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// The unit a limit applies to: an IPv4 address or an IPv6 /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl LoginLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` when `ip` may not try now, with how long to wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let Ok(mut map) = self.map.lock() else {
            return Err(self.window.as_secs());
        };
        let k = source_key(ip);
        match map.get(&k) {
            Some((start, _)) if now.duration_since(*start) >= self.window => {
                map.remove(&k);
                Ok(())
            }
            Some((start, n)) if *n >= self.limit => Err(self
                .window
                .saturating_sub(now.duration_since(*start))
                .as_secs()
                .max(1)),
            Some(_) => Ok(()),
            None if map.len() >= MAX_SOURCES => {
                let window = self.window;
                map.retain(|_, (start, _)| now.duration_since(*start) < window);
                if map.len() >= MAX_SOURCES {
                    Err(1)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login of `ip`.
    pub fn fail(&self, ip: IpAddr, now: Instant) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        let k = source_key(ip);
        if !map.contains_key(&k) && map.len() >= MAX_SOURCES {
            return;
        }
        let e = map.entry(k).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    /// Sources counted now (the `/metrics` gauge).
    pub fn sources(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Where a request came from and whether the browser used HTTPS.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub ip: IpAddr,
    pub secure: bool,
}

/// The client's address and scheme: the peer's own, unless the peer is a
/// trusted proxy, whose `X-Forwarded-For` (the rightmost address that is
/// not itself a trusted proxy) and `X-Forwarded-Proto` are believed.
pub fn origin(peer: SocketAddr, headers: &HeaderMap, trusted: &[Cidr]) -> Origin {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer.ip()) {
        return Origin {
            ip: peer.ip(),
            secure: false,
        };
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let ip = forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer.ip());
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    Origin { ip, secure }
}

/// The `Set-Cookie` of a new session.
pub fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        MAX_AGE.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` that ends a session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id the browser sent, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // hash first, so the length of the secret does not show either
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Paths served without a session.
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/login" | "/metrics" | "/phone") || path.starts_with("/assets/")
}

/// Requires a session (and, for changes, its CSRF token) on every path
/// but the public ones; puts the [`Ctx`] into the request's extensions.
pub async fn guard(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    let csrf = session_id(req.headers()).and_then(|id| state.sessions.touch(id));
    let Some(csrf) = csrf else {
        if !reads {
            return (StatusCode::FORBIDDEN, "not logged in").into_response();
        }
        if req.headers().contains_key("hx-request") {
            // htmx would swap a login page into a fragment: send it there
            return (StatusCode::UNAUTHORIZED, [("hx-redirect", "/login")]).into_response();
        }
        return redirect("/login");
    };
    if !reads {
        let (given, rebuilt) = csrf_of(req).await;
        let Some(rebuilt) = rebuilt else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
        };
        req = rebuilt;
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), csrf.as_bytes()));
        if !ok {
            let o = origin(peer, req.headers(), &state.settings.trusted_proxies);
            tracing::warn!(source = %o.ip, path = req.uri().path(), "request without a valid CSRF token refused");
            return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
        }
    }
    req.extensions_mut().insert(Ctx { csrf });
    next.run(req).await
}

/// The CSRF token of a request (header, else form field) and the request
/// rebuilt around the body read for it (None: the body was too large).
async fn csrf_of(req: Request) -> (Option<String>, Option<Request>) {
    if let Some(v) = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return (Some(v.to_owned()), Some(req));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (None, Some(req));
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return (None, None);
    };
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == "csrf"))
        .map(|(_, v)| v);
    (token, Some(Request::from_parts(parts, Body::from(bytes))))
}

/// 303 See Other to `to`.
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The password check of a login; counts the failure.
pub fn check_login(state: &AppState, ip: IpAddr, user: &str, password: &str) -> bool {
    let ok = constant_time_eq(user.as_bytes(), b"admin")
        & constant_time_eq(
            password.as_bytes(),
            state.settings.admin_password.as_bytes(),
        );
    if !ok {
        state.limiter.fail(ip, Instant::now());
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn limiter_blocks_after_the_limit_until_the_window_ends() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(ip("192.0.2.1"), t0), Ok(()));
            l.fail(ip("192.0.2.1"), t0);
        }
        assert_eq!(l.check(ip("192.0.2.1"), t0), Err(60));
        assert_eq!(
            l.check(ip("192.0.2.1"), t0 + Duration::from_secs(45)),
            Err(15)
        );
        assert_eq!(l.check(ip("192.0.2.2"), t0), Ok(()), "another source");
        assert_eq!(
            l.check(ip("192.0.2.1"), t0 + Duration::from_secs(60)),
            Ok(())
        );
        // an IPv6 /64 is one source
        for i in 0..3 {
            l.fail(ip(&format!("2001:db8::{i}")), t0);
        }
        assert!(l.check(ip("2001:db8::ffff"), t0).is_err());
        assert_eq!(l.check(ip("2001:db8:0:1::1"), t0), Ok(()));
    }

    #[test]
    fn limiter_map_is_bounded_and_fails_closed() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            l.fail(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0);
        }
        l.fail(ip("192.0.2.9"), t0);
        assert_eq!(l.sources(), MAX_SOURCES);
        assert!(
            l.check(ip("192.0.2.9"), t0).is_err(),
            "full: unknown sources wait"
        );
        assert_eq!(
            l.check(ip("192.0.2.9"), t0 + Duration::from_secs(61)),
            Ok(())
        );
        assert_eq!(l.sources(), 0, "expired windows pruned");
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::default();
        let (id, csrf) = s.create();
        assert_eq!(id.len(), 64);
        assert_eq!(s.touch(&id), Some(csrf));
        assert_eq!(s.touch(&"0".repeat(64)), None);
        s.remove(&id);
        assert_eq!(s.touch(&id), None);
        let ids: Vec<String> = (0..MAX_SESSIONS + 5).map(|_| s.create().0).collect();
        assert_eq!(s.count(), MAX_SESSIONS);
        assert!(
            s.touch(&ids[MAX_SESSIONS + 4]).is_some(),
            "the newest stays"
        );
    }

    #[test]
    fn origin_believes_trusted_proxies_only() {
        let trusted = [Cidr::parse("10.0.0.0/8").expect("cidr")];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 203.0.113.5, 10.0.0.2"),
        );
        let o = origin("10.0.0.1:4000".parse().expect("addr"), &h, &trusted);
        assert!(o.secure);
        assert_eq!(o.ip, ip("203.0.113.5"), "the rightmost untrusted hop");
        let o = origin("192.0.2.1:4000".parse().expect("addr"), &h, &trusted);
        assert!(!o.secure);
        assert_eq!(o.ip, ip("192.0.2.1"));
    }

    #[test]
    fn cookies() {
        let c = session_cookie(&"a".repeat(64), false);
        assert!(c.contains("HttpOnly; SameSite=Strict; Path=/"));
        assert!(!c.contains("Secure"));
        assert!(session_cookie("x", true).ends_with("; Secure"));
        let mut h = HeaderMap::new();
        let id = "ab".repeat(32);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={id}")).expect("value"),
        );
        assert_eq!(session_id(&h), Some(id.as_str()));
        h.insert(header::COOKIE, HeaderValue::from_static("sb_session=short"));
        assert_eq!(session_id(&h), None);
    }
}
