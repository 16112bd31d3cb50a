//! Persistence, concurrency, serialization, and the configuration shared by
//! replicas (trunks, dialplans, the change counter).

use switchboard_store::{
    AccountPatch, CdrFilter, DEFAULT_ACCOUNT_ID, Error, Registration, Store, UserPatch, now_ms,
};

use super::{TestDb, cdr, conflict, invalid, new_account, new_user, registration};

pub(crate) async fn reopened_store_keeps_its_rows(db: &TestDb) {
    let far = now_ms() + 3_600_000;
    let (account, user) = {
        let store = db.open().await;
        store.health().await.unwrap();
        let account = store
            .create_account(new_account("acme", Some("acme.example")))
            .await
            .unwrap();
        let user = store
            .create_user(new_user(account.id, "alice", Some("1001")))
            .await
            .unwrap();
        store
            .upsert_registrations(&[Registration {
                account_id: account.id,
                user_id: Some(user.id),
                ..registration("sip:alice@acme.example", "sip:alice@192.0.2.1", far)
            }])
            .await
            .unwrap();
        store.insert_cdr(&cdr("call-persist", 1)).await.unwrap();
        store.close().await;
        (account, user)
    };

    let store = db.open().await;
    assert_eq!(store.get_account(account.id).await.unwrap(), account);
    assert_eq!(
        store.account_for_domain("acme.example").await.unwrap(),
        account
    );
    assert_eq!(store.get_user(user.id).await.unwrap(), user);
    let regs = store.load_registrations(now_ms()).await.unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].user_id, Some(user.id));
    assert_eq!(
        store.get_cdr("call-persist").await.unwrap().call_id,
        "call-persist"
    );
    // Still exactly one default account: migrations did not run twice.
    assert_eq!(store.list_accounts().await.unwrap().len(), 2);
    store.close().await;
}

pub(crate) async fn store_serves_concurrent_writers(db: &TestDb) {
    let store = db.open().await;
    let far = now_ms() + 3_600_000;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let batch: Vec<Registration> = (0..20)
                    .map(|j| {
                        registration(
                            &format!("sip:t{t}-{i}@example"),
                            &format!("sip:{j}@192.0.2.1"),
                            far,
                        )
                    })
                    .collect();
                store.upsert_registrations(&batch).await.unwrap();
                store
                    .insert_cdr(&cdr(&format!("call-{t}-{i}"), i))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.load_registrations(now_ms()).await.unwrap().len(),
        2_000
    );
    let cdrs = store
        .list_cdrs(&CdrFilter {
            limit: Some(1_000),
            ..CdrFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(cdrs.len(), 100);
    store.close().await;
}

pub(crate) async fn records_serialize_for_the_api(db: &TestDb) {
    let store = db.open().await;
    let user = store
        .create_user(new_user(DEFAULT_ACCOUNT_ID, "alice", None))
        .await
        .unwrap();
    let json = serde_json::to_value(&user).unwrap();
    assert_eq!(json["username"], "alice");
    assert!(
        json.get("ha1_md5").is_none(),
        "digests must not leak: {json}"
    );
    assert!(json.get("ha1_sha256").is_none());

    // PATCH semantics: absent keeps, null clears.
    let patch: AccountPatch = serde_json::from_str(r#"{"domain": null}"#).unwrap();
    assert_eq!(patch.domain, Some(None));
    let patch: AccountPatch = serde_json::from_str(r#"{"name": "x"}"#).unwrap();
    assert_eq!(patch.domain, None);
    let patch: UserPatch = serde_json::from_str(r#"{"extension": "1001"}"#).unwrap();
    assert_eq!(patch.extension, Some(Some("1001".to_owned())));
    assert_eq!(patch.display_name, None);
}

pub(crate) async fn trunks_crud_and_validation(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.list_trunks().await.unwrap(), []);
    // Stored byte for byte: spacing and key order survive.
    let carrier = r#"{ "host": "sip.carrier.example",  "port": 5060, "a": [1, 2] }"#;
    let backup = r#"{"host":"backup.example"}"#;
    store.put_trunk("carrier-1", carrier).await.unwrap();
    store.put_trunk("Backup_2", backup).await.unwrap();
    store.put_trunk("backup", "{}").await.unwrap();
    // Byte order: upper case sorts before lower case.
    assert_eq!(
        store.list_trunks().await.unwrap(),
        [
            ("Backup_2".to_owned(), backup.to_owned()),
            ("backup".to_owned(), "{}".to_owned()),
            ("carrier-1".to_owned(), carrier.to_owned()),
        ]
    );

    // put replaces
    let moved = r#"{"host": "sip2.carrier.example"}"#;
    store.put_trunk("carrier-1", moved).await.unwrap();
    let trunks = store.list_trunks().await.unwrap();
    assert_eq!(trunks.len(), 3);
    assert_eq!(trunks[2], ("carrier-1".to_owned(), moved.to_owned()));

    assert!(store.delete_trunk("backup").await.unwrap());
    assert!(!store.delete_trunk("backup").await.unwrap());
    assert!(!store.delete_trunk("never-there").await.unwrap());
    let names: Vec<String> = store
        .list_trunks()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["Backup_2", "carrier-1"]);

    let err = store.put_trunk("", "{}").await.unwrap_err();
    assert_eq!(invalid(err), "name: must not be empty");
    for bad in ["a b", "trunk/1", "é", &"t".repeat(65)] {
        let err = store.put_trunk(bad, "{}").await.unwrap_err();
        assert!(invalid(err).starts_with("name: "), "{bad:?}");
    }
    store.put_trunk(&"t".repeat(64), "{}").await.unwrap();
    for bad in ["", "[]", "\"text\"", "{", "{} {}", "null"] {
        let err = store.put_trunk("x", bad).await.unwrap_err();
        assert!(invalid(err).starts_with("config: "), "{bad:?}");
    }
    let huge = format!(r#"{{"pad": "{}"}}"#, "x".repeat(64 * 1024));
    let err = store.put_trunk("x", &huge).await.unwrap_err();
    assert!(invalid(err).starts_with("config: must be at most"));
    assert_eq!(store.list_trunks().await.unwrap().len(), 3);
}

pub(crate) async fn dialplan_versions(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.latest_dialplan().await.unwrap(), None);
    let first = r#"{"version": "1.0", "routes": []}"#;
    let id1 = store.save_dialplan(first).await.unwrap();
    assert_eq!(
        store.latest_dialplan().await.unwrap(),
        Some((id1, first.to_owned()))
    );
    let second = r#"{"version": "1.0", "routes": [{"id": "ivr", "pattern": "500"}]}"#;
    let id2 = store.save_dialplan(second).await.unwrap();
    assert!(id2 > id1);
    assert_eq!(
        store.latest_dialplan().await.unwrap(),
        Some((id2, second.to_owned()))
    );
    // the versions, newest first, each readable by id
    let versions = store.dialplan_versions().await.unwrap();
    let ids: Vec<i64> = versions.iter().map(|v| v.0).collect();
    assert_eq!(ids, vec![id2, id1]);
    assert!(versions[0].1 >= versions[1].1 && versions[1].1 > 0);
    assert_eq!(versions[1].2, first.chars().count() as i64);
    let (at, text) = store.dialplan_version(id1).await.unwrap().unwrap();
    assert_eq!((at, text.as_str()), (versions[1].1, first));
    assert_eq!(store.dialplan_version(id2 + 1000).await.unwrap(), None);

    for bad in ["", "[]", "{", "42"] {
        let err = store.save_dialplan(bad).await.unwrap_err();
        assert!(invalid(err).starts_with("dialplan: "), "{bad:?}");
    }
    assert_eq!(
        store.latest_dialplan().await.unwrap().map(|(id, _)| id),
        Some(id2)
    );

    // Only the newest versions are kept; ids keep growing past the pruned.
    let kept = Store::DIALPLAN_VERSIONS_KEPT;
    let mut last = id2;
    for n in 0..kept + 5 {
        let id = store
            .save_dialplan(&format!(r#"{{"n": {n}}}"#))
            .await
            .unwrap();
        assert!(id > last);
        last = id;
    }
    assert_eq!(db.count_rows("dialplans").await, kept);
    assert_eq!(store.dialplan_versions().await.unwrap().len() as i64, kept);
    assert_eq!(store.dialplan_version(id1).await.unwrap(), None, "pruned");
    assert_eq!(
        store.latest_dialplan().await.unwrap(),
        Some((last, format!(r#"{{"n": {}}}"#, kept + 4)))
    );
}

pub(crate) async fn config_version_moves_with_configuration_writes_only(db: &TestDb) {
    let store = db.open().await;
    let mut version = store.config_version().await.unwrap();
    // Asserts the counter grew since the last call, and remembers it.
    let mut grew = async |what: &str| {
        let now = store.config_version().await.unwrap();
        assert!(now > version, "{what}: {now} after {version}");
        version = now;
    };
    let acme = store
        .create_account(new_account("acme", Some("acme.example")))
        .await
        .unwrap();
    grew("create_account").await;
    store
        .update_account(
            acme.id,
            AccountPatch {
                max_concurrent_calls: Some(5),
                ..AccountPatch::default()
            },
        )
        .await
        .unwrap();
    grew("update_account").await;
    let alice = store
        .create_user(new_user(acme.id, "alice", Some("1001")))
        .await
        .unwrap();
    grew("create_user").await;
    store
        .update_user(
            alice.id,
            UserPatch {
                enabled: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    grew("update_user").await;
    store.delete_user(alice.id).await.unwrap();
    grew("delete_user").await;
    store.put_trunk("carrier", "{}").await.unwrap();
    grew("put_trunk (insert)").await;
    store.put_trunk("carrier", r#"{"a": 1}"#).await.unwrap();
    grew("put_trunk (replace)").await;
    store.delete_trunk("carrier").await.unwrap();
    grew("delete_trunk").await;
    store.save_dialplan("{}").await.unwrap();
    grew("save_dialplan").await;
    store
        .create_user(new_user(acme.id, "bob", None))
        .await
        .unwrap();
    grew("create_user").await;
    store.delete_account(acme.id).await.unwrap();
    grew("delete_account").await;

    // The hot paths (bindings, CDRs), reads, and writes that failed leave
    // it alone, so replicas do not reload for them.
    let unchanged = store.config_version().await.unwrap();
    let far = now_ms() + 60_000;
    store
        .upsert_registrations(&[registration("sip:a@example", "sip:a@192.0.2.1", far)])
        .await
        .unwrap();
    store.load_registrations(now_ms()).await.unwrap();
    store.delete_aor("sip:a@example").await.unwrap();
    store.insert_cdr(&cdr("cv-1", 1)).await.unwrap();
    store
        .insert_cdrs(&[cdr("cv-2", 2), cdr("cv-3", 3)])
        .await
        .unwrap();
    store.list_accounts().await.unwrap();
    store.list_trunks().await.unwrap();
    store.latest_dialplan().await.unwrap();
    let err = store
        .create_account(new_account("default", None))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "name already exists");
    assert_eq!(store.config_version().await.unwrap(), unchanged);

    store
        .create_user(new_user(DEFAULT_ACCOUNT_ID, "carol", None))
        .await
        .unwrap();
    assert!(store.config_version().await.unwrap() > unchanged);
}

pub(crate) async fn a_closed_store_is_unavailable(db: &TestDb) {
    let store = db.open().await;
    store.health().await.unwrap();
    store
        .wait_ready(std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let clone = store.clone();
    store.close().await;
    for result in [
        clone.health().await,
        clone.list_accounts().await.map(|_| ()),
    ] {
        match result {
            Err(Error::Unavailable(why)) => assert!(!why.is_empty()),
            other => panic!("expected Unavailable after close, got {other:?}"),
        }
    }
}
