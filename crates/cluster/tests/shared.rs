//! Every shared-state operation with two handles as two replicas, against
//! the shared Redis on 127.0.0.1:6379 under a random key prefix per test.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Prefix, SHARED_REDIS, binding, handle, handle_with, now_ms, raw};
use switchboard_cluster::{
    CallState, Command, Error, LegInfo, LegSide, LiveCall, Options, ReplicaId, ReplicaInfo, Shared,
    SharedBinding,
};

#[tokio::test]
async fn bindings_put_by_one_replica_are_seen_by_another() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let now = now_ms();
    let aor = "sip:100001@example.com";
    let mut desk = binding(1, "a", now + 3_600_000);
    let mut mobile = binding(1, "a", now + 60_000);
    mobile.reg.contact = "sip:100001@198.51.100.7:5062;transport=tcp".into();
    mobile.reg.q = Some(0.5);
    mobile.reg.instance_id = Some("<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>".into());
    mobile.reg.reg_id = Some(1);
    a.put_bindings(aor, &[desk.clone(), mobile.clone()])
        .await
        .unwrap();

    let mut seen = b.lookup(aor, now).await.unwrap();
    seen.sort_by(|x, y| x.reg.contact.cmp(&y.reg.contact));
    let mut want = vec![mobile.clone(), desk.clone()];
    want.sort_by(|x, y| x.reg.contact.cmp(&y.reg.contact));
    assert_eq!(seen, want);
    assert_eq!(b.count().await.unwrap(), (1, 2));

    // Upsert by contact: B refreshes the desk phone, which now sits behind B.
    desk.replica = "b".into();
    desk.reg.cseq = 3;
    desk.reg.expires_at = now + 7_200_000;
    b.put_bindings(aor, std::slice::from_ref(&desk))
        .await
        .unwrap();
    let seen = a.lookup(aor, now).await.unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.contains(&desk) && seen.contains(&mobile));
    assert_eq!(a.count().await.unwrap(), (1, 2));

    // Expired bindings are filtered out of a lookup even before anyone claims them.
    assert_eq!(
        a.lookup(aor, now + 120_000).await.unwrap(),
        vec![desk.clone()]
    );

    // Removing: by contact, unknown contacts count nothing, then the whole AOR.
    assert_eq!(
        b.remove_bindings(aor, &[&mobile.reg.contact, "sip:nobody@192.0.2.1"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(a.lookup(aor, now).await.unwrap(), vec![desk.clone()]);
    a.put_bindings("sip:100002@example.com", &[binding(2, "a", now + 60_000)])
        .await
        .unwrap();
    assert_eq!(a.count().await.unwrap(), (2, 2));
    assert_eq!(b.remove_aor(aor).await.unwrap(), 1);
    assert_eq!(b.remove_aor(aor).await.unwrap(), 0);
    assert!(a.lookup(aor, now).await.unwrap().is_empty());
    assert_eq!(a.count().await.unwrap(), (1, 1));
}

#[tokio::test]
async fn bindings_of_a_closed_flow_go_unless_registered_again_elsewhere() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let now = now_ms();
    let aor = "sip:100001@example.com";
    let flow = "ws:203.0.113.5:40000";
    let mk = |host: &str, replica: &str, received: &str| {
        let mut x = binding(1, replica, now + 60_000);
        x.reg.contact = format!("sip:100001@{host}.invalid;transport=ws");
        x.reg.received = received.into();
        x
    };
    let gone = mk("a1", "a", flow);
    // registered again through B, and over another connection to A
    let moved = mk("b1", "b", flow);
    let renewed = mk("a2", "a", "ws:203.0.113.5:40002");
    a.put_bindings(aor, &[gone.clone(), renewed.clone()])
        .await
        .unwrap();
    b.put_bindings(aor, std::slice::from_ref(&moved))
        .await
        .unwrap();
    a.put_bindings("sip:100002@example.com", &[binding(2, "a", now + 60_000)])
        .await
        .unwrap();
    let contacts = [
        gone.reg.contact.as_str(),
        moved.reg.contact.as_str(),
        renewed.reg.contact.as_str(),
        "sip:nobody@192.0.2.1",
    ];
    let removed = a
        .remove_flow_bindings(aor, "a", flow, &contacts)
        .await
        .unwrap();
    assert_eq!(removed, vec![gone.reg.contact.clone()]);
    let mut left = b.lookup(aor, now).await.unwrap();
    left.sort_by(|x, y| x.reg.contact.cmp(&y.reg.contact));
    assert_eq!(left, vec![renewed.clone(), moved.clone()]);
    assert_eq!(a.count().await.unwrap(), (2, 3));
    // again: nothing left to remove
    assert!(
        a.remove_flow_bindings(aor, "a", flow, &contacts)
            .await
            .unwrap()
            .is_empty()
    );
    // the last contact of an AOR leaves the index with it
    let removed = b
        .remove_flow_bindings(aor, "b", flow, &[moved.reg.contact.as_str()])
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    a.remove_flow_bindings(aor, "a", "ws:203.0.113.5:40002", &[&renewed.reg.contact])
        .await
        .unwrap();
    assert_eq!(a.count().await.unwrap(), (1, 1));
    assert!(a.lookup(aor, now).await.unwrap().is_empty());
}

#[tokio::test]
async fn list_walks_the_index_and_skips_expired() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let now = now_ms();
    for n in 0..30 {
        let exp = if n % 3 == 0 {
            now - 1
        } else {
            now + 60_000 + i64::from(n)
        };
        a.put_bindings(
            &format!("sip:{}@example.com", 100_000 + n),
            &[binding(n, "a", exp)],
        )
        .await
        .unwrap();
    }
    let all = a.list(now, 1000).await.unwrap();
    assert_eq!(all.len(), 20);
    assert!(all.iter().all(|b| b.reg.expires_at > now));
    assert_eq!(a.list(now, 5).await.unwrap().len(), 5);
    assert!(a.list(now, 0).await.unwrap().is_empty());
}

/// Replica "a" allowing at most `max` contacts per AOR.
async fn capped(p: &Prefix, max: u32) -> Shared {
    let mut opts = Options::new(SHARED_REDIS, &p.prefix, ReplicaId::new("a").unwrap());
    opts.max_contacts_per_aor = max;
    handle_with(opts).await
}

/// Contact `sip:100001@192.0.2.{i}:5060` of `sip:100001@example.com`,
/// through replica "a", for a minute from `now`.
fn contact(i: u32, now: i64) -> SharedBinding {
    let mut b = binding(1, "a", now + 60_000);
    b.reg.contact = format!("sip:100001@192.0.2.{i}:5060");
    b
}

#[tokio::test]
async fn contacts_per_aor_have_a_hard_ceiling() {
    let p = Prefix::new(SHARED_REDIS);
    let a = capped(&p, 3).await;
    let aor = "sip:100001@example.com";
    let now = now_ms();
    let mk = |i: u32| contact(i, now);
    a.put_bindings(aor, &[mk(1), mk(2), mk(3)]).await.unwrap();
    // Refreshing existing contacts is fine at the ceiling; a fourth is not.
    a.put_bindings(aor, &[mk(3), mk(3)]).await.unwrap();
    let err = a.put_bindings(aor, &[mk(4)]).await.unwrap_err();
    assert!(
        matches!(err, Error::TooManyContacts { max: 3, .. }),
        "{err}"
    );
    assert_eq!(a.lookup(aor, now).await.unwrap().len(), 3);
    assert_eq!(a.count().await.unwrap(), (1, 3));
}

/// A REGISTER's change behind the nonce-count guard, in one call: a fresh
/// count writes it, a replayed one (on any replica) writes nothing.
#[tokio::test]
async fn a_guarded_change_is_written_only_for_a_fresh_nonce_count() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let now = now_ms();
    let aor = "sip:100001@example.com";
    let desk = binding(1, "a", now + 3_600_000);
    let mut mobile = binding(1, "b", now + 60_000);
    mobile.reg.contact = "sip:100001@198.51.100.7:5062;transport=tcp".into();

    assert!(
        a.guarded_change("n1", 1, 300, aor, &[], std::slice::from_ref(&desk))
            .await
            .unwrap()
    );
    assert_eq!(b.lookup(aor, now).await.unwrap(), vec![desk.clone()]);
    // the same Authorization replayed to b: refused, nothing written
    let replay = b.guarded_change("n1", 1, 300, aor, &[], std::slice::from_ref(&mobile));
    assert!(!replay.await.unwrap(), "replayed nc accepted");
    assert_eq!(a.lookup(aor, now).await.unwrap(), vec![desk.clone()]);
    assert_eq!(a.count().await.unwrap(), (1, 1));
    // the separate guard and the guarded change share the record
    assert!(!a.nonce_count_advance("n1", 1, 300).await.unwrap());
    assert!(b.nonce_count_advance("n2", 4, 300).await.unwrap());
    let stale = b.guarded_change("n2", 3, 300, aor, &[], std::slice::from_ref(&mobile));
    assert!(!stale.await.unwrap());
    // a higher count: the desk phone's contact removed, the mobile's added
    let gone = [desk.reg.contact.as_str()];
    let moved = b.guarded_change("n2", 5, 300, aor, &gone, std::slice::from_ref(&mobile));
    assert!(moved.await.unwrap());
    assert_eq!(a.lookup(aor, now).await.unwrap(), vec![mobile.clone()]);
    assert_eq!(a.count().await.unwrap(), (1, 1));
    // the record expires with the nonce, as the separate guard's does
    let mut c = raw(SHARED_REDIS).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}nc:n1", p.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((290..=300).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn a_guarded_change_keeps_the_contact_ceiling() {
    let p = Prefix::new(SHARED_REDIS);
    let a = capped(&p, 2).await;
    let aor = "sip:100001@example.com";
    let now = now_ms();
    let mk = |i: u32| contact(i, now);
    assert!(
        a.guarded_change("c1", 1, 300, aor, &[], &[mk(1), mk(2)])
            .await
            .unwrap()
    );
    let err = a
        .guarded_change("c2", 1, 300, aor, &[], &[mk(3)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyContacts { max: 2, .. }),
        "{err}"
    );
    assert_eq!(a.lookup(aor, now).await.unwrap().len(), 2);
    // making room in the same change is fine
    let c1 = mk(1).reg.contact;
    assert!(
        a.guarded_change("c3", 1, 300, aor, &[&c1], &[mk(3)])
            .await
            .unwrap()
    );
    let mut left: Vec<String> = a
        .lookup(aor, now)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.reg.contact)
        .collect();
    left.sort();
    assert_eq!(left, vec![mk(2).reg.contact, mk(3).reg.contact]);
    assert_eq!(a.count().await.unwrap(), (1, 2));
}

#[tokio::test]
async fn concurrent_sweepers_claim_each_expired_binding_once() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let now = now_ms();
    let mut expired = HashSet::new();
    for n in 0..150u32 {
        let aor = format!("sip:{}@example.com", 100_000 + n);
        // Two contacts per AOR: both expired, one expired, or none.
        let mut first = binding(
            n,
            "a",
            if n % 3 != 2 {
                now - 1_000
            } else {
                now + 60_000
            },
        );
        let mut second = binding(n, "b", if n % 3 == 0 { now - 5 } else { now + 90_000 });
        second.reg.contact.push_str(";second");
        for x in [&mut first, &mut second] {
            if x.reg.expires_at <= now {
                expired.insert((aor.clone(), x.reg.contact.clone()));
            }
        }
        a.put_bindings(&aor, &[first, second]).await.unwrap();
    }
    assert_eq!(expired.len(), 150);

    let sweep = |s: switchboard_cluster::Shared| async move {
        let mut got = Vec::new();
        loop {
            let batch = s.claim_expired(now, 7).await.unwrap();
            assert!(batch.len() <= 7);
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    };
    let (ga, gb) = tokio::join!(
        tokio::spawn(sweep(a.clone())),
        tokio::spawn(sweep(b.clone()))
    );
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    let claimed: Vec<(String, String)> = ga
        .iter()
        .chain(gb.iter())
        .map(|b| (b.reg.aor.clone(), b.reg.contact.clone()))
        .collect();
    let unique: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), unique.len(), "a binding was claimed twice");
    assert_eq!(unique, expired);
    assert!(ga.iter().chain(gb.iter()).all(|b| b.reg.expires_at <= now));

    // What is left: 50 AORs with both contacts live, 50 with one; the index
    // no longer holds the 50 AORs that were wholly expired.
    assert_eq!(a.count().await.unwrap(), (100, 150));
    assert!(a.claim_expired(now, 100).await.unwrap().is_empty());
    assert_eq!(a.list(now, 1000).await.unwrap().len(), 150);
    // Later, the rest expires and is claimed as it comes due.
    assert_eq!(b.claim_expired(now + 60_000, 1000).await.unwrap().len(), 50);
    assert_eq!(
        b.claim_expired(now + 90_000, 1000).await.unwrap().len(),
        100
    );
    assert_eq!(a.count().await.unwrap(), (0, 0));
}

/// A refresh moves a binding's expiry later without re-scoring its AOR in
/// the index: the sweep finds the AOR due at the old expiry, claims
/// nothing and scores it exactly. An earlier expiry lowers the score at
/// once, so nothing is claimed late.
#[tokio::test]
async fn a_refreshed_binding_outlives_its_old_expiry_and_an_earlier_one_is_claimed_on_time() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let now = now_ms();
    let aor = "sip:100001@example.com";
    let score = || async {
        let mut c = raw(SHARED_REDIS).await;
        let s: Option<i64> = redis::cmd("ZSCORE")
            .arg(format!("{}locidx", p.prefix))
            .arg(aor)
            .query_async(&mut c)
            .await
            .unwrap();
        s
    };
    a.put_bindings(aor, &[binding(1, "a", now + 1_000)])
        .await
        .unwrap();
    let refreshed = binding(1, "b", now + 60_000);
    let fresh = b.guarded_change("r1", 1, 300, aor, &[], std::slice::from_ref(&refreshed));
    assert!(fresh.await.unwrap());
    assert_eq!(score().await, Some(now + 1_000), "a refresh re-scored");
    // the old expiry passes: nothing is claimed, the AOR is scored exactly
    assert!(a.claim_expired(now + 2_000, 10).await.unwrap().is_empty());
    assert_eq!(score().await, Some(now + 60_000));
    assert_eq!(b.lookup(aor, now + 2_000).await.unwrap(), vec![refreshed]);
    // a second contact expiring earlier lowers the score and is claimed on time
    let mut early = binding(1, "a", now + 30_000);
    early.reg.contact.push_str(";early");
    a.put_bindings(aor, std::slice::from_ref(&early))
        .await
        .unwrap();
    assert_eq!(score().await, Some(now + 30_000));
    assert_eq!(a.count().await.unwrap(), (1, 2));
    assert_eq!(
        b.claim_expired(now + 30_000, 10).await.unwrap(),
        vec![early]
    );
    assert_eq!(score().await, Some(now + 60_000));
    // removing the last contact drops the AOR from the index at once
    let gone = [binding(1, "a", 0).reg.contact];
    assert_eq!(
        a.remove_bindings(aor, &[gone[0].as_str()]).await.unwrap(),
        1
    );
    assert_eq!(score().await, None);
    assert_eq!(a.count().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn nonce_count_only_advances() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let nonce = "MTcxMjM0NTY3ODkwMS4xMjM0NTY3ODkw";
    assert!(a.nonce_count_advance(nonce, 1, 300).await.unwrap());
    assert!(
        !b.nonce_count_advance(nonce, 1, 300).await.unwrap(),
        "replayed nc accepted"
    );
    assert!(b.nonce_count_advance(nonce, 3, 300).await.unwrap());
    assert!(!a.nonce_count_advance(nonce, 2, 300).await.unwrap());
    assert!(!a.nonce_count_advance(nonce, 3, 300).await.unwrap());
    assert!(a.nonce_count_advance(nonce, 4, 300).await.unwrap());
    assert!(a.nonce_count_advance("another", 1, 300).await.unwrap());
    // nc=1 is a SET NX, higher counts a script: each sees the other's record
    assert!(b.nonce_count_advance("counted", 2, 300).await.unwrap());
    assert!(!a.nonce_count_advance("counted", 1, 300).await.unwrap());
    assert!(!a.nonce_count_advance("counted", 0, 300).await.unwrap());
    assert!(a.nonce_count_advance("counted", 3, 300).await.unwrap());

    // The record expires with the nonce: TTL set on first sight, kept after.
    let mut c = raw(SHARED_REDIS).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}nc:{nonce}", p.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((290..=300).contains(&ttl), "ttl {ttl}");
    assert!(a.nonce_count_advance("short", 1, 1).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        a.nonce_count_advance("short", 1, 1).await.unwrap(),
        "record outlived its nonce"
    );
}

#[tokio::test]
async fn auth_failures_count_across_replicas_in_a_window() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let src = "udp:198.51.100.66";
    assert_eq!(a.record_auth_failure(src, 60).await.unwrap(), 1);
    assert_eq!(b.record_auth_failure(src, 60).await.unwrap(), 2);
    assert_eq!(a.record_auth_failure(src, 60).await.unwrap(), 3);
    assert_eq!(b.record_auth_failure("udp:192.0.2.1", 60).await.unwrap(), 1);
    // A new window starts after the old one ends.
    assert_eq!(a.record_auth_failure("short", 1).await.unwrap(), 1);
    assert_eq!(b.record_auth_failure("short", 1).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(a.record_auth_failure("short", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn blocks_are_stored_and_broadcast() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let mut rx_b = b.subscribe();
    let mut rx_a = a.subscribe();
    wait_subscribed(&a).await;
    wait_subscribed(&b).await;

    let src = "udp:198.51.100.66";
    assert!(!b.is_blocked(src).await.unwrap());
    a.block(src, 30).await.unwrap();
    assert!(b.is_blocked(src).await.unwrap());
    let m = recv(&mut rx_b).await;
    assert_eq!(m.from, "a");
    assert_eq!(
        m.command,
        Command::BlockSource {
            key: src.into(),
            secs: 30
        }
    );

    a.unblock(src).await.unwrap();
    assert!(!b.is_blocked(src).await.unwrap());
    assert_eq!(
        recv(&mut rx_b).await.command,
        Command::UnblockSource { key: src.into() }
    );
    // The sender's own subscriber skips its broadcasts.
    assert!(rx_a.try_recv().is_err());

    a.block("short", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(!b.is_blocked("short").await.unwrap());
}

fn call(id: &str, owner: &str, account: i64) -> LiveCall {
    LiveCall {
        id: id.into(),
        owner: owner.into(),
        account_id: account,
        state: CallState::Ringing,
        caller: "sip:100001@example.com".into(),
        callee: "sip:100002@example.com".into(),
        legs: vec![
            LegInfo {
                sip_call_id: "a84b4c76e66710@pc33".into(),
                side: LegSide::A,
            },
            LegInfo {
                sip_call_id: "sb-7f3c0a1e".into(),
                side: LegSide::B,
            },
        ],
        started_ms: 1_712_345_678_901,
        answered_ms: None,
        view: Some(serde_json::json!({ "id": id, "state": "ringing" })),
    }
}

fn info(id: &str) -> ReplicaInfo {
    ReplicaInfo {
        id: id.into(),
        sip_addr: "192.0.2.1:5060".into(),
        api_addr: "192.0.2.1:8080".into(),
        started_ms: 1_712_345_000_000,
        registrations: 3,
        calls: 1,
    }
}

#[tokio::test]
async fn live_calls_are_shared_and_listed_for_live_replicas() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let ghost = handle(&p, "ghost").await;
    let now = now_ms();
    a.heartbeat(&info("a"), now).await.unwrap();
    b.heartbeat(&info("b"), now).await.unwrap();
    assert!(matches!(
        a.heartbeat(&info("b"), now).await,
        Err(Error::Invalid(_))
    ));

    let mut c1 = call("c1", "a", 1);
    a.put_call(&c1).await.unwrap();
    assert_eq!(b.get_call("c1").await.unwrap(), Some(c1.clone()));
    c1.state = CallState::Answered;
    c1.answered_ms = Some(1_712_345_680_000);
    a.put_call(&c1).await.unwrap();
    b.put_call(&call("c2", "b", 1)).await.unwrap();
    // A replica that never sent a heartbeat is not alive: its calls are hidden.
    ghost.put_call(&call("c3", "ghost", 1)).await.unwrap();

    let mut listed = b.list_calls().await.unwrap();
    listed.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(listed, vec![c1.clone(), call("c2", "b", 1)]);

    // Handing a call over moves it between owners' sets, listed once.
    let mut moved = c1.clone();
    moved.owner = "b".into();
    b.put_call(&moved).await.unwrap();
    let listed = a.list_calls().await.unwrap();
    assert_eq!(listed.iter().filter(|c| c.id == "c1").count(), 1);
    assert_eq!(a.get_call("c1").await.unwrap().unwrap().owner, "b");

    assert!(b.remove_call("c1").await.unwrap());
    assert!(!a.remove_call("c1").await.unwrap());
    assert_eq!(a.get_call("c1").await.unwrap(), None);
    let ids: Vec<String> = a
        .list_calls()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec!["c2".to_string()]);
}

#[tokio::test]
async fn concurrent_call_slots_never_exceed_the_limit() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.acquire_call_slot(7, &format!("call-{i}"), 5)
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += u32::from(t.await.unwrap());
    }
    assert_eq!(granted, 5);
    assert_eq!(a.account_calls(7).await.unwrap(), 5);

    // Idempotent for a call that holds a slot; other accounts are separate.
    let mut c = raw(SHARED_REDIS).await;
    let holders: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}acct:7", p.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    let holder = holders[0].clone();
    let idx: u32 = holder.trim_start_matches("call-").parse().unwrap();
    let owner = if idx.is_multiple_of(2) { &a } else { &b };
    assert!(owner.acquire_call_slot(7, &holder, 5).await.unwrap());
    assert!(!owner.acquire_call_slot(7, "call-new", 5).await.unwrap());
    assert!(a.acquire_call_slot(8, "other", 5).await.unwrap());

    // Releasing frees a slot for someone else.
    assert!(owner.release_call_slot(7, &holder).await.unwrap());
    assert!(!owner.release_call_slot(7, &holder).await.unwrap());
    assert_eq!(b.account_calls(7).await.unwrap(), 4);
    assert!(b.acquire_call_slot(7, "call-new", 5).await.unwrap());
    // limit 0 means unlimited.
    for i in 0..10 {
        assert!(a.acquire_call_slot(9, &format!("u{i}"), 0).await.unwrap());
    }
    assert_eq!(a.account_calls(9).await.unwrap(), 10);
}

#[tokio::test]
async fn a_dead_replica_is_reaped_once_and_its_slots_freed() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let mut opts = Options::new(SHARED_REDIS, &p.prefix, ReplicaId::new("c").unwrap());
    opts.heartbeat_ttl = Duration::from_millis(300);
    let c = handle_with(opts).await;
    let now = now_ms();
    a.heartbeat(&info("a"), now).await.unwrap();
    b.heartbeat(&info("b"), now).await.unwrap();
    c.heartbeat(&info("c"), now).await.unwrap();
    assert!(a.is_alive("c").await.unwrap());

    // C holds two calls and three slots (one call never published), plus a binding.
    for id in ["c1", "c2", "c3"] {
        assert!(c.acquire_call_slot(1, id, 10).await.unwrap());
    }
    c.put_call(&call("c1", "c", 1)).await.unwrap();
    c.put_call(&call("c2", "c", 1)).await.unwrap();
    assert!(a.acquire_call_slot(1, "a1", 10).await.unwrap());
    a.put_call(&call("a1", "a", 1)).await.unwrap();
    let reg = binding(1, "c", now + 3_600_000);
    c.put_bindings(&reg.reg.aor, std::slice::from_ref(&reg))
        .await
        .unwrap();
    assert_eq!(a.account_calls(1).await.unwrap(), 4);

    // Alive, so nobody reaps it.
    assert!(a.reap_dead(now + 1_000, 0).await.unwrap().is_empty());
    drop(c);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!a.is_alive("c").await.unwrap());
    let status = b.replicas().await.unwrap();
    let c_status = status.iter().find(|r| r.info.id == "c").unwrap();
    assert!(!c_status.alive);
    assert_eq!(c_status.last_seen_ms, now);
    assert_eq!(c_status.info, info("c"));
    // Silent, but not for longer than dead_after: not yet.
    assert!(a.reap_dead(now + 1_000, 60_000).await.unwrap().is_empty());

    let later = now + 1_000;
    let (ra, rb) = tokio::join!(a.reap_dead(later, 500), b.reap_dead(later, 500));
    let mut reaped = ra.unwrap();
    reaped.extend(rb.unwrap());
    assert_eq!(reaped, vec!["c".to_string()], "reaped exactly once");

    assert_eq!(a.get_call("c1").await.unwrap(), None);
    assert_eq!(a.get_call("c2").await.unwrap(), None);
    assert_eq!(
        a.account_calls(1).await.unwrap(),
        1,
        "only A's slot is left"
    );
    assert!(a.get_call("a1").await.unwrap().is_some());
    assert_eq!(
        b.lookup(&reg.reg.aor, now).await.unwrap(),
        vec![reg],
        "bindings stay"
    );
    let ids: Vec<String> = b
        .replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.info.id)
        .collect();
    assert_eq!(ids, vec!["a".to_string(), "b".to_string()]);
    assert!(
        a.reap_dead(later + 60_000, 0).await.unwrap().is_empty(),
        "never reaps itself"
    );
}

#[tokio::test]
async fn a_replica_drops_calls_left_by_its_previous_run() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    assert!(a.acquire_call_slot(1, "old", 0).await.unwrap());
    a.put_call(&call("old", "a", 1)).await.unwrap();
    assert_eq!(a.drop_replica_calls("a").await.unwrap(), 1);
    assert_eq!(a.get_call("old").await.unwrap(), None);
    assert_eq!(a.account_calls(1).await.unwrap(), 0);
}

async fn wait_subscribed(s: &switchboard_cluster::Shared) {
    for _ in 0..100 {
        if s.stats().snapshot().subscriptions > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("subscription not established");
}

async fn recv(
    rx: &mut tokio::sync::mpsc::Receiver<switchboard_cluster::Message>,
) -> switchboard_cluster::Message {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no command within 5 s")
        .expect("subscription ended")
}

#[tokio::test]
async fn commands_reach_the_right_replica_and_garbage_is_skipped() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let b = handle(&p, "b").await;
    let mut rx_a = a.subscribe();
    let mut rx_b = b.subscribe();
    wait_subscribed(&a).await;
    wait_subscribed(&b).await;

    let hangup = Command::Hangup {
        call_id: "c1".into(),
    };
    assert_eq!(a.send("b", &hangup).await.unwrap(), 1);
    let m = recv(&mut rx_b).await;
    assert_eq!((m.from.as_str(), &m.command), ("a", &hangup));
    assert_eq!(a.send("nobody", &hangup).await.unwrap(), 0);

    // Garbage on B's channel is counted and skipped; the next command arrives.
    let mut c = raw(SHARED_REDIS).await;
    for junk in [
        "not json".to_string(),
        r#"{"from":"x","cmd":{"type":"self_destruct"}}"#.to_string(),
        r#"{"from":"x"}"#.to_string(),
        "x".repeat(70_000),
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{}cmd:to:b", p.prefix))
            .arg(junk)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    a.send("b", &Command::ConfigChanged).await.unwrap();
    let m = recv(&mut rx_b).await;
    assert_eq!(
        (m.from.as_str(), &m.command),
        ("a", &Command::ConfigChanged)
    );
    assert_eq!(b.stats().snapshot().commands_malformed, 4);

    // A broadcast reaches the others, not the sender.
    let changed = Command::BindingsChanged {
        aor: "sip:100001@example.com".into(),
    };
    assert_eq!(b.broadcast(&changed).await.unwrap(), 2);
    let m = recv(&mut rx_a).await;
    assert_eq!((m.from.as_str(), &m.command), ("b", &changed));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx_a.try_recv().is_err(), "A got a command meant for B");
    assert!(rx_b.try_recv().is_err(), "B got its own broadcast");

    // Dropping the receiver ends the subscription.
    drop(rx_b);
    for _ in 0..100 {
        if b.stats().snapshot().subscriptions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.stats().snapshot().subscriptions, 0);
    assert_eq!(a.send("b", &hangup).await.unwrap(), 0);
}

#[tokio::test]
async fn stats_render_for_metrics() {
    let p = Prefix::new(SHARED_REDIS);
    let a = handle(&p, "a").await;
    let _ = a.lookup("sip:x@example.com", 0).await.unwrap();
    assert!(matches!(a.lookup("", 0).await, Err(Error::Invalid(_))));
    let s = a.stats().snapshot();
    assert!(s.connected && s.operations >= 1 && s.reconnects == 1);
    let mut out = String::new();
    a.stats().render(&mut out);
    assert!(out.contains("switchboard_redis_connected 1\n"), "{out}");
    assert!(
        out.contains("switchboard_redis_failures_total{reason=\"invalid\"} 1\n"),
        "{out}"
    );
    assert_eq!(*a.generation().borrow(), 1);
}
