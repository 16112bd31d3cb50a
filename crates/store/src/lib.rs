//! Persistent data of the Switchboard signaling server: accounts (tenants
//! and their SIP domains), users with their digest credentials, registrar
//! bindings that must survive a restart, and call detail records.
//!
//! Everything goes through [`Store`], a cheap `Clone` handle over a
//! [`Backend`]. Today the backend is embedded SQLite
//! ([`Store::open_sqlite`]); a Postgres backend implementing the same trait
//! is planned, which is why no SQLite type appears in the API and the SQL is
//! kept portable. The schema lives in `migrations/sqlite/` at the workspace
//! root and is applied on open.
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
//!     })
//!     .await?;
//! assert_eq!(store.account_for_domain("SIP.ACME.example").await?.id, acme.id);
//! # Ok(())
//! # }
//! ```

mod error;
mod model;
mod sqlite;
mod store;
mod validate;

pub use error::{Error, Result};
pub use model::{
    Account, AccountPatch, Cdr, CdrFilter, DEFAULT_ACCOUNT_ID, NewAccount, NewUser, Registration,
    User, UserPatch,
};
pub use store::{Backend, BoxFuture, Store};

/// The current time in unix milliseconds, the unit of every `*_at` field.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
