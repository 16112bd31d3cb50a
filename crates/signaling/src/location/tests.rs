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
