//! CDRs against real signaling: a call placed by the test phones appears;
//! records put into the node's store narrow by caller, disposition,
//! account and time; pages follow the API's cursor; the detail view shows
//! the quality figures; the CSV export holds exactly the filter's rows,
//! with a formula-looking caller neutralised.

mod common;

use std::time::{Duration, Instant};

use common::phone::{SipPhone, sdp};
use common::{ip, login, signaling, ui};
use serde_json::{Value, json};
use switchboard_sip::message::Method;

const FORMULA: &str = "=HYPERLINK(\"http://evil.example\",\"x\")";
/// 2026-01-01 10:00:00 UTC.
const T0: i64 = 1_767_261_600_000;
const HOUR: i64 = 3_600_000;

/// The `data-cdr-id`s of a page, in order.
fn ids(html: &str) -> Vec<String> {
    html.split("<tr data-cdr-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The `href` of the element with `id`, unescaped.
fn href(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag = &html[html[..at].rfind('<')?..];
    let h = tag.split("href=\"").nth(1)?.split('"').next()?;
    Some(h.replace("&amp;", "&").replace("&#38;", "&"))
}

fn cdr(n: i64, caller: &str, disposition: &str, account: i64) -> Value {
    json!({
        "id": 0, "call_id": format!("stored-{n}"), "account_id": account,
        "caller": caller, "callee": "1002", "caller_name": format!("<i>Carol {n}</i>"),
        "source": "udp:127.0.0.1:5099", "invite_at": T0 + n * HOUR,
        "answer_at": T0 + n * HOUR + 2_000, "end_at": T0 + n * HOUR + 62_000,
        "talk_ms": 60_000, "disposition": disposition, "route": "internal",
        "rtp_sent": 3000, "rtp_received": 2970, "rtp_lost": 30, "jitter_ms": 4.5,
        "mos": 4.1, "rtpmanager": "rtp-0", "created_at": 0
    })
}

#[tokio::test]
async fn cdrs_are_filtered_paged_shown_and_exported() {
    let sig = signaling("cdrs").await;
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let body =
            json!({"username": user, "password": format!("{user}-secret"), "extension": ext});
        assert_eq!(sig.api("POST", "/api/v1/users", Some(&body)).await.0, 201);
    }
    // a real call: alice calls bob, who is busy
    let alice = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    let bob = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    assert_eq!(alice.register("alice", "alice-secret", &[]).await.code, 200);
    assert_eq!(bob.register("bob", "bob-secret", &[]).await.code, 200);
    let mut d = alice.dialog_to("alice", "1002");
    let offer = sdp(ip("127.0.0.1"), 40_000, "sendrecv");
    alice
        .start_invite(&mut d, "alice", "alice-secret", &offer, &[])
        .await;
    let invite = bob.request(Method::Invite).await;
    bob.answer(&invite, 486, Some("bob-tag"), None).await;
    assert_eq!(alice.final_response(Method::Invite).await.code, 486);

    // stored records: carol's seven calls an hour apart, and a caller
    // whose "number" is a spreadsheet formula, in account 2
    let store = &sig.running.node.store;
    for n in 0..7 {
        let c = serde_json::from_value(cdr(n, "carol", "answered", 1)).expect("a CDR");
        assert!(store.insert_cdr(&c).await.expect("stored"));
    }
    for (n, caller) in [(10, FORMULA), (11, "dave")] {
        let c = serde_json::from_value(cdr(n, caller, "no_answer", 2)).expect("a CDR");
        assert!(store.insert_cdr(&c).await.expect("stored"));
    }

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

    // every record, the call among them (its CDR is written as it ends)
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let r = b.get("/cdrs").await;
        assert_eq!(r.status, 200);
        let all = ids(&r.body);
        if all.len() == 10 {
            break r.body;
        }
        assert!(Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        all.contains("&#60;i&#62;Carol 3&#60;/i&#62;"),
        "escaped names"
    );
    assert!(!all.contains("<i>Carol"), "unescaped name");
    let r = b.get("/cdrs?disposition=busy").await;
    let busy = ids(&r.body);
    assert_eq!(busy.len(), 1, "{}", r.body);
    assert!(
        !busy[0].starts_with("stored-"),
        "the phones' call: {busy:?}"
    );
    assert!(
        r.body.contains("<td class=\"cdr-caller\">alice")
            || r.body.contains("<td class=\"cdr-caller\">1001"),
        "{}",
        r.body
    );

    // filters narrow
    let r = b.get("/cdrs?backend=main&caller=carol").await;
    assert_eq!(ids(&r.body).len(), 7);
    let r = b.get("/cdrs?account=2").await;
    assert_eq!(ids(&r.body), ["stored-11", "stored-10"]);
    let r = b
        .get("/cdrs?caller=carol&from=2026-01-01T12%3A00&to=2026-01-01+14%3A00%3A00")
        .await;
    assert_eq!(ids(&r.body), ["stored-3", "stored-2"], "{}", r.body);
    assert!(
        r.body.contains("name=\"to\" value=\"2026-01-01T14:00:00\""),
        "{}",
        r.body
    );
    let r = b.get("/cdrs?caller=carol&from=tomorrow").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("from: "), "{}", r.body);

    // pages of three follow the cursor, newest first, and end
    let mut seen = Vec::new();
    let mut path = "/cdrs?caller=carol&limit=3".to_owned();
    let mut pages = 0;
    loop {
        let r = b.get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        let page = ids(&r.body);
        assert!(page.len() <= 3);
        seen.extend(page);
        pages += 1;
        if pages > 1 {
            assert!(
                href(&r.body, "cdr-first").is_some(),
                "a way back to the newest"
            );
        }
        match href(&r.body, "cdr-next") {
            Some(next) => path = next,
            None => break,
        }
        assert!(pages < 5, "paging does not end");
    }
    let want: Vec<String> = (0..7).rev().map(|n| format!("stored-{n}")).collect();
    assert_eq!((seen, pages), (want, 3));

    // the CSV of a filter: its rows exactly, the formula neutralised
    let r = b.get("/cdrs?account=2").await;
    let csv_path = href(&r.body, "cdr-csv").expect("a CSV link");
    assert_eq!(csv_path, "/cdrs.csv?backend=main&account=2");
    let r = b.get(&csv_path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let disposition = r.header("content-disposition").unwrap_or("");
    assert!(
        disposition.starts_with("attachment; filename=\"cdrs-main-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let lines: Vec<&str> = r.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {}", r.body);
    assert!(lines[0].starts_with("call_id,started_utc,"));
    assert!(
        lines[1].starts_with("stored-11,2026-01-01 21:00:00,"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("stored-10,"), "{}", lines[2]);
    assert!(
        lines[2].contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\","),
        "{}",
        lines[2]
    );
    let r = b.get("/cdrs.csv?caller=carol&limit=3").await;
    assert_eq!(r.body.matches("\r\nstored-").count(), 3, "{}", r.body);

    // one record with its quality figures; an unknown one is 404
    let r = b.get("/cdrs/stored-4?backend=main").await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (field, value) in [
        ("mos", "4.10"),
        ("jitter_ms", "4.50"),
        ("loss", "1.00 %"),
        ("rtp_lost", "30"),
        ("disposition", "answered"),
        ("invite_at", "2026-01-01 14:00:00"),
    ] {
        let shown = format!("<dd data-field=\"{field}\">{value}</dd>");
        assert!(r.body.contains(&shown), "{shown} in {}", r.body);
    }
    let r = b.get("/cdrs/no-such-call").await;
    assert_eq!(r.status, 404);

    for body in &b.seen {
        assert!(!body.contains(&sig.token), "a page shows the token");
    }
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}
