use super::*;

fn target(port: u16) -> Target {
    Target {
        transport: TransportKind::Udp,
        local: SocketAddr::from(([127, 0, 0, 1], 5060)),
        remote: SocketAddr::from(([127, 0, 0, 1], port)),
        conn: None,
    }
}

fn set(contacts: &[(&str, u32)], call_id: &str, cseq: u32) -> Update {
    Update {
        aor: "sip:alice@example.com".into(),
        user_id: 1,
        account_id: 1,
        call_id: call_id.into(),
        cseq,
        received: target(5062),
        user_agent: Some(Arc::from("test")),
        path: None,
        change: Change::Set(
            contacts
                .iter()
                .map(|(c, e)| NewBinding {
                    contact: (*c).into(),
                    expires: *e,
                    q: None,
                    instance: None,
                    reg_id: None,
                })
                .collect(),
        ),
    }
}

#[test]
fn register_refresh_and_remove() {
    let (tx, mut rx) = mpsc::channel(PERSIST_QUEUE);
    let loc = Location::new(10, Some(tx));
    let b = loc
        .update(&set(&[("sip:a@1.2.3.4", 60)], "c1", 1), 0)
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].expires_in(0), 60);
    // A second contact from another device (other Call-ID).
    let b = loc
        .update(&set(&[("sip:a@5.6.7.8", 120)], "c2", 1), 1000)
        .unwrap();
    assert_eq!(b.len(), 2);
    // Refresh of the first with a higher CSeq.
    let b = loc
        .update(&set(&[("sip:a@1.2.3.4", 300)], "c1", 2), 2000)
        .unwrap();
    assert_eq!(b.len(), 2);
    let first = b.iter().find(|x| &*x.contact == "sip:a@1.2.3.4").unwrap();
    assert_eq!(first.expires_in(2000), 300);
    // Remove it with expires=0.
    let b = loc
        .update(&set(&[("sip:a@1.2.3.4", 0)], "c1", 3), 3000)
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(&*b[0].contact, "sip:a@5.6.7.8");
    assert_eq!(loc.counts(), (1, 1));
    let ops: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(
        matches!(ops.last(), Some(PersistOp::Delete { contact, .. }) if contact == "sip:a@1.2.3.4")
    );
}

#[test]
fn frequent_refreshes_are_written_only_when_the_store_falls_behind() {
    let (tx, mut rx) = mpsc::channel(PERSIST_QUEUE);
    let loc = Location::new(10, Some(tx));
    let mut written = |loc: &Location, call: &str, cseq: u32, now: i64| {
        loc.update(&set(&[("sip:a@1.2.3.4", 600)], call, cseq), now)
            .unwrap();
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|op| match op {
                PersistOp::Upsert(r) => Some(r.expires_at),
                PersistOp::Delete { .. } => None,
            })
            .collect::<Vec<_>>()
    };
    // new binding: written, stored until 600 s
    assert_eq!(written(&loc, "c1", 1, 0), vec![600_000]);
    // refreshed 60 s later, even with a new Call-ID: the store still
    // holds 540 s, more than half the interval: not written
    assert_eq!(written(&loc, "c2", 1, 60_000), Vec::<i64>::new());
    let b = loc.view("sip:alice@example.com", 60_000);
    assert_eq!(b.map(|v| v.contacts[0].expires_in), Some(600));
    // at 301 s the stored expiry is less than half an interval away
    assert_eq!(written(&loc, "c2", 2, 301_000), vec![901_000]);
    // a changed contact is always written
    loc.update(&set(&[("sip:a@9.9.9.9", 600)], "c3", 1), 302_000)
        .unwrap();
    assert!(
        std::iter::from_fn(|| rx.try_recv().ok())
            .any(|op| matches!(op, PersistOp::Upsert(r) if r.contact == "sip:a@9.9.9.9"))
    );
}

#[test]
fn same_call_id_needs_higher_cseq() {
    let loc = Location::new(10, None);
    loc.update(&set(&[("sip:a@1.2.3.4", 60)], "c1", 5), 0)
        .unwrap();
    assert_eq!(
        loc.update(&set(&[("sip:a@1.2.3.4", 60)], "c1", 5), 1),
        Err(UpdateError::OutOfOrder)
    );
    assert_eq!(
        loc.update(&set(&[("sip:a@1.2.3.4", 60)], "c1", 4), 1),
        Err(UpdateError::OutOfOrder)
    );
    // A new Call-ID (phone rebooted) may start from any CSeq.
    assert!(
        loc.update(&set(&[("sip:a@1.2.3.4", 60)], "c9", 1), 1)
            .is_ok()
    );
}

#[test]
fn star_removes_all_and_expiry_sweeps() {
    let loc = Location::new(10, None);
    loc.update(&set(&[("sip:a@1", 60), ("sip:a@2", 30)], "c1", 1), 0)
        .unwrap();
    assert_eq!(loc.counts(), (1, 2));
    let gone = loc.expire(30_000);
    assert_eq!(
        gone,
        vec![("sip:alice@example.com".into(), "sip:a@2".into())]
    );
    let mut u = set(&[], "c1", 2);
    u.change = Change::RemoveAll;
    assert_eq!(loc.update(&u, 31_000).unwrap(), vec![]);
    assert_eq!(loc.counts(), (0, 0));
}

#[test]
fn max_contacts_replaces_oldest() {
    let loc = Location::new(2, None);
    loc.update(&set(&[("sip:a@1", 60)], "c1", 1), 0).unwrap();
    loc.update(&set(&[("sip:a@2", 60)], "c2", 1), 10).unwrap();
    let b = loc.update(&set(&[("sip:a@3", 60)], "c3", 1), 20).unwrap();
    let mut c: Vec<_> = b.iter().map(|b| b.contact.to_string()).collect();
    c.sort();
    assert_eq!(c, vec!["sip:a@2", "sip:a@3"]);
}

#[test]
fn received_round_trips() {
    let t = target(5099);
    assert_eq!(format_received(&t), "udp:127.0.0.1:5099");
    let back = parse_received("udp:127.0.0.1:5099").unwrap();
    assert_eq!(back.remote, t.remote);
    let v6 = parse_received("tcp:[::1]:5070").unwrap();
    assert_eq!(v6.transport, TransportKind::Tcp);
    assert!(v6.remote.is_ipv6());
    assert!(parse_received("sctp:1.2.3.4:1").is_none());
}

/// A WebSocket flow on connection `conn` from `port`.
fn ws(conn: u64, port: u16) -> Target {
    Target {
        transport: TransportKind::Ws,
        conn: Some(conn),
        ..target(port)
    }
}

fn on(aor: &str, contact: &str, call_id: &str, flow: Target) -> Update {
    Update {
        aor: aor.into(),
        received: flow,
        ..set(&[(contact, 300)], call_id, 1)
    }
}

#[test]
fn a_closed_connection_takes_its_bindings_and_only_those() {
    let (tx, mut rx) = mpsc::channel(PERSIST_QUEUE);
    let loc = Location::new(10, Some(tx));
    let (alice, bob) = ("sip:alice@example.com", "sip:bob@example.com");
    // alice's browser and bob's on connection 7 (one phone for two users),
    // alice's desk phone on UDP, carol's browser on connection 8
    loc.update(
        &on(alice, "sip:a@x.invalid;transport=ws", "c1", ws(7, 4000)),
        0,
    )
    .unwrap();
    loc.update(
        &on(bob, "sip:b@x.invalid;transport=ws", "c2", ws(7, 4000)),
        0,
    )
    .unwrap();
    loc.update(&on(alice, "sip:a@192.0.2.1", "c3", target(5062)), 0)
        .unwrap();
    loc.update(
        &on(
            "sip:carol@example.com",
            "sip:c@y.invalid",
            "c4",
            ws(8, 4001),
        ),
        0,
    )
    .unwrap();
    assert_eq!(loc.flows_indexed(), 2);
    while rx.try_recv().is_ok() {}

    let mut removed = loc.remove_flow(&ws(7, 4000), 1000);
    removed.sort_by(|a, b| a.aor.cmp(&b.aor));
    let names: Vec<(&str, Vec<&str>)> = removed
        .iter()
        .map(|r| {
            (
                r.aor.as_str(),
                r.bindings.iter().map(|b| &*b.contact).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (alice, vec!["sip:a@x.invalid;transport=ws"]),
            (bob, vec!["sip:b@x.invalid;transport=ws"]),
        ]
    );
    assert_eq!(loc.lookup(alice, 1000).len(), 1, "the UDP phone stays");
    assert!(loc.lookup(bob, 1000).is_empty());
    assert_eq!(loc.counts(), (2, 2));
    assert_eq!(loc.flows_indexed(), 1, "connection 8 only");
    assert_eq!(loc.stats.flow_closed.get(TransportKind::Ws), 2);
    let deletes = std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|op| matches!(op, PersistOp::Delete { .. }))
        .count();
    assert_eq!(deletes, 2, "the store forgets them too");
    // reported twice, removed once; a flow without a connection names none
    assert!(loc.remove_flow(&ws(7, 4000), 1000).is_empty());
    assert!(loc.remove_flow(&target(5062), 1000).is_empty());
}

#[test]
fn a_binding_refreshed_over_a_new_connection_stays_when_the_old_one_closes() {
    let loc = Location::new(10, None);
    let aor = "sip:alice@example.com";
    let contact = "sip:a@x.invalid;transport=ws";
    loc.update(&on(aor, contact, "c1", ws(7, 4000)), 0).unwrap();
    // the browser reconnected and registered again before the old socket
    // was seen to close
    loc.update(&on(aor, contact, "c2", ws(9, 4002)), 500)
        .unwrap();
    assert_eq!(loc.flows_indexed(), 1);
    assert!(loc.remove_flow(&ws(7, 4000), 1000).is_empty());
    assert_eq!(loc.lookup(aor, 1000).len(), 1);
    // the same connection id on another transport is not this flow
    let tcp = Target {
        transport: TransportKind::Tcp,
        ..ws(9, 4002)
    };
    assert!(loc.remove_flow(&tcp, 1000).is_empty());
    assert_eq!(loc.remove_flow(&ws(9, 4002), 1000).len(), 1);
    assert_eq!(loc.counts(), (0, 0));
    assert_eq!(loc.flows_indexed(), 0);
}

#[test]
fn the_flow_index_forgets_what_expires_is_unregistered_or_deleted() {
    let loc = Location::new(10, None);
    let aor = "sip:alice@example.com";
    // expiry: the sweep reports it, not the close
    loc.update(&on(aor, "sip:a@x.invalid", "c1", ws(1, 4000)), 0)
        .unwrap();
    assert!(loc.remove_flow(&ws(1, 4000), 301_000).is_empty());
    assert_eq!(loc.expire(301_000).len(), 1);
    assert_eq!(loc.flows_indexed(), 0);
    // unregistration by the phone
    loc.update(&on(aor, "sip:a@x.invalid", "c2", ws(2, 4000)), 0)
        .unwrap();
    let mut bye = on(aor, "sip:a@x.invalid", "c2", ws(2, 4000));
    bye.cseq = 2;
    bye.change = Change::Set(vec![NewBinding {
        contact: "sip:a@x.invalid".into(),
        expires: 0,
        q: None,
        instance: None,
        reg_id: None,
    }]);
    loc.update(&bye, 10).unwrap();
    assert_eq!(loc.flows_indexed(), 0);
    // deleted through the API
    loc.update(&on(aor, "sip:a@x.invalid", "c3", ws(3, 4000)), 0)
        .unwrap();
    assert!(loc.remove_aor(aor));
    assert_eq!(loc.flows_indexed(), 0);
    // a refused (out of order) REGISTER changes nothing
    loc.update(&on(aor, "sip:a@x.invalid", "c4", ws(4, 4000)), 0)
        .unwrap();
    assert!(
        loc.update(&on(aor, "sip:a@x.invalid", "c4", ws(5, 4001)), 10)
            .is_err()
    );
    assert_eq!(loc.flows_indexed(), 1);
    assert_eq!(loc.remove_flow(&ws(4, 4000), 20).len(), 1);
}

#[test]
fn restore_leaves_out_bindings_whose_connection_ended_with_the_process() {
    let stored = |contact: &str, received: &str| Registration {
        aor: "sip:alice@example.com".into(),
        contact: contact.into(),
        account_id: 1,
        user_id: Some(1),
        received: received.into(),
        path: None,
        instance_id: None,
        reg_id: None,
        user_agent: None,
        call_id: "c1".into(),
        cseq: 1,
        q: None,
        expires_at: 60_000,
        updated_at: 0,
    };
    let regs = || {
        vec![
            stored("sip:a@127.0.0.1:5062", "udp:127.0.0.1:5062"),
            stored("sip:b@127.0.0.1:5063;transport=tcp", "tcp:127.0.0.1:40000"),
            stored(
                "sip:c@df7jal23ls0d.invalid;transport=ws",
                "ws:127.0.0.1:40001",
            ),
            stored(
                "sip:d@df7jal23ls0e.invalid;transport=ws",
                "wss:127.0.0.1:40002",
            ),
        ]
    };
    let contacts = |loc: &Location| -> Vec<String> {
        loc.view("sip:alice@example.com", 0)
            .map(|v| v.contacts.into_iter().map(|c| c.contact).collect())
            .unwrap_or_default()
    };
    // the default (`ws`): the browsers' bindings are gone with their sockets
    let loc = Location::new(10, None);
    let (n, dropped) = loc.restore(regs(), 0, &[TransportKind::Ws, TransportKind::Wss]);
    assert_eq!(n, 2);
    assert_eq!(
        dropped,
        vec![
            (
                "sip:alice@example.com".to_owned(),
                "sip:c@df7jal23ls0d.invalid;transport=ws".to_owned()
            ),
            (
                "sip:alice@example.com".to_owned(),
                "sip:d@df7jal23ls0e.invalid;transport=ws".to_owned()
            ),
        ]
    );
    assert_eq!(
        contacts(&loc),
        ["sip:a@127.0.0.1:5062", "sip:b@127.0.0.1:5063;transport=tcp"]
    );
    // `none`: everything comes back
    let loc = Location::new(10, None);
    let (n, dropped) = loc.restore(regs(), 0, &[]);
    assert_eq!((n, dropped.len()), (4, 0));
    // expired ones are neither restored nor reported
    let loc = Location::new(10, None);
    let (n, dropped) = loc.restore(regs(), 60_000, &[TransportKind::Ws]);
    assert_eq!((n, dropped.len()), (0, 0));
}
