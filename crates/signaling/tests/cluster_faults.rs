//! Faults keep calls up and lose nothing (issue 10): two replicas carry
//! 200 short calls between sipp phones while Postgres, NATS or Redis stops
//! (a PRIVATE server on its own port, never the shared ones), and every
//! call still connects; once the server returns, every CDR is in Postgres
//! exactly once, and bindings made during a Redis outage are found from
//! the other replica. A malformed message on the CDR subject is skipped and
//! counted, and the next CDR still lands.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{LO, Platform, Servers, eventually, sees_alive, two_replicas};
use common::phone::{SipPhone, sdp};
use common::servers::{PrivateNats, PrivatePg, PrivateRedis};
use common::{TestServer, metric, sipp, sipp_on, spawn_sipp_uas_with, wait_sipp};
use serde_json::Value;
use switchboard_sip::message::Method;

/// Calls each replica takes.
const CALLS_PER_REPLICA: usize = 100;
/// New calls per second on each replica (each talks 1 s).
const RATE: &str = "10";

/// A sipp phone registered as `user` through `s` on a port of its own,
/// then answering `calls` calls there.
async fn sipp_callee(s: &TestServer, user: &str, calls: usize) -> tokio::process::Child {
    let port = common::free_port(LO);
    let password = format!("{user}-secret");
    let reg = sipp_on(
        "register_auth.xml",
        s.sip,
        LO,
        port,
        &["-s", user, "-au", user, "-ap", &password],
    )
    .await;
    assert!(reg.status.success(), "{user}'s registration failed");
    let calls = calls.to_string();
    spawn_sipp_uas_with(
        "callee_answer.xml",
        LO,
        port,
        &["-m", &calls, "-timeout", "60s"],
    )
}

/// alice's sipp phones call carol (registered through A) on A and dave
/// (registered through B) on B, [`CALLS_PER_REPLICA`] calls each. (Not
/// across replicas: sipp's callee does not copy Record-Route into its
/// 200, so a call through another replica's edge would lose its ACK;
/// tests/cluster.rs covers that path with a phone that does.) Returns once
/// all calls ended: whether every sipp passed every check.
async fn run_calls(a: &TestServer, b: &TestServer) -> bool {
    let carol = sipp_callee(a, "carol", CALLS_PER_REPLICA).await;
    let dave = sipp_callee(b, "dave", CALLS_PER_REPLICA).await;
    let n = CALLS_PER_REPLICA.to_string();
    let args = |to: &'static str| {
        [
            "-s",
            to,
            "-au",
            "alice",
            "-ap",
            "alice-secret",
            "-m",
            &n,
            "-r",
            RATE,
            "-l",
            &n,
            "-timeout",
            "35s",
        ]
        .map(str::to_owned)
    };
    let (to_a, to_b) = (args("carol"), args("dave"));
    let to_a: Vec<&str> = to_a.iter().map(String::as_str).collect();
    let to_b: Vec<&str> = to_b.iter().map(String::as_str).collect();
    let (via_a, via_b) = tokio::join!(
        sipp("call_uac.xml", a.sip, LO, &to_a),
        sipp("call_uac.xml", b.sip, LO, &to_b)
    );
    let carol_ok = wait_sipp(carol, "callee_answer.xml").await;
    let dave_ok = wait_sipp(dave, "callee_answer.xml").await;
    eprintln!(
        "calls: A {} B {} carol {carol_ok} dave {dave_ok}",
        via_a.status, via_b.status
    );
    via_a.status.success() && via_b.status.success() && carol_ok && dave_ok
}

/// Both replicas with users alice, carol and dave.
async fn replicas_with_dave(p: &Platform) -> (TestServer, TestServer) {
    let (a, b) = two_replicas(p, |_| {}).await;
    b.create_user("dave", "dave-secret").await;
    eventually(Duration::from_secs(3), "dave reaches A", || async {
        a.http("GET", "/api/v1/stats", None).await.1["users"] == 3
    })
    .await;
    (a, b)
}

/// `(rows, distinct SIP Call-IDs, answered)` of the platform's CDRs.
fn cdr_counts(p: &Platform) -> Result<(u64, u64, u64), String> {
    let out = p.sql(
        "SELECT count(*), count(DISTINCT sip_call_id), \
         count(*) FILTER (WHERE disposition = 'answered') FROM switchboard.cdrs",
    )?;
    let v: Vec<u64> = out.split('|').filter_map(|x| x.parse().ok()).collect();
    match v[..] {
        [rows, distinct, answered] => Ok((rows, distinct, answered)),
        _ => Err(format!("unexpected psql output {out:?}")),
    }
}

/// Waits until all 200 calls' CDRs are in Postgres, then checks each is
/// there once (and stays so).
async fn all_cdrs_once(p: &Platform, within: Duration) -> Duration {
    let want = 2 * CALLS_PER_REPLICA as u64;
    let t0 = Instant::now();
    eventually(within, "every CDR in Postgres", || async {
        matches!(cdr_counts(p), Ok((rows, _, _)) if rows >= want)
    })
    .await;
    let took = t0.elapsed();
    // redeliveries still under way would show as extra rows now
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cdr_counts(p),
        Ok((want, want, want)),
        "one answered CDR per call"
    );
    took
}

fn health(body: &Value, server: &str) -> String {
    body[server].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopping_during_200_calls_loses_no_cdr() {
    let pg = PrivatePg::start();
    let p = Platform::on(Servers {
        pg_port: pg.port,
        ..Servers::default()
    });
    let (a, b) = replicas_with_dave(&p).await;
    sees_alive(&a, &["a", "b"]).await;

    let calls = run_calls(&a, &b);
    let fault = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        pg.stop();
        eventually(Duration::from_secs(5), "A sees Postgres down", || async {
            health(&a.http("GET", "/api/v1/health", None).await.1, "postgres")
                .starts_with("degraded")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        pg.resume();
    };
    let (calls_ok, ()) = tokio::join!(calls, fault);
    assert!(calls_ok, "every call connected");
    let took = all_cdrs_once(&p, Duration::from_secs(45)).await;
    eprintln!("all CDRs stored {took:?} after the calls ended");
    let failures = metric(&a, "switchboard_cdr_stream_store_failures_total ")
        .await
        .unwrap_or(0)
        + metric(&b, "switchboard_cdr_stream_store_failures_total ")
            .await
            .unwrap_or(0);
    assert!(failures > 0, "the outage was felt by the consumers");
    a.stop().await;
    b.stop().await;
    drop(p);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopping_during_200_calls_spools_cdrs_and_loses_none() {
    let mut nats = PrivateNats::start();
    let p = Platform::on(Servers {
        nats_url: nats.url(),
        ..Servers::default()
    });
    let (a, b) = replicas_with_dave(&p).await;
    eventually(Duration::from_secs(5), "NATS up on both", || async {
        health(&a.http("GET", "/api/v1/health", None).await.1, "nats") == "ok"
            && health(&b.http("GET", "/api/v1/health", None).await.1, "nats") == "ok"
    })
    .await;

    let calls = run_calls(&a, &b);
    let fault = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.stop();
    };
    let (calls_ok, ()) = tokio::join!(calls, fault);
    assert!(calls_ok, "every call connected");

    // the calls that ended meanwhile wait in each replica's spool
    let spooled: usize = [&a, &b]
        .iter()
        .map(|s| {
            std::fs::read_to_string(s.dir.join("cdr-spool.jsonl"))
                .map(|t| t.lines().count())
                .unwrap_or(0)
        })
        .sum();
    assert!(spooled > 100, "CDRs in DATA_DIR/cdr-spool.jsonl: {spooled}");
    let gauge = metric(&a, "switchboard_cdr_spool ").await.unwrap_or(0)
        + metric(&b, "switchboard_cdr_spool ").await.unwrap_or(0);
    assert_eq!(gauge as usize, spooled, "the spool gauge counts them");
    assert!(health(&a.http("GET", "/api/v1/health", None).await.1, "nats").starts_with("degraded"));

    // NATS returns on the same port with the same store
    nats.resume();
    let took = all_cdrs_once(&p, Duration::from_secs(40)).await;
    eprintln!("{spooled} spooled CDRs; all stored {took:?} after NATS returned");
    for s in [&a, &b] {
        assert!(
            !s.dir.join("cdr-spool.jsonl").exists(),
            "spool emptied in {}",
            s.dir.display()
        );
        assert_eq!(metric(s, "switchboard_cdrs_dropped_total ").await, Some(0));
    }
    a.stop().await;
    b.stop().await;
    drop(p);
}

/// `caller` (on its replica) calls `to` as `user`; `callee` answers, the
/// caller hangs up. Returns the address the callee's INVITE came from.
async fn answered_call(
    caller: &SipPhone,
    user: &str,
    to: &str,
    callee: &SipPhone,
) -> std::net::SocketAddr {
    let offer = sdp(LO, 4010, "sendrecv");
    let answer = sdp(LO, 4012, "sendrecv");
    let ring = async {
        let (inv, from) = callee.request_from(Method::Invite).await;
        callee.answer(&inv, 200, Some("ans"), Some(&answer)).await;
        callee.request_from(Method::Ack).await;
        from
    };
    let password = format!("{user}-secret");
    let ((mut dialog, _ok), from) =
        tokio::join!(caller.call(user, &password, to, &offer, &[]), ring);
    let bye = dialog.request(&Method::Bye, None, &[]);
    caller.send(&bye.bytes).await;
    let (req, _) = callee.request_from(Method::Bye).await;
    callee.answer(&req, 200, None, None).await;
    assert_eq!(caller.final_response(Method::Bye).await.code, 200);
    from
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopping_keeps_registrations_and_calls_and_bindings_return_with_it() {
    let mut redis = PrivateRedis::start();
    let p = Platform::on(Servers {
        redis_addr: redis.addr(),
        ..Servers::default()
    });
    let (a, b) = replicas_with_dave(&p).await;

    redis.stop();
    for s in [&a, &b] {
        eventually(Duration::from_secs(5), "Redis degraded", || async {
            health(&s.http("GET", "/api/v1/health", None).await.1, "redis").starts_with("degraded")
        })
        .await;
    }
    // registrations and calls on each replica, from its own memory
    let carol = SipPhone::bind(LO, a.sip).await;
    assert_eq!(carol.register("carol", "carol-secret", &[]).await.code, 200);
    let dave = SipPhone::bind(LO, b.sip).await;
    assert_eq!(dave.register("dave", "dave-secret", &[]).await.code, 200);
    let alice_a = SipPhone::bind(LO, a.sip).await;
    let alice_b = SipPhone::bind(LO, b.sip).await;
    assert_eq!(
        answered_call(&alice_a, "alice", "carol", &carol).await,
        a.sip
    );
    assert_eq!(answered_call(&alice_b, "alice", "dave", &dave).await, b.sip);
    let (_, body) = a.http("GET", "/api/v1/health", None).await;
    assert!(health(&body, "redis").starts_with("degraded"), "{body}");

    // Redis returns empty: each replica writes its bindings again, so B
    // finds carol (registered through A during the outage) and reaches
    // her through A
    redis.resume();
    let t0 = Instant::now();
    eventually(
        Duration::from_secs(10),
        "carol's binding back in Redis",
        || async {
            let (_, regs) = b.http("GET", "/api/v1/registrations", None).await;
            regs.as_array().is_some_and(|l| {
                l.iter().any(|r| {
                    r["aor"]
                        .as_str()
                        .is_some_and(|x| x.starts_with("sip:carol@"))
                        && r["contacts"][0]["replica"] == "a"
                })
            })
        },
    )
    .await;
    eprintln!(
        "bindings re-published {:?} after Redis returned",
        t0.elapsed()
    );
    sees_alive(&b, &["a", "b"]).await;
    eventually(Duration::from_secs(5), "B routes through A", || async {
        b.http("GET", "/api/v1/cluster", None).await.1["peers"]["a"].is_string()
    })
    .await;
    assert_eq!(
        answered_call(&alice_b, "alice", "carol", &carol).await,
        a.sip,
        "B's call reaches carol through A, the replica she registered on"
    );
    let republished = a
        .running
        .node
        .cluster
        .stats
        .republished
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        republished >= 1,
        "A re-published its bindings: {republished}"
    );
    a.stop().await;
    b.stop().await;
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_on_the_cdr_subject_is_skipped_and_the_next_cdr_lands() {
    let p = Platform::new();
    let a = p.replica("a", |_| {}).await;
    let client = async_nats::connect(&p.servers.nats_url)
        .await
        .expect("the shared NATS on 127.0.0.1:4222 answers");
    let js = async_nats::jetstream::new(client);
    let subject = format!("{}.cdr.raw", p.nats_prefix);
    // the replica creates the stream when its consumer starts
    let publish = |payload: Vec<u8>| {
        let js = js.clone();
        let subject = subject.clone();
        async move {
            match js.publish(subject, payload.into()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    };
    eventually(
        Duration::from_secs(10),
        "garbage taken by the stream",
        || publish(b"\x00not a CDR {".to_vec()),
    )
    .await;
    assert!(publish(br#"{"call_id": ""}"#.to_vec()).await);
    let good = serde_json::json!({
        "id": 0, "call_id": "fault-cdr-1", "caller": "1001", "callee": "1002",
        "source": "udp:127.0.0.1:5062", "invite_at": 1_718_000_000_000_i64,
        "end_at": 1_718_000_001_000_i64, "disposition": "answered", "created_at": 0,
    });
    assert!(publish(good.to_string().into_bytes()).await);

    eventually(Duration::from_secs(10), "the valid CDR stored", || async {
        a.http("GET", "/api/v1/cdrs/fault-cdr-1", None).await.0 == 200
    })
    .await;
    assert_eq!(
        metric(&a, "switchboard_cdr_stream_malformed_total ").await,
        Some(2),
        "both bad messages counted"
    );
    let (_, cdrs) = a.http("GET", "/api/v1/cdrs", None).await;
    assert_eq!(cdrs["cdrs"].as_array().map(Vec::len), Some(1), "{cdrs}");
    let (status, body) = a.http("GET", "/api/v1/health", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    a.stop().await;
    p.cleanup().await;
}
