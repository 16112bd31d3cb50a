//! Digest replay guard and the failed-authentication limiter, shared so an
//! attacker gains nothing by spreading attempts over replicas.

use std::sync::LazyLock;

use redis::Script;

use crate::Shared;
use crate::commands::Command;
use crate::error::Result;

/// KEYS: nc:{nonce}. ARGV: nc, ttl (s). 1 when nc is above every nc seen
/// for the nonce (and records it); 0 otherwise. The key gets its TTL when
/// the nonce is first seen and keeps it, so it dies with the nonce.
static NONCE_ADVANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local nc = tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
if nc > tonumber(cur) then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
  return 1
end
return 0
",
    )
});

/// KEYS: af:{key}. ARGV: window (s). Counts one failure in the window that
/// the first failure opened; returns the count.
static AUTH_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return n
",
    )
});

impl Shared {
    /// The digest nonce-count replay guard (RFC 7616 `nc`): true iff `nc`
    /// is greater than every nc seen before for `nonce`, on any replica.
    /// The record expires `ttl_secs` after the nonce was first seen (pass
    /// the nonce's remaining lifetime). An nc of 0 (never sent by a phone:
    /// counts start at 1) is treated as 1.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation; callers treat an error as
    /// "cannot tell" (a replica alone still checks nonce freshness).
    pub async fn nonce_count_advance(&self, nonce: &str, nc: u32, ttl_secs: u64) -> Result<bool> {
        self.part("nonce", nonce)?;
        let key = self.keys().nonce(nonce);
        let ttl = ttl_secs.max(1);
        if nc <= 1 {
            // the first use of a nonce (phones answer most challenges with
            // nc=1, or without qop): fresh iff nothing was recorded yet, a
            // plain SET NX, which Redis serves without running a script
            let set: Option<String> = self
                .conn()
                .run(
                    redis::cmd("SET")
                        .arg(key)
                        .arg(nc)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl),
                )
                .await?;
            return Ok(set.is_some());
        }
        let r: i64 = self
            .conn()
            .run(NONCE_ADVANCE.key(key).arg(nc).arg(ttl))
            .await?;
        Ok(r == 1)
    }

    /// Counts one failed authentication for `key` (a source address, a
    /// user) and returns the failures in the current window, across
    /// replicas. The window is fixed: it starts at the first failure and
    /// lasts `window_secs`.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn record_auth_failure(&self, key: &str, window_secs: u64) -> Result<u64> {
        self.part("limiter key", key)?;
        let k = self.keys().auth_fail(key);
        let window = window_secs.max(1);
        self.conn().run(AUTH_FAILURE.key(k).arg(window)).await
    }

    /// Blocks `key` for `secs` on every replica: stored (for
    /// [`Shared::is_blocked`]) and broadcast as [`Command::BlockSource`] so
    /// replicas can keep a local blocked set.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn block(&self, key: &str, secs: u64) -> Result<()> {
        self.part("block key", key)?;
        let secs = secs.max(1);
        let k = self.keys().blocked(key);
        let (channel, payload) = self.envelope_all(&Command::BlockSource {
            key: key.to_owned(),
            secs,
        })?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(k)
            .arg(1)
            .arg("EX")
            .arg(secs)
            .ignore()
            .cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .ignore();
        self.conn().run::<()>(&pipe).await?;
        self.stats().published();
        Ok(())
    }

    /// Lifts a block early, everywhere ([`Command::UnblockSource`]).
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn unblock(&self, key: &str) -> Result<()> {
        self.part("block key", key)?;
        let k = self.keys().blocked(key);
        let (channel, payload) = self.envelope_all(&Command::UnblockSource {
            key: key.to_owned(),
        })?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(k)
            .ignore()
            .cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .ignore();
        self.conn().run::<()>(&pipe).await?;
        self.stats().published();
        Ok(())
    }

    /// Whether `key` is blocked (by any replica).
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn is_blocked(&self, key: &str) -> Result<bool> {
        self.part("block key", key)?;
        let k = self.keys().blocked(key);
        self.conn().run(redis::cmd("EXISTS").arg(k)).await
    }
}
