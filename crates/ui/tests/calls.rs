//! Live calls against real signaling: a ringing call appears on the page
//! with its legs (the caller's display name escaped), the hang-up button
//! is refused without the CSRF token and, with it, ends the call: the
//! ringing phone gets a CANCEL and the caller a final response.

mod common;

use std::time::{Duration, Instant};

use common::phone::{SipPhone, sdp};
use common::{ip, login, signaling, ui};
use serde_json::{Value, json};
use switchboard_sip::message::{Message, Method};

const XSS: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn a_ringing_call_is_shown_and_hung_up_from_the_page() {
    let sig = signaling("calls").await;
    for (user, ext, name) in [("alice", "1001", XSS), ("bob", "1002", "Bob")] {
        let body = json!({"username": user, "password": format!("{user}-secret"), "extension": ext, "display_name": name});
        let (status, v) = sig.api("POST", "/api/v1/users", Some(&body)).await;
        assert_eq!(status, 201, "{v}");
    }
    let alice = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    let bob = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    assert_eq!(alice.register("alice", "alice-secret", &[]).await.code, 200);
    assert_eq!(bob.register("bob", "bob-secret", &[]).await.code, 200);
    let ui = ui(
        &[(
            "main",
            format!("http://{}", sig.api),
            Some(sig.token.as_str()),
        )],
        |_| {},
    )
    .await;
    let mut b = login(ui.addr).await;

    let offer = sdp(ip("127.0.0.1"), 40_000, "sendrecv");
    let mut d = alice.dialog_to("alice", "1002");
    alice
        .start_invite(&mut d, "alice", "alice-secret", &offer, &[])
        .await;
    let invite = bob.request(Method::Invite).await;
    bob.answer(&invite, 180, Some("bob-tag"), None).await;

    // the page shows it ringing (its 1 s cache may first show the call as routing)
    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, row) = loop {
        let r = b.get("/calls/fragment").await;
        assert_eq!(r.status, 200);
        if let Some(at) = r.body.find("<tr data-call-id=\"") {
            let row = r.body[at..].split("</tr>").next().unwrap_or("").to_owned();
            if row.contains("ringing") {
                let id = row[18..].split('"').next().unwrap_or("").to_owned();
                break (id, row);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no ringing call on the page: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        row.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{row}"
    );
    assert!(!row.contains(XSS), "unescaped: {row}");
    assert!(row.contains("1002"), "{row}");
    assert!(row.contains("class=\"leg\""), "legs: {row}");

    // its media sessions (one per leg) are on the media page
    let r = b.get("/sessions").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("worst MOS first"), "{}", r.body);
    assert!(!r.body.contains(">0 media sessions"), "{}", r.body);

    let live = |v: &Value| v.as_array().map_or(0, Vec::len);
    let fields = [("backend", "main"), ("id", id.as_str())];
    let r = b.post("/calls/hangup", &fields, false).await;
    assert_eq!(r.status, 403, "hang-up without the token");
    let (_, calls) = sig.api("GET", "/api/v1/calls", None).await;
    assert_eq!(live(&calls), 1, "the call goes on: {calls}");

    let r = b.post("/calls/hangup", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/calls"));
    let cancel = bob.request(Method::Cancel).await;
    bob.answer(&cancel, 200, Some("bob-tag"), None).await;
    bob.answer(&invite, 487, Some("bob-tag"), None).await;
    let last = alice.final_response(Method::Invite).await;
    assert!(
        last.code >= 400,
        "the caller gets a final failure: {last:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, calls) = sig.api("GET", "/api/v1/calls", None).await;
        if live(&calls) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the call did not end: {calls}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = b.get("/calls").await;
    assert!(r.body.contains("0 live calls"), "{}", r.body);
    // nothing else is left for bob: an ACK for the 487 at most
    while let Some(m) = bob.recv(Duration::from_millis(300)).await {
        if let Message::Request(req) = m {
            assert_eq!(req.method, Method::Ack, "{req:?}");
        }
    }
    for body in &b.seen {
        assert!(!body.contains(&sig.token), "a page shows the token");
    }
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}
