//! Pages of users, calls per minute and the store's identity: what the
//! dashboard reads instead of whole tables.

use switchboard_store::{CallMinute, DEFAULT_ACCOUNT_ID, NewUser, UserFilter};

use super::{TestDb, cdr, new_account, new_user};

fn named(account_id: i64, username: &str, ext: &str, display: Option<&str>) -> NewUser {
    NewUser {
        display_name: display.map(str::to_owned),
        ..new_user(account_id, username, Some(ext))
    }
}

pub(crate) async fn users_are_searched_and_paged(db: &TestDb) {
    let store = db.open().await;
    let other = store
        .create_account(new_account("other", Some("other.example")))
        .await
        .unwrap();
    for i in 0..25 {
        store
            .create_user(named(
                DEFAULT_ACCOUNT_ID,
                &format!("user{i:02}"),
                &format!("1{i:03}"),
                None,
            ))
            .await
            .unwrap();
    }
    store
        .create_user(named(
            DEFAULT_ACCOUNT_ID,
            "carol",
            "2000",
            Some("Carol 50% Off"),
        ))
        .await
        .unwrap();
    store
        .create_user(named(
            DEFAULT_ACCOUNT_ID,
            "dave",
            "2001",
            Some("Dave 500 Offers"),
        ))
        .await
        .unwrap();
    store
        .create_user(named(other.id, "erin", "3000", Some("Erin_X")))
        .await
        .unwrap();
    let names = |page: &[switchboard_store::User]| {
        page.iter().map(|u| u.username.clone()).collect::<Vec<_>>()
    };
    let search =
        |q: Option<&str>, account: Option<i64>, offset: Option<u64>, limit: Option<u64>| {
            let f = UserFilter {
                account_id: account,
                q: q.map(str::to_owned),
                offset,
                limit,
            };
            let store = store.clone();
            async move { store.search_users(&f).await.unwrap() }
        };

    // (query, account, offset, limit) → (names on the page, total)
    let (all, total) = search(None, None, None, None).await;
    assert_eq!((all.len(), total), (28, 28));
    let (page, total) = search(None, None, Some(10), Some(5)).await;
    assert_eq!(total, 28);
    assert_eq!(
        names(&page),
        ["user10", "user11", "user12", "user13", "user14"]
    );
    let (page, total) = search(None, None, Some(27), Some(5)).await;
    assert_eq!((names(&page), total), (vec!["erin".to_owned()], 28));
    let (page, total) = search(None, None, Some(100), Some(5)).await;
    assert_eq!(
        (page.len(), total),
        (0, 28),
        "past the end: empty, total kept"
    );
    let (page, total) = search(None, None, None, Some(0)).await;
    assert_eq!((page.len(), total), (0, 28), "limit 0 counts only");
    // user name, extension and display name, case-insensitively
    let (page, total) = search(Some("USER2"), None, None, None).await;
    assert_eq!(total, 5);
    assert_eq!(
        names(&page),
        ["user20", "user21", "user22", "user23", "user24"]
    );
    let (page, _) = search(Some("1007"), None, None, None).await;
    assert_eq!(names(&page), ["user07"]);
    let (page, _) = search(Some("carol 50"), None, None, None).await;
    assert_eq!(names(&page), ["carol"]);
    // % and _ are plain characters, not wildcards
    let (page, _) = search(Some("50%"), None, None, None).await;
    assert_eq!(names(&page), ["carol"]);
    let (page, _) = search(Some("n_x"), None, None, None).await;
    assert_eq!(names(&page), ["erin"]);
    let (page, total) = search(Some("%"), None, None, None).await;
    assert_eq!((names(&page), total), (vec!["carol".to_owned()], 1));
    let (page, total) = search(Some("\\"), None, None, None).await;
    assert_eq!((page.len(), total), (0, 0));
    // blank is no filter; an account narrows
    assert_eq!(search(Some("  "), None, None, None).await.1, 28);
    let (page, total) = search(None, Some(other.id), None, None).await;
    assert_eq!((names(&page), total), (vec!["erin".to_owned()], 1));
    assert_eq!(
        search(Some("erin"), Some(DEFAULT_ACCOUNT_ID), None, None)
            .await
            .1,
        0
    );
}

pub(crate) async fn calls_are_counted_per_minute(db: &TestDb) {
    let store = db.open().await;
    let start = 1_800_000_000_000_i64; // a minute boundary
    assert_eq!(start % 60_000, 0);
    let at = |id: &str, invite_at: i64, answered: bool, mos: Option<f64>| {
        let mut c = cdr(id, 1);
        c.invite_at = invite_at;
        c.answer_at = answered.then_some(invite_at + 500);
        c.disposition = if answered { "answered" } else { "busy" }.to_owned();
        c.mos = mos;
        c
    };
    let cdrs = [
        at("before", start - 1, true, Some(4.0)),
        at("m0-a", start, true, Some(4.0)),
        at("m0-b", start + 59_999, false, None),
        at("m2-a", start + 120_000, true, Some(3.0)),
        at("m2-b", start + 150_000, true, Some(0.0)),
        at("m2-c", start + 170_000, false, None),
        at("m4", start + 4 * 60_000 + 1, true, Some(4.5)),
        at("after", start + 5 * 60_000, true, Some(4.0)),
    ];
    assert_eq!(store.insert_cdrs(&cdrs).await.unwrap(), 8);
    let minutes = store.call_minutes(start, 5).await.unwrap();
    let m = |i: i64, attempted, answered, mos_sum, mos_n| CallMinute {
        at_ms: start + i * 60_000,
        attempted,
        answered,
        mos_sum,
        mos_n,
    };
    assert_eq!(
        minutes,
        [
            m(0, 2, 1, 4.0, 1),
            m(1, 0, 0, 0.0, 0),
            m(2, 3, 2, 3.0, 1),
            m(3, 0, 0, 0.0, 0),
            m(4, 1, 1, 4.5, 1),
        ],
        "empty minutes included, the window's edges kept, MOS 0 not counted"
    );
    // an empty store, and the clamp
    let none = store.call_minutes(0, 0).await.unwrap();
    assert_eq!(
        none,
        [m(0, 0, 0, 0.0, 0)].map(|c| CallMinute { at_ms: 0, ..c })
    );
    assert_eq!(
        store.call_minutes(start, u32::MAX).await.unwrap().len(),
        1440
    );
}

pub(crate) async fn a_store_keeps_its_identity(db: &TestDb) {
    let first = db.open().await.store_id().await.unwrap();
    assert_eq!(first.len(), 32, "{first}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    // the same database reopened: the same identity
    assert_eq!(db.open().await.store_id().await.unwrap(), first);
}
