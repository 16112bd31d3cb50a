//! [`Store`], the handle callers hold, and [`Backend`], the trait a database
//! implements.
//!
//! Why a trait object behind a cheap `Clone` handle rather than generics or
//! an enum:
//! * callers (registrar, API, CDR writer) name one concrete type, `Store`,
//!   with no type parameter leaking through the whole server;
//! * there are two backends, SQLite and Postgres; the trait makes the
//!   compiler check that every backend covers every operation;
//! * tests of other crates can plug in their own [`Backend`] (e.g. to inject
//!   failures) through [`Store::from_backend`].
//!
//! The trait returns boxed futures so it stays object safe; one allocation
//! per call is noise next to a database round trip. Input validation and
//! normalization live in `Store`, once for all backends: a backend receives
//! only checked values.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{
    Account, AccountPatch, CallMinute, Cdr, CdrFilter, DEFAULT_ACCOUNT_ID, NewAccount, NewUser,
    Registration, User, UserFilter, UserPatch,
};
use crate::postgres::PgBackend;
use crate::sqlite::SqliteBackend;
use crate::validate;

/// A boxed `Send` future, the return type of [`Backend`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A database holding Switchboard's persistent data.
///
/// Implementations receive validated, normalized input from [`Store`] and
/// must map unique violations to [`Error::Conflict`] and missing rows to
/// [`Error::NotFound`] (the `From<sqlx::Error>` conversion does both).
/// Semantics of each method are those of the `Store` method of the same name.
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs, e.g. `"sqlite"`.
    fn kind(&self) -> &'static str;
    /// A cheap query proving the database answers.
    fn health(&self) -> BoxFuture<'_, Result<()>>;
    /// Waits at most `timeout` until the backend serves calls. The default
    /// suits backends that are ready once constructed.
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<()>> {
        let _ = timeout;
        Box::pin(async { Ok(()) })
    }
    /// Closes connections; later calls fail.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// All accounts by id.
    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>>>;
    /// One account.
    fn get_account(&self, id: i64) -> BoxFuture<'_, Result<Account>>;
    /// Inserts an account.
    fn create_account(&self, new: NewAccount) -> BoxFuture<'_, Result<Account>>;
    /// Applies a non-empty patch.
    fn update_account(&self, id: i64, patch: AccountPatch) -> BoxFuture<'_, Result<Account>>;
    /// Deletes a non-default account, its users and their registrations.
    fn delete_account(&self, id: i64) -> BoxFuture<'_, Result<()>>;
    /// The account claiming a (lowercase) domain, else the default one.
    fn account_for_domain<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Account>>;

    /// Users by id, optionally of one account.
    fn list_users(&self, account_id: Option<i64>) -> BoxFuture<'_, Result<Vec<User>>>;
    /// One user.
    fn get_user(&self, id: i64) -> BoxFuture<'_, Result<User>>;
    /// One page of matching users by id, and how many match in all.
    fn search_users<'a>(
        &'a self,
        filter: &'a UserFilter,
    ) -> BoxFuture<'a, Result<(Vec<User>, i64)>>;
    /// A user by account and username.
    fn find_user<'a>(
        &'a self,
        account_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>>>;
    /// A user by account and extension.
    fn find_user_by_extension<'a>(
        &'a self,
        account_id: i64,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>>>;
    /// Inserts a user.
    fn create_user(&self, new: NewUser) -> BoxFuture<'_, Result<User>>;
    /// Applies a patch (possibly empty: then only `updated_at` changes).
    fn update_user(&self, id: i64, patch: UserPatch) -> BoxFuture<'_, Result<User>>;
    /// Deletes a user and its registrations.
    fn delete_user(&self, id: i64) -> BoxFuture<'_, Result<()>>;

    /// Inserts or replaces bindings in one transaction.
    fn upsert_registrations<'a>(&'a self, regs: &'a [Registration]) -> BoxFuture<'a, Result<()>>;
    /// Deletes bindings by `(aor, contact)`; returns how many existed.
    fn delete_registrations<'a>(
        &'a self,
        keys: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<u64>>;
    /// Deletes every binding of an AOR; returns how many existed.
    fn delete_aor<'a>(&'a self, aor: &'a str) -> BoxFuture<'a, Result<u64>>;
    /// Purges expired and orphaned bindings, returns the rest.
    fn load_registrations(&self, now_ms: i64) -> BoxFuture<'_, Result<Vec<Registration>>>;

    /// Inserts a CDR unless its call_id exists; returns whether it did.
    fn insert_cdr<'a>(&'a self, cdr: &'a Cdr) -> BoxFuture<'a, Result<bool>>;
    /// Inserts CDRs (each unless its call_id exists) atomically; returns
    /// how many were new.
    fn insert_cdrs<'a>(&'a self, cdrs: &'a [Cdr]) -> BoxFuture<'a, Result<u64>>;
    /// A CDR by call_id.
    fn get_cdr<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, Result<Cdr>>;
    /// CDRs matching a filter, newest (largest id) first.
    fn list_cdrs<'a>(&'a self, filter: &'a CdrFilter) -> BoxFuture<'a, Result<Vec<Cdr>>>;
    /// The minutes of `[from_ms, to_ms)` that have calls, in order
    /// (`at_ms` relative to `from_ms`: the minute's index times 60,000).
    fn call_minutes(&self, from_ms: i64, to_ms: i64) -> BoxFuture<'_, Result<Vec<CallMinute>>>;
    /// The random identity this database was given when it was created.
    fn store_id(&self) -> BoxFuture<'_, Result<String>>;

    /// Every trunk as `(name, config)`, by name.
    fn list_trunks(&self) -> BoxFuture<'_, Result<Vec<(String, String)>>>;
    /// Inserts or replaces a trunk.
    fn put_trunk<'a>(&'a self, name: &'a str, config: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Deletes a trunk; returns whether it existed.
    fn delete_trunk<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Inserts a dialplan version and prunes all but the newest
    /// [`Store::DIALPLAN_VERSIONS_KEPT`]; returns its id.
    fn save_dialplan<'a>(&'a self, config: &'a str) -> BoxFuture<'a, Result<i64>>;
    /// The dialplan version with the largest id.
    fn latest_dialplan(&self) -> BoxFuture<'_, Result<Option<(i64, String)>>>;
    /// Every kept dialplan version as `(id, created_at, length)`, newest
    /// first.
    fn dialplan_versions(&self) -> BoxFuture<'_, Result<Vec<(i64, i64, i64)>>>;
    /// One dialplan version as `(created_at, config)`.
    fn dialplan_version(&self, id: i64) -> BoxFuture<'_, Result<Option<(i64, String)>>>;
    /// The change counter of accounts, users, trunks and dialplans.
    fn config_version(&self) -> BoxFuture<'_, Result<i64>>;
}

/// Handle to Switchboard's persistent data: accounts, users, registrar
/// bindings, CDRs, trunks and dialplans.
///
/// Cheap to clone (one `Arc`); share it freely between tasks. Validates all
/// input before it reaches the database.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Store").field(&self.0.kind()).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `data_dir/switchboard.db` in WAL mode with
    /// foreign keys on, and applies pending migrations.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store> {
        Ok(Store(Arc::new(SqliteBackend::open(data_dir).await?)))
    }

    /// A fresh, private in-memory SQLite database with the schema applied;
    /// for tests. Its data is gone once the `Store` and its clones are
    /// dropped.
    pub async fn open_sqlite_memory() -> Result<Store> {
        Ok(Store(Arc::new(SqliteBackend::open_memory().await?)))
    }

    /// A Postgres store shared by every replica, from a `postgres://` URL
    /// (the value of `DATABASE_URL`).
    ///
    /// Does not need the server: the URL is only parsed (a malformed one is
    /// [`Error::Invalid`] naming `DATABASE_URL`), connections are opened on
    /// demand, and the schema `switchboard` is migrated by a background task
    /// that retries with back-off (1 s doubling to 30 s) until it succeeds.
    /// Until then every call fails with [`Error::Unavailable`] and
    /// [`Store::health`] says why; see [`Store::wait_ready`]. Must be called
    /// within a Tokio runtime.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        Ok(Store(Arc::new(PgBackend::open(url)?)))
    }

    /// Wraps a custom backend (another database, or a test double). Input is
    /// still validated by `Store` before reaching it.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Store {
        Store(backend)
    }

    /// Short name of the backend, e.g. `"sqlite"`.
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    /// A cheap query proving the database answers (for health endpoints).
    /// [`Error::Unavailable`] carries the reason a server should report as
    /// degraded.
    pub async fn health(&self) -> Result<()> {
        self.0.health().await
    }

    /// Waits at most `timeout` until the store serves calls: immediately
    /// for SQLite, once the schema is migrated for Postgres. On timeout,
    /// [`Error::Unavailable`] with the last reason.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.0.wait_ready(timeout).await
    }

    /// Closes the database connections, waiting for running queries; call
    /// on shutdown. Every clone of this `Store` fails afterwards.
    pub async fn close(&self) {
        self.0.close().await
    }

    // ----- accounts -----

    /// All accounts, by id (the default account first).
    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.0.list_accounts().await
    }

    /// One account, or [`Error::NotFound`].
    pub async fn get_account(&self, id: i64) -> Result<Account> {
        self.0.get_account(id).await
    }

    /// Creates an account. [`Error::Conflict`] if the name or domain is
    /// taken.
    pub async fn create_account(&self, new: NewAccount) -> Result<Account> {
        let new = NewAccount {
            name: validate::account_name(&new.name)?,
            domain: validate::opt_domain(new.domain.as_deref())?,
            max_concurrent_calls: validate::max_concurrent_calls(new.max_concurrent_calls)?,
            srtp: Some(validate::srtp(new.srtp.as_deref().unwrap_or("optional"))?),
        };
        self.0.create_account(new).await
    }

    /// Changes the fields set in `patch` and returns the updated account.
    ///
    /// Changing the domain changes the digest realm if the server uses the
    /// account domain as realm; the users' HA1s must then be recomputed by
    /// the caller.
    pub async fn update_account(&self, id: i64, patch: AccountPatch) -> Result<Account> {
        let patch = AccountPatch {
            name: patch
                .name
                .as_deref()
                .map(validate::account_name)
                .transpose()?,
            domain: patch
                .domain
                .map(|d| validate::opt_domain(d.as_deref()))
                .transpose()?,
            max_concurrent_calls: patch
                .max_concurrent_calls
                .map(validate::max_concurrent_calls)
                .transpose()?,
            srtp: patch.srtp.as_deref().map(validate::srtp).transpose()?,
        };
        if patch.is_empty() {
            return self.0.get_account(id).await;
        }
        self.0.update_account(id, patch).await
    }

    /// Deletes an account with its users and their registrations. The
    /// default account cannot be deleted ([`Error::Invalid`]).
    pub async fn delete_account(&self, id: i64) -> Result<()> {
        if id == DEFAULT_ACCOUNT_ID {
            return Err(Error::Invalid(
                "id: the default account cannot be deleted".to_owned(),
            ));
        }
        self.0.delete_account(id).await
    }

    /// The account serving a SIP domain: the one claiming it (compared
    /// case-insensitively), otherwise the default account.
    pub async fn account_for_domain(&self, domain: &str) -> Result<Account> {
        self.0
            .account_for_domain(&domain.to_ascii_lowercase())
            .await
    }

    // ----- users -----

    /// All users, or those of one account, by id.
    pub async fn list_users(&self, account_id: Option<i64>) -> Result<Vec<User>> {
        self.0.list_users(account_id).await
    }

    /// One user, or [`Error::NotFound`].
    pub async fn get_user(&self, id: i64) -> Result<User> {
        self.0.get_user(id).await
    }

    /// One page of the users matching `filter` (by id) and the number of
    /// matches in all pages.
    pub async fn search_users(&self, filter: &UserFilter) -> Result<(Vec<User>, u64)> {
        let (users, total) = self.0.search_users(filter).await?;
        Ok((users, u64::try_from(total).unwrap_or(0)))
    }

    /// The user with this username in this account, for digest
    /// authentication.
    pub async fn find_user(&self, account_id: i64, username: &str) -> Result<Option<User>> {
        self.0.find_user(account_id, username).await
    }

    /// The user with this extension in this account, for routing calls to
    /// extensions.
    pub async fn find_user_by_extension(
        &self,
        account_id: i64,
        extension: &str,
    ) -> Result<Option<User>> {
        self.0.find_user_by_extension(account_id, extension).await
    }

    /// Creates a user. [`Error::Conflict`] if the username or extension is
    /// taken in the account, [`Error::Invalid`] if the account does not
    /// exist or a field is malformed.
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        let new = NewUser {
            account_id: new.account_id,
            username: validate::username(&new.username)?,
            extension: validate::opt_extension(new.extension.as_deref())?,
            display_name: validate::opt_display_name(new.display_name.as_deref())?,
            ha1_md5: validate::ha1_md5(&new.ha1_md5)?,
            ha1_sha256: validate::ha1_sha256(&new.ha1_sha256)?,
            enabled: new.enabled,
        };
        self.0.create_user(new).await
    }

    /// Changes the fields set in `patch` and returns the updated user.
    ///
    /// Both HA1s must be given together, and with any change of username
    /// (they are digests over it).
    pub async fn update_user(&self, id: i64, patch: UserPatch) -> Result<User> {
        let mut patch = UserPatch {
            username: patch
                .username
                .as_deref()
                .map(validate::username)
                .transpose()?,
            extension: patch
                .extension
                .map(|e| validate::opt_extension(e.as_deref()))
                .transpose()?,
            display_name: patch
                .display_name
                .map(|d| validate::opt_display_name(d.as_deref()))
                .transpose()?,
            ha1_md5: patch
                .ha1_md5
                .as_deref()
                .map(validate::ha1_md5)
                .transpose()?,
            ha1_sha256: patch
                .ha1_sha256
                .as_deref()
                .map(validate::ha1_sha256)
                .transpose()?,
            enabled: patch.enabled,
        };
        match (&patch.ha1_md5, &patch.ha1_sha256) {
            (Some(_), None) => {
                return Err(Error::Invalid(
                    "ha1_sha256: must be set together with ha1_md5".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Invalid(
                    "ha1_md5: must be set together with ha1_sha256".to_owned(),
                ));
            }
            _ => {}
        }
        if patch.ha1_md5.is_none() && patch.username.is_some() {
            let current = self.0.get_user(id).await?;
            if patch.username.as_deref() == Some(current.username.as_str()) {
                patch.username = None;
            } else {
                return Err(Error::Invalid(
                    "ha1_md5: new digests are required when the username changes".to_owned(),
                ));
            }
        }
        self.0.update_user(id, patch).await
    }

    /// Deletes a user and its registrations.
    pub async fn delete_user(&self, id: i64) -> Result<()> {
        self.0.delete_user(id).await
    }

    // ----- registrations -----

    /// Inserts or replaces (by `(aor, contact)`) registrar bindings, all in
    /// one transaction. Meant for the registrar's write-behind flusher with
    /// thousands of rows per call. Rows are stored as given, without
    /// validation, so one odd binding cannot fail a whole batch.
    pub async fn upsert_registrations(&self, regs: &[Registration]) -> Result<()> {
        if regs.is_empty() {
            return Ok(());
        }
        self.0.upsert_registrations(regs).await
    }

    /// Deletes bindings by `(aor, contact)`, in one transaction; returns how
    /// many existed.
    pub async fn delete_registrations(&self, keys: &[(String, String)]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.0.delete_registrations(keys).await
    }

    /// Deletes all bindings of an address of record; returns how many
    /// existed.
    pub async fn delete_aor(&self, aor: &str) -> Result<u64> {
        self.0.delete_aor(aor).await
    }

    /// Bindings still valid at `now_ms` (`expires_at > now_ms`), ordered by
    /// `(aor, contact)`, for the registrar to warm its cache at startup.
    /// Expired bindings, and those whose account or user no longer exists,
    /// are deleted.
    pub async fn load_registrations(&self, now_ms: i64) -> Result<Vec<Registration>> {
        self.0.load_registrations(now_ms).await
    }

    // ----- cdrs -----

    /// Stores a CDR. Idempotent on `call_id`: a CDR delivered again is
    /// ignored and `Ok(false)` returned. `id` and `created_at` of the
    /// argument are ignored; the store assigns them.
    pub async fn insert_cdr(&self, cdr: &Cdr) -> Result<bool> {
        validate::call_id(&cdr.call_id)?;
        self.0.insert_cdr(cdr).await
    }

    /// Stores CDRs in one transaction, each idempotent on `call_id` as in
    /// [`Store::insert_cdr`]; all or none. Returns how many were new.
    pub async fn insert_cdrs(&self, cdrs: &[Cdr]) -> Result<u64> {
        for cdr in cdrs {
            validate::call_id(&cdr.call_id)?;
        }
        self.0.insert_cdrs(cdrs).await
    }

    /// The CDR of a call, or [`Error::NotFound`].
    pub async fn get_cdr(&self, call_id: &str) -> Result<Cdr> {
        self.0.get_cdr(call_id).await
    }

    /// CDRs matching `filter`, newest first, at most
    /// [`CdrFilter::effective_limit`] rows. For the next page, set
    /// `filter.cursor` to the id of the last row returned.
    pub async fn list_cdrs(&self, filter: &CdrFilter) -> Result<Vec<Cdr>> {
        self.0.list_cdrs(filter).await
    }

    /// Calls per minute from the CDRs, by INVITE time: `minutes` entries
    /// from the minute starting at `from_ms`, empty minutes included.
    /// `minutes` is clamped to `1..=`[`Store::MAX_CALL_MINUTES`].
    pub async fn call_minutes(&self, from_ms: i64, minutes: u32) -> Result<Vec<CallMinute>> {
        let minutes = minutes.clamp(1, Self::MAX_CALL_MINUTES);
        let to_ms = from_ms.saturating_add(i64::from(minutes) * 60_000);
        let found = self.0.call_minutes(from_ms, to_ms).await?;
        let mut out: Vec<CallMinute> = (0..i64::from(minutes))
            .map(|i| CallMinute {
                at_ms: from_ms + i * 60_000,
                ..CallMinute::default()
            })
            .collect();
        for m in found {
            let i = usize::try_from(m.at_ms / 60_000).unwrap_or(usize::MAX);
            if let Some(slot) = out.get_mut(i) {
                *slot = CallMinute {
                    at_ms: slot.at_ms,
                    ..m
                };
            }
        }
        Ok(out)
    }

    /// Most minutes [`Store::call_minutes`] counts at once (a day).
    pub const MAX_CALL_MINUTES: u32 = 1440;

    /// The random identity the database was given when it was created:
    /// replicas sharing one database report the same, so a reader of
    /// several replicas' figures counts them once.
    pub async fn store_id(&self) -> Result<String> {
        self.0.store_id().await
    }

    // ----- configuration shared by the replicas -----

    /// Dialplan versions kept by [`Store::save_dialplan`]; older ones are
    /// deleted.
    pub const DIALPLAN_VERSIONS_KEPT: i64 = 100;

    /// Every trunk as `(name, JSON config)`, ordered by name.
    pub async fn list_trunks(&self) -> Result<Vec<(String, String)>> {
        self.0.list_trunks().await
    }

    /// Creates or replaces the trunk `name` (1 to 64 of `[A-Za-z0-9_-]`).
    /// `config` must be a JSON object of at most 64 KiB; it is stored as
    /// given and returned byte for byte.
    pub async fn put_trunk(&self, name: &str, config: &str) -> Result<()> {
        validate::trunk_name(name)?;
        validate::json_object("config", config, validate::MAX_TRUNK_CONFIG)?;
        self.0.put_trunk(name, config).await
    }

    /// Deletes a trunk; returns whether it existed.
    pub async fn delete_trunk(&self, name: &str) -> Result<bool> {
        self.0.delete_trunk(name).await
    }

    /// Saves a new dialplan version (a JSON object of at most 4 MiB, stored
    /// as given) and returns its id, larger than every earlier version's.
    /// Only the newest [`Store::DIALPLAN_VERSIONS_KEPT`] are kept.
    pub async fn save_dialplan(&self, config: &str) -> Result<i64> {
        validate::json_object("dialplan", config, validate::MAX_DIALPLAN)?;
        self.0.save_dialplan(config).await
    }

    /// The newest saved dialplan as `(id, JSON)`, or `None` if none was
    /// saved.
    pub async fn latest_dialplan(&self) -> Result<Option<(i64, String)>> {
        self.0.latest_dialplan().await
    }

    /// The kept dialplan versions as `(id, created_at unix ms, length of
    /// the JSON in characters)`, newest first.
    pub async fn dialplan_versions(&self) -> Result<Vec<(i64, i64, i64)>> {
        self.0.dialplan_versions().await
    }

    /// Dialplan version `id` as `(created_at unix ms, JSON)`, or `None` when
    /// it was never saved or has been pruned.
    pub async fn dialplan_version(&self, id: i64) -> Result<Option<(i64, String)>> {
        self.0.dialplan_version(id).await
    }

    /// A number that grows whenever accounts, users, trunks or the dialplan
    /// change, in the same transaction as the change (it may also grow
    /// without a visible change). One primary-key read, cheap enough for
    /// every replica to poll twice a second and reload its configuration
    /// when it moved.
    pub async fn config_version(&self) -> Result<i64> {
        self.0.config_version().await
    }
}
