//! Accounts and users.

use switchboard_store::{
    AccountPatch, DEFAULT_ACCOUNT_ID, Error, NewAccount, NewUser, Registration, UserPatch, now_ms,
};

use super::{
    MD5_A, MD5_B, SHA_A, SHA_B, TestDb, conflict, invalid, new_account, new_user, registration,
};

pub(crate) async fn health_and_default_account(db: &TestDb) {
    let store = db.open().await;
    store.health().await.unwrap();
    let accounts = store.list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].id, DEFAULT_ACCOUNT_ID);
    assert_eq!(accounts[0].name, "default");
    assert_eq!(accounts[0].domain, None);
    assert_eq!(accounts[0].max_concurrent_calls, 0);
    assert!(accounts[0].is_default());
    assert!(accounts[0].created_at > 0);
}

pub(crate) async fn account_crud(db: &TestDb) {
    let store = db.open().await;
    let before = now_ms();
    let acme = store
        .create_account(NewAccount {
            name: "  acme ".to_owned(),
            domain: Some("SIP.Acme.Example".to_owned()),
            max_concurrent_calls: 10,
            srtp: None,
        })
        .await
        .unwrap();
    assert_eq!(acme.name, "acme");
    assert_eq!(acme.domain.as_deref(), Some("sip.acme.example"));
    assert_eq!(acme.max_concurrent_calls, 10);
    assert_eq!(acme.srtp, "optional", "the default");
    assert!(acme.created_at >= before);
    assert!(!acme.is_default());
    assert_eq!(store.get_account(acme.id).await.unwrap(), acme);

    let patched = store
        .update_account(
            acme.id,
            AccountPatch {
                name: Some("acme-corp".to_owned()),
                max_concurrent_calls: Some(20),
                srtp: Some("required".to_owned()),
                ..AccountPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.name, "acme-corp");
    assert_eq!(patched.domain.as_deref(), Some("sip.acme.example"));
    assert_eq!(patched.max_concurrent_calls, 20);
    assert_eq!(patched.srtp, "required");
    assert_eq!(patched.created_at, acme.created_at);

    let released = store
        .update_account(
            acme.id,
            AccountPatch {
                domain: Some(None),
                ..AccountPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(released.domain, None);
    assert_eq!(released.name, "acme-corp");

    // An empty patch returns the row unchanged.
    let same = store
        .update_account(acme.id, AccountPatch::default())
        .await
        .unwrap();
    assert_eq!(same, released);

    let all = store.list_accounts().await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id).collect::<Vec<_>>(),
        [DEFAULT_ACCOUNT_ID, acme.id]
    );

    store.delete_account(acme.id).await.unwrap();
    assert!(matches!(
        store.get_account(acme.id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.delete_account(acme.id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store
            .update_account(
                acme.id,
                AccountPatch {
                    max_concurrent_calls: Some(1),
                    ..AccountPatch::default()
                }
            )
            .await,
        Err(Error::NotFound)
    ));
}

pub(crate) async fn account_conflicts_and_validation(db: &TestDb) {
    let store = db.open().await;
    let a = store
        .create_account(new_account("a", Some("a.example")))
        .await
        .unwrap();
    let b = store.create_account(new_account("b", None)).await.unwrap();

    let err = store
        .create_account(new_account("a", None))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "name already exists");
    let err = store
        .create_account(new_account("c", Some("A.example")))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "domain already exists");
    let err = store
        .update_account(
            b.id,
            AccountPatch {
                domain: Some(Some("a.example".to_owned())),
                ..AccountPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "domain already exists");
    let err = store
        .create_account(new_account("default", None))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "name already exists");

    let err = store
        .create_account(new_account("", None))
        .await
        .unwrap_err();
    assert_eq!(invalid(err), "name: must not be empty");
    let err = store
        .create_account(new_account("d", Some("bad domain")))
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("domain: "));
    let err = store
        .create_account(NewAccount {
            max_concurrent_calls: -1,
            ..new_account("d", None)
        })
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("max_concurrent_calls: "));
    let err = store
        .create_account(NewAccount {
            srtp: Some("always".to_owned()),
            ..new_account("e", None)
        })
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("srtp: "));

    let err = store.delete_account(DEFAULT_ACCOUNT_ID).await.unwrap_err();
    assert!(invalid(err).contains("default account"));
    // Nothing above changed the stored rows.
    assert_eq!(store.list_accounts().await.unwrap().len(), 3);
    assert_eq!(store.get_account(a.id).await.unwrap(), a);
}

pub(crate) async fn account_for_domain_falls_back_to_default(db: &TestDb) {
    let store = db.open().await;
    let acme = store
        .create_account(new_account("acme", Some("acme.example")))
        .await
        .unwrap();
    assert_eq!(
        store.account_for_domain("acme.example").await.unwrap(),
        acme
    );
    assert_eq!(
        store.account_for_domain("ACME.Example").await.unwrap(),
        acme
    );
    let fallback = store.account_for_domain("unknown.example").await.unwrap();
    assert_eq!(fallback.id, DEFAULT_ACCOUNT_ID);
    let fallback = store.account_for_domain("").await.unwrap();
    assert_eq!(fallback.id, DEFAULT_ACCOUNT_ID);
}

pub(crate) async fn user_crud(db: &TestDb) {
    let store = db.open().await;
    let acme = store
        .create_account(new_account("acme", Some("acme.example")))
        .await
        .unwrap();
    let alice = store
        .create_user(NewUser {
            display_name: Some("Alice A".to_owned()),
            ha1_md5: MD5_A.to_uppercase(),
            ..new_user(acme.id, "alice", Some("1001"))
        })
        .await
        .unwrap();
    assert_eq!(alice.account_id, acme.id);
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.extension.as_deref(), Some("1001"));
    assert_eq!(alice.display_name.as_deref(), Some("Alice A"));
    assert_eq!(alice.ha1_md5, MD5_A, "digests are stored lowercase");
    assert_eq!(alice.ha1_sha256, SHA_A);
    assert!(alice.enabled);
    assert_eq!(alice.created_at, alice.updated_at);
    assert_eq!(store.get_user(alice.id).await.unwrap(), alice);
    assert_eq!(
        store.find_user(acme.id, "alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.find_user(acme.id, "nobody").await.unwrap(), None);
    assert_eq!(
        store.find_user(DEFAULT_ACCOUNT_ID, "alice").await.unwrap(),
        None
    );
    assert_eq!(
        store.find_user_by_extension(acme.id, "1001").await.unwrap(),
        Some(alice.clone())
    );

    let bob = store
        .create_user(new_user(DEFAULT_ACCOUNT_ID, "bob", None))
        .await
        .unwrap();
    assert_eq!(
        store.list_users(None).await.unwrap(),
        [alice.clone(), bob.clone()]
    );
    assert_eq!(
        store.list_users(Some(acme.id)).await.unwrap(),
        std::slice::from_ref(&alice)
    );

    let patched = store
        .update_user(
            alice.id,
            UserPatch {
                extension: Some(None),
                display_name: Some(Some("Alice B".to_owned())),
                enabled: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.extension, None);
    assert_eq!(patched.display_name.as_deref(), Some("Alice B"));
    assert!(!patched.enabled);
    assert_eq!(patched.username, "alice");
    assert_eq!(patched.ha1_md5, MD5_A);
    assert!(patched.updated_at >= alice.updated_at);
    assert_eq!(patched.created_at, alice.created_at);
    assert_eq!(store.get_user(alice.id).await.unwrap(), patched);

    // Renaming needs new digests; both digests travel together.
    let err = store
        .update_user(
            alice.id,
            UserPatch {
                username: Some("alicia".to_owned()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("ha1_md5: "));
    let err = store
        .update_user(
            alice.id,
            UserPatch {
                ha1_md5: Some(MD5_B.to_owned()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("ha1_sha256: "));
    // Restating the current username is not a rename.
    store
        .update_user(
            alice.id,
            UserPatch {
                username: Some("alice".to_owned()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    let renamed = store
        .update_user(
            alice.id,
            UserPatch {
                username: Some("alicia".to_owned()),
                ha1_md5: Some(MD5_B.to_owned()),
                ha1_sha256: Some(SHA_B.to_owned()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.username, "alicia");
    assert_eq!(renamed.ha1_md5, MD5_B);
    assert_eq!(renamed.ha1_sha256, SHA_B);

    store.delete_user(alice.id).await.unwrap();
    assert!(matches!(
        store.get_user(alice.id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.delete_user(alice.id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.update_user(alice.id, UserPatch::default()).await,
        Err(Error::NotFound)
    ));
    assert_eq!(store.list_users(None).await.unwrap(), [bob]);
}

pub(crate) async fn user_conflicts_and_validation(db: &TestDb) {
    let store = db.open().await;
    let acme = store
        .create_account(new_account("acme", Some("acme.example")))
        .await
        .unwrap();
    store
        .create_user(new_user(acme.id, "alice", Some("1001")))
        .await
        .unwrap();
    let bob = store
        .create_user(new_user(acme.id, "bob", Some("1002")))
        .await
        .unwrap();

    let err = store
        .create_user(new_user(acme.id, "alice", None))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "username already exists");
    let err = store
        .create_user(new_user(acme.id, "carol", Some("1001")))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "extension already exists");
    let err = store
        .update_user(
            bob.id,
            UserPatch {
                extension: Some(Some("1001".to_owned())),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(conflict(err), "extension already exists");
    // The same names are free in another account.
    store
        .create_user(new_user(DEFAULT_ACCOUNT_ID, "alice", Some("1001")))
        .await
        .unwrap();

    let err = store
        .create_user(new_user(acme.id, "", None))
        .await
        .unwrap_err();
    assert_eq!(invalid(err), "username: must not be empty");
    let err = store
        .create_user(new_user(acme.id, "a b", None))
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("username: "));
    let err = store
        .create_user(new_user(acme.id, &"x".repeat(65), None))
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("username: "));
    let err = store
        .create_user(new_user(acme.id, "carol", Some("12a")))
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("extension: "));
    let err = store
        .create_user(NewUser {
            ha1_md5: "hunter2".to_owned(),
            ..new_user(acme.id, "carol", None)
        })
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("ha1_md5: "));
    let err = store
        .create_user(NewUser {
            display_name: Some("Carol\r\nX-Injected: 1".to_owned()),
            ..new_user(acme.id, "carol", None)
        })
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("display_name: "));
    let err = store
        .create_user(new_user(9_999, "carol", None))
        .await
        .unwrap_err();
    assert!(invalid(err).starts_with("account_id: "));
}

pub(crate) async fn deleting_an_account_cascades_to_users_and_registrations(db: &TestDb) {
    let store = db.open().await;
    let acme = store
        .create_account(new_account("acme", Some("acme.example")))
        .await
        .unwrap();
    let alice = store
        .create_user(new_user(acme.id, "alice", Some("1001")))
        .await
        .unwrap();
    let keep = store
        .create_user(new_user(DEFAULT_ACCOUNT_ID, "keep", None))
        .await
        .unwrap();
    let far = now_ms() + 3_600_000;
    store
        .upsert_registrations(&[
            Registration {
                account_id: acme.id,
                user_id: Some(alice.id),
                ..registration("sip:alice@acme.example", "sip:alice@192.0.2.1", far)
            },
            Registration {
                user_id: Some(keep.id),
                ..registration("sip:keep@example", "sip:keep@192.0.2.2", far)
            },
        ])
        .await
        .unwrap();

    store.delete_account(acme.id).await.unwrap();
    assert!(matches!(
        store.get_user(alice.id).await,
        Err(Error::NotFound)
    ));
    assert_eq!(store.list_users(Some(acme.id)).await.unwrap(), []);
    assert_eq!(
        store.list_users(None).await.unwrap(),
        std::slice::from_ref(&keep)
    );
    let regs = store.load_registrations(now_ms()).await.unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].aor, "sip:keep@example");

    // Deleting a user drops its registrations too.
    store.delete_user(keep.id).await.unwrap();
    assert_eq!(store.load_registrations(now_ms()).await.unwrap(), []);
}
