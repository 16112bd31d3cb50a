//! Bindings end with their connection (UNREGISTER_ON_CLOSE), over real
//! sockets on loopback: a browser phone (WebSocket) that closes its socket
//! leaves the registrations list within a second, counted; one that
//! registered again over a new connection keeps its binding when the old
//! one closes; TCP and TLS bindings stay by default and go with `all`; a
//! bad value stops start-up naming the variable; in a cluster the replica
//! that held the connection removes the shared binding, so the other one
//! stops listing it too, and says `unregistered` once.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Platform, eventually, two_replicas, watch_events};
use common::tls_phone::{StreamPhone, TlsPhone};
use common::ws_phone::{ws_node, ws_phone};
use common::{TestServer, metric, metric_becomes};
use switchboard_signaling::config::UnregisterOnClose;

const REMOVED: &str = "switchboard_bindings_removed_flow_closed_total{transport=";
const REPORTED: &str = "switchboard_flow_close_reports_total{result=\"reported\"} ";

fn removed(token: &str) -> String {
    format!("{REMOVED}\"{token}\"}} ")
}

/// How long after `since` the API stopped listing `user` on `s` (panics
/// after 1 s).
async fn unlisted_within_a_second(s: &TestServer, user: &str, since: Instant) -> Duration {
    loop {
        if s.contacts(user).await.is_empty() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{user} still listed after 1 s: {:?}",
            s.contacts(user).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_closes_its_socket_is_unregistered_at_once() {
    let (s, ws, wss, ca) = ws_node("flow-ws", |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    s.create_user("bob", "bob-secret").await;
    let alice = ws_phone(ws, None, None).await;
    let bob = ws_phone(wss, Some(&ca), None).await;
    assert_eq!(alice.register("alice", "alice-secret").await.code, 200);
    assert_eq!(bob.register("bob", "bob-secret").await.code, 200);
    let (_, list) = s.http("GET", "/api/v1/registrations", None).await;
    assert!(list.to_string().contains(&alice.host), "{list}");

    for (phone, user, token) in [(&alice, "alice", "ws"), (&bob, "bob", "wss")] {
        let closed = Instant::now();
        phone.close().await;
        unlisted_within_a_second(&s, user, closed).await;
        assert_eq!(metric(&s, &removed(token)).await, Some(1), "{token}");
    }
    let (_, list) = s.http("GET", "/api/v1/registrations", None).await;
    assert_eq!(list, serde_json::json!([]), "the list is empty");
    let (_, stats) = s.http("GET", "/api/v1/stats", None).await;
    assert_eq!(stats["registrations"]["contacts"], 0, "{stats}");
    assert_eq!(
        metric(&s, "switchboard_registrations_contacts ").await,
        Some(0)
    );
    assert_eq!(metric(&s, REPORTED).await, Some(2));
    assert_eq!(
        metric(
            &s,
            "switchboard_flow_close_reports_total{result=\"dropped\"} "
        )
        .await,
        Some(0)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_registered_again_over_a_new_connection_outlives_the_old_one() {
    let (s, ws, _, _) = ws_node("flow-ws-renewed", |_| {}).await;
    s.create_user("alice", "alice-secret").await;
    let old = ws_phone(ws, None, None).await;
    assert_eq!(old.register("alice", "alice-secret").await.code, 200);
    // the page reconnected: the same Contact over a new socket, before
    // the old one is seen to close
    let new = ws_phone(ws, None, None).await;
    let contact = old.contact("alice");
    let ok = new
        .register_contact("alice", "alice-secret", &contact)
        .await;
    assert_eq!(ok.code, 200);
    let flow = format!("ws:{}", new.addr());
    assert_eq!(s.contacts("alice").await[0]["received"], flow);

    old.close().await;
    assert_eq!(
        metric_becomes(&s, REPORTED, 1).await,
        Some(1),
        "the close was seen"
    );
    // the report is handled in order: a moment for it to be done with
    tokio::time::sleep(Duration::from_millis(200)).await;
    let contacts = s.contacts("alice").await;
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["received"], flow);
    assert_eq!(metric(&s, &removed("ws")).await, Some(0));

    // the connection it names now is the one that counts
    let closed = Instant::now();
    new.close().await;
    unlisted_within_a_second(&s, "alice", closed).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_bindings_stay_by_default_and_go_with_all() {
    for policy in [None, Some(UnregisterOnClose::All)] {
        let (s, _, _, ca) = ws_node("flow-tcp", |c| {
            if let Some(p) = policy {
                c.flows.unregister_on_close = p;
            }
        })
        .await;
        s.create_user("alice", "alice-secret").await;
        s.create_user("bob", "bob-secret").await;
        let alice = StreamPhone::tcp(s.sip).await;
        let bob = TlsPhone::connect(s.running.tls_addrs[0], &ca).await;
        assert_eq!(alice.register("alice", "alice-secret").await.code, 200);
        assert_eq!(bob.register("bob", "bob-secret").await.code, 200);
        let closed = Instant::now();
        alice.close().await;
        bob.close().await;
        match policy {
            None => {
                assert_eq!(
                    metric_becomes(&s, "switchboard_tcp_connections ", 0).await,
                    Some(0),
                    "the server saw both connections close"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                for user in ["alice", "bob"] {
                    assert_eq!(s.contacts(user).await.len(), 1, "{user} stays by default");
                }
                assert_eq!(metric(&s, REPORTED).await, Some(0), "nothing to report");
            }
            Some(_) => {
                unlisted_within_a_second(&s, "alice", closed).await;
                unlisted_within_a_second(&s, "bob", closed).await;
                assert_eq!(metric(&s, &removed("tcp")).await, Some(1));
                assert_eq!(metric(&s, &removed("tls")).await, Some(1));
            }
        }
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_stops_start_up_naming_the_variable() {
    let dir = common::temp_dir("flow-bad");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-signaling"))
        .env_clear()
        .env("UNREGISTER_ON_CLOSE", "tcp")
        .env("DATA_DIR", &dir)
        .env("BIND", "127.0.0.1")
        .env("PORT", "0")
        .env("API_PORT", "0")
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(stderr.contains("UNREGISTER_ON_CLOSE"), "{stderr}");
    assert!(stderr.contains("tcp"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_replica_holding_the_socket_unregisters_it_everywhere() {
    let p = Platform::new();
    let (a, b) = two_replicas(&p, |c| c.tls.ws_port = Some(0)).await;
    let events = watch_events(&p).await;
    let carol = ws_phone(a.running.ws_addrs[0], None, None).await;
    assert_eq!(carol.register("carol", "carol-secret").await.code, 200);
    let on_b = b.contacts("carol").await;
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!(on_b[0]["replica"], "a");

    let closed = Instant::now();
    carol.close().await;
    let took = unlisted_within_a_second(&b, "carol", closed).await;
    assert!(a.contacts("carol").await.is_empty(), "nor on A");
    eprintln!("B stopped listing carol {took:?} after her socket closed");

    // one `unregistered`, from A, saying which flow went
    let aor = switchboard_events::escape_token("sip:carol@switchboard");
    let subject = format!("{}.registrations.{aor}.unregistered", p.nats_prefix);
    let seen = events.wait_for(&subject).await;
    let said: Vec<_> = seen.iter().filter(|(s, _)| *s == subject).collect();
    assert_eq!(said.len(), 1, "{seen:?}");
    let event = &said[0].1;
    assert_eq!(event["node"], "a", "{event}");
    assert_eq!(event["expires"], 0, "{event}");
    assert_eq!(event["source"], format!("ws:{}", carol.addr()), "{event}");
    assert!(
        !seen.iter().any(|(s, _)| s.ends_with(".expired")),
        "{seen:?}"
    );
    eventually(Duration::from_secs(3), "A counted it", || async {
        metric(&a, &removed("ws")).await == Some(1)
    })
    .await;
    a.stop().await;
    b.stop().await;
    p.cleanup().await;
}
