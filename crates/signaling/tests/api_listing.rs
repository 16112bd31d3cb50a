//! The API's long lists a page at a time (`q`, `offset`, `limit`, the
//! count in `X-Total-Count`) and calls per minute counted by the database:
//! what the dashboard reads instead of whole tables.

mod common;

use std::net::IpAddr;

use common::phone::SipPhone;
use common::{
    TestServer, call, get_with_headers, spawn_sipp_uas_with, start, two_phones, wait_sipp,
};
use serde_json::{Value, json};

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn aors(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["aor"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn usernames(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["username"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn total(s: &TestServer, path: &str) -> (u16, String, String, Value) {
    let (status, h, body) = get_with_headers(s, path).await;
    let get = |n: &str| h.get(n).cloned().unwrap_or_default();
    (status, get("x-total-count"), get("x-contact-count"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_and_users_come_a_page_at_a_time() {
    let s = start("api-listing", |_| {}).await;
    for i in 0..12 {
        s.create_user(&format!("user{i:02}"), "secret-pass").await;
    }
    let (status, body) = s
        .http(
            "POST",
            "/api/v1/users",
            Some(&json!({"username": "carol", "password": "carol-secret",
                         "extension": "2000", "display_name": "Carol 50% Off"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // three phones: user00 from two addresses, user01 from one
    let phones = [
        SipPhone::bind(LO, s.sip).await,
        SipPhone::bind(LO, s.sip).await,
        SipPhone::bind(LO, s.sip).await,
    ];
    for (phone, user) in phones.iter().zip(["user00", "user00", "user01"]) {
        assert_eq!(phone.register(user, "secret-pass", &[]).await.code, 200);
    }

    // no parameter: every AOR, as before, with the counts
    let (status, n, contacts, body) = total(&s, "/api/v1/registrations").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        aors(&body),
        ["sip:user00@switchboard", "sip:user01@switchboard"]
    );
    assert_eq!((n.as_str(), contacts.as_str()), ("2", "3"));
    // a page
    let (_, n, _, body) = total(&s, "/api/v1/registrations?offset=1&limit=1").await;
    assert_eq!(
        (aors(&body), n.as_str()),
        (vec!["sip:user01@switchboard".to_owned()], "2")
    );
    // a phone's source port finds its contact only
    let port = phones[1].addr().port();
    let (_, n, contacts, body) = total(&s, &format!("/api/v1/registrations?q=:{port}")).await;
    assert_eq!((n.as_str(), contacts.as_str()), ("1", "1"), "{body}");
    assert_eq!(body[0]["contacts"].as_array().map(Vec::len), Some(1));
    assert!(
        body[0]["contacts"][0]["received"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!(":{port}"))),
        "{body}"
    );
    let (_, n, _, body) = total(&s, "/api/v1/registrations?q=nobody").await;
    assert_eq!((n.as_str(), body), ("0", json!([])));

    // users: all, a page, a search
    let (status, n, _, body) = total(&s, "/api/v1/users").await;
    assert_eq!((status, n.as_str()), (200, "13"));
    assert_eq!(usernames(&body).len(), 13);
    let (_, n, _, body) = total(&s, "/api/v1/users?offset=10&limit=2").await;
    assert_eq!(
        (usernames(&body), n.as_str()),
        (vec!["user10".into(), "user11".into()], "13")
    );
    let (_, n, _, body) = total(&s, "/api/v1/users?q=USER1&limit=1").await;
    assert_eq!((usernames(&body), n.as_str()), (vec!["user10".into()], "2"));
    let (_, n, _, body) = total(&s, "/api/v1/users?q=50%25").await;
    assert_eq!((usernames(&body), n.as_str()), (vec!["carol".into()], "1"));
    let (_, n, _, _) = total(&s, "/api/v1/users?account_id=999").await;
    assert_eq!(n, "0");

    // bad parameters name themselves
    for (path, field) in [
        ("/api/v1/users?limit=many", "limit"),
        ("/api/v1/registrations?offset=-1", "offset"),
        ("/api/v1/registrations?page=2", "page"),
        ("/api/v1/stats/calls?minutes=x", "minutes"),
    ] {
        let (status, body) = s.http("GET", path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(field)),
            "{path}: {body}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_per_minute_come_from_the_cdrs() {
    let port = common::free_port(LO);
    let s = two_phones("api-call-minutes", port, 10).await;
    let (status, empty) = s.http("GET", "/api/v1/stats/calls", None).await;
    assert_eq!(status, 200, "{empty}");
    let store = empty["store"].as_str().unwrap_or_default().to_owned();
    assert_eq!(store.len(), 32, "{empty}");
    assert_eq!(empty["minutes"].as_array().map(Vec::len), Some(60));
    assert_eq!(
        (empty["attempted"].as_i64(), empty["answered"].as_i64()),
        (Some(0), Some(0))
    );

    // one answered call and one busy
    let callee = spawn_sipp_uas_with("callee_answer.xml", LO, port, &[]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(call(&s, "call_uac.xml", "1002").await);
    assert!(wait_sipp(callee, "callee_answer.xml").await);
    assert!(call(&s, "call_486_uac.xml", "1999").await);
    let mut body = Value::Null;
    for _ in 0..100 {
        body = s.http("GET", "/api/v1/stats/calls", None).await.1;
        if body["attempted"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        (body["attempted"].as_i64(), body["answered"].as_i64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(
        body["store"],
        store.as_str(),
        "the same database, the same identity"
    );
    let minutes = body["minutes"].as_array().cloned().unwrap_or_default();
    let from = body["from_ms"].as_i64().unwrap_or_default();
    assert_eq!(from % 60_000, 0);
    for (i, m) in minutes.iter().enumerate() {
        assert_eq!(m["at_ms"].as_i64(), Some(from + i as i64 * 60_000), "{m}");
    }
    let per_minute: i64 = minutes.iter().filter_map(|m| m["attempted"].as_i64()).sum();
    assert_eq!(per_minute, 2);
    // the calls are in the last minutes of the window, not in an old one
    let (_, old) = s
        .http(
            "GET",
            &format!("/api/v1/stats/calls?from_ms={}&minutes=5", from - 3_600_000),
            None,
        )
        .await;
    assert_eq!(
        (
            old["attempted"].as_i64(),
            old["minutes"].as_array().map(Vec::len)
        ),
        (Some(0), Some(5))
    );
    let (_, one) = s.http("GET", "/api/v1/stats/calls?minutes=0", None).await;
    assert_eq!(one["minutes"].as_array().map(Vec::len), Some(1), "{one}");
    s.stop().await;
}
