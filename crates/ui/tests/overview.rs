//! The overview's last hour against real signaling on loopback: an empty
//! hour draws an empty chart (not an error); after a busy call and an
//! answered one the chart counts both in their minute, the answer-seizure
//! ratio is 1 of 2, and the RTP manager's load is shown. Two overviews
//! within a second cost the backend no second round of requests.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::phone::{SipPhone, sdp};
use common::{ip, login, signaling, ui};
use serde_json::json;
use switchboard_sip::message::Method;

/// The text of the element with `id`, up to its first tag.
fn by_id(html: &str, id: &str) -> String {
    let needle = format!("id=\"{id}\">");
    let at = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no #{id} in {html}"))
        + needle.len();
    html[at..].split('<').next().unwrap_or("").trim().to_owned()
}

/// The bars' `data-count`s.
fn bars(html: &str) -> Vec<u32> {
    html.split("<rect class=\"bar\"")
        .skip(1)
        .map(|b| {
            let at = b.find("data-count=\"").expect("a count") + 12;
            b[at..]
                .split('"')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number")
        })
        .collect()
}

#[tokio::test]
async fn the_last_hour_is_charted_with_asr_mos_and_load() {
    let sig = signaling("overview").await;
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

    // an empty hour
    let r = b.get("/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("<svg id=\"calls-per-minute\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("no calls in the last hour"), "{}", r.body);
    let counts = bars(&r.body);
    assert_eq!(counts.len(), 60);
    assert!(counts.iter().all(|c| *c == 0), "{counts:?}");
    assert_eq!(by_id(&r.body, "asr"), "—");
    assert_eq!(by_id(&r.body, "calls-attempted"), "0");
    // the embedded RTP manager: no sessions of its capacity
    assert_eq!(by_id(&r.body, "rtp-load"), "0 %");
    assert!(r.body.contains("load 0 %"), "per manager: {}", r.body);

    // within the cache's second, another overview asks the backend nothing
    let before = ui.state.backends.requests.load(Ordering::Relaxed);
    let again = b.get("/overview/fragment").await;
    assert_eq!(again.status, 200);
    assert!(again.body.contains("<svg id=\"calls-per-minute\""));
    assert_eq!(
        ui.state.backends.requests.load(Ordering::Relaxed),
        before,
        "served from the cache"
    );

    // a busy call and an answered one
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let body =
            json!({"username": user, "password": format!("{user}-secret"), "extension": ext});
        assert_eq!(sig.api("POST", "/api/v1/users", Some(&body)).await.0, 201);
    }
    let alice = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    let bob = SipPhone::bind(ip("127.0.0.1"), sig.sip).await;
    assert_eq!(alice.register("alice", "alice-secret", &[]).await.code, 200);
    assert_eq!(bob.register("bob", "bob-secret", &[]).await.code, 200);
    let offer = sdp(ip("127.0.0.1"), 40_010, "sendrecv");

    let mut d = alice.dialog_to("alice", "1002");
    alice
        .start_invite(&mut d, "alice", "alice-secret", &offer, &[])
        .await;
    let invite = bob.request(Method::Invite).await;
    bob.answer(&invite, 486, Some("busy-tag"), None).await;
    assert_eq!(alice.final_response(Method::Invite).await.code, 486);

    let mut d = alice.dialog_to("alice", "1002");
    let cseq = alice
        .start_invite(&mut d, "alice", "alice-secret", &offer, &[])
        .await;
    let invite = bob.request(Method::Invite).await;
    let answer = sdp(ip("127.0.0.1"), 40_020, "sendrecv");
    bob.answer(&invite, 200, Some("ok-tag"), Some(&answer))
        .await;
    let ok = alice.final_response(Method::Invite).await;
    assert_eq!(ok.code, 200, "{ok:?}");
    d.establish(&ok);
    alice.send(&d.ack(cseq, None)).await;
    let bye = d.request(&Method::Bye, None, &[]);
    alice.send(&bye.bytes).await;
    let bye_in = bob.request(Method::Bye).await;
    bob.answer(&bye_in, 200, None, None).await;
    assert_eq!(alice.final_response(Method::Bye).await.code, 200);

    // both CDRs land in the chart (within the cache's second and the
    // CDR writer's delay)
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let r = b.get("/overview/fragment").await;
        assert_eq!(r.status, 200);
        if by_id(&r.body, "calls-attempted") == "2" {
            break r.body;
        }
        assert!(Instant::now() < deadline, "no 2 calls: {}", r.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(by_id(&body, "calls-answered"), "1");
    assert_eq!(by_id(&body, "asr"), "50.0 %");
    let counts = bars(&body);
    assert_eq!(counts.iter().sum::<u32>(), 2, "{counts:?}");
    assert!(
        counts[58] + counts[59] == 2,
        "this minute or the last: {counts:?}"
    );
    assert!(!body.contains("no calls in the last hour"));
    assert!(body.contains("calls per minute") || body.contains("Calls per minute"));
    // MOS: the hour's calls and the live media, each with its count
    assert!(body.contains("id=\"mos-calls\""), "{body}");
    assert!(body.contains("id=\"mos-live\""), "{body}");
    // the tallest minute is the chart's scale
    let max = counts.iter().max().copied().unwrap_or(0);
    assert!(
        body.contains(&format!("at most {max} in a minute")),
        "{body}"
    );

    for seen in &b.seen {
        assert!(!seen.contains(&sig.token), "a page shows the token");
    }
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}
