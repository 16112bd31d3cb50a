//! RTP managers discovered from a Kubernetes Service's EndpointSlices,
//! against a fake Kubernetes API on loopback (common/fake_k8s.rs) and real
//! RTP managers in-process: the pool follows the endpoints (added, not
//! ready, terminating, removed), new calls avoid managers that are not
//! ready, a call on a terminating manager stays there until the Service's
//! `switchboard.dev/terminating-calls: move` label moves it, and the watch
//! resumes after its stream ends and lists again after 410 Gone.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake_k8s::{FakeK8s, endpoint, endpoint_slice, grpc_port};
use common::{
    TestServer, free_port, sipp, sipp_on, spawn_sipp_uas_with, start_in, temp_dir, wait_sipp,
};
use serde_json::{Value, json};
use switchboard_signaling::Config;
use switchboard_signaling::media::{MediaPool, PoolHooks, discovery};
use tokio::net::{TcpListener, UdpSocket};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NS: &str = "switchboard";
const SERVICE: &str = "rtpmanager";
const TOKEN: &str = "discovery-test-token-0123456789";
/// The slice the EndpointSlice controller would make for the Service.
const SLICE: &str = "rtpmanager-7xk2p";

/// Two RTP managers serving gRPC on consecutive loopback ports, as the
/// pods rtpmanager-0 and rtpmanager-1 of a StatefulSet on hostNetwork do
/// (9090 + ordinal): the managers and the base port.
async fn managers_on_consecutive_ports() -> (Vec<switchboard_rtpmanager::Running>, u16) {
    for _ in 0..50 {
        let first = TcpListener::bind((LO, 0)).await.unwrap();
        let base = first.local_addr().unwrap().port();
        let Some(next) = base.checked_add(1) else {
            continue;
        };
        let Ok(second) = TcpListener::bind((LO, next)).await else {
            continue;
        };
        let mut out = Vec::new();
        for (i, listener) in [first, second].into_iter().enumerate() {
            // inside the 1xxxx range the sipp scenarios expect in SDP
            let ports = 17000 + 100 * i as u16;
            let engine =
                switchboard_rtpmanager::Engine::new(switchboard_rtpmanager::EngineConfig {
                    addresses: vec![switchboard_rtpmanager::RtpAddress {
                        bind: LO,
                        advertise: LO,
                    }],
                    port_min: ports,
                    port_max: ports + 99,
                    audio_path: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../audio"),
                    record_path: std::env::temp_dir(),
                    rtp_timeout: Duration::from_secs(60),
                    rtp_hold_timeout: switchboard_rtpmanager::engine::RTP_HOLD_TIMEOUT,
                    rtcp_interval: switchboard_rtpmanager::engine::RTCP_INTERVAL,
                    source_policy: switchboard_media::learning::Policy::SdpIp,
                })
                .unwrap();
            let security = switchboard_rtpmanager::GrpcSecurity {
                token: Some(TOKEN.into()),
                tls: None,
            };
            out.push(
                switchboard_rtpmanager::serve_secured(engine, listener, security)
                    .await
                    .unwrap(),
            );
        }
        return (out, base);
    }
    panic!("no two consecutive free ports");
}

/// The Service's one slice: `pods` as (name, ready, terminating).
fn slice_of(base: u16, labels: Value, pods: &[(&str, bool, bool)]) -> Value {
    endpoint_slice(
        SLICE,
        SERVICE,
        grpc_port(base),
        labels,
        pods.iter()
            .map(|(pod, ready, terminating)| endpoint(pod, "127.0.0.1", *ready, *terminating))
            .collect(),
    )
}

/// How soon the pool follows a change of the endpoints (a watch event
/// on loopback: milliseconds; a second leaves room for a loaded machine).
const FOLLOWS_WITHIN: Duration = Duration::from_secs(1);

/// Polls `/api/v1/rtpmanagers` until `ok` holds of it, for at most
/// [`FOLLOWS_WITHIN`]; the list.
async fn pool_until(s: &TestServer, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + FOLLOWS_WITHIN;
    loop {
        let (status, body) = s.http("GET", "/api/v1/rtpmanagers", None).await;
        assert_eq!(status, 200, "{body}");
        if ok(body.as_array().map(Vec::as_slice).unwrap_or_default()) {
            return body.as_array().cloned().unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool did not show {what} within {FOLLOWS_WITHIN:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn member<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|m| m["name"] == name)
}

fn names(list: &[Value]) -> Vec<&str> {
    list.iter().filter_map(|m| m["name"].as_str()).collect()
}

/// Polls `/api/v1/sessions` until `ok` holds of it; the list.
async fn sessions_until(s: &TestServer, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = s.http("GET", "/api/v1/sessions", None).await;
        assert_eq!(status, 200, "{body}");
        if ok(body.as_array().map(Vec::as_slice).unwrap_or_default()) {
            return body.as_array().cloned().unwrap_or_default();
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the sessions never showed {what}: {last}");
}

/// A phone's RTP port (kept bound) and the sipp injection file naming it.
async fn phone(dir: &std::path::Path) -> (UdpSocket, String) {
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let path = dir.join(format!("phone-{port}.csv"));
    std::fs::write(&path, format!("SEQUENTIAL\n{port};0;PCMU;\n")).unwrap();
    (sock, path.display().to_string())
}

/// alice (1001) and bob (1002), bob's extension dialled, 600 the echo.
async fn users_and_plan(s: &TestServer) {
    for (user, ext) in [("alice", "1001"), ("bob", "1002")] {
        let (status, body) = s
            .http(
                "POST",
                "/api/v1/users",
                Some(&json!({"username": user, "password": format!("{user}-secret"), "extension": ext})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let plan = json!({"version": "1.0", "routes": [
        {"id": "echo", "pattern": "600", "actions": [{"type": "echo"}]},
        {"id": "extensions", "pattern": "1*", "priority": 50, "actions": [
            {"type": "dial", "params": {"target": "user/${destination}", "timeout": 10}}]}]});
    let (status, body) = s.http("PUT", "/api/v1/dialplan", Some(&plan)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_follows_the_services_endpoints_and_calls_keep_or_move() {
    let k8s = FakeK8s::start(NS).await;
    let (managers, base) = managers_on_consecutive_ports().await;
    let dir = temp_dir("discovery");
    let kubeconfig = k8s.kubeconfig(&dir);
    let s = start_in(dir, |c| {
        c.rtpmanager_service = Some(format!("{NS}/{SERVICE}"));
        c.kubeconfig = Some(kubeconfig);
        c.rtpmanager_token = Some(TOKEN.into());
    })
    .await;
    users_and_plan(&s).await;
    let (_, empty) = s.http("GET", "/api/v1/rtpmanagers", None).await;
    assert_eq!(empty, json!([]), "no endpoints yet");

    // the StatefulSet's pods come up
    k8s.apply(slice_of(base, json!({}), &[("rtpmanager-0", true, false)]));
    let list = pool_until(&s, "rtpmanager-0", |l| names(l) == ["rtpmanager-0"]).await;
    let m0 = &list[0];
    assert_eq!(m0["address"], format!("127.0.0.1:{base}"));
    assert_eq!(m0["discovery"], "ready");
    assert_eq!(m0["accepting"], true);
    assert_eq!(m0["healthy"], true, "reached with the token: {m0}");
    k8s.apply(slice_of(
        base,
        json!({}),
        &[
            ("rtpmanager-0", true, false),
            ("rtpmanager-1", false, false),
        ],
    ));
    let list = pool_until(&s, "rtpmanager-1 not ready", |l| {
        member(l, "rtpmanager-1").is_some_and(|m| m["discovery"] == "not_ready")
    })
    .await;
    let m1 = member(&list, "rtpmanager-1").unwrap();
    assert_eq!(m1["address"], format!("127.0.0.1:{}", base + 1));
    assert_eq!(m1["accepting"], false);
    assert_eq!(m1["healthy"], true, "health checks go on: {m1}");

    // a bridged call: on rtpmanager-0, the only ready one
    let bob_port = free_port(LO);
    let reg = sipp_on(
        "register_auth.xml",
        s.sip,
        LO,
        bob_port,
        &["-s", "bob", "-au", "bob", "-ap", "bob-secret"],
    )
    .await;
    assert!(reg.status.success(), "bob's registration failed");
    let (_a_rtp, a_csv) = phone(&s.dir).await;
    let (_b_rtp, b_csv) = phone(&s.dir).await;
    let bob = spawn_sipp_uas_with("media_callee_moved.xml", LO, bob_port, &["-inf", &b_csv]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (sip, csv) = (s.sip, a_csv.clone());
    let alice = tokio::spawn(async move {
        sipp(
            "media_uac_moved.xml",
            sip,
            LO,
            &[
                "-s",
                "1002",
                "-au",
                "alice",
                "-ap",
                "alice-secret",
                "-inf",
                &csv,
                "-d",
                "500",
            ],
        )
        .await
        .status
        .success()
    });
    let first = sessions_until(&s, "the bridged call", |l| {
        l.len() == 2 && l.iter().all(|x| !x["bridged_to"].is_null())
    })
    .await;
    assert!(
        first.iter().all(|x| x["manager"] == "rtpmanager-0"),
        "{first:?}"
    );
    let call = first[0]["call_id"].as_str().unwrap().to_owned();

    // rtpmanager-1 is ready, rtpmanager-0 terminating: a new call goes to
    // rtpmanager-1, the live one stays on rtpmanager-0
    k8s.apply(slice_of(
        base,
        json!({}),
        &[("rtpmanager-0", false, true), ("rtpmanager-1", true, false)],
    ));
    pool_until(&s, "rtpmanager-0 terminating", |l| {
        member(l, "rtpmanager-0")
            .is_some_and(|m| m["discovery"] == "terminating" && m["accepting"] == false)
            && member(l, "rtpmanager-1").is_some_and(|m| m["accepting"] == true)
    })
    .await;
    let (_c_rtp, c_csv) = phone(&s.dir).await;
    let echo = tokio::spawn(async move {
        sipp(
            "media_uac.xml",
            sip,
            LO,
            &[
                "-s",
                "600",
                "-au",
                "alice",
                "-ap",
                "alice-secret",
                "-inf",
                &c_csv,
                "-d",
                "1500",
            ],
        )
        .await
        .status
        .success()
    });
    let now = sessions_until(&s, "the new call", |l| {
        l.iter().any(|x| x["call_id"] != call.as_str())
    })
    .await;
    let new: Vec<&Value> = now
        .iter()
        .filter(|x| x["call_id"] != call.as_str())
        .collect();
    assert!(
        new.iter().all(|x| x["manager"] == "rtpmanager-1"),
        "the new call avoids the terminating manager: {now:?}"
    );
    let old: Vec<&Value> = now
        .iter()
        .filter(|x| x["call_id"] == call.as_str())
        .collect();
    assert_eq!(old.len(), 2, "{now:?}");
    assert!(
        old.iter().all(|x| x["manager"] == "rtpmanager-0"),
        "the live call stays where it is: {now:?}"
    );
    assert!(echo.await.unwrap(), "the echo call failed");

    // the Service's label (copied onto its slices): the call moves
    k8s.apply(slice_of(
        base,
        json!({"switchboard.dev/terminating-calls": "move"}),
        &[("rtpmanager-0", false, true), ("rtpmanager-1", true, false)],
    ));
    let moved = sessions_until(&s, "the call on rtpmanager-1", |l| {
        let mine: Vec<&Value> = l.iter().filter(|x| x["call_id"] == call.as_str()).collect();
        mine.len() == 2
            && mine
                .iter()
                .all(|x| x["manager"] == "rtpmanager-1" && !x["bridged_to"].is_null())
    })
    .await;
    assert!(!moved.is_empty());
    assert!(alice.await.unwrap(), "the caller's scenario failed");
    assert!(
        wait_sipp(bob, "media_callee_moved.xml").await,
        "bob's phone failed"
    );

    // the pod is gone: it leaves the pool
    k8s.apply(slice_of(base, json!({}), &[("rtpmanager-1", true, false)]));
    pool_until(&s, "only rtpmanager-1", |l| names(l) == ["rtpmanager-1"]).await;
    k8s.delete(SLICE);
    pool_until(&s, "an empty pool", <[Value]>::is_empty).await;
    let (_, metrics) = s.http("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("switchboard_rtpmanager_members{state=\"ready\"} 0"),
        "{metrics}"
    );

    // what the Role must allow: list and watch of endpointslices here
    let seen = k8s.seen();
    assert!(seen.iter().any(|r| !r.watch) && seen.iter().any(|r| r.watch));
    for r in &seen {
        assert_eq!(r.method, "GET", "{r:?}");
        assert_eq!(
            r.path,
            format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
            "{r:?}"
        );
        assert_eq!(
            r.label_selector.as_deref(),
            Some("kubernetes.io/service-name=rtpmanager"),
            "{r:?}"
        );
        assert_eq!(r.watch, r.resource_version.is_some(), "{r:?}");
    }
    s.stop().await;
    for m in managers {
        m.shutdown().await;
    }
}

/// A discovered pool driven by the library alone (no SIP server).
struct Discovered {
    pool: Arc<MediaPool>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn discovered(k8s: &FakeK8s, name: &str) -> Discovered {
    let dir = temp_dir(name);
    let mut config = Config::for_tests(dir.clone());
    config.rtpmanager_service = Some(format!("{NS}/{SERVICE}"));
    config.kubeconfig = Some(k8s.kubeconfig(&dir));
    config.validate().unwrap();
    let pool = Arc::new(MediaPool::from_config(&config).unwrap());
    let watch = discovery::connect(pool.discovery().unwrap()).await.unwrap();
    let hooks = Arc::new(PoolHooks {
        lost: Box::new(|_| {}),
        migrate: Box::new(|_| {}),
        changed: Box::new(|_, _| {}),
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let task = discovery::spawn(Arc::clone(&pool), watch, stop.clone(), hooks);
    Discovered { pool, stop, task }
}

impl Discovered {
    async fn until(&self, what: &str, ok: impl Fn(&[String]) -> bool) {
        let mut names = Vec::new();
        for _ in 0..250 {
            names = self.pool.members().iter().map(|m| m.name.clone()).collect();
            if ok(&names) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the pool never showed {what}: {names:?}");
    }

    fn restarts(&self) -> u64 {
        self.pool
            .discovery_stats()
            .watch_restarts
            .load(Ordering::Relaxed)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

async fn watching(k8s: &FakeK8s, n: usize) {
    for _ in 0..250 {
        if k8s.watching() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} watches open, not {n}", k8s.watching());
}

#[tokio::test]
async fn the_watch_resumes_from_its_version_after_the_stream_closes() {
    let k8s = FakeK8s::start(NS).await;
    let d = discovered(&k8s, "discovery-resume").await;
    let rv = k8s.apply(slice_of(9090, json!({}), &[("rtpmanager-0", true, false)]));
    d.until("rtpmanager-0", |n| n == ["rtpmanager-0"]).await;
    watching(&k8s, 1).await;
    // the API server ends the watch (its timeout, a restart behind a proxy)
    k8s.close_watches();
    k8s.apply(slice_of(
        9090,
        json!({}),
        &[("rtpmanager-0", true, false), ("rtpmanager-1", true, false)],
    ));
    d.until("both", |n| n == ["rtpmanager-0", "rtpmanager-1"])
        .await;
    watching(&k8s, 1).await;
    let watches: Vec<Option<String>> = k8s
        .seen()
        .into_iter()
        .filter(|r| r.watch)
        .map(|r| r.resource_version)
        .collect();
    assert_eq!(watches.len(), 2, "{watches:?}");
    assert_eq!(
        watches[1].as_deref(),
        Some(rv.to_string().as_str()),
        "resumed after the last event seen"
    );
    assert_eq!(k8s.lists(), 1, "resumed without listing again");
    assert_eq!(d.restarts(), 1);
    d.stop().await;
}

#[tokio::test]
async fn a_410_gone_watch_lists_again() {
    let k8s = FakeK8s::start(NS).await;
    let d = discovered(&k8s, "discovery-gone").await;
    k8s.apply(slice_of(9090, json!({}), &[("rtpmanager-0", true, false)]));
    d.until("rtpmanager-0", |n| n == ["rtpmanager-0"]).await;
    watching(&k8s, 1).await;
    // a change the watch never carries, then the history is compacted:
    // only a new list shows it
    k8s.apply_unwatched(slice_of(9090, json!({}), &[("rtpmanager-1", true, false)]));
    k8s.expire();
    d.until("rtpmanager-1 alone", |n| n == ["rtpmanager-1"])
        .await;
    assert_eq!(k8s.lists(), 2, "{:?}", k8s.seen());
    assert!(d.restarts() >= 1);
    // and it watches again from the new list
    watching(&k8s, 1).await;
    k8s.apply(slice_of(9090, json!({}), &[("rtpmanager-2", true, false)]));
    d.until("rtpmanager-2 alone", |n| n == ["rtpmanager-2"])
        .await;
    d.stop().await;
}

#[tokio::test]
async fn a_namespace_the_role_does_not_cover_is_retried_not_fatal() {
    let k8s = FakeK8s::start("elsewhere").await;
    let d = discovered(&k8s, "discovery-forbidden").await;
    // every list is forbidden: the pool stays empty, listing goes on
    for _ in 0..250 {
        if k8s.lists() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(k8s.lists() >= 2, "listed again after the failure");
    assert!(d.pool.members().is_empty());
    assert!(d.pool.anchors(), "calls still need a manager");
    d.stop().await;
}
