//! The crate's error type.

/// Why a shared-state operation failed.
///
/// Callers on the SIP path treat every variant the same way (fall back to
/// local state); the variants exist for logs and [`Error::metric_label`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis is known to be unreachable (the connection supervisor's last
    /// probe failed), so the operation was not attempted.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The operation did not complete within the response timeout.
    #[error("redis operation timed out")]
    Timeout,
    /// Redis answered with an error, or the connection failed mid-request.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A value stored in Redis could not be read (written by another
    /// version, or by hand).
    #[error("undecodable value in redis: {0}")]
    Decode(String),
    /// The caller passed something unusable (an empty or oversized key part,
    /// a malformed address).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// An AOR would exceed the hard ceiling on contacts per AOR.
    #[error("too many contacts for {aor} (at most {max})")]
    TooManyContacts {
        /// The address of record.
        aor: String,
        /// The ceiling ([`crate::Options::max_contacts_per_aor`]).
        max: u32,
    },
}

impl Error {
    /// A short label for a failure counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Unavailable(_) => "unavailable",
            Error::Timeout => "timeout",
            Error::Redis(_) => "redis",
            Error::Decode(_) => "decode",
            Error::Invalid(_) => "invalid",
            Error::TooManyContacts { .. } => "too_many_contacts",
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
