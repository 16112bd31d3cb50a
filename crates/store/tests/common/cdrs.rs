//! Call detail records.

use switchboard_store::{Cdr, CdrFilter, DEFAULT_ACCOUNT_ID, Error, now_ms};

use super::{TestDb, cdr, invalid};

pub(crate) async fn cdr_insert_is_idempotent(db: &TestDb) {
    let store = db.open().await;
    let before = now_ms();
    let record = cdr("call-1@example", 1);
    assert!(store.insert_cdr(&record).await.unwrap());
    let stored = store.get_cdr("call-1@example").await.unwrap();
    assert!(stored.id > 0);
    assert!(stored.created_at >= before);
    assert_eq!(
        stored,
        Cdr {
            id: stored.id,
            created_at: stored.created_at,
            ..record.clone()
        }
    );

    // A second delivery, even with different content, is ignored.
    let again = Cdr {
        disposition: "failed".to_owned(),
        ..record.clone()
    };
    assert!(!store.insert_cdr(&again).await.unwrap());
    assert_eq!(store.get_cdr("call-1@example").await.unwrap(), stored);
    assert_eq!(
        store.list_cdrs(&CdrFilter::default()).await.unwrap(),
        [stored]
    );

    assert!(matches!(
        store.get_cdr("missing").await,
        Err(Error::NotFound)
    ));
    let err = store.insert_cdr(&cdr("", 2)).await.unwrap_err();
    assert_eq!(invalid(err), "call_id: must not be empty");
}

pub(crate) async fn a_reused_sip_call_id_neither_hides_nor_overwrites_a_cdr(db: &TestDb) {
    let store = db.open().await;
    // two calls whose callers sent the same SIP Call-ID: each has its own
    // call id (ours), so both are kept and found by the SIP one
    let first = Cdr {
        sip_call_id: Some("reused@attacker".into()),
        ..cdr("8f0c2a1e-0000-4000-8000-000000000001", 1)
    };
    let second = Cdr {
        sip_call_id: Some("reused@attacker".into()),
        disposition: "failed".into(),
        ..cdr("8f0c2a1e-0000-4000-8000-000000000002", 2)
    };
    assert!(store.insert_cdr(&first).await.unwrap());
    assert!(store.insert_cdr(&second).await.unwrap());
    let both = store
        .list_cdrs(&CdrFilter {
            sip_call_id: Some("reused@attacker".into()),
            ..CdrFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = both.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "8f0c2a1e-0000-4000-8000-000000000002",
            "8f0c2a1e-0000-4000-8000-000000000001"
        ]
    );
    let stored = store.get_cdr(&first.call_id).await.unwrap();
    assert_eq!(stored.disposition, first.disposition, "not overwritten");
}

pub(crate) async fn cdrs_are_stored_in_batches_idempotently(db: &TestDb) {
    let store = db.open().await;
    assert!(store.insert_cdr(&cdr("b-0", 0)).await.unwrap());
    let batch: Vec<Cdr> = (0..200).map(|n| cdr(&format!("b-{n}"), n)).collect();
    // b-0 was there: 199 new, none doubled
    assert_eq!(store.insert_cdrs(&batch).await.unwrap(), 199);
    assert_eq!(
        store.insert_cdrs(&batch).await.unwrap(),
        0,
        "delivered again"
    );
    let all = store
        .list_cdrs(&CdrFilter {
            limit: Some(1000),
            ..CdrFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 200);
    // a batch with an invalid CDR is refused whole
    let bad = vec![cdr("b-new", 1), cdr("", 2)];
    assert!(store.insert_cdrs(&bad).await.is_err());
    assert!(matches!(store.get_cdr("b-new").await, Err(Error::NotFound)));
}

pub(crate) async fn duplicates_within_a_cdr_batch_are_stored_once(db: &TestDb) {
    let store = db.open().await;
    // A redelivered CDR can land in the same batch as its first copy: the
    // first one given is kept.
    let first = cdr("dup-1", 1);
    let copy = Cdr {
        disposition: "failed".to_owned(),
        ..first.clone()
    };
    let batch = vec![
        cdr("dup-0", 0),
        first.clone(),
        copy,
        cdr("dup-2", 2),
        cdr("dup-0", 3),
    ];
    assert_eq!(store.insert_cdrs(&batch).await.unwrap(), 3);
    assert_eq!(
        store.get_cdr("dup-1").await.unwrap().disposition,
        first.disposition
    );
    assert_eq!(
        store.get_cdr("dup-0").await.unwrap().invite_at,
        cdr("dup-0", 0).invite_at
    );
    let all = store.list_cdrs(&CdrFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(store.insert_cdrs(&batch).await.unwrap(), 0);
    assert_eq!(store.insert_cdrs(&[]).await.unwrap(), 0);
}

pub(crate) async fn cdr_filters_and_cursor_paging(db: &TestDb) {
    let store = db.open().await;
    for n in 0..50 {
        assert!(
            store
                .insert_cdr(&cdr(&format!("call-{n}"), n))
                .await
                .unwrap()
        );
    }
    let other = Cdr {
        account_id: Some(99),
        ..cdr("call-other", 100)
    };
    store.insert_cdr(&other).await.unwrap();

    // Newest first, default page covers everything.
    let all = store.list_cdrs(&CdrFilter::default()).await.unwrap();
    assert_eq!(all.len(), 51);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[0].call_id, "call-other");
    assert_eq!(all[50].call_id, "call-0");

    // Paging with a cursor visits each row of the account exactly once.
    let mut seen = Vec::new();
    let mut filter = CdrFilter {
        account_id: Some(DEFAULT_ACCOUNT_ID),
        limit: Some(7),
        ..CdrFilter::default()
    };
    loop {
        let page = store.list_cdrs(&filter).await.unwrap();
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        filter.cursor = Some(page[page.len() - 1].id);
        seen.extend(page.into_iter().map(|c| c.call_id));
    }
    let expected: Vec<String> = (0..50).rev().map(|n| format!("call-{n}")).collect();
    assert_eq!(seen, expected);

    // Time window: invite_at in [from, to).
    let window = store
        .list_cdrs(&CdrFilter {
            from_ms: Some(1_000_000 + 10 * 1_000),
            to_ms: Some(1_000_000 + 20 * 1_000),
            ..CdrFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<String> = window.iter().map(|c| c.call_id.clone()).collect();
    let expected: Vec<String> = (10..20).rev().map(|n| format!("call-{n}")).collect();
    assert_eq!(ids, expected);

    // Exact-match filters combine.
    let alice_to_1001 = store
        .list_cdrs(&CdrFilter {
            caller: Some("alice".to_owned()),
            callee: Some("1001".to_owned()),
            account_id: Some(DEFAULT_ACCOUNT_ID),
            ..CdrFilter::default()
        })
        .await
        .unwrap();
    // Even n that are multiples of 3: multiples of 6 below 50.
    assert_eq!(alice_to_1001.len(), 9);
    assert!(
        alice_to_1001
            .iter()
            .all(|c| c.caller == "alice" && c.callee == "1001")
    );

    let missed = store
        .list_cdrs(&CdrFilter {
            disposition: Some("no_answer".to_owned()),
            account_id: Some(DEFAULT_ACCOUNT_ID),
            ..CdrFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(missed.len(), 10);
    assert!(missed.iter().all(|c| c.hangup_code == Some(480)));

    // Limits are clamped: 0 means at least one row.
    let one = store
        .list_cdrs(&CdrFilter {
            limit: Some(0),
            ..CdrFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
}
