//! Registrar bindings.

use std::time::Instant;

use switchboard_store::{Registration, now_ms};

use super::{TestDb, registration};

pub(crate) async fn registrations_upsert_update_delete_and_expire(db: &TestDb) {
    let store = db.open().await;
    let now = 10_000_000;
    let a1 = registration("sip:a@example", "sip:a@192.0.2.1:5060", now + 60_000);
    let a2 = registration("sip:a@example", "sip:a@192.0.2.2:5060", now + 60_000);
    let b1 = registration("sip:b@example", "sip:b@192.0.2.3:5060", now + 60_000);
    let expired = registration("sip:c@example", "sip:c@192.0.2.4:5060", now - 1);
    let at_now = registration("sip:d@example", "sip:d@192.0.2.5:5060", now);
    store
        .upsert_registrations(&[
            a1.clone(),
            a2.clone(),
            b1.clone(),
            expired.clone(),
            at_now.clone(),
        ])
        .await
        .unwrap();
    store.upsert_registrations(&[]).await.unwrap();

    // Refresh a1: same key, new fields.
    let a1_refreshed = Registration {
        cseq: 2,
        expires_at: now + 120_000,
        updated_at: 2_000,
        received: "tcp:192.0.2.1:40000".to_owned(),
        user_agent: None,
        q: None,
        path: Some("<sip:edge.example;lr>".to_owned()),
        ..a1.clone()
    };
    store
        .upsert_registrations(std::slice::from_ref(&a1_refreshed))
        .await
        .unwrap();

    let loaded = store.load_registrations(now).await.unwrap();
    assert_eq!(loaded, [a1_refreshed.clone(), a2.clone(), b1.clone()]);
    // The expired rows were deleted, not merely skipped: going back in
    // time does not bring them back.
    let loaded = store.load_registrations(0).await.unwrap();
    assert_eq!(loaded, [a1_refreshed.clone(), a2.clone(), b1.clone()]);

    let deleted = store
        .delete_registrations(&[
            (a2.aor.clone(), a2.contact.clone()),
            ("sip:none@example".to_owned(), "sip:none".to_owned()),
        ])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(store.delete_registrations(&[]).await.unwrap(), 0);
    assert_eq!(
        store.load_registrations(now).await.unwrap(),
        [a1_refreshed.clone(), b1.clone()]
    );

    assert_eq!(store.delete_aor("sip:b@example").await.unwrap(), 1);
    assert_eq!(store.delete_aor("sip:b@example").await.unwrap(), 0);
    assert_eq!(store.load_registrations(now).await.unwrap(), [a1_refreshed]);

    // Everything is past its expiry later on.
    assert_eq!(store.load_registrations(now + 200_000).await.unwrap(), []);
}

pub(crate) async fn orphaned_registrations_are_dropped_on_load(db: &TestDb) {
    let store = db.open().await;
    let far = now_ms() + 3_600_000;
    // A write-behind batch may carry bindings of a user deleted meanwhile;
    // the batch must still succeed.
    store
        .upsert_registrations(&[
            Registration {
                user_id: Some(4_242),
                ..registration("sip:gone@example", "sip:gone@192.0.2.9", far)
            },
            Registration {
                account_id: 4_242,
                ..registration("sip:gone2@example", "sip:gone2@192.0.2.9", far)
            },
            registration("sip:ok@example", "sip:ok@192.0.2.9", far),
        ])
        .await
        .unwrap();
    let loaded = store.load_registrations(now_ms()).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].aor, "sip:ok@example");
}

pub(crate) async fn ten_thousand_registrations_in_one_batch(db: &TestDb) {
    let store = db.open().await;
    let now = now_ms();
    let regs: Vec<Registration> = (0..10_000)
        .map(|i| {
            registration(
                &format!("sip:user{}@example", i / 2),
                &format!("sip:user{i}@192.0.2.{}:5060", i % 250),
                now + 3_600_000,
            )
        })
        .collect();
    let started = Instant::now();
    store.upsert_registrations(&regs).await.unwrap();
    let first = started.elapsed();

    // The same batch again updates every row in place.
    let refreshed: Vec<Registration> = regs
        .iter()
        .map(|r| Registration {
            cseq: 2,
            ..r.clone()
        })
        .collect();
    let started = Instant::now();
    store.upsert_registrations(&refreshed).await.unwrap();
    let second = started.elapsed();
    eprintln!("10k upsert: insert {first:?}, update {second:?}");

    let loaded = store.load_registrations(now).await.unwrap();
    assert_eq!(loaded.len(), 10_000);
    assert!(loaded.iter().all(|r| r.cseq == 2));
    // Generous bound for an unoptimized build on a slow machine; catches a
    // lost transaction (one fsync per row) rather than measuring speed.
    assert!(first.as_secs() < 30, "10k upsert took {first:?}");
}

pub(crate) async fn a_later_duplicate_in_one_batch_wins(db: &TestDb) {
    let store = db.open().await;
    let far = now_ms() + 3_600_000;
    // 70 rows: a full multi-row chunk plus a tail of single-row upserts,
    // with duplicates inside the chunk, inside the tail and across both.
    let mut regs: Vec<Registration> = (0..70)
        .map(|i| registration("sip:dup@example", &format!("sip:{i}@192.0.2.1"), far))
        .collect();
    for (i, j) in [(3, 10), (65, 68), (5, 69)] {
        regs[j].contact = regs[i].contact.clone();
        regs[j].cseq = 100 + i64::try_from(j).unwrap();
    }
    store.upsert_registrations(&regs).await.unwrap();
    let loaded = store.load_registrations(now_ms()).await.unwrap();
    assert_eq!(loaded.len(), 67);
    for (i, j) in [(3, 10), (65, 68), (5, 69)] {
        let row = loaded
            .iter()
            .find(|r| r.contact == regs[i].contact)
            .unwrap();
        assert_eq!(row.cseq, regs[j].cseq);
    }
}
