//! Embedded SQLite backend, the default for single-node deployments.
//!
//! A file database in WAL mode (readers never block the writer), with a busy
//! timeout so concurrent writers queue instead of failing, and foreign keys
//! on for the users → accounts cascade. Write transactions start with
//! `BEGIN IMMEDIATE` so they take the write lock up front and never hit the
//! read-to-write upgrade deadlock that `busy_timeout` cannot resolve.
//! `synchronous = NORMAL` (the usual WAL pairing): a power cut may lose the
//! last commits but never corrupts the file. The database holds the users'
//! HA1s, so its files are readable by their owner only (mode 0600).

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite};
use tracing::{debug, info};

use crate::columns::{
    account_cols, call_minutes_sql, cdr_cols, push_cdr_filter, push_user_filter, registration_cols,
    user_cols,
};
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountPatch, CallMinute, Cdr, CdrFilter, DEFAULT_ACCOUNT_ID, NewAccount, NewUser,
    Registration, User, UserFilter, UserPatch,
};
use crate::now_ms;
use crate::store::{Backend, BoxFuture, Store};

/// File name of the database inside the data directory.
const DB_FILE: &str = "switchboard.db";
/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of a file database: one writer at a time, a few readers.
const MAX_CONNECTIONS: u32 = 4;
/// Statement that opens write transactions.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Rows per multi-row upsert statement (14 parameters each, far below
/// SQLite's limit of 32766 parameters).
const UPSERT_CHUNK: usize = 64;
/// Upsert of [`UPSERT_CHUNK`] registrations.
static UPSERT_MANY: LazyLock<Arc<str>> = LazyLock::new(|| upsert_sql(UPSERT_CHUNK).into());
/// Upsert of one registration.
static UPSERT_ONE: LazyLock<Arc<str>> = LazyLock::new(|| upsert_sql(1).into());

/// `INSERT .. ON CONFLICT DO UPDATE` of `rows` registrations. Within one
/// statement a later row with the same key wins, as in sequential upserts.
fn upsert_sql(rows: usize) -> String {
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    format!(
        concat!(
            "INSERT INTO registrations (",
            registration_cols!(),
            ") VALUES {} ",
            "ON CONFLICT (aor, contact) DO UPDATE SET ",
            "account_id = excluded.account_id, user_id = excluded.user_id, ",
            "received = excluded.received, path = excluded.path, ",
            "instance_id = excluded.instance_id, reg_id = excluded.reg_id, ",
            "user_agent = excluded.user_agent, call_id = excluded.call_id, ",
            "cseq = excluded.cseq, q = excluded.q, expires_at = excluded.expires_at, ",
            "updated_at = excluded.updated_at"
        ),
        vec![row; rows].join(", ")
    )
}

/// Binds one registration's 14 columns, in `registration_cols!` order.
fn bind_registration<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    reg: &'q Registration,
) -> Query<'q, Sqlite, SqliteArguments> {
    query
        .bind(reg.aor.as_str())
        .bind(reg.contact.as_str())
        .bind(reg.account_id)
        .bind(reg.user_id)
        .bind(reg.received.as_str())
        .bind(reg.path.as_deref())
        .bind(reg.instance_id.as_deref())
        .bind(reg.reg_id)
        .bind(reg.user_agent.as_deref())
        .bind(reg.call_id.as_str())
        .bind(reg.cseq)
        .bind(reg.q)
        .bind(reg.expires_at)
        .bind(reg.updated_at)
}

/// The SQLite implementation of [`Backend`].
pub(crate) struct SqliteBackend {
    pool: SqlitePool,
}

/// Creates the database file owner-only (0600) before SQLite opens it, and
/// tightens one left by an older version. SQLite gives the `-wal` and
/// `-shm` files it creates the database file's mode; ones that already
/// exist are tightened here too.
fn make_private(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let p = Path::new(&name);
            if p.exists() {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

impl SqliteBackend {
    /// Opens `data_dir/switchboard.db`, creating directory and file.
    pub(crate) async fn open(data_dir: &Path) -> Result<Self> {
        tokio::fs::create_dir_all(data_dir).await?;
        let path = data_dir.join(DB_FILE);
        make_private(&path)?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let backend = Self::migrate(pool).await?;
        info!(path = %path.display(), "sqlite store opened");
        Ok(backend)
    }

    /// Opens a private in-memory database. A single connection that never
    /// expires: every SQLite connection to `:memory:` is its own database.
    pub(crate) async fn open_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrate(pool).await
    }

    async fn migrate(pool: SqlitePool) -> Result<Self> {
        sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    async fn health(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ----- accounts -----

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get_account(&self, id: i64) -> Result<Account> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts WHERE id = ?"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn create_account(&self, new: NewAccount) -> Result<Account> {
        Ok(sqlx::query_as(concat!(
            "INSERT INTO accounts (name, domain, max_concurrent_calls, created_at, srtp) ",
            "VALUES (?, ?, ?, ?, ?) RETURNING ",
            account_cols!()
        ))
        .bind(new.name)
        .bind(new.domain)
        .bind(new.max_concurrent_calls)
        .bind(now_ms())
        .bind(new.srtp.unwrap_or_else(|| "optional".into()))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn update_account(&self, id: i64, patch: AccountPatch) -> Result<Account> {
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE accounts SET ");
        let mut set = qb.separated(", ");
        if let Some(name) = patch.name {
            set.push("name = ").push_bind_unseparated(name);
        }
        if let Some(domain) = patch.domain {
            set.push("domain = ").push_bind_unseparated(domain);
        }
        if let Some(max) = patch.max_concurrent_calls {
            set.push("max_concurrent_calls = ")
                .push_bind_unseparated(max);
        }
        if let Some(srtp) = patch.srtp {
            set.push("srtp = ").push_bind_unseparated(srtp);
        }
        qb.push(" WHERE id = ")
            .push_bind(id)
            .push(concat!(" RETURNING ", account_cols!()));
        Ok(qb.build_query_as::<Account>().fetch_one(&self.pool).await?)
    }

    async fn delete_account(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query("DELETE FROM registrations WHERE account_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM accounts WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn account_for_domain(&self, domain: &str) -> Result<Account> {
        // The claiming account sorts before the default one; portable SQL
        // (no reliance on where NULLs sort).
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts WHERE domain = ?1 OR id = ?2 ",
            "ORDER BY CASE WHEN domain = ?1 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(domain)
        .bind(DEFAULT_ACCOUNT_ID)
        .fetch_one(&self.pool)
        .await?)
    }

    // ----- users -----

    async fn list_users(&self, account_id: Option<i64>) -> Result<Vec<User>> {
        let query = match account_id {
            Some(account_id) => sqlx::query_as(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users WHERE account_id = ? ORDER BY id"
            ))
            .bind(account_id),
            None => sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users ORDER BY id")),
        };
        Ok(query.fetch_all(&self.pool).await?)
    }

    async fn search_users(&self, filter: &UserFilter) -> Result<(Vec<User>, i64)> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM users WHERE 1 = 1");
        push_user_filter!(count, filter, "LIKE");
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let limit = filter.sql_limit();
        if limit == 0 {
            return Ok((Vec::new(), total));
        }
        let mut qb = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE 1 = 1"
        ));
        push_user_filter!(qb, filter, "LIKE");
        qb.push(" ORDER BY id LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(filter.sql_offset());
        Ok((
            qb.build_query_as::<User>().fetch_all(&self.pool).await?,
            total,
        ))
    }

    async fn get_user(&self, id: i64) -> Result<User> {
        Ok(
            sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users WHERE id = ?"))
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn find_user(&self, account_id: i64, username: &str) -> Result<Option<User>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE account_id = ? AND username = ?"
        ))
        .bind(account_id)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn find_user_by_extension(
        &self,
        account_id: i64,
        extension: &str,
    ) -> Result<Option<User>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE account_id = ? AND extension = ?"
        ))
        .bind(account_id)
        .bind(extension)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn create_user(&self, new: NewUser) -> Result<User> {
        let now = now_ms();
        Ok(sqlx::query_as(concat!(
            "INSERT INTO users (account_id, username, extension, display_name, ha1_md5, ",
            "ha1_sha256, enabled, created_at, updated_at) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
            user_cols!()
        ))
        .bind(new.account_id)
        .bind(new.username)
        .bind(new.extension)
        .bind(new.display_name)
        .bind(new.ha1_md5)
        .bind(new.ha1_sha256)
        .bind(new.enabled)
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn update_user(&self, id: i64, patch: UserPatch) -> Result<User> {
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE users SET updated_at = ");
        qb.push_bind(now_ms());
        if let Some(username) = patch.username {
            qb.push(", username = ").push_bind(username);
        }
        if let Some(extension) = patch.extension {
            qb.push(", extension = ").push_bind(extension);
        }
        if let Some(display_name) = patch.display_name {
            qb.push(", display_name = ").push_bind(display_name);
        }
        if let Some(ha1) = patch.ha1_md5 {
            qb.push(", ha1_md5 = ").push_bind(ha1);
        }
        if let Some(ha1) = patch.ha1_sha256 {
            qb.push(", ha1_sha256 = ").push_bind(ha1);
        }
        if let Some(enabled) = patch.enabled {
            qb.push(", enabled = ").push_bind(enabled);
        }
        qb.push(" WHERE id = ")
            .push_bind(id)
            .push(concat!(" RETURNING ", user_cols!()));
        Ok(qb.build_query_as::<User>().fetch_one(&self.pool).await?)
    }

    async fn delete_user(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query("DELETE FROM registrations WHERE user_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    // ----- registrations -----

    async fn upsert_registrations(&self, regs: &[Registration]) -> Result<()> {
        // Full chunks share one multi-row statement and the tail shares a
        // single-row one: sqlx prepares each once per connection and reuses
        // it. Fewer, larger statements matter because every statement is a
        // round trip to the connection's worker thread. The transaction
        // makes the batch one commit.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let mut chunks = regs.chunks_exact(UPSERT_CHUNK);
        for chunk in &mut chunks {
            let mut query = sqlx::query(AssertSqlSafe(Arc::clone(&UPSERT_MANY)));
            for reg in chunk {
                query = bind_registration(query, reg);
            }
            query.execute(&mut *tx).await?;
        }
        for reg in chunks.remainder() {
            bind_registration(sqlx::query(AssertSqlSafe(Arc::clone(&UPSERT_ONE))), reg)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        debug!(rows = regs.len(), "registrations upserted");
        Ok(())
    }

    async fn delete_registrations(&self, keys: &[(String, String)]) -> Result<u64> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let mut deleted = 0;
        for (aor, contact) in keys {
            deleted += sqlx::query("DELETE FROM registrations WHERE aor = ? AND contact = ?")
                .bind(aor.as_str())
                .bind(contact.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn delete_aor(&self, aor: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM registrations WHERE aor = ?")
            .bind(aor)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn load_registrations(&self, now_ms: i64) -> Result<Vec<Registration>> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let purged = sqlx::query(
            "DELETE FROM registrations WHERE expires_at <= ? \
             OR account_id NOT IN (SELECT id FROM accounts) \
             OR (user_id IS NOT NULL AND user_id NOT IN (SELECT id FROM users))",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let rows: Vec<Registration> = sqlx::query_as(concat!(
            "SELECT ",
            registration_cols!(),
            " FROM registrations ORDER BY aor, contact"
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        debug!(purged, loaded = rows.len(), "registrations loaded");
        Ok(rows)
    }

    // ----- cdrs -----

    async fn insert_cdr(&self, cdr: &Cdr) -> Result<bool> {
        let inserted = cdr_insert(cdr).execute(&self.pool).await?.rows_affected();
        if inserted == 0 {
            debug!(call_id = %cdr.call_id, "duplicate cdr ignored");
        }
        Ok(inserted > 0)
    }

    /// Many CDRs in one transaction (one fsync instead of one per call).
    async fn insert_cdrs(&self, cdrs: &[Cdr]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for cdr in cdrs {
            inserted += cdr_insert(cdr).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn get_cdr(&self, call_id: &str) -> Result<Cdr> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            cdr_cols!(),
            " FROM cdrs WHERE call_id = ?"
        ))
        .bind(call_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn list_cdrs(&self, filter: &CdrFilter) -> Result<Vec<Cdr>> {
        let mut qb =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", cdr_cols!(), " FROM cdrs WHERE 1 = 1"));
        push_cdr_filter!(qb, filter);
        Ok(qb.build_query_as::<Cdr>().fetch_all(&self.pool).await?)
    }

    async fn call_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<CallMinute>> {
        let rows: Vec<(i64, i64, i64, f64, i64)> = sqlx::query_as(call_minutes_sql!("?", "?", "?"))
            .bind(from_ms)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(m, attempted, answered, mos_sum, mos_n)| CallMinute {
                at_ms: m * 60_000,
                attempted,
                answered,
                mos_sum,
                mos_n,
            })
            .collect())
    }

    async fn store_id(&self) -> Result<String> {
        Ok(
            sqlx::query_scalar("SELECT store_id FROM store_meta WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    // ----- configuration shared by the replicas -----

    async fn list_trunks(&self) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT name, config FROM trunks ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn put_trunk(&self, name: &str, config: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO trunks (name, config, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET config = excluded.config, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(config)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_trunk(&self, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM trunks WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn save_dialplan(&self, config: &str) -> Result<i64> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dialplans (config, created_at) VALUES (?, ?) RETURNING id",
        )
        .bind(config)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM dialplans WHERE id NOT IN \
             (SELECT id FROM dialplans ORDER BY id DESC LIMIT ?)",
        )
        .bind(Store::DIALPLAN_VERSIONS_KEPT)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn latest_dialplan(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT id, config FROM dialplans ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn dialplan_versions(&self) -> Result<Vec<(i64, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, created_at, CAST(length(config) AS BIGINT) FROM dialplans ORDER BY id DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn dialplan_version(&self, id: i64) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT created_at, config FROM dialplans WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn config_version(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM config_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// The idempotent INSERT of one CDR.
fn cdr_insert(cdr: &Cdr) -> sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(concat!(
        "INSERT INTO cdrs (call_id, account_id, caller, callee, caller_name, source, ",
        "invite_at, ring_at, answer_at, end_at, ring_ms, talk_ms, disposition, hangup_code, ",
        "hangup_reason, hangup_side, route_id, node, rtp_sent, rtp_received, rtp_lost, ",
        "jitter_ms, mos, rtpmanager, created_at, route, caller_user, callee_user, sip_call_id) ",
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ",
        "ON CONFLICT (call_id) DO NOTHING"
    ))
    .bind(cdr.call_id.as_str())
    .bind(cdr.account_id)
    .bind(cdr.caller.as_str())
    .bind(cdr.callee.as_str())
    .bind(cdr.caller_name.as_deref())
    .bind(cdr.source.as_str())
    .bind(cdr.invite_at)
    .bind(cdr.ring_at)
    .bind(cdr.answer_at)
    .bind(cdr.end_at)
    .bind(cdr.ring_ms)
    .bind(cdr.talk_ms)
    .bind(cdr.disposition.as_str())
    .bind(cdr.hangup_code)
    .bind(cdr.hangup_reason.as_deref())
    .bind(cdr.hangup_side.as_deref())
    .bind(cdr.route_id)
    .bind(cdr.node.as_deref())
    .bind(cdr.rtp_sent)
    .bind(cdr.rtp_received)
    .bind(cdr.rtp_lost)
    .bind(cdr.jitter_ms)
    .bind(cdr.mos)
    .bind(cdr.rtpmanager.as_deref())
    .bind(now_ms())
    .bind(cdr.route.as_deref())
    .bind(cdr.caller_user.as_deref())
    .bind(cdr.callee_user.as_deref())
    .bind(cdr.sip_call_id.as_deref())
}

impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
    fn health(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.health())
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>>> {
        Box::pin(self.list_accounts())
    }
    fn get_account(&self, id: i64) -> BoxFuture<'_, Result<Account>> {
        Box::pin(self.get_account(id))
    }
    fn create_account(&self, new: NewAccount) -> BoxFuture<'_, Result<Account>> {
        Box::pin(self.create_account(new))
    }
    fn update_account(&self, id: i64, patch: AccountPatch) -> BoxFuture<'_, Result<Account>> {
        Box::pin(self.update_account(id, patch))
    }
    fn delete_account(&self, id: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.delete_account(id))
    }
    fn account_for_domain<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Account>> {
        Box::pin(self.account_for_domain(domain))
    }
    fn list_users(&self, account_id: Option<i64>) -> BoxFuture<'_, Result<Vec<User>>> {
        Box::pin(self.list_users(account_id))
    }
    fn search_users<'a>(
        &'a self,
        filter: &'a UserFilter,
    ) -> BoxFuture<'a, Result<(Vec<User>, i64)>> {
        Box::pin(self.search_users(filter))
    }
    fn get_user(&self, id: i64) -> BoxFuture<'_, Result<User>> {
        Box::pin(self.get_user(id))
    }
    fn find_user<'a>(
        &'a self,
        account_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>>> {
        Box::pin(self.find_user(account_id, username))
    }
    fn find_user_by_extension<'a>(
        &'a self,
        account_id: i64,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>>> {
        Box::pin(self.find_user_by_extension(account_id, extension))
    }
    fn create_user(&self, new: NewUser) -> BoxFuture<'_, Result<User>> {
        Box::pin(self.create_user(new))
    }
    fn update_user(&self, id: i64, patch: UserPatch) -> BoxFuture<'_, Result<User>> {
        Box::pin(self.update_user(id, patch))
    }
    fn delete_user(&self, id: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.delete_user(id))
    }
    fn upsert_registrations<'a>(&'a self, regs: &'a [Registration]) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.upsert_registrations(regs))
    }
    fn delete_registrations<'a>(
        &'a self,
        keys: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.delete_registrations(keys))
    }
    fn delete_aor<'a>(&'a self, aor: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.delete_aor(aor))
    }
    fn load_registrations(&self, now_ms: i64) -> BoxFuture<'_, Result<Vec<Registration>>> {
        Box::pin(self.load_registrations(now_ms))
    }
    fn insert_cdr<'a>(&'a self, cdr: &'a Cdr) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.insert_cdr(cdr))
    }
    fn insert_cdrs<'a>(&'a self, cdrs: &'a [Cdr]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.insert_cdrs(cdrs))
    }
    fn get_cdr<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, Result<Cdr>> {
        Box::pin(self.get_cdr(call_id))
    }
    fn list_cdrs<'a>(&'a self, filter: &'a CdrFilter) -> BoxFuture<'a, Result<Vec<Cdr>>> {
        Box::pin(self.list_cdrs(filter))
    }
    fn call_minutes(&self, from_ms: i64, to_ms: i64) -> BoxFuture<'_, Result<Vec<CallMinute>>> {
        Box::pin(self.call_minutes(from_ms, to_ms))
    }
    fn store_id(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(self.store_id())
    }
    fn list_trunks(&self) -> BoxFuture<'_, Result<Vec<(String, String)>>> {
        Box::pin(self.list_trunks())
    }
    fn put_trunk<'a>(&'a self, name: &'a str, config: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.put_trunk(name, config))
    }
    fn delete_trunk<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.delete_trunk(name))
    }
    fn save_dialplan<'a>(&'a self, config: &'a str) -> BoxFuture<'a, Result<i64>> {
        Box::pin(self.save_dialplan(config))
    }
    fn latest_dialplan(&self) -> BoxFuture<'_, Result<Option<(i64, String)>>> {
        Box::pin(self.latest_dialplan())
    }
    fn dialplan_versions(&self) -> BoxFuture<'_, Result<Vec<(i64, i64, i64)>>> {
        Box::pin(self.dialplan_versions())
    }
    fn dialplan_version(&self, id: i64) -> BoxFuture<'_, Result<Option<(i64, String)>>> {
        Box::pin(self.dialplan_version(id))
    }
    fn config_version(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(self.config_version())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn database_files_are_owner_only() -> Result<()> {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-store-mode-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir)?;
        // a database left world-readable by an older version is tightened
        std::fs::write(dir.join(DB_FILE), b"")?;
        std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o644))?;
        let db = SqliteBackend::open(&dir).await?;
        db.create_account(NewAccount {
            name: "acme".into(),
            domain: None,
            max_concurrent_calls: 0,
            srtp: None,
        })
        .await?;
        for f in [DB_FILE, "switchboard.db-wal", "switchboard.db-shm"] {
            let mode = std::fs::metadata(dir.join(f))?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        db.close().await;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
