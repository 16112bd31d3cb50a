//! The store test suite shared by the SQLite and Postgres test binaries.
//!
//! Each suite test is an `async fn(&TestDb)`; [`store_suite!`] turns the
//! whole list into `#[tokio::test]`s for one backend. Every test gets its
//! own database (a temporary SQLite directory, or a fresh Postgres database
//! `switchboard_test_<random>` on `TEST_DATABASE_URL`), removed afterwards
//! even when the test fails, so tests run in parallel.

// Each test binary uses a different part of these helpers.
#![allow(dead_code, unused_imports, unused_macros)]

pub(crate) mod accounts;
pub(crate) mod cdrs;
pub(crate) mod config;
pub(crate) mod fixtures;
pub(crate) mod pg;
pub(crate) mod registrations;
pub(crate) mod search;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use switchboard_store::{Store, now_ms};

pub(crate) use fixtures::*;
pub(crate) use pg::PgDb;

/// How long a Postgres store may take to migrate a fresh database.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A unique temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
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

/// One test's database.
pub(crate) enum TestDb {
    /// A SQLite file database in its own directory.
    Sqlite(TempDir),
    /// A Postgres database of its own.
    Postgres(PgDb),
}

impl TestDb {
    pub(crate) async fn sqlite() -> TestDb {
        TestDb::Sqlite(TempDir::new("suite"))
    }

    pub(crate) async fn postgres() -> TestDb {
        TestDb::Postgres(PgDb::create().await)
    }

    /// Opens a store on this test's database, ready for calls. Opening
    /// again reaches the same data.
    pub(crate) async fn open(&self) -> Store {
        match self {
            TestDb::Sqlite(dir) => Store::open_sqlite(&dir.0).await.unwrap(),
            TestDb::Postgres(db) => {
                let store = Store::open_postgres(&db.url).await.unwrap();
                store.wait_ready(READY_TIMEOUT).await.unwrap();
                store
            }
        }
    }

    /// Rows of a table, counted behind the store's back.
    pub(crate) async fn count_rows(&self, table: &str) -> i64 {
        use sqlx::Connection;
        let sql = format!("SELECT count(*) FROM {table}");
        match self {
            TestDb::Sqlite(dir) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.0.join("switchboard.db"));
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
            }
            TestDb::Postgres(db) => {
                let mut conn = db.connect().await;
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM switchboard.{table}"
                )))
                .fetch_one(&mut conn)
                .await
                .unwrap()
            }
        }
    }

    async fn teardown(&self) {
        if let TestDb::Postgres(db) = self {
            db.drop_database().await;
        }
    }
}

/// Runs a test body against a fresh database and removes the database
/// afterwards, also when the body panics (the panic is then re-raised).
pub(crate) async fn run<F>(db: impl Future<Output = TestDb>, body: impl FnOnce(Arc<TestDb>) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let db = Arc::new(db.await);
    let outcome = tokio::spawn(body(Arc::clone(&db))).await;
    db.teardown().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task did not finish: {e}"),
        }
    }
}

/// Instantiates every suite test for the backend `$db` (an expression
/// giving a `Future<Output = TestDb>`).
macro_rules! store_suite {
    ($db:expr) => {
        store_suite!(@each $db;
            accounts::health_and_default_account,
            accounts::account_crud,
            accounts::account_conflicts_and_validation,
            accounts::account_for_domain_falls_back_to_default,
            accounts::user_crud,
            accounts::user_conflicts_and_validation,
            accounts::deleting_an_account_cascades_to_users_and_registrations,
            registrations::registrations_upsert_update_delete_and_expire,
            registrations::orphaned_registrations_are_dropped_on_load,
            registrations::ten_thousand_registrations_in_one_batch,
            registrations::a_later_duplicate_in_one_batch_wins,
            cdrs::cdr_insert_is_idempotent,
            cdrs::a_reused_sip_call_id_neither_hides_nor_overwrites_a_cdr,
            cdrs::cdrs_are_stored_in_batches_idempotently,
            cdrs::duplicates_within_a_cdr_batch_are_stored_once,
            cdrs::cdr_filters_and_cursor_paging,
            config::reopened_store_keeps_its_rows,
            config::store_serves_concurrent_writers,
            config::records_serialize_for_the_api,
            config::trunks_crud_and_validation,
            config::dialplan_versions,
            config::config_version_moves_with_configuration_writes_only,
            config::a_closed_store_is_unavailable,
            search::users_are_searched_and_paged,
            search::calls_are_counted_per_minute,
            search::a_store_keeps_its_identity,
        );
    };
    (@each $db:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                common::run($db, |db| async move { common::$module::$name(&db).await }).await;
            }
        )*
    };
}
