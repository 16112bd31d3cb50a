//! Behaviour of the SQLite store through its public API. Every test opens
//! its own in-memory database or its own temporary directory, so they run
//! in parallel.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use switchboard_store::{
    AccountPatch, Cdr, CdrFilter, DEFAULT_ACCOUNT_ID, Error, NewAccount, NewUser, Registration,
    Store, UserPatch, now_ms,
};

const MD5_A: &str = "0123456789abcdef0123456789abcdef";
const SHA_A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const MD5_B: &str = "fedcba9876543210fedcba9876543210";
const SHA_B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

async fn memory() -> Store {
    Store::open_sqlite_memory().await.unwrap()
}

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "switchboard-store-{tag}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            now_ms()
        ));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn new_account(name: &str, domain: Option<&str>) -> NewAccount {
    NewAccount {
        name: name.to_owned(),
        domain: domain.map(str::to_owned),
        max_concurrent_calls: 0,
    }
}

fn new_user(account_id: i64, username: &str, extension: Option<&str>) -> NewUser {
    NewUser {
        account_id,
        username: username.to_owned(),
        extension: extension.map(str::to_owned),
        display_name: None,
        ha1_md5: MD5_A.to_owned(),
        ha1_sha256: SHA_A.to_owned(),
        enabled: true,
    }
}

fn registration(aor: &str, contact: &str, expires_at: i64) -> Registration {
    Registration {
        aor: aor.to_owned(),
        contact: contact.to_owned(),
        account_id: DEFAULT_ACCOUNT_ID,
        user_id: None,
        received: "udp:192.0.2.10:5060".to_owned(),
        path: None,
        instance_id: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".to_owned()),
        reg_id: Some(1),
        user_agent: Some("test-phone/1.0".to_owned()),
        call_id: format!("reg-{aor}-{contact}"),
        cseq: 1,
        q: Some(0.5),
        expires_at,
        updated_at: 1_000,
    }
}

fn cdr(call_id: &str, n: i64) -> Cdr {
    Cdr {
        id: 0,
        call_id: call_id.to_owned(),
        sip_call_id: Some(format!("sip-{call_id}")),
        account_id: Some(DEFAULT_ACCOUNT_ID),
        caller: if n % 2 == 0 { "alice" } else { "bob" }.to_owned(),
        callee: if n % 3 == 0 { "1001" } else { "1002" }.to_owned(),
        caller_name: Some("Alice".to_owned()),
        source: "udp:192.0.2.10:5060".to_owned(),
        invite_at: 1_000_000 + n * 1_000,
        ring_at: Some(1_000_100 + n * 1_000),
        answer_at: (n % 5 != 0).then_some(1_000_200 + n * 1_000),
        end_at: Some(1_000_900 + n * 1_000),
        ring_ms: Some(100),
        talk_ms: (n % 5 != 0).then_some(700),
        disposition: if n % 5 == 0 { "no_answer" } else { "answered" }.to_owned(),
        hangup_code: (n % 5 == 0).then_some(480),
        hangup_reason: Some("BYE".to_owned()),
        hangup_side: Some("caller".to_owned()),
        route_id: Some(7),
        route: Some("extensions".into()),
        caller_user: Some("alice".into()),
        callee_user: Some("bob".into()),
        node: Some("node-a".to_owned()),
        rtp_sent: Some(100),
        rtp_received: Some(99),
        rtp_lost: Some(1),
        jitter_ms: Some(2.5),
        mos: Some(4.3),
        rtpmanager: Some("rtpengine-1".to_owned()),
        created_at: 0,
    }
}

fn conflict(err: Error) -> String {
    match err {
        Error::Conflict(m) => m,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn invalid(err: Error) -> String {
    match err {
        Error::Invalid(m) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn health_and_default_account() {
    let store = memory().await;
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

#[tokio::test]
async fn account_crud() {
    let store = memory().await;
    let before = now_ms();
    let acme = store
        .create_account(NewAccount {
            name: "  acme ".to_owned(),
            domain: Some("SIP.Acme.Example".to_owned()),
            max_concurrent_calls: 10,
        })
        .await
        .unwrap();
    assert_eq!(acme.name, "acme");
    assert_eq!(acme.domain.as_deref(), Some("sip.acme.example"));
    assert_eq!(acme.max_concurrent_calls, 10);
    assert!(acme.created_at >= before);
    assert!(!acme.is_default());
    assert_eq!(store.get_account(acme.id).await.unwrap(), acme);

    let patched = store
        .update_account(
            acme.id,
            AccountPatch {
                name: Some("acme-corp".to_owned()),
                max_concurrent_calls: Some(20),
                ..AccountPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.name, "acme-corp");
    assert_eq!(patched.domain.as_deref(), Some("sip.acme.example"));
    assert_eq!(patched.max_concurrent_calls, 20);
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

#[tokio::test]
async fn account_conflicts_and_validation() {
    let store = memory().await;
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

    let err = store.delete_account(DEFAULT_ACCOUNT_ID).await.unwrap_err();
    assert!(invalid(err).contains("default account"));
    // Nothing above changed the stored rows.
    assert_eq!(store.list_accounts().await.unwrap().len(), 3);
    assert_eq!(store.get_account(a.id).await.unwrap(), a);
}

#[tokio::test]
async fn account_for_domain_falls_back_to_default() {
    let store = memory().await;
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

#[tokio::test]
async fn user_crud() {
    let store = memory().await;
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

#[tokio::test]
async fn user_conflicts_and_validation() {
    let store = memory().await;
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

#[tokio::test]
async fn deleting_an_account_cascades_to_users_and_registrations() {
    let store = memory().await;
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

#[tokio::test]
async fn registrations_upsert_update_delete_and_expire() {
    let store = memory().await;
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

#[tokio::test]
async fn orphaned_registrations_are_dropped_on_load() {
    let store = memory().await;
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

#[tokio::test]
async fn ten_thousand_registrations_in_one_batch() {
    let store = memory().await;
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

#[tokio::test]
async fn cdr_insert_is_idempotent() {
    let store = memory().await;
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

#[tokio::test]
async fn a_reused_sip_call_id_neither_hides_nor_overwrites_a_cdr() {
    let store = memory().await;
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

#[tokio::test]
async fn cdrs_are_stored_in_batches_idempotently() {
    let store = memory().await;
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

#[tokio::test]
async fn cdr_filters_and_cursor_paging() {
    let store = memory().await;
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

#[tokio::test]
async fn reopened_store_keeps_its_rows() {
    let dir = TempDir::new("reopen");
    let data_dir = dir.0.join("nested").join("data");
    let far = now_ms() + 3_600_000;
    let (account, user) = {
        let store = Store::open_sqlite(&data_dir).await.unwrap();
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
    assert!(data_dir.join("switchboard.db").exists());

    let store = Store::open_sqlite(&data_dir).await.unwrap();
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

#[tokio::test]
async fn file_store_serves_concurrent_writers() {
    let dir = TempDir::new("concurrent");
    let store = Store::open_sqlite(&dir.0).await.unwrap();
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

#[tokio::test]
async fn records_serialize_for_the_api() {
    let store = memory().await;
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

#[tokio::test]
async fn a_later_duplicate_in_one_batch_wins() {
    let store = memory().await;
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
