//! The dashboard in a real headless Chromium (crates/browser-test), against
//! real signaling on loopback with sipp as the phones. Each test starts its
//! own signaling server, UI and browser, so the tests run in parallel.
//!
//! `UPDATE_SCREENSHOTS=1` makes `screenshots_of_the_main_pages` write its
//! PNGs into `docs/screenshots/` (shown in the README); without it they go
//! to a temporary directory and are only checked.

mod common;
#[path = "common/dashboard.rs"]
mod dashboard;

use std::time::{Duration, Instant};

use common::ip;
use common::phone::SipPhone;
use dashboard::{
    BACKEND, Sipp, Stack, cdrs, free_udp_port, png_size, quoted, screenshot_dir, sipp_call,
    sipp_call_ended_while_ringing, sipp_register,
};
use serde_json::{Value, json};
use switchboard_browser_test::{SameSite, WINDOW_SIZE};

/// A display name (and user agent) that would run if it were not escaped:
/// a script element and an image whose error handler sets `window.__xss`.
const XSS: &str = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">";

const SESSION_COOKIE: &str = "sb_session";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_through_the_form_and_a_wrong_password_is_refused() {
    let started = Instant::now();
    let s = Stack::start("browser-login").await;
    let b = &s.browser;

    // every page leads a stranger to the login form
    s.goto("/calls").await;
    s.wait_for("form.login").await;
    assert_eq!(b.current_url().await.expect("url"), s.url("/login"));

    s.submit_login("not-the-password").await;
    let notice = s.wait_text("p.notice", "Wrong").await;
    assert_eq!(notice, "Wrong user name or password.");
    assert!(
        b.find_all("nav").await.expect("nav").is_empty(),
        "no navigation before a login"
    );
    let cookies = b.cookies().await.expect("cookies");
    assert!(
        cookies.iter().all(|c| c.name() != SESSION_COOKIE),
        "a refused login got a session: {cookies:?}"
    );
    assert_eq!(s.ui.state.sessions.count(), 0);

    s.submit_login(common::PASSWORD).await;
    s.wait_text("h1", "Overview").await;
    assert_eq!(b.current_url().await.expect("url"), s.url("/"));
    s.wait_for(&format!("tr[data-backend={}] .status.ok", quoted(BACKEND)))
        .await;
    let cookies = b.cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name() == SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(SameSite::Strict));
    assert_eq!(
        session.secure(),
        Some(false),
        "plain HTTP from a browser on loopback"
    );
    assert_eq!(
        s.js("return document.cookie").await,
        json!(""),
        "the page's scripts cannot read the session"
    );
    assert_eq!(s.ui.state.sessions.count(), 1);

    // and the navigation works from there
    s.click("nav a[href=\"/users\"]").await;
    s.wait_text("h1", "Users").await;
    // logging out ends the session: the pages lead to the login form again
    s.click("form.logout button").await;
    s.wait_for("form.login").await;
    assert_eq!(s.ui.state.sessions.count(), 0);
    s.goto("/users").await;
    s.wait_for("form.login").await;
    s.stop().await;
    println!("login test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_with_sipp_appears_without_a_reload() {
    let started = Instant::now();
    let s = Stack::start("browser-registrations").await;
    s.user("bob", "bob-secret", "1002", "Bob").await;
    s.login().await;
    s.goto("/registrations").await;
    s.wait_text("#registrations p.count", "0 of 0 contacts")
        .await;
    s.mark_page().await;

    sipp_register(s.sig.sip, free_udp_port(), "bob", "bob-secret").await;

    // htmx brings the row in (every 5 s); the page is not reloaded
    let table = s
        .wait_text(
            "#registrations table.registrations tbody",
            "sipp-switchboard-test",
        )
        .await;
    assert!(s.same_page().await, "the page was reloaded");
    assert_eq!(
        s.browser
            .text("#registrations p.count")
            .await
            .expect("count"),
        "1 of 1 contacts"
    );
    let cells: Vec<String> = s
        .js("return [...document.querySelectorAll('#registrations tbody tr td')].map(td => td.textContent.trim())")
        .await
        .as_array()
        .expect("cells")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    // backend, user, AOR, contact, transport, source, user agent, expiry
    assert_eq!(cells[0], BACKEND, "{cells:?}");
    assert_eq!(cells[1], "bob", "{cells:?}");
    assert!(cells[2].starts_with("sip:bob@"), "{cells:?}");
    assert!(cells[3].contains("127.0.0.1"), "{cells:?}");
    assert_eq!(cells[4], "UDP", "{cells:?}");
    assert!(cells[5].starts_with("127.0.0.1:"), "{cells:?}");
    assert_eq!(cells[6], "sipp-switchboard-test", "{table}");
    // the countdown from the granted 300 s
    let expires = s
        .js("return Number(document.querySelector('#registrations [data-expires-in]').dataset.expiresIn)")
        .await;
    assert!(
        expires.as_u64().is_some_and(|e| (250..=300).contains(&e)),
        "{expires}"
    );
    assert!(cells[7].ends_with(" s"), "{cells:?}");
    s.stop().await;
    println!("registrations test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_is_shown_live_and_hung_up_from_the_page() {
    let started = Instant::now();
    let s = Stack::start("browser-calls").await;
    s.user("alice", "alice-secret", "1001", "Alice").await;
    s.user("bob", "bob-secret", "1002", "Bob").await;
    // bob's sipp phone registers, then waits on the same port: it answers
    // the INVITE with 180 and never more, until it is cancelled
    let bob_port = free_udp_port();
    sipp_register(s.sig.sip, bob_port, "bob", "bob-secret").await;
    let bob = Sipp::spawn("callee_ring_cancelled.xml", None, bob_port, &[]);
    s.login().await;
    s.goto("/calls").await;
    s.wait_text("#calls p.count", "0 live calls").await;
    s.mark_page().await;

    // alice's sipp phone calls 1002 (the dial timeout is 30 s, longer than
    // this test)
    let alice = sipp_call_ended_while_ringing(s.sig.sip, "alice", "alice-secret", "1002");
    let row = "#calls tr[data-call-id]";
    let text = s.wait_text(row, "ringing").await;
    assert!(s.same_page().await, "shown by htmx, without a reload");
    assert!(text.contains("1002"), "{text}");
    let id = s
        .js("return document.querySelector('#calls tr[data-call-id]').dataset.callId")
        .await;
    let calls = s.live_calls().await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(Some(&calls[0]["id"]), Some(&id), "the row is the live call");
    let legs = s
        .js("return [...document.querySelectorAll('#calls tr[data-call-id] .leg')].map(l => l.textContent)")
        .await;
    // the caller's leg and bob's, both early (180 sent and received)
    let legs: Vec<&str> = legs
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(legs.len(), 2, "the call's legs: {legs:?}");
    assert!(legs[0].starts_with("A: udp:127.0.0.1:"), "{legs:?}");
    assert!(legs[1].starts_with("B1: sip:bob@"), "{legs:?}");
    assert!(legs.iter().all(|l| l.ends_with(" early")), "{legs:?}");

    s.click(&format!("{row} form[action=\"/calls/hangup\"] button"))
        .await;
    s.wait_absent(row).await;
    s.wait_text("#calls p.count", "0 live calls").await;

    // what the phones got: bob a CANCEL (he answers it 200, the INVITE 487
    // and gets the ACK); alice 180 and then the final 480, which she ACKs
    assert!(bob.passed().await, "the ringing phone was not cancelled");
    assert!(alice.passed().await, "the caller got no final response");
    assert!(s.live_calls().await.is_empty());
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["hangup_reason"], "Ended By Operator", "{cdr}");
    assert_eq!(cdr["hangup_code"], 480, "{cdr}");
    s.stop().await;
    println!("calls test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_in_the_form_can_register() {
    let started = Instant::now();
    let s = Stack::start("browser-users").await;
    s.login().await;
    s.goto("/users").await;
    s.wait_for("form.create").await;
    let form = "form.create";
    s.browser
        .fill(&format!("{form} input[name=username]"), "carol")
        .await
        .expect("user name");
    s.browser
        .fill(&format!("{form} input[name=password]"), "carol-secret-7")
        .await
        .expect("password");
    s.browser
        .fill(&format!("{form} input[name=extension]"), "1003")
        .await
        .expect("extension");
    s.browser
        .fill(&format!("{form} input[name=display_name]"), "Carol Zoë")
        .await
        .expect("display name");
    s.click(&format!("{form} button[type=submit]")).await;

    // back on the list, carol is in it; the password is nowhere in the page
    let table = s.wait_text("table.users tbody", "carol").await;
    assert!(
        table.contains("1003") && table.contains("Carol Zoë"),
        "{table}"
    );
    assert_eq!(s.browser.current_url().await.expect("url"), s.url("/users"));
    assert!(
        s.browser
            .find_all("p.notice")
            .await
            .expect("notice")
            .is_empty()
    );
    let html = s.js("return document.documentElement.outerHTML").await;
    assert!(!html.to_string().contains("carol-secret-7"));
    let (status, users) = s.sig.api("GET", "/api/v1/users", None).await;
    assert_eq!(status, 200);
    assert!(users.to_string().contains("\"carol\""), "{users}");

    // and her phone registers with that password
    let phone = SipPhone::bind(ip("127.0.0.1"), s.sig.sip).await;
    let r = phone.register("carol", "carol-secret-7", &[]).await;
    assert_eq!(r.code, 200, "{r:?}");
    let wrong = SipPhone::bind(ip("127.0.0.1"), s.sig.sip).await;
    let r = wrong.register("carol", "not-her-password", &[]).await;
    assert_ne!(r.code, 200, "{r:?}");
    s.stop().await;
    println!("users test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_an_rtp_manager_from_the_dialog() {
    let started = Instant::now();
    let s = Stack::start("browser-drain").await;
    let name = s.manager().await;
    let draining = |v: &Value| v[0]["draining"].as_bool();
    let (_, m) = s.sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(draining(&m), Some(false), "{m}");
    s.login().await;
    s.goto("/rtpmanagers").await;
    let row = format!("tr[data-manager={}]", quoted(&name));
    s.wait_for(&row).await;
    assert!(
        s.browser
            .find_all(&format!("{row} .draining"))
            .await
            .expect("badge")
            .is_empty()
    );

    // the link opens the modal (not the page it leads to without JavaScript)
    s.click(&format!("{row} a[data-drain-name]")).await;
    s.wait_for("#drain-dialog[open]").await;
    assert_eq!(
        s.browser.current_url().await.expect("url"),
        s.url("/rtpmanagers")
    );
    assert_eq!(
        s.browser
            .text("#drain-dialog .drain-target")
            .await
            .expect("target"),
        format!("{name} on {BACKEND}")
    );
    // Cancel closes it and drains nothing
    s.click("#drain-dialog button[data-close-dialog]").await;
    s.wait_absent("#drain-dialog[open]").await;
    let (_, m) = s.sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(draining(&m), Some(false), "{m}");

    s.click(&format!("{row} a[data-drain-name]")).await;
    s.wait_for("#drain-dialog[open]").await;
    assert_eq!(
        s.js("return document.querySelector('#drain-dialog input[name=mode]:checked').value")
            .await,
        json!("graceful"),
        "graceful is the default"
    );
    s.click("#drain-dialog input[name=mode][value=aggressive]")
        .await;
    s.click("#drain-dialog button[type=submit]").await;

    s.wait_for(&format!("{row} .draining")).await;
    assert_eq!(
        s.browser.current_url().await.expect("url"),
        s.url("/rtpmanagers")
    );
    let (_, m) = s.sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(draining(&m), Some(true), "the API says draining: {m}");
    let (status, v) = s
        .sig
        .api("GET", &format!("/api/v1/rtpmanagers/{name}/drain"), None)
        .await;
    assert_eq!((status, v["draining"].as_bool()), (200, Some(true)), "{v}");

    // Stop draining, from the same row
    s.click(&format!(
        "{row} form[action=\"/rtpmanagers/undrain\"] button"
    ))
    .await;
    s.wait_for(&format!("{row} a[data-drain-name]")).await;
    let (_, m) = s.sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(draining(&m), Some(false), "{m}");
    s.stop().await;
    println!("drain test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_without_its_csrf_token_is_refused() {
    let started = Instant::now();
    let s = Stack::start("browser-csrf").await;
    let name = s.manager().await;
    s.login().await;
    s.goto("/users").await;
    s.wait_for("form.create").await;

    // the form with its hidden token taken out
    let removed = s
        .js("const i = document.querySelector('form.create input[name=csrf]'); i.remove(); return i.value.length")
        .await;
    assert_eq!(removed, json!(64), "a 256-bit token was in the form");
    for (field, value) in [("username", "eve"), ("password", "eve-secret-99")] {
        s.browser
            .fill(&format!("form.create input[name={field}]"), value)
            .await
            .expect("fill");
    }
    s.click("form.create button[type=submit]").await;
    let refusal = s.wait_text("body", "CSRF").await;
    assert_eq!(refusal, "missing or wrong CSRF token");
    let (_, users) = s.sig.api("GET", "/api/v1/users", None).await;
    assert!(!users.to_string().contains("\"eve\""), "created: {users}");

    // scripts in the page: without the token 403, nothing drained; with it
    // (the header htmx sends) the drain goes through
    s.goto("/rtpmanagers").await;
    s.wait_for("#drain-dialog").await;
    let post = |token: bool| {
        format!(
            "const token = document.querySelector('#drain-dialog input[name=csrf]').value;
             const headers = {{'Content-Type': 'application/x-www-form-urlencoded'}};
             if ({token}) headers['X-CSRF-Token'] = token;
             return fetch('/rtpmanagers/drain', {{method: 'POST', headers, redirect: 'manual',
               body: new URLSearchParams({{backend: {backend}, id: {name}, mode: 'graceful'}})}})
               .then(r => [r.status, r.type]);",
            backend = json!(BACKEND),
            name = json!(name),
        )
    };
    assert_eq!(s.js(&post(false)).await, json!([403, "basic"]));
    let (_, m) = s.sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(m[0]["draining"], false, "drained without a token: {m}");
    // 303 to the page: a manual redirect is opaque to the script
    assert_eq!(s.js(&post(true)).await, json!([0, "opaqueredirect"]));
    let (_, m) = s.sig.api("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(m[0]["draining"], true, "{m}");
    s.stop().await;
    println!("csrf test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_name_holding_script_is_shown_as_text() {
    let started = Instant::now();
    let s = Stack::start("browser-xss").await;
    s.user("mallory", "mallory-secret", "1666", XSS).await;
    s.login().await;

    // the users page, rendered by the server
    s.goto("/users").await;
    s.wait_text("table.users tbody", "mallory").await;
    let check = |table: &str| {
        format!(
            "const xss = {xss};
             const cells = [...document.querySelectorAll('{table} td')].filter(td => td.textContent.trim() === xss);
             return [cells.length, cells.map(td => td.children.length),
                     document.querySelectorAll('main script, main img').length,
                     window.__xss === undefined];",
            xss = json!(XSS),
        )
    };
    assert_eq!(s.js(&check("table.users")).await, json!([1, [0], 0, true]));

    // a user agent with the same markup, swapped in by htmx
    s.goto("/registrations").await;
    s.wait_text("#registrations p.count", "0 of 0 contacts")
        .await;
    s.mark_page().await;
    let phone = SipPhone::bind(ip("127.0.0.1"), s.sig.sip).await;
    let r = phone
        .register("mallory", "mallory-secret", &[("User-Agent", XSS)])
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    s.wait_text("#registrations tbody", "window.__xss").await;
    assert!(s.same_page().await);
    assert_eq!(
        s.js(&check("#registrations tbody")).await,
        json!([1, [0], 0, true])
    );
    s.stop().await;
    println!("xss test: {} ms", started.elapsed().as_millis());
}

/// A dialplan of two routes: `busy` hangs up calls to `busy`, `internal`
/// dials the users' extensions with `target`.
fn plan(busy: &str, target: &str) -> Value {
    json!({"version": "1.0", "routes": [
        {"id": "busy", "pattern": busy, "priority": 10,
         "actions": [{"type": "hangup", "params": {"reason": "busy"}}]},
        {"id": "internal", "name": "Extensions", "pattern": "1*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": target, "timeout": 20}}]}
    ]})
}

/// Puts `text` into the dialplan editor as typing would (the textarea's
/// value and an input event).
async fn edit_dialplan(s: &Stack, text: &str) {
    let set = format!(
        "const t = document.querySelector('#dialplan-json'); t.value = {text};
         t.dispatchEvent(new Event('input', {{bubbles: true}})); return t.value.length",
        text = json!(text),
    );
    assert_eq!(s.js(&set).await, json!(text.chars().count()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialplan_with_a_bad_route_shows_the_error_and_keeps_the_running_one() {
    let started = Instant::now();
    let s = Stack::start("browser-dialplan").await;
    s.user("alice", "alice-secret", "1001", "Alice").await;
    s.user("bob", "bob-secret", "1002", "Bob").await;
    let (status, running) = s.sig.api("GET", "/api/v1/dialplan", None).await;
    assert_eq!(status, 200, "{running}");
    s.login().await;
    s.goto("/dialplan").await;
    s.wait_for("#dialplan-json").await;
    assert_eq!(
        s.js("return document.querySelectorAll('#dialplan-versions tr[data-version]').length")
            .await,
        json!(0),
        "nothing saved yet"
    );

    // a dial target no backend knows in the second route's first action
    let bad = serde_json::to_string_pretty(&plan("1999", "phone/1002")).expect("json");
    edit_dialplan(&s, &bad).await;
    s.click("#dialplan-save").await;
    let path = "routes[1].actions[0].params.target";
    let row =
        "#dialplan-routes tr.route.has-error[data-route-index=\"1\"][data-route-id=\"internal\"]";
    let error = format!(
        "{row} .field-error[data-path={}][data-route=\"internal\"]",
        quoted(path)
    );
    let text = s.wait_text(&error, "unknown target").await;
    assert!(text.contains("actions[0].params.target"), "{text}");
    // the one error, in that row only; the draft stays in the editor
    assert_eq!(
        s.js("return [document.querySelectorAll('.field-error').length,
                      document.querySelectorAll('#dialplan-routes tr.has-error').length,
                      document.querySelector('#dialplan-json').value.includes('phone/1002')]")
            .await,
        json!([1, 1, true])
    );
    let notice = s.browser.text("p.notice").await.expect("notice");
    assert!(
        notice.contains("the running dialplan is unchanged"),
        "{notice}"
    );
    let (_, after) = s.sig.api("GET", "/api/v1/dialplan", None).await;
    assert_eq!(after, running, "the running dialplan changed");
    assert_eq!(
        s.js("return document.querySelectorAll('#dialplan-versions tr[data-version]').length")
            .await,
        json!(0),
        "no version saved"
    );

    // the target fixed: saved, in use, a version
    let good = serde_json::to_string_pretty(&plan("1999", "user/${destination}")).expect("json");
    edit_dialplan(&s, &good).await;
    s.click("#dialplan-save").await;
    let status = s.wait_text("#dialplan-status", "Saved").await;
    let version = s
        .js("return document.querySelector('#dialplan-versions tr[data-version]').dataset.version")
        .await;
    assert_eq!(
        status,
        format!(
            "Saved and in use as version {}.",
            version.as_str().unwrap_or("?")
        )
    );
    assert_eq!(
        s.js(
            "return [document.querySelectorAll('#dialplan-versions tr[data-version]').length,
                      document.querySelectorAll('.field-error').length]"
        )
        .await,
        json!([1, 0])
    );
    let (_, saved) = s.sig.api("GET", "/api/v1/dialplan", None).await;
    assert_eq!(saved["routes"][0]["pattern"], "1999", "{saved}");
    assert_eq!(
        saved["routes"][1]["actions"][0]["params"]["target"], "user/${destination}",
        "{saved}"
    );

    // the dry run: which route takes 1002 from alice, and 1999
    for (destination, route) in [("1002", "internal"), ("1999", "busy")] {
        s.browser
            .fill("#dryrun-destination", destination)
            .await
            .expect("destination");
        s.browser
            .fill("#dryrun-from-user", "alice")
            .await
            .expect("caller");
        s.click("#dryrun-submit").await;
        let result = format!(
            "#dryrun-result[data-matched=\"true\"][data-route={}]",
            quoted(route)
        );
        s.wait_for(&result).await;
        let text = s.browser.text(&result).await.expect("result");
        assert!(text.contains(&format!("Route {route}")), "{text}");
        let first = if route == "busy" { "hangup" } else { "dial" };
        assert_eq!(
            s.js("return document.querySelector('#dryrun-result .dryrun-actions li').dataset.type")
                .await,
            json!(first)
        );
    }
    s.stop().await;
    println!("dialplan test: {} ms", started.elapsed().as_millis());
}

/// The rows of the CDR table: `[id, caller, callee, disposition]`.
async fn cdr_rows(s: &Stack) -> Vec<Vec<String>> {
    let rows = s
        .js(
            "return [...document.querySelectorAll('#cdrs tr[data-cdr-id]')].map(r => [
               r.dataset.cdrId,
               r.querySelector('.cdr-caller').firstChild.textContent.trim(),
               r.querySelector('.cdr-callee').textContent.trim(),
               r.querySelector('.cdr-disposition').textContent.trim()])",
        )
        .await;
    serde_json::from_value(rows).expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_export_downloads_the_rows_shown() {
    let started = Instant::now();
    let s = Stack::start("browser-csv").await;
    s.user("alice", "alice-secret", "1001", "Alice").await;
    s.user("bob", "bob-secret", "1002", "Bob").await;
    s.user("carol", "carol-secret", "1003", "Carol").await;
    // bob's sipp phone answers; carol has no phone: 480
    let bob_port = free_udp_port();
    sipp_register(s.sig.sip, bob_port, "bob", "bob-secret").await;
    let bob = Sipp::spawn("callee_answer.xml", None, bob_port, &[]);
    let calls = [
        sipp_call("call_uac.xml", s.sig.sip, "alice", "alice-secret", "1002"),
        sipp_call(
            "call_480_unregistered_uac.xml",
            s.sig.sip,
            "alice",
            "alice-secret",
            "1003",
        ),
        sipp_call(
            "call_480_unregistered_uac.xml",
            s.sig.sip,
            "bob",
            "bob-secret",
            "1003",
        ),
    ];
    s.login().await;
    for call in calls {
        assert!(
            call.passed().await,
            "a call did not go as its scenario says"
        );
    }
    assert!(bob.passed().await, "bob's phone did not answer");
    let all = cdrs(&s, 3).await;
    // the caller of the answered call is alice
    let caller = all
        .iter()
        .find(|c| c["disposition"] == "answered")
        .and_then(|c| c["caller"].as_str())
        .unwrap_or_else(|| panic!("no answered call: {all:?}"))
        .to_owned();

    s.goto("/cdrs").await;
    s.wait_text("#cdr-count", "3").await;
    s.browser
        .fill("#cdr-filter input[name=caller]", &caller)
        .await
        .expect("caller");
    s.click("#cdr-search").await;
    s.wait_text("#cdr-count", "2").await;
    assert_eq!(s.browser.text("#cdr-count").await.expect("count"), "2");
    let shown = cdr_rows(&s).await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|r| r[1] == caller), "{shown:?}");
    let mut dispositions: Vec<&str> = shown.iter().map(|r| r[3].as_str()).collect();
    dispositions.sort_unstable();
    assert_eq!(dispositions[0], "answered", "{shown:?}");
    assert_ne!(dispositions[1], "answered", "{shown:?}");

    s.click("a#cdr-csv").await;
    // cdrs-<backend>-<UTC time>.csv, as the handler names it
    let deadline = Instant::now() + dashboard::WAIT;
    let name = loop {
        let names = s.browser.downloads().expect("downloads");
        if let Some(n) = names
            .iter()
            .find(|n| n.starts_with("cdrs-main-") && n.ends_with(".csv"))
        {
            break n.clone();
        }
        assert!(Instant::now() < deadline, "no CSV downloaded: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let path = s
        .browser
        .wait_for_download(&name, dashboard::WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let csv = std::fs::read_to_string(&path).expect("the CSV");
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let at = |h: &str| {
        header
            .iter()
            .position(|c| *c == h)
            .unwrap_or_else(|| panic!("no {h} in {header:?}"))
    };
    let cols = [at("call_id"), at("caller"), at("callee"), at("disposition")];
    let rows: Vec<Vec<String>> = lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{l}");
            cols.iter().map(|&i| cells[i].to_owned()).collect()
        })
        .collect();
    assert_eq!(rows, shown, "the CSV:\n{csv}");
    assert_eq!(s.browser.downloads().expect("downloads"), vec![name]);
    s.stop().await;
    println!("csv test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_hung_up_from_the_page_gets_byes_on_both_sides() {
    let started = Instant::now();
    let s = Stack::start("browser-answered").await;
    s.user("alice", "alice-secret", "1001", "Alice").await;
    s.user("bob", "bob-secret", "1002", "Bob").await;
    // bob's sipp phone answers and then waits for a BYE; so does alice's
    let bob_port = free_udp_port();
    sipp_register(s.sig.sip, bob_port, "bob", "bob-secret").await;
    let bob = Sipp::spawn("callee_answer.xml", None, bob_port, &[]);
    s.login().await;
    s.goto("/calls").await;
    s.wait_text("#calls p.count", "0 live calls").await;
    s.mark_page().await;

    let alice = sipp_call(
        "call_hungup_uac.xml",
        s.sig.sip,
        "alice",
        "alice-secret",
        "1002",
    );
    let row = "#calls tr[data-call-id]";
    let text = s.wait_text(row, "answered").await;
    assert!(s.same_page().await, "shown by htmx, without a reload");
    assert!(text.contains("1002"), "{text}");
    assert_eq!(
        s.js("return document.querySelector('#calls tr[data-call-id] span.state').textContent")
            .await,
        json!("answered")
    );
    let legs = s
        .js("return [...document.querySelectorAll('#calls tr[data-call-id] .leg')].map(l => l.textContent)")
        .await;
    let legs: Vec<&str> = legs
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(legs.len(), 2, "the call's legs: {legs:?}");
    assert!(legs.iter().all(|l| l.ends_with(" confirmed")), "{legs:?}");

    s.click(&format!("{row} form[action=\"/calls/hangup\"] button"))
        .await;
    s.wait_absent(row).await;
    s.wait_text("#calls p.count", "0 live calls").await;
    // each side got its BYE and answered it 200
    assert!(bob.passed().await, "the callee got no BYE");
    assert!(alice.passed().await, "the caller got no BYE");
    assert!(s.live_calls().await.is_empty());
    let cdr = only_cdr(&s).await;
    assert_eq!(cdr["hangup_reason"], "Ended By Operator", "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    s.stop().await;
    println!("answered call test: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_main_pages() {
    let started = Instant::now();
    let s = Stack::start("browser-screenshots").await;
    for (user, ext, display) in [
        ("alice", "1001", "Alice Liddell"),
        ("bob", "1002", "Bob Stone"),
        ("carol", "1003", "Carol Jones"),
        ("dave", "1004", "Front desk"),
    ] {
        s.user(user, &format!("{user}-secret"), ext, display).await;
    }
    // phones: carol and dave as desk phones, bob's sipp phone ringing
    for (user, agent) in [
        ("carol", "Yealink SIP-T46U 108.86.0.20"),
        ("dave", "Linphone/5.2.5 (belle-sip/5.2.4)"),
    ] {
        let phone = SipPhone::bind(ip("127.0.0.1"), s.sig.sip).await;
        let r = phone
            .register(user, &format!("{user}-secret"), &[("User-Agent", agent)])
            .await;
        assert_eq!(r.code, 200, "{r:?}");
    }
    s.user("erin", "erin-secret", "1005", "Erin Fox").await;
    // an account and a trunk (to a provider that never answers)
    s.account("acme", "acme.example").await;
    let _provider = s.trunk("carrier", "carrier.example").await;
    // calls of the last hour for the CDRs and the chart: one answered by
    // bob's sipp phone, one to erin, who has no phone
    let bob_port = free_udp_port();
    sipp_register(s.sig.sip, bob_port, "bob", "bob-secret").await;
    let answers = Sipp::spawn("callee_answer.xml", None, bob_port, &[]);
    let answered = sipp_call("call_uac.xml", s.sig.sip, "alice", "alice-secret", "1002");
    let unanswered = sipp_call(
        "call_480_unregistered_uac.xml",
        s.sig.sip,
        "dave",
        "dave-secret",
        "1005",
    );
    for sipp in [answered, unanswered, answers] {
        assert!(sipp.passed().await, "the calls of the last hour");
    }
    let ended = cdrs(&s, 2).await;
    let answered_id = ended
        .iter()
        .find(|c| c["disposition"] == "answered")
        .and_then(|c| c["call_id"].as_str())
        .unwrap_or_else(|| panic!("{ended:?}"))
        .to_owned();
    // and bob's phone rings for the live call
    let bob = Sipp::spawn("callee_ring_cancelled.xml", None, bob_port, &[]);
    s.login().await;
    let alice = sipp_call_ended_while_ringing(s.sig.sip, "alice", "alice-secret", "1002");

    let (dir, committed) = screenshot_dir();
    let mut taken = Vec::new();
    let mut shot = async |name: &str| {
        let path = dir.join(format!("{name}.png"));
        s.browser
            .screenshot(&path)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        taken.push(path);
    };

    s.goto("/calls").await;
    s.wait_text("#calls tr[data-call-id]", "ringing").await;
    shot("calls").await;

    s.goto("/").await;
    // the live calls column: the call, once the cached answer aged out
    let backend = format!("tr[data-backend={}]", quoted(BACKEND));
    s.wait_for(&format!("{backend} .status.ok")).await;
    s.wait_text(&format!("{backend} td:nth-child(5)"), "1")
        .await;
    // the chart's bars: the two ended calls (one answered: ASR 50 %)
    s.wait_for("svg#calls-per-minute rect.bar:not([data-count=\"0\"])")
        .await;
    assert_eq!(
        s.js(
            "return [...document.querySelectorAll('svg#calls-per-minute rect.bar')]
                .reduce((n, r) => n + Number(r.dataset.count), 0)"
        )
        .await,
        json!(2)
    );
    s.wait_for("#quality #asr").await;
    shot("overview").await;

    s.goto("/registrations").await;
    s.wait_text("#registrations p.count", "3 of 3 contacts")
        .await;
    shot("registrations").await;

    s.goto("/sessions").await;
    s.wait_text("#sessions p.count", "2 media sessions").await;
    shot("sessions").await;

    s.goto("/rtpmanagers").await;
    s.click("tr[data-manager] a[data-drain-name]").await;
    s.wait_for("#drain-dialog[open]").await;
    shot("rtpmanagers-drain").await;

    s.goto("/users").await;
    s.wait_text("table.users tbody", "Front desk").await;
    shot("users").await;

    s.goto("/accounts").await;
    s.wait_for("tr[data-account=\"acme\"]").await;
    shot("accounts").await;

    s.goto("/trunks").await;
    s.wait_for("tr[data-trunk=\"carrier\"] .trunk-status").await;
    shot("trunks").await;

    // the dialplan editor with a dial target no backend knows
    s.goto("/dialplan").await;
    s.wait_for("#dialplan-json").await;
    let bad = serde_json::to_string_pretty(&plan("1999", "phone/1002")).expect("json");
    edit_dialplan(&s, &bad).await;
    s.click("#dialplan-validate").await;
    s.wait_for("#dialplan-routes tr.route.has-error .field-error[data-route=\"internal\"]")
        .await;
    shot("dialplan").await;

    s.goto("/cdrs").await;
    s.wait_text("#cdr-count", "2").await;
    shot("cdrs").await;
    s.click(&format!(
        "#cdrs tr[data-cdr-id={}] a.cdr-link",
        quoted(&answered_id)
    ))
    .await;
    s.wait_text("#cdr-detail dd[data-field=disposition]", "answered")
        .await;
    s.wait_for("#cdr-quality dd[data-field=mos]").await;
    shot("cdr").await;

    for path in &taken {
        let png = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(png_size(&png), Ok(WINDOW_SIZE), "{}", path.display());
        assert!(
            png.len() > 10_000,
            "{}: {} bytes",
            path.display(),
            png.len()
        );
    }
    if committed {
        println!("screenshots written to {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }

    // the ringing call ends from its page, as in the calls test
    s.goto("/calls").await;
    s.click("#calls tr[data-call-id] form[action=\"/calls/hangup\"] button")
        .await;
    s.wait_absent("#calls tr[data-call-id]").await;
    assert!(bob.passed().await && alice.passed().await);
    s.stop().await;
    println!("screenshots test: {} ms", started.elapsed().as_millis());
}

/// The one CDR the backend wrote, once it is written.
async fn only_cdr(s: &Stack) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = s.sig.api("GET", "/api/v1/cdrs", None).await;
        assert_eq!(status, 200, "{v}");
        if let Some(cdrs) = v["cdrs"].as_array().filter(|c| !c.is_empty()) {
            assert_eq!(cdrs.len(), 1, "{v}");
            return cdrs[0].clone();
        }
        assert!(Instant::now() < deadline, "no CDR: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
