//! Every dashboard page on a phone-sized screen (390 × 844 CSS pixels, a
//! common phone held upright) in a real headless Chromium, against real
//! signaling with real phones: nothing but a table's own scroll box may be
//! wider than the screen, the navigation and the log-out button stay on it,
//! the drain dialog fits, and a ringing call is hung up with the page's own
//! button. The values that widen a page in practice are in it: a desk
//! phone's long User-Agent, a display name without spaces, a long AOR.
//!
//! `UPDATE_SCREENSHOTS=1` writes `docs/screenshots/phone-*.png` (shown in the
//! README).

mod common;
#[path = "common/dashboard.rs"]
mod dashboard;

use std::time::Instant;

use common::ip;
use common::phone::SipPhone;
use dashboard::{
    BACKEND, Sipp, Stack, cdrs, free_udp_port, png_size, quoted, screenshot_dir, sipp_call,
    sipp_call_ended_while_ringing, sipp_register,
};
use serde_json::{Value, json};

/// A phone held upright (CSS pixels).
const PHONE: (u32, u32) = (390, 844);

/// What on the page reaches past the screen's edges, outside a horizontal
/// scroll box of its own (`.scroll` around the tables, `pre`); and the
/// document's own scroll width against the width the page has.
const OVERFLOW_JS: &str = r#"
const w = document.documentElement.clientWidth;
const out = [];
for (const el of document.querySelectorAll('body *')) {
  const parent = el.parentElement;
  if (parent && parent.closest('.scroll, pre, svg')) continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  if (r.right > w + 0.5 || r.left < -0.5) {
    const cls = typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\s+/).join('.') : '';
    out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${cls} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
}
return {inner_width: window.innerWidth, width: w,
        scroll_width: document.documentElement.scrollWidth, outside: out.slice(0, 12)};
"#;

/// The page at `path` once `ready` is on it, checked against the screen:
/// nothing outside it but inside a scroll box, no sideways scrolling of
/// the page, every navigation link and the log-out button within it.
async fn fits(s: &Stack, path: &str, ready: &str) {
    s.goto(path).await;
    s.wait_for(ready).await;
    let v = s.js(OVERFLOW_JS).await;
    assert_eq!(v["inner_width"], json!(PHONE.0), "{path}: {v}");
    assert_eq!(
        v["outside"],
        json!([]),
        "{path}: elements past the screen's edge: {v}"
    );
    // (the width left beside a vertical scroll bar, which a phone overlays)
    assert_eq!(
        v["scroll_width"], v["width"],
        "{path}: the page scrolls sideways: {v}"
    );
    let off: Value = s
        .js("const w = document.documentElement.clientWidth;
                 return [...document.querySelectorAll('nav a, form.logout button')]
                   .filter(a => { const r = a.getBoundingClientRect();
                                  return r.width === 0 || r.left < 0 || r.right > w; })
                   .map(a => a.textContent.trim())")
        .await;
    assert_eq!(off, json!([]), "{path}: controls off the screen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_sized_screen() {
    let started = Instant::now();
    let s = Stack::start("browser-small-screen").await;
    for (user, ext, display) in [
        ("alice", "1001", "Alice Liddell"),
        ("bob", "1002", "Bob Stone"),
        (
            "carol",
            "1003",
            "Reception-and-front-desk-of-the-north-building",
        ),
        ("dave", "1004", "Front desk"),
    ] {
        s.user(user, &format!("{user}-secret"), ext, display).await;
    }
    // carol's desk phone says a lot about itself
    let carol = SipPhone::bind(ip("127.0.0.1"), s.sig.sip).await;
    let agent = "Yealink SIP-T46U 108.86.0.20 (firmware-build-20260101-rel-with-a-long-name) \
                 carol@reception-north.example.com";
    let r = carol
        .register("carol", "carol-secret", &[("User-Agent", agent)])
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    s.account(
        "acme-international-holdings",
        "pbx.acme-international-holdings.example",
    )
    .await;
    let _provider = s
        .trunk("carrier", "sip.carrier-with-a-long-name.example")
        .await;
    // an answered call for the CDR pages
    let bob_port = free_udp_port();
    sipp_register(s.sig.sip, bob_port, "bob", "bob-secret").await;
    let answers = Sipp::spawn("callee_answer.xml", None, bob_port, &[]);
    let answered = sipp_call("call_uac.xml", s.sig.sip, "alice", "alice-secret", "1002");
    assert!(answers.passed().await && answered.passed().await);
    let cdr = cdrs(&s, 1).await;
    let cdr_id = cdr[0]["call_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{cdr:?}"))
        .to_owned();
    // and bob's phone rings for a live call
    let bob = Sipp::spawn("callee_ring_cancelled.xml", None, bob_port, &[]);
    let alice = sipp_call_ended_while_ringing(s.sig.sip, "alice", "alice-secret", "1002");

    s.browser
        .set_viewport(PHONE.0, PHONE.1)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    fits(&s, "/login", "form.login").await;
    s.login().await;

    let (dir, committed) = screenshot_dir();
    let mut taken = Vec::new();
    let mut shot = async |name: &str| {
        let path = dir.join(format!("phone-{name}.png"));
        s.browser
            .screenshot(&path)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        taken.push(path);
    };

    let backend = format!("tr[data-backend={}] .status.ok", quoted(BACKEND));
    fits(&s, "/", &backend).await;
    s.wait_for("svg#calls-per-minute").await;
    shot("overview").await;
    fits(
        &s,
        "/registrations",
        "#registrations table.registrations tbody tr",
    )
    .await;
    s.wait_text("#registrations tbody", "firmware-build").await;
    fits(&s, "/sessions", "#sessions").await;
    fits(&s, "/users", "table.users tbody tr").await;
    s.wait_text("table.users tbody", "north-building").await;
    fits(
        &s,
        "/accounts",
        "tr[data-account=\"acme-international-holdings\"]",
    )
    .await;
    fits(&s, "/trunks", "tr[data-trunk=\"carrier\"] .trunk-status").await;
    fits(&s, "/dialplan", "#dialplan-json").await;
    fits(&s, "/cdrs", "#cdrs tr[data-cdr-id]").await;
    fits(
        &s,
        &format!("/cdrs/{cdr_id}?backend={BACKEND}"),
        "#cdr-detail dd[data-field=disposition]",
    )
    .await;
    fits(&s, "/phone", "h1").await;

    // the drain dialog on a phone
    fits(&s, "/rtpmanagers", "tr[data-manager] a[data-drain-name]").await;
    s.click("tr[data-manager] a[data-drain-name]").await;
    s.wait_for("#drain-dialog[open]").await;
    let dialog = s
        .js(
            "const r = document.querySelector('#drain-dialog').getBoundingClientRect();
             const buttons = [...document.querySelectorAll('#drain-dialog button')]
               .filter(b => { const q = b.getBoundingClientRect();
                              return q.width === 0 || q.left < 0 || q.right > window.innerWidth; })
               .map(b => b.textContent.trim());
             return {left: r.left, right: r.right, width: window.innerWidth, hidden: buttons}",
        )
        .await;
    assert!(
        dialog["left"].as_f64() >= Some(0.0)
            && dialog["right"].as_f64() <= dialog["width"].as_f64()
            && dialog["hidden"] == json!([]),
        "the drain dialog does not fit: {dialog}"
    );
    shot("drain").await;

    // the ringing call, hung up with the page's button
    fits(&s, "/calls", "#calls tr[data-call-id]").await;
    s.wait_text("#calls tr[data-call-id]", "ringing").await;
    shot("calls").await;
    s.click("#calls tr[data-call-id] form[action=\"/calls/hangup\"] button")
        .await;
    s.wait_absent("#calls tr[data-call-id]").await;
    assert!(
        bob.passed().await && alice.passed().await,
        "the callee got its CANCEL and the caller its final answer"
    );

    for path in &taken {
        let png = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(png_size(&png), Ok(PHONE), "{}", path.display());
    }
    if committed {
        println!("screenshots written to {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    s.stop().await;
    println!("small-screen test: {} ms", started.elapsed().as_millis());
}
