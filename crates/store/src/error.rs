//! The store's error type.
//!
//! Callers (the HTTP API, the registrar, the CDR writer) need to tell apart
//! "the row is not there", "a unique field is already taken", "the input is
//! malformed" and "the database failed", because each maps to a different
//! response. Database errors are classified here, once, so every backend
//! reports a unique violation the same way.

/// Result alias used by every store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The addressed row does not exist.
    #[error("not found")]
    NotFound,
    /// A unique field is already taken; the message names the field,
    /// e.g. `"username already exists"`.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input was rejected; the message starts with the field name,
    /// e.g. `"username: must not be empty"`.
    #[error("invalid {0}")]
    Invalid(String),
    /// The schema migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The data directory could not be created.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The database cannot be reached or is not ready yet (Postgres still
    /// being migrated, connection refused, pool exhausted, a statement
    /// timed out); the message says why. Retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Backend(#[source] sqlx::Error),
}

/// Unique fields in the order they are looked for in a constraint name or
/// message. `username` comes before `name`, which it contains.
const UNIQUE_FIELDS: &[&str] = &["username", "extension", "call_id", "domain", "name"];

impl From<sqlx::Error> for Error {
    /// Classifies database errors: missing rows become [`Error::NotFound`],
    /// unique violations [`Error::Conflict`] naming the field, foreign key
    /// violations (only `users.account_id` has one) [`Error::Invalid`], and
    /// failures of the connection rather than of the statement
    /// [`Error::Unavailable`].
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Error::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err.to_string()),
            sqlx::Error::Database(db)
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some_and(|pg| unavailable_sqlstate(pg.code())) =>
            {
                Error::Unavailable(db.message().to_owned())
            }
            sqlx::Error::Database(db) => match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    // SQLite: "UNIQUE constraint failed: users.account_id, users.username";
                    // Postgres: constraint "users_account_id_username_key".
                    let text = db.constraint().unwrap_or_else(|| db.message());
                    match UNIQUE_FIELDS.iter().find(|f| text.contains(*f)) {
                        Some(field) => Error::Conflict(format!("{field} already exists")),
                        None => Error::Conflict(format!("already exists ({text})")),
                    }
                }
                sqlx::error::ErrorKind::ForeignKeyViolation => {
                    Error::Invalid("account_id: no such account".to_owned())
                }
                _ => Error::Backend(err),
            },
            _ => Error::Backend(err),
        }
    }
}

/// Postgres SQLSTATEs that say the server, not the statement, is at fault:
/// class 08 (connection exception), 53 (insufficient resources: disk full,
/// too many connections), 57 (operator intervention: shutdown, a statement
/// cancelled by `statement_timeout`) and 40P01 (deadlock: retry).
fn unavailable_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "53" | "57")) || code == "40P01"
}
