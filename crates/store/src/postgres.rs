//! Postgres backend, for several signaling replicas sharing one database.
//!
//! Everything lives in the schema `switchboard`: every connection starts
//! with `search_path=switchboard`, so the SQL names tables unqualified. The
//! schema comes from `migrations/postgres/` (sqlx's migrator, history table
//! `switchboard._sqlx_migrations`).
//!
//! Start-up never waits for the server. [`PgBackend::open`] only parses the
//! URL and builds a lazy pool; a background task connects, takes an
//! advisory lock ([`MIGRATION_LOCK`]) so replicas starting together migrate
//! one after the other (two concurrent `CREATE SCHEMA IF NOT EXISTS` can
//! fail with a unique violation, and sqlx's own lock comes after that), and
//! retries with back-off until the migrations are applied. Until then every call fails fast with
//! [`Error::Unavailable`] carrying the last reason; a replica reports itself
//! degraded instead of crash-looping while Postgres is down.
//!
//! Once ready, calls take a pooled connection ([`MAX_CONNECTIONS`], waiting
//! at most [`ACQUIRE_TIMEOUT`]), each statement is cut off by the server
//! after [`STATEMENT_TIMEOUT`], and each call by the client after
//! [`CALL_TIMEOUT`] (a server that stopped answering cannot enforce its own
//! timeout). Those failures are [`Error::Unavailable`] too.

mod queries;

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::model::{
    Account, AccountPatch, CallMinute, Cdr, CdrFilter, NewAccount, NewUser, Registration, User,
    UserFilter, UserPatch,
};
use crate::store::{Backend, BoxFuture};

/// The schema holding every table.
const SCHEMA: &str = "switchboard";
/// Pooled connections per replica.
const MAX_CONNECTIONS: u32 = 16;
/// How long a call waits for a pooled connection (or for a new one to open).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side limit of one statement (Postgres `statement_timeout`) unless
/// the URL sets one.
const STATEMENT_TIMEOUT: &str = "10s";
/// Client-side limit of one store call: acquiring a connection plus the
/// statements of the call, with some slack over the server's own limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit on opening a migration connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Statement limit of the migration connections: waiting for another
/// replica's migration, or building an index on a large table, takes longer
/// than a normal statement.
const MIGRATION_STATEMENT_TIMEOUT: &str = "5min";
/// Client-side limit of one migration attempt (a server that stopped
/// answering cannot enforce the statement limit).
const MIGRATION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// First pause after a failed migration attempt; doubled after each
/// failure up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest pause between migration attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Key of the session advisory lock held while migrating ("swbdmigr").
/// Advisory locks are per database, so unrelated databases do not contend.
const MIGRATION_LOCK: i64 = 0x7377_6264_6d69_6772;

/// The Postgres migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Whether the schema is ready for calls.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    /// The first migration attempt has not finished.
    Starting,
    /// The last migration attempt failed for this reason; another follows.
    Retrying(String),
    /// The schema is up to date; calls go to the server.
    Ready,
}

/// The Postgres implementation of [`Backend`].
pub(crate) struct PgBackend {
    pool: PgPool,
    /// Set by the migration task; dropping the backend (this receiver)
    /// stops that task.
    readiness: watch::Receiver<Readiness>,
}

/// Parses `DATABASE_URL` and sets the schema and an application name (unless
/// the URL names one). Errors name the variable and never echo the URL (it
/// may hold a password).
fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let invalid = |why: &str| Error::Invalid(format!("DATABASE_URL: {why}"));
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(
            "must be a postgres:// or postgresql:// URL (e.g. postgres://user:password@host:5432/db)",
        ));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| invalid(&format!("malformed Postgres URL: {e}")))?;
    let options = if options.get_application_name().is_none() {
        options.application_name("switchboard")
    } else {
        options
    };
    Ok(options.options([("search_path", SCHEMA)]))
}

/// `options` whose sessions cut statements off after `limit`.
fn with_statement_timeout(options: &PgConnectOptions, limit: &str) -> PgConnectOptions {
    options.clone().options([("statement_timeout", limit)])
}

/// Options of the pooled connections: [`STATEMENT_TIMEOUT`], unless the
/// URL sets its own (e.g. `?options[statement_timeout]=3s`).
fn pool_options(options: &PgConnectOptions) -> PgConnectOptions {
    if options
        .get_options()
        .is_some_and(|o| o.contains("statement_timeout="))
    {
        options.clone()
    } else {
        with_statement_timeout(options, STATEMENT_TIMEOUT)
    }
}

impl PgBackend {
    /// Validates the URL, builds the (lazy) pool and starts the migration
    /// task; contacts no server.
    pub(crate) fn open(url: &str) -> Result<Self> {
        let options = connect_options(url)?;
        info!(
            host = options.get_host(),
            port = options.get_port(),
            database = options.get_database().unwrap_or(""),
            "postgres store opening (migrating in the background)"
        );
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(pool_options(&options));
        let (tx, readiness) = watch::channel(Readiness::Starting);
        tokio::spawn(migrate_until_ready(options, pool.clone(), tx));
        Ok(Self { pool, readiness })
    }

    /// `Ok` once migrated, else [`Error::Unavailable`] with the reason.
    fn check_ready(&self) -> Result<()> {
        match &*self.readiness.borrow() {
            Readiness::Ready => Ok(()),
            Readiness::Starting => Err(Error::Unavailable(
                "postgres: the schema is not migrated yet (first attempt running)".to_owned(),
            )),
            Readiness::Retrying(reason) => Err(Error::Unavailable(format!(
                "postgres: the schema is not migrated yet: {reason}"
            ))),
        }
    }

    /// Runs one store call: fails fast until the schema is ready, and gives
    /// up after [`CALL_TIMEOUT`].
    async fn call<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        self.check_ready()?;
        match timeout(CALL_TIMEOUT, op).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!(
                "postgres did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn health(&self) -> Result<()> {
        self.call(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    async fn wait_ready(&self, limit: Duration) -> Result<()> {
        let mut readiness = self.readiness.clone();
        // An error means the migration task ended without success (the
        // store was closed); check_ready then reports the last reason.
        let _ = timeout(limit, readiness.wait_for(|r| *r == Readiness::Ready)).await;
        self.check_ready()
    }
}

/// The migration task: attempts until one succeeds, pausing 1 s, 2 s, 4 s
/// ... 30 s between attempts. Ends early once the backend is dropped or
/// closed.
async fn migrate_until_ready(
    options: PgConnectOptions,
    pool: PgPool,
    state: watch::Sender<Readiness>,
) {
    let mut pause = BACKOFF_FIRST;
    loop {
        let attempt = tokio::select! {
            result = timeout(MIGRATION_ATTEMPT_TIMEOUT, migrate(&options)) => {
                result.unwrap_or_else(|_| Err("the migration did not finish within 6 min".to_owned()))
            }
            () = state.closed() => return,
        };
        match attempt {
            Ok(()) => {
                info!("postgres store migrated and ready");
                state.send_replace(Readiness::Ready);
                return;
            }
            Err(reason) => {
                warn!(%reason, retry_in_s = pause.as_secs(), "postgres store not ready");
                state.send_replace(Readiness::Retrying(reason));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = state.closed() => return,
        }
        if pool.is_closed() {
            return;
        }
        pause = (pause * 2).min(BACKOFF_MAX);
    }
}

/// One migration attempt. A dedicated connection holds [`MIGRATION_LOCK`]
/// and creates the schema; sqlx's migrator runs on a second one (it cannot
/// share a borrowed connection inside a spawned task: "`Acquire` is not
/// general enough", a known compiler limitation), taking its own advisory
/// lock as well. Both sessions end with the attempt, and their locks with
/// them, whatever happens.
async fn migrate(options: &PgConnectOptions) -> Result<(), String> {
    let options = with_statement_timeout(options, MIGRATION_STATEMENT_TIMEOUT);
    let mut conn = match timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
        Err(_) => {
            return Err(format!(
                "cannot connect: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    };
    let result = migrate_locked(&mut conn, &options).await;
    // A clean goodbye; if the server does not answer, dropping the socket
    // ends the session just the same.
    let _ = timeout(Duration::from_secs(1), conn.close()).await;
    result
}

/// Creates the schema and applies pending migrations while `conn` holds
/// [`MIGRATION_LOCK`].
async fn migrate_locked(conn: &mut PgConnection, options: &PgConnectOptions) -> Result<(), String> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("waiting for the migration lock: {e}"))?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS switchboard")
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("creating schema {SCHEMA}: {e}"))?;
    let migrator_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options.clone());
    let migrated = MIGRATOR.run(&migrator_pool).await;
    migrator_pool.close().await;
    migrated.map_err(|e| format!("migrating schema {SCHEMA}: {e}"))?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("releasing the migration lock: {e}"))?;
    Ok(())
}

impl Backend for PgBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn health(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.health())
    }
    fn wait_ready(&self, limit: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.wait_ready(limit))
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>>> {
        Box::pin(self.call(self.list_accounts()))
    }
    fn get_account(&self, id: i64) -> BoxFuture<'_, Result<Account>> {
        Box::pin(self.call(self.get_account(id)))
    }
    fn create_account(&self, new: NewAccount) -> BoxFuture<'_, Result<Account>> {
        Box::pin(self.call(self.create_account(new)))
    }
    fn update_account(&self, id: i64, patch: AccountPatch) -> BoxFuture<'_, Result<Account>> {
        Box::pin(self.call(self.update_account(id, patch)))
    }
    fn delete_account(&self, id: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.call(self.delete_account(id)))
    }
    fn account_for_domain<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Account>> {
        Box::pin(self.call(self.account_for_domain(domain)))
    }
    fn list_users(&self, account_id: Option<i64>) -> BoxFuture<'_, Result<Vec<User>>> {
        Box::pin(self.call(self.list_users(account_id)))
    }
    fn search_users<'a>(
        &'a self,
        filter: &'a UserFilter,
    ) -> BoxFuture<'a, Result<(Vec<User>, i64)>> {
        Box::pin(self.call(self.search_users(filter)))
    }
    fn get_user(&self, id: i64) -> BoxFuture<'_, Result<User>> {
        Box::pin(self.call(self.get_user(id)))
    }
    fn find_user<'a>(
        &'a self,
        account_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>>> {
        Box::pin(self.call(self.find_user(account_id, username)))
    }
    fn find_user_by_extension<'a>(
        &'a self,
        account_id: i64,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>>> {
        Box::pin(self.call(self.find_user_by_extension(account_id, extension)))
    }
    fn create_user(&self, new: NewUser) -> BoxFuture<'_, Result<User>> {
        Box::pin(self.call(self.create_user(new)))
    }
    fn update_user(&self, id: i64, patch: UserPatch) -> BoxFuture<'_, Result<User>> {
        Box::pin(self.call(self.update_user(id, patch)))
    }
    fn delete_user(&self, id: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.call(self.delete_user(id)))
    }
    fn upsert_registrations<'a>(&'a self, regs: &'a [Registration]) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.call(self.upsert_registrations(regs)))
    }
    fn delete_registrations<'a>(
        &'a self,
        keys: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.call(self.delete_registrations(keys)))
    }
    fn delete_aor<'a>(&'a self, aor: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.call(self.delete_aor(aor)))
    }
    fn load_registrations(&self, now_ms: i64) -> BoxFuture<'_, Result<Vec<Registration>>> {
        Box::pin(self.call(self.load_registrations(now_ms)))
    }
    fn insert_cdr<'a>(&'a self, cdr: &'a Cdr) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.call(self.insert_cdr(cdr)))
    }
    fn insert_cdrs<'a>(&'a self, cdrs: &'a [Cdr]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.call(self.insert_cdrs(cdrs)))
    }
    fn get_cdr<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, Result<Cdr>> {
        Box::pin(self.call(self.get_cdr(call_id)))
    }
    fn list_cdrs<'a>(&'a self, filter: &'a CdrFilter) -> BoxFuture<'a, Result<Vec<Cdr>>> {
        Box::pin(self.call(self.list_cdrs(filter)))
    }
    fn call_minutes(&self, from_ms: i64, to_ms: i64) -> BoxFuture<'_, Result<Vec<CallMinute>>> {
        Box::pin(self.call(self.call_minutes(from_ms, to_ms)))
    }
    fn store_id(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(self.call(self.store_id()))
    }
    fn list_trunks(&self) -> BoxFuture<'_, Result<Vec<(String, String)>>> {
        Box::pin(self.call(self.list_trunks()))
    }
    fn put_trunk<'a>(&'a self, name: &'a str, config: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.call(self.put_trunk(name, config)))
    }
    fn delete_trunk<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.call(self.delete_trunk(name)))
    }
    fn save_dialplan<'a>(&'a self, config: &'a str) -> BoxFuture<'a, Result<i64>> {
        Box::pin(self.call(self.save_dialplan(config)))
    }
    fn latest_dialplan(&self) -> BoxFuture<'_, Result<Option<(i64, String)>>> {
        Box::pin(self.call(self.latest_dialplan()))
    }
    fn dialplan_versions(&self) -> BoxFuture<'_, Result<Vec<(i64, i64, i64)>>> {
        Box::pin(self.call(self.dialplan_versions()))
    }
    fn dialplan_version(&self, id: i64) -> BoxFuture<'_, Result<Option<(i64, String)>>> {
        Box::pin(self.call(self.dialplan_version(id)))
    }
    fn config_version(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(self.call(self.config_version()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(url: &str) -> String {
        match connect_options(url) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Invalid for {url:?}, got {other:?}"),
        }
    }

    #[test]
    fn malformed_urls_name_the_variable_and_hide_the_password() {
        for url in [
            "",
            "localhost:5432",
            "mysql://u@h/db",
            "postgres://u:s3cret@host:notaport/db",
            "postgres://u:s3cret@[::1/db",
        ] {
            let msg = invalid(url);
            assert!(msg.starts_with("DATABASE_URL: "), "{url:?}: {msg}");
            assert!(!msg.contains("s3cret"), "{url:?}: {msg}");
        }
    }

    #[test]
    fn sessions_get_the_schema_and_a_statement_timeout() -> Result<()> {
        let options = connect_options("postgresql://u:p@db.example:6543/sb")?;
        assert_eq!(options.get_host(), "db.example");
        assert_eq!(options.get_port(), 6543);
        assert_eq!(options.get_database(), Some("sb"));
        assert_eq!(options.get_application_name(), Some("switchboard"));
        assert_eq!(
            pool_options(&options).get_options(),
            Some("-c search_path=switchboard -c statement_timeout=10s")
        );
        let own = connect_options("postgres://u@h/db?options[statement_timeout]=3s")?;
        assert_eq!(
            pool_options(&own).get_options(),
            Some("-c statement_timeout=3s -c search_path=switchboard")
        );
        let named = connect_options("postgres://u@h/db?application_name=sb-1")?;
        assert_eq!(named.get_application_name(), Some("sb-1"));
        Ok(())
    }
}
