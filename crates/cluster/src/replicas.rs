//! Replica heartbeats and reaping the dead.
//!
//! A heartbeat is a key with a TTL (`hb:{replica}`): it exists exactly
//! while the replica is alive. The sorted set `replicas` remembers every
//! replica with its last heartbeat time, so the dead are found without a
//! scan, and `rinfo` keeps what each one last reported.

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::Shared;
use crate::calls::LUA_DROP_CALLS;
use crate::error::{Error, Result};

/// What a replica reports in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// The replica's id (must be the heartbeating handle's own).
    pub id: String,
    /// Where it takes SIP, `ip:port`.
    pub sip_addr: String,
    /// Where its REST API listens, `ip:port`.
    pub api_addr: String,
    /// When it started, unix ms.
    pub started_ms: i64,
    /// Contacts registered through it.
    pub registrations: u64,
    /// Calls it handles.
    pub calls: u64,
}

/// A replica as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its last report.
    pub info: ReplicaInfo,
    /// Its last heartbeat, unix ms (its clock).
    pub last_seen_ms: i64,
    /// Whether its heartbeat has not expired.
    pub alive: bool,
}

/// KEYS: replicas, rinfo. ARGV: now, dead after (ms), the `hb:`, `call:`,
/// `calls:`, `acct:`, `slots:` prefixes, the caller's id. Reaps every
/// replica silent since before `now - dead_after` whose heartbeat key has
/// expired; being one script, each is reaped by exactly one caller.
static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_DROP_CALLS}{}",
        r"
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
local out = {}
for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)) do
  if r ~= ARGV[8] and redis.call('EXISTS', ARGV[3] .. r) == 0 then
    redis.call('ZREM', KEYS[1], r)
    redis.call('HDEL', KEYS[2], r)
    drop_calls(ARGV[4], ARGV[5], ARGV[6], ARGV[7], r)
    out[#out + 1] = r
  end
end
return out
"
    ))
});

impl Shared {
    /// Records this replica's heartbeat at `now_ms` (call it every ~2 s; it
    /// lives for [`crate::Options::heartbeat_ttl`]).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when `info.id` is not this handle's replica, and
    /// the connection errors of every operation.
    pub async fn heartbeat(&self, info: &ReplicaInfo, now_ms: i64) -> Result<()> {
        if info.id != self.replica().as_str() {
            return Err(self.stats().failed(Error::Invalid(format!(
                "heartbeat for {} from replica {}",
                info.id,
                self.replica()
            ))));
        }
        let json = serde_json::to_string(info).map_err(|e| {
            self.stats()
                .failed(Error::Invalid(format!("replica info: {e}")))
        })?;
        let k = self.keys();
        let ttl_ms = u64::try_from(self.inner.opts.heartbeat_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(k.heartbeat(&info.id))
            .arg(now_ms)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(k.replicas())
            .arg(now_ms)
            .arg(&info.id)
            .ignore()
            .cmd("HSET")
            .arg(k.replica_info())
            .arg(&info.id)
            .arg(json)
            .ignore();
        self.conn().run(&pipe).await
    }

    /// Every replica known (alive, or dead and not reaped yet), by last
    /// heartbeat. Liveness is the heartbeat key's TTL, so no clock is
    /// compared here.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn replicas(&self) -> Result<Vec<ReplicaStatus>> {
        let k = self.keys();
        let (set, hinfo) = (k.replicas(), k.replica_info());
        let seen: Vec<(String, f64)> = self
            .conn()
            .run(
                redis::cmd("ZRANGE")
                    .arg(set)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await?;
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, _) in &seen {
            pipe.cmd("HGET").arg(&hinfo).arg(id);
            pipe.cmd("EXISTS").arg(k.heartbeat(id));
        }
        let rows: Vec<(Option<String>, bool)> = self.conn().run(&pipe).await?;
        let mut out = Vec::with_capacity(seen.len());
        for ((id, score), (info, alive)) in seen.into_iter().zip(rows) {
            let info = match info.map(|j| serde_json::from_str::<ReplicaInfo>(&j)) {
                Some(Ok(info)) => info,
                Some(Err(e)) => {
                    warn!(replica = %id, cause = %e, "unreadable replica info");
                    self.stats().failed(Error::Decode(e.to_string()));
                    continue;
                }
                None => continue,
            };
            out.push(ReplicaStatus {
                info,
                // Scores are whole milliseconds well inside f64's exact range.
                #[allow(clippy::cast_possible_truncation)]
                last_seen_ms: score as i64,
                alive,
            });
        }
        Ok(out)
    }

    /// Whether `replica`'s heartbeat has not expired.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn is_alive(&self, replica: &str) -> Result<bool> {
        self.part("replica", replica)?;
        let key = self.keys().heartbeat(replica);
        self.conn().run(redis::cmd("EXISTS").arg(key)).await
    }

    /// Reaps replicas whose heartbeat expired and whose last heartbeat is
    /// older than `now_ms - dead_after_ms`: forgets them and removes their
    /// live calls and call slots (their bindings stay). Returns the ids this
    /// caller reaped; concurrent callers never reap the same replica, and
    /// a handle never reaps itself.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn reap_dead(&self, now_ms: i64, dead_after_ms: i64) -> Result<Vec<String>> {
        let k = self.keys();
        let keys = [k.replicas(), k.replica_info()];
        let args = [
            now_ms.to_string(),
            dead_after_ms.max(0).to_string(),
            k.heartbeat_prefix(),
            k.call_prefix(),
            k.replica_calls_prefix(),
            k.account_slots_prefix(),
            k.replica_slots_prefix(),
            self.replica().as_str().to_owned(),
        ];
        let reaped: Vec<String> = self.conn().run(REAP.key(&keys[..]).arg(&args[..])).await?;
        for r in &reaped {
            info!(replica = %r, "reaped a dead replica: its calls and call slots removed");
        }
        Ok(reaped)
    }
}
