//! Persistent data of the Switchboard signaling server: accounts (tenants
//! and their SIP domains), users with their digest credentials, registrar
//! bindings that must survive a restart, call detail records, and the
//! configuration the signaling replicas share (SIP trunks, saved dialplan
//! versions, and a change counter to notice each other's writes).
//!
//! Everything goes through [`Store`], a cheap `Clone` handle over a
//! [`Backend`]. Two backends implement it with the same behaviour (one test
//! suite runs against both), and no database type appears in the API:
//!
//! * embedded SQLite ([`Store::open_sqlite`]), the single-node default; the
//!   schema (`migrations/sqlite/` at the workspace root) is applied on open;
//! * Postgres ([`Store::open_postgres`], from `DATABASE_URL`), shared by
//!   several replicas; tables live in the schema `switchboard`
//!   (`migrations/postgres/`). Opening needs no server: migrations run in
//!   the background, retried with back-off, and calls fail with
//!   [`Error::Unavailable`] until they are applied ([`Store::health`] says
//!   why, [`Store::wait_ready`] waits). Replicas starting together migrate
//!   one at a time under an advisory lock.
//!
//! Replicas poll [`Store::config_version`] (one primary-key read) and reload
//! accounts, users, trunks and the dialplan when it moves.
//!
//! ```no_run
//! # async fn demo() -> switchboard_store::Result<()> {
//! use switchboard_store::{NewAccount, Store};
//!
//! let store = Store::open_sqlite(std::path::Path::new("/var/lib/switchboard")).await?;
//! let acme = store
//!     .create_account(NewAccount {
//!         name: "acme".into(),
//!         domain: Some("sip.acme.example".into()),
//!         max_concurrent_calls: 0,
//!         srtp: None,
//!     })
//!     .await?;
//! assert_eq!(store.account_for_domain("SIP.ACME.example").await?.id, acme.id);
//! # Ok(())
//! # }
//! ```

mod columns;
mod error;
mod model;
mod postgres;
mod sqlite;
mod store;
mod validate;

pub use error::{Error, Result};
pub use model::{
    Account, AccountPatch, CallMinute, Cdr, CdrFilter, DEFAULT_ACCOUNT_ID, NewAccount, NewUser,
    Registration, User, UserFilter, UserPatch,
};
pub use store::{Backend, BoxFuture, Store};

/// The current time in unix milliseconds, the unit of every `*_at` field.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
