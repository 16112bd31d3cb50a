#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use serde_json::{Value, json};

use super::*;
use crate::media::{ManagerChange, MediaCounters, Remote};

const ORDINAL: Ports = Ports {
    mode: PortMode::Ordinal,
    default: 9090,
};
const SLICE: Ports = Ports {
    mode: PortMode::Slice,
    default: 9090,
};

/// An endpoint: pod name in targetRef, one address, conditions.
fn ep(pod: &str, address: &str, ready: bool, terminating: bool) -> Value {
    json!({
        "addresses": [address],
        "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating},
        "targetRef": {"kind": "Pod", "name": pod, "namespace": "sb"},
    })
}

fn slice(
    name: &str,
    family: &str,
    ports: Value,
    labels: Value,
    endpoints: Vec<Value>,
) -> EndpointSlice {
    let mut labels = labels;
    labels[SERVICE_NAME_LABEL] = json!("rtpmanager");
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "sb", "labels": labels, "resourceVersion": "1"},
        "addressType": family,
        "ports": ports,
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn grpc(port: u16) -> Value {
    json!([{"name": "grpc", "port": port, "protocol": "TCP"}])
}

/// name → (address, state, move)
fn summary(d: &Desired) -> Vec<(&str, &str, EndpointState, bool)> {
    d.members
        .iter()
        .map(|(n, w)| (n.as_str(), w.addr.as_str(), w.state, w.move_calls))
        .collect()
}

use EndpointState::{NotReady, Ready, Terminating};

#[test]
fn endpoint_conditions_make_the_member_states() {
    let s = slice(
        "rtpmanager-a",
        "IPv4",
        grpc(9090),
        json!({}),
        vec![
            ep("rtpmanager-0", "10.0.0.1", true, false),
            ep("rtpmanager-1", "10.0.0.2", false, false),
            ep("rtpmanager-2", "10.0.0.3", false, true),
            // a terminating endpoint may still say ready (older clusters)
            ep("rtpmanager-3", "10.0.0.4", true, true),
            // no conditions at all: ready (the API's reading of a nil)
            json!({"addresses": ["10.0.0.5"], "targetRef": {"name": "rtpmanager-4"}}),
        ],
    );
    let d = desired([&s], ORDINAL);
    assert_eq!(
        summary(&d),
        [
            ("rtpmanager-0", "10.0.0.1:9090", Ready, false),
            ("rtpmanager-1", "10.0.0.2:9091", NotReady, false),
            ("rtpmanager-2", "10.0.0.3:9092", Terminating, false),
            ("rtpmanager-3", "10.0.0.4:9093", Terminating, false),
            ("rtpmanager-4", "10.0.0.5:9094", Ready, false),
        ]
    );
    assert!(d.skipped.is_empty());
    assert_eq!(d.members["rtpmanager-4"].ordinal, Some(4));
}

#[test]
fn ports_under_hostnetwork_and_on_the_pod_network() {
    // (mode, slice ports, endpoint, want address or skip)
    let hostname_only = json!({"addresses": ["10.0.0.7"], "hostname": "rtpmanager-7", "conditions": {"ready": true}});
    let no_ordinal = json!({"addresses": ["10.0.0.8"], "targetRef": {"name": "rtpmanager-x"}, "hostname": "rtpmanager-3"});
    let anonymous = json!({"addresses": ["10.0.0.9"], "conditions": {"ready": true}});
    let v6 = ep("rtpmanager-1", "::1", true, false);
    let two = json!([{"name": "metrics", "port": 8080}, {"name": "grpc", "port": 7000}]);
    let unnamed = json!([{"port": 7100}]);
    let several = json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}]);
    type Case<'a> = (Ports, Value, &'a Value, Result<(&'a str, &'a str), Skip>);
    let cases: Vec<Case> = vec![
        // the ordinal comes from targetRef, else hostname
        (
            ORDINAL,
            grpc(9090),
            &hostname_only,
            Ok(("rtpmanager-7", "10.0.0.7:9097")),
        ),
        // targetRef wins over hostname
        (ORDINAL, grpc(9090), &no_ordinal, Err(Skip::NoOrdinal)),
        (
            SLICE,
            grpc(9090),
            &no_ordinal,
            Ok(("rtpmanager-x", "10.0.0.8:9090")),
        ),
        (ORDINAL, grpc(9090), &anonymous, Err(Skip::NoOrdinal)),
        (
            SLICE,
            grpc(9090),
            &anonymous,
            Ok(("10.0.0.9:9090", "10.0.0.9:9090")),
        ),
        // IPv6 in brackets
        (ORDINAL, grpc(9090), &v6, Ok(("rtpmanager-1", "[::1]:9091"))),
        (SLICE, grpc(9090), &v6, Ok(("rtpmanager-1", "[::1]:9090"))),
        // the port named grpc, the only port, or RTPMANAGER_GRPC_PORT
        (
            ORDINAL,
            two.clone(),
            &v6,
            Ok(("rtpmanager-1", "[::1]:7001")),
        ),
        (
            SLICE,
            unnamed.clone(),
            &hostname_only,
            Ok(("rtpmanager-7", "10.0.0.7:7100")),
        ),
        (
            ORDINAL,
            json!([]),
            &hostname_only,
            Ok(("rtpmanager-7", "10.0.0.7:9097")),
        ),
        (
            ORDINAL,
            Value::Null,
            &hostname_only,
            Ok(("rtpmanager-7", "10.0.0.7:9097")),
        ),
        (
            ORDINAL,
            several.clone(),
            &hostname_only,
            Ok(("rtpmanager-7", "10.0.0.7:9097")),
        ),
        (
            Ports {
                mode: PortMode::Ordinal,
                default: 65535,
            },
            json!([]),
            &hostname_only,
            Err(Skip::BadPort),
        ),
    ];
    for (i, (ports, slice_ports, e, want)) in cases.into_iter().enumerate() {
        let s = slice("s", "IPv4", slice_ports, json!({}), vec![e.clone()]);
        let d = desired([&s], ports);
        match want {
            Ok((name, addr)) => {
                assert!(d.skipped.is_empty(), "case {i}: {d:?}");
                assert_eq!(d.members.len(), 1, "case {i}: {d:?}");
                assert_eq!(d.members[name].addr, addr, "case {i}");
            }
            Err(why) => {
                assert!(d.members.is_empty(), "case {i}: {d:?}");
                assert_eq!(d.skipped.len(), 1, "case {i}");
                assert_eq!(d.skipped[0].1, why, "case {i}");
            }
        }
    }
}

#[test]
fn an_endpoint_without_addresses_is_left_out() {
    let s = slice(
        "s",
        "IPv4",
        grpc(9090),
        json!({}),
        vec![json!({"addresses": [], "targetRef": {"name": "rtpmanager-0"}})],
    );
    let d = desired([&s], ORDINAL);
    assert!(d.members.is_empty());
    assert_eq!(d.skipped, [("rtpmanager-0".to_owned(), Skip::NoAddress)]);
}

#[test]
fn a_pod_in_several_slices_is_one_member() {
    let dual = json!({"addresses": ["10.0.0.1", "fd00::1"], "targetRef": {"name": "rtpmanager-0"}, "conditions": {"ready": true}});
    // dual-stack: one slice per family; the IPv4 one names the address,
    // whatever the slices' names, and the first address of an endpoint
    let v6 = slice(
        "a-v6",
        "IPv6",
        grpc(9090),
        json!({}),
        vec![ep("rtpmanager-0", "fd00::1", true, false)],
    );
    let v4 = slice("b-v4", "IPv4", grpc(9090), json!({}), vec![dual]);
    for order in [[&v6, &v4], [&v4, &v6]] {
        let d = desired(order, ORDINAL);
        assert_eq!(
            summary(&d),
            [("rtpmanager-0", "10.0.0.1:9090", Ready, false)]
        );
    }
    // listed twice for a moment: the most available state, and the move
    // label from either slice
    let stale = slice(
        "a",
        "IPv4",
        grpc(9090),
        json!({}),
        vec![ep("rtpmanager-1", "10.0.0.2", false, true)],
    );
    let fresh = slice(
        "b",
        "IPv4",
        grpc(9090),
        json!({MOVE_LABEL: MOVE_VALUE}),
        vec![ep("rtpmanager-1", "10.0.0.2", false, false)],
    );
    let d = desired([&stale, &fresh], ORDINAL);
    assert_eq!(
        summary(&d),
        [("rtpmanager-1", "10.0.0.2:9091", NotReady, true)]
    );
}

#[test]
fn the_move_label_is_read_from_the_slice() {
    for (labels, want) in [
        (json!({MOVE_LABEL: MOVE_VALUE}), true),
        (json!({MOVE_LABEL: "stay"}), false),
        (json!({"switchboard.dev/other": "move"}), false),
        (json!({}), false),
    ] {
        let s = slice(
            "s",
            "IPv4",
            grpc(9090),
            labels.clone(),
            vec![ep("rtpmanager-0", "10.0.0.1", false, true)],
        );
        let d = desired([&s], ORDINAL);
        assert_eq!(d.members["rtpmanager-0"].move_calls, want, "{labels}");
    }
}

#[test]
fn service_names() {
    for (s, want) in [
        (
            "switchboard/rtpmanager",
            Ok((Some("switchboard"), "rtpmanager")),
        ),
        ("rtpmanager", Ok((None, "rtpmanager"))),
        ("sb-1/rtp-manager-2", Ok((Some("sb-1"), "rtp-manager-2"))),
    ] {
        let got = parse_service(s).unwrap();
        let want: Result<(Option<&str>, &str), ()> = want;
        assert_eq!((got.0.as_deref(), got.1.as_str()), want.unwrap(), "{s}");
    }
    for bad in [
        "",
        "/x",
        "x/",
        "a/b/c",
        "Rtp/x",
        "-a/x",
        "a/x-",
        "a b/x",
        &"x".repeat(64),
    ] {
        assert!(parse_service(bad).is_err(), "{bad:?}");
    }
}

fn wanted(addr: &str, ordinal: Option<u32>) -> Wanted {
    Wanted {
        addr: addr.into(),
        state: Ready,
        move_calls: false,
        ordinal,
    }
}

#[test]
fn plans_keep_replace_add_remove_and_cap() {
    let mut d = Desired::default();
    for (n, a, o) in [
        ("rtpmanager-0", "10.0.0.1:9090", Some(0)),
        ("rtpmanager-1", "10.0.0.9:9091", Some(1)),
        ("rtpmanager-10", "10.0.0.3:9100", Some(10)),
        ("rtpmanager-2", "10.0.0.4:9092", Some(2)),
        ("other", "10.0.0.5:9090", None),
    ] {
        d.members.insert(n.into(), wanted(a, o));
    }
    let current = [
        ("rtpmanager-0", "10.0.0.1:9090"),
        ("rtpmanager-1", "10.0.0.2:9091"),
        ("rtpmanager-5", "10.0.0.6:9095"),
    ];
    let p = plan(&current, &d, 256);
    assert_eq!(p.keep, ["rtpmanager-0"]);
    assert_eq!(p.replace, ["rtpmanager-1"]);
    assert_eq!(p.remove, ["rtpmanager-5"]);
    // by ordinal, not by name; without an ordinal last
    assert_eq!(p.add, ["rtpmanager-2", "rtpmanager-10", "other"]);
    assert!(p.over_cap.is_empty());
    // a full pool: members already in first, then the lowest ordinals
    let p = plan(&current, &d, 3);
    assert_eq!(p.add, ["rtpmanager-2"]);
    assert_eq!(p.over_cap, ["rtpmanager-10", "other"]);
    let p = plan(&current, &d, 1);
    assert_eq!((p.keep.len(), p.replace.len()), (1, 1));
    assert_eq!(p.add, Vec::<String>::new());
    assert_eq!(p.over_cap.len(), 3);
    // nothing to do
    let p = plan(&[], &Desired::default(), 256);
    assert_eq!(p, Plan::default());
}

#[test]
fn ten_thousand_endpoints_make_a_pool_of_max_members() {
    let endpoints: Vec<Value> = (0..100)
        .map(|i| ep(&format!("rtpmanager-{i}"), "10.0.0.1", true, false))
        .collect();
    let slices: Vec<EndpointSlice> = (0..100)
        .map(|s| {
            let eps = endpoints
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    let n = e["targetRef"]["name"].as_str().unwrap().to_owned();
                    e["targetRef"]["name"] = json!(format!("{n}-{s}"));
                    e
                })
                .collect();
            slice(&format!("s{s}"), "IPv4", json!([]), json!({}), eps)
        })
        .collect();
    let d = desired(&slices, SLICE);
    assert_eq!(d.members.len(), 10_000);
    let p = plan(&[], &d, MAX_MEMBERS);
    assert_eq!(p.add.len(), MAX_MEMBERS);
    assert_eq!(p.over_cap.len(), 10_000 - MAX_MEMBERS);
}

/// A discovered pool (no network: members connect on their first call).
fn pool() -> Arc<MediaPool> {
    Arc::new(MediaPool::with_members(
        Vec::new(),
        Arc::new(MediaCounters::default()),
        Some(Remote {
            tls: None,
            auth: None,
        }),
        Some(Settings {
            namespace: Some("sb".into()),
            service: "rtpmanager".into(),
            ports: ORDINAL,
            kubeconfig: None,
        }),
    ))
}

#[derive(Default)]
struct Heard {
    lost: Vec<String>,
    migrate: Vec<String>,
    changed: Vec<(String, ManagerChange)>,
}

fn hooks() -> (Arc<Mutex<Heard>>, PoolHooks) {
    let heard = Arc::new(Mutex::new(Heard::default()));
    let (a, b, c) = (heard.clone(), heard.clone(), heard.clone());
    let hooks = PoolHooks {
        lost: Box::new(move |n| a.lock().unwrap().lost.push(n.into())),
        migrate: Box::new(move |n| b.lock().unwrap().migrate.push(n.into())),
        changed: Box::new(move |m, c2| c.lock().unwrap().changed.push((m.name.clone(), c2))),
    };
    (heard, hooks)
}

fn names(p: &MediaPool) -> Vec<String> {
    p.members().iter().map(|m| m.name.clone()).collect()
}

#[tokio::test]
async fn the_pool_follows_the_endpoints() {
    let p = pool();
    assert!(p.anchors(), "a discovered pool anchors media even empty");
    let (heard, hooks) = hooks();
    let one = |labels: Value, eps: Vec<Value>| slice("s", "IPv4", grpc(9090), labels, eps);

    let s = one(
        json!({}),
        vec![
            ep("rtpmanager-1", "10.0.0.2", false, false),
            ep("rtpmanager-0", "10.0.0.1", true, false),
        ],
    );
    p.apply_discovered(&desired([&s], ORDINAL), &hooks);
    assert_eq!(names(&p), ["rtpmanager-0", "rtpmanager-1"]);
    let c: Vec<String> = p.candidates().iter().map(|m| m.name.clone()).collect();
    assert_eq!(c, ["rtpmanager-0"], "not ready: no new calls");
    let m1 = p.get("rtpmanager-1").unwrap();
    assert!(m1.is_discovered());
    assert_eq!(m1.addr, "10.0.0.2:9091");
    assert_eq!(m1.endpoint_state(), NotReady);

    // the health checks tell first; then discovery's changes are told at once
    for m in p.members().iter() {
        p.tell(m, &hooks, true);
    }
    heard.lock().unwrap().changed.clear();
    let s = one(
        json!({}),
        vec![
            ep("rtpmanager-1", "10.0.0.2", true, false),
            ep("rtpmanager-0", "10.0.0.1", false, true),
        ],
    );
    p.apply_discovered(&desired([&s], ORDINAL), &hooks);
    assert!(
        Arc::ptr_eq(&m1, &p.get("rtpmanager-1").unwrap()),
        "same member"
    );
    let c: Vec<String> = p.candidates().iter().map(|m| m.name.clone()).collect();
    assert_eq!(c, ["rtpmanager-1"]);
    {
        let h = heard.lock().unwrap();
        assert!(h.migrate.is_empty(), "calls stay without the label");
        assert!(h.lost.is_empty());
        let mut changed = h.changed.clone();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            changed,
            [
                ("rtpmanager-0".into(), ManagerChange::Draining),
                ("rtpmanager-1".into(), ManagerChange::Up),
            ]
        );
    }

    // the label: calls move, once
    let s = one(
        json!({MOVE_LABEL: MOVE_VALUE}),
        vec![
            ep("rtpmanager-1", "10.0.0.2", true, false),
            ep("rtpmanager-0", "10.0.0.1", false, true),
        ],
    );
    for _ in 0..2 {
        p.apply_discovered(&desired([&s], ORDINAL), &hooks);
    }
    assert_eq!(heard.lock().unwrap().migrate, ["rtpmanager-0"]);

    // gone from the slice: lost (its calls move or end), and down
    let s = one(json!({}), vec![ep("rtpmanager-1", "10.0.0.2", true, false)]);
    p.apply_discovered(&desired([&s], ORDINAL), &hooks);
    assert_eq!(names(&p), ["rtpmanager-1"]);
    {
        let h = heard.lock().unwrap();
        assert_eq!(h.lost, ["rtpmanager-0"]);
        assert_eq!(
            h.changed.last(),
            Some(&("rtpmanager-0".into(), ManagerChange::Down))
        );
    }

    // a new address: the old member is lost, a new one takes its name
    let s = one(json!({}), vec![ep("rtpmanager-1", "10.0.0.7", true, false)]);
    p.apply_discovered(&desired([&s], ORDINAL), &hooks);
    let now = p.get("rtpmanager-1").unwrap();
    assert!(!Arc::ptr_eq(&m1, &now));
    assert_eq!(now.addr, "10.0.0.7:9091");
    assert_eq!(heard.lock().unwrap().lost, ["rtpmanager-0", "rtpmanager-1"]);

    // everything gone
    p.apply_discovered(&desired([], ORDINAL), &hooks);
    assert!(p.members().is_empty());
    assert!(p.candidates().is_empty());
    assert!(p.anchors());
}

#[tokio::test]
async fn a_full_pool_counts_what_it_leaves_out() {
    let p = pool();
    let (_heard, hooks) = hooks();
    let eps: Vec<Value> = (0..(MAX_MEMBERS + 5))
        .map(|i| ep(&format!("rtpmanager-{i}"), "10.0.0.1", true, false))
        .collect();
    let s = slice(
        "s",
        "IPv4",
        json!([{"name": "grpc", "port": 1000}]),
        json!({}),
        eps,
    );
    let d = desired([&s], ORDINAL);
    p.apply_discovered(&d, &hooks);
    assert_eq!(p.members().len(), MAX_MEMBERS);
    assert_eq!(
        p.discovery_stats().skipped[Skip::OverCap as usize].load(Ordering::Relaxed),
        5
    );
    assert!(p.get("rtpmanager-0").is_some());
    assert!(p.get(&format!("rtpmanager-{}", MAX_MEMBERS + 4)).is_none());
    let mut metrics = String::new();
    p.render_metrics(&mut metrics);
    for line in [
        &format!("switchboard_rtpmanager_members{{state=\"ready\"}} {MAX_MEMBERS}"),
        "switchboard_rtpmanager_members{state=\"terminating\"} 0",
        "switchboard_rtpmanager_discovery_endpoints_skipped{reason=\"over_cap\"} 5",
        "switchboard_rtpmanager_discovery_watch_restarts_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}
