//! `GET /phone`: the browser phone. A SIP user (not the dashboard's admin:
//! the page needs no login) enters their user name and SIP password, and
//! the page registers over secure WebSocket to UI_SIP_WSS_URL with JsSIP
//! (vendored, `assets/jssip-*.min.js`), dials, answers, hangs up, sends
//! DTMF and shows the call's state and audio levels (`assets/phone.js`).
//!
//! The credentials stay in the browser: the dashboard serves the page and
//! never sees them; signaling checks them with digest as for any phone.
//! The page's Content-Security-Policy allows, beyond this server, exactly
//! one connection target: UI_SIP_WSS_URL's origin.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::{Layout, render};
use crate::SharedState;
use crate::config::Phone;

/// The keypad, in the order it is laid out.
const KEYS: [&str; 12] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

#[derive(Template)]
#[template(path = "phone.html")]
struct Page {
    l: Layout,
    phone: Option<Phone>,
    keys: &'static [&'static str],
    jssip_version: &'static str,
}

/// The page's policy: the dashboard's, with the phone's WebSocket origin
/// added to `connect-src` and `media-src` for the remote audio stream.
fn csp(phone: Option<&Phone>) -> String {
    let ws = phone
        .map(|p| format!(" {}", p.connect_src))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{ws}; media-src 'self' blob: mediastream:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

pub async fn page(State(state): State<SharedState>) -> Response {
    let phone = state.settings.phone.clone();
    let policy = csp(phone.as_ref());
    let mut r = render(
        &Page {
            l: Layout::new("Phone", "phone", ""),
            phone,
            keys: &KEYS,
            jssip_version: crate::JSSIP_VERSION,
        },
        StatusCode::OK,
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r.headers_mut().insert(
        "permissions-policy",
        HeaderValue::from_static("microphone=(self), camera=(), geolocation=()"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_adds_only_the_phones_origin() {
        let p = Phone::parse(Some("wss://sip.example.com:8089/ws"), None)
            .unwrap()
            .unwrap();
        let c = csp(Some(&p));
        assert!(
            c.contains("connect-src 'self' wss://sip.example.com:8089;"),
            "{c}"
        );
        assert!(c.contains("script-src 'self';"), "{c}");
        assert!(csp(None).contains("connect-src 'self';"));
    }
}
