//! Several replicas writing one Postgres database at once.

use std::collections::HashSet;

use switchboard_store::{Cdr, CdrFilter, Registration, now_ms};

use crate::common::{self, TestDb, cdr, registration};

#[tokio::test]
async fn overlapping_cdr_batches_from_two_replicas_store_each_call_once() {
    common::run(TestDb::postgres(), |db| async move {
        let (a, b) = (db.open().await, db.open().await);
        for round in 0..4 {
            // 0..600 and 300..900, the second in reverse order: 300 CDRs
            // are in both batches, written at the same moment.
            let batch = |range: std::ops::Range<i64>| -> Vec<Cdr> {
                range.map(|n| cdr(&format!("r{round}-{n}"), n)).collect()
            };
            let first = batch(0..600);
            let mut second = batch(300..900);
            second.reverse();
            let (a2, b2) = (a.clone(), b.clone());
            let one = tokio::spawn(async move { a2.insert_cdrs(&first).await.unwrap() });
            let two = tokio::spawn(async move { b2.insert_cdrs(&second).await.unwrap() });
            let (one, two) = (one.await.unwrap(), two.await.unwrap());
            assert_eq!(one + two, 900, "round {round}: {one} + {two}");
            assert!(one >= 300 && two >= 300, "round {round}: {one} + {two}");
        }
        let all = a
            .list_cdrs(&CdrFilter {
                limit: Some(CdrFilter::MAX_LIMIT),
                ..CdrFilter::default()
            })
            .await
            .unwrap();
        let mut seen = HashSet::new();
        let mut cursor = None;
        let mut page = all;
        loop {
            for c in &page {
                assert!(seen.insert(c.call_id.clone()), "{} twice", c.call_id);
            }
            if page.len() < CdrFilter::MAX_LIMIT as usize {
                break;
            }
            cursor = page.last().map(|c| c.id);
            page = a
                .list_cdrs(&CdrFilter {
                    limit: Some(CdrFilter::MAX_LIMIT),
                    cursor,
                    ..CdrFilter::default()
                })
                .await
                .unwrap();
        }
        assert_eq!(seen.len(), 4 * 900, "last cursor {cursor:?}");
        assert_eq!(db.count_rows("cdrs").await, 4 * 900);
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn replicas_refreshing_the_same_bindings_do_not_deadlock() {
    common::run(TestDb::postgres(), |db| async move {
        let (a, b) = (db.open().await, db.open().await);
        let far = now_ms() + 3_600_000;
        let bindings: Vec<Registration> = (0..500)
            .map(|i| {
                registration(
                    &format!("sip:u{}@example", i % 50),
                    &format!("sip:{i}@192.0.2.1"),
                    far,
                )
            })
            .collect();
        for round in 0..10 {
            let mut first = bindings.clone();
            let mut second = bindings.clone();
            second.reverse();
            for r in &mut first {
                r.cseq = 2 * round;
            }
            for r in &mut second {
                r.cseq = 2 * round + 1;
            }
            let (a2, b2) = (a.clone(), b.clone());
            let one = tokio::spawn(async move { a2.upsert_registrations(&first).await });
            let two = tokio::spawn(async move { b2.upsert_registrations(&second).await });
            one.await.unwrap().unwrap();
            two.await.unwrap().unwrap();
        }
        let loaded = a.load_registrations(now_ms()).await.unwrap();
        assert_eq!(loaded.len(), 500);
        // each batch is atomic: every row comes from the batch committed last
        let cseq = loaded[0].cseq;
        assert!(cseq == 18 || cseq == 19, "{cseq}");
        assert!(loaded.iter().all(|r| r.cseq == cseq));
        a.close().await;
        b.close().await;
    })
    .await;
}
