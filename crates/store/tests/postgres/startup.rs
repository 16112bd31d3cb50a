//! Opening the Postgres store: no server needed at start, migrations that
//! wait for it, several replicas migrating one fresh database at once, and
//! the errors a misconfiguration gives.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_store::{Error, Store};

use crate::common::pg::{PrivatePg, admin_url, random_database_name, url_with_database};
use crate::common::{self, READY_TIMEOUT, TestDb};

/// The advisory lock key the store migrates under (`MIGRATION_LOCK` in
/// src/postgres.rs).
const MIGRATION_LOCK: i64 = 0x7377_6264_6d69_6772;

fn unavailable<T: std::fmt::Debug>(result: switchboard_store::Result<T>) -> String {
    match result {
        Err(Error::Unavailable(why)) => why,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn pg(db: &TestDb) -> &common::PgDb {
    match db {
        TestDb::Postgres(pg) => pg,
        TestDb::Sqlite(_) => panic!("a Postgres test got a SQLite database"),
    }
}

/// A port nothing listens on (bound once by us, then released).
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// Log lines written on this thread while the guard lives (tests here run on
/// a current-thread runtime, so the store's spawned tasks log here too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn malformed_urls_are_refused_naming_database_url() {
    for url in [
        "",
        "127.0.0.1:5432",
        "mysql://root@127.0.0.1/db",
        "postgres://u:s3cret@127.0.0.1:notaport/db",
        "postgres://u:s3cret@[::1/db",
        "postgres://u@127.0.0.1/db?sslmode=sometimes",
    ] {
        match Store::open_postgres(url).await {
            Err(Error::Invalid(msg)) => {
                assert!(msg.starts_with("DATABASE_URL: "), "{url:?}: {msg}");
                assert!(!msg.contains("s3cret"), "{url:?} leaked: {msg}");
            }
            other => panic!("{url:?}: expected Invalid, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_database_is_reported_until_it_exists() {
    let name = random_database_name();
    let store = Store::open_postgres(&url_with_database(&admin_url(), &name))
        .await
        .unwrap();
    let why = unavailable(store.wait_ready(Duration::from_secs(2)).await);
    assert!(why.contains("does not exist"), "{why}");
    let why = unavailable(store.health().await);
    assert!(why.contains("does not exist"), "{why}");
    let why = unavailable(store.get_cdr("x").await);
    assert!(why.contains("not migrated"), "{why}");
    store.close().await;
}

/// Replicas starting together on an empty database: they migrate one at a
/// time under the advisory lock, each succeeds at its first attempt, and
/// the schema is applied once.
#[tokio::test]
async fn concurrent_opens_of_a_fresh_database_migrate_once() {
    const REPLICAS: usize = 8;
    let log = Captured::default();
    let _guard = log.install();
    common::run(TestDb::postgres(), |db| async move {
        let url = pg(&db).url.clone();
        // Hold the store's migration lock, as a replica busy migrating would.
        let mut holder = pg(&db).connect().await;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut holder)
            .await
            .unwrap();
        let mut opening = Vec::new();
        for _ in 0..REPLICAS {
            let url = url.clone();
            opening.push(tokio::spawn(async move {
                let store = Store::open_postgres(&url).await.unwrap();
                store.wait_ready(READY_TIMEOUT).await.unwrap();
                store
            }));
        }
        // They all wait: not even the schema is created meanwhile.
        let waiting = Store::open_postgres(&url).await.unwrap();
        let why = unavailable(waiting.wait_ready(Duration::from_millis(1500)).await);
        assert!(why.contains("first attempt running"), "{why}");
        let schemas: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'switchboard'")
                .fetch_one(&mut holder)
                .await
                .unwrap();
        assert_eq!(schemas, 0);
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut holder)
            .await
            .unwrap();
        waiting.wait_ready(READY_TIMEOUT).await.unwrap();
        waiting.close().await;
        let mut stores = Vec::new();
        for task in opening {
            stores.push(task.await.unwrap());
        }
        for store in &stores {
            assert_eq!(store.list_accounts().await.unwrap().len(), 1);
        }

        let mut conn = pg(&db).connect().await;
        let schemas: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'switchboard'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(schemas, 1);
        let applied: Vec<(i64, bool)> = sqlx::query_as(
            "SELECT version, success FROM switchboard._sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            applied,
            [
                (1, true),
                (2, true),
                (3, true),
                (4, true),
                (5, true),
                (6, true)
            ]
        );
        // Nothing outside the schema: every table went into `switchboard`.
        let public: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN \
             ('switchboard', 'pg_catalog', 'information_schema')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(public, 0);
        let version: i64 = sqlx::query_scalar("SELECT version FROM switchboard.config_version")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            version, 1,
            "the migrations ran once, and nothing wrote since"
        );
        for store in &stores {
            store.close().await;
        }
    })
    .await;
    // Every replica got through on its first attempt: none waited for a
    // retry after losing a race.
    let text = log.text();
    assert_eq!(
        text.matches("postgres store migrated and ready").count(),
        REPLICAS + 1,
        "{text}"
    );
    assert!(!text.contains("not ready"), "{text}");
}

#[tokio::test]
async fn a_store_opened_before_its_server_becomes_ready_when_it_starts() {
    let port = free_port();
    let server = tokio::task::spawn_blocking(move || PrivatePg::init(port))
        .await
        .unwrap();
    // Opening needs no server; calls fail fast, saying why.
    let store = Store::open_postgres(&server.url()).await.unwrap();
    let why = unavailable(store.wait_ready(Duration::from_millis(1500)).await);
    assert!(why.contains("cannot connect"), "{why}");
    let why = unavailable(store.health().await);
    assert!(why.contains("cannot connect"), "{why}");
    unavailable(store.list_accounts().await);
    unavailable(store.config_version().await);

    let server = tokio::task::spawn_blocking(move || {
        server.start();
        server
    })
    .await
    .unwrap();
    store.wait_ready(READY_TIMEOUT).await.unwrap();
    store.health().await.unwrap();
    store
        .create_account(common::new_account("acme", None))
        .await
        .unwrap();
    assert_eq!(store.list_accounts().await.unwrap().len(), 2);
    assert_eq!(store.config_version().await.unwrap(), 2);

    // A server that goes away fails calls; it does not hang them.
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    unavailable(store.health().await);
    unavailable(store.list_accounts().await);
    store.close().await;
    drop(server);
}

#[tokio::test]
async fn a_blocked_statement_times_out_as_unavailable() {
    common::run(TestDb::postgres(), |db| async move {
        let url = format!("{}?options[statement_timeout]=1s", pg(&db).url);
        let store = Store::open_postgres(&url).await.unwrap();
        store.wait_ready(READY_TIMEOUT).await.unwrap();
        // Another session holds the table: the write waits for the lock
        // until the statement timeout cancels it.
        let mut blocker = pg(&db).connect().await;
        sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
        sqlx::query("LOCK TABLE switchboard.trunks IN ACCESS EXCLUSIVE MODE")
            .execute(&mut blocker)
            .await
            .unwrap();
        let why = unavailable(store.put_trunk("t", "{}").await);
        assert!(why.contains("statement timeout"), "{why}");
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        store.put_trunk("t", "{}").await.unwrap();
        assert_eq!(store.list_trunks().await.unwrap().len(), 1);
        store.close().await;
    })
    .await;
}
