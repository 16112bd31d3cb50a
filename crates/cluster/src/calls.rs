//! Live calls and per-account call slots across replicas.
//!
//! A call is one JSON string under `call:{id}` plus its id in the owner's
//! `calls:{replica}` set, so a dead replica's calls are found without a
//! scan. A call slot is the call id in `acct:{account}` (the count the
//! limit applies to) plus `{account} {call id}` in the holder's
//! `slots:{replica}` set, so a dead replica's slots are freed even for
//! calls it never got to publish.

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::Shared;
use crate::error::{Error, Result};

/// Ids per `MGET` when reading calls.
const MGET_CHUNK: usize = 500;

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// INVITE received, dialplan running.
    Routing,
    /// A B-leg is ringing.
    Ringing,
    /// Answered; media flows.
    Answered,
    /// Hanging up.
    Ending,
}

/// Which side of the B2BUA a leg is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegSide {
    /// The caller's leg.
    A,
    /// A leg the dialplan created.
    B,
}

/// One SIP dialog of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegInfo {
    /// The dialog's Call-ID (the peer's for the A-leg, ours for B-legs).
    pub sip_call_id: String,
    /// The leg's side.
    pub side: LegSide,
}

/// A call in progress, as other replicas and the API see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveCall {
    /// Our UUID for the call (never a Call-ID).
    pub id: String,
    /// The replica that handles it.
    pub owner: String,
    /// The tenant.
    pub account_id: i64,
    /// Where it is.
    pub state: CallState,
    /// Caller URI or number.
    pub caller: String,
    /// Callee URI or number.
    pub callee: String,
    /// Its dialogs.
    pub legs: Vec<LegInfo>,
    /// When the INVITE arrived, unix ms.
    pub started_ms: i64,
    /// When it was answered, unix ms.
    pub answered_ms: Option<i64>,
    /// The owner's whole view of the call (what its API shows), opaque here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<serde_json::Value>,
}

/// Lua removing every call and call slot of replica `r`, given the key
/// prefixes `call:`, `calls:`, `acct:`, `slots:`; returns the calls removed.
pub(crate) const LUA_DROP_CALLS: &str = r"
local function drop_calls(p_call, p_calls, p_acct, p_slots, r)
  local n = 0
  for _, id in ipairs(redis.call('SMEMBERS', p_calls .. r)) do
    n = n + redis.call('DEL', p_call .. id)
  end
  redis.call('DEL', p_calls .. r)
  for _, m in ipairs(redis.call('SMEMBERS', p_slots .. r)) do
    local sp = string.find(m, ' ', 1, true)
    if sp then
      redis.call('SREM', p_acct .. string.sub(m, 1, sp - 1), string.sub(m, sp + 1))
    end
  end
  redis.call('DEL', p_slots .. r)
  return n
end
";

/// KEYS: call:{id}, calls:{owner}. ARGV: call JSON, id, `calls:` prefix,
/// owner. Moves the id between owner sets if the owner changed.
static PUT_CALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('GET', KEYS[1])
if old then
  local ok, t = pcall(cjson.decode, old)
  if ok and type(t) == 'table' and type(t.owner) == 'string' and t.owner ~= ARGV[4] then
    redis.call('SREM', ARGV[3] .. t.owner, ARGV[2])
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
",
    )
});

/// KEYS: call:{id}. ARGV: id, `calls:` prefix. 1 if the call existed.
static REMOVE_CALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local ok, t = pcall(cjson.decode, old)
if ok and type(t) == 'table' and type(t.owner) == 'string' then
  redis.call('SREM', ARGV[2] .. t.owner, ARGV[1])
end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// KEYS: acct:{account}, slots:{replica}. ARGV: call id, limit (0 = none),
/// `{account} {call id}`. 1 if the call holds a slot (now or already).
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('SCARD', KEYS[1]) >= limit then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
",
    )
});

/// ARGV: `call:`, `calls:`, `acct:`, `slots:` prefixes, replica.
static DROP_CALLS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_DROP_CALLS}\nreturn drop_calls(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"
    ))
});

impl Shared {
    /// Publishes or updates a live call under its owner.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn put_call(&self, call: &LiveCall) -> Result<()> {
        self.part("call id", &call.id)?;
        self.part("owner", &call.owner)?;
        let json = serde_json::to_string(call)
            .map_err(|e| self.stats().failed(Error::Invalid(format!("call: {e}"))))?;
        let k = self.keys();
        let (key, set, prefix) = (
            k.call(&call.id),
            k.replica_calls(&call.owner),
            k.replica_calls_prefix(),
        );
        let _: i64 = self
            .conn()
            .run(
                PUT_CALL
                    .key(key)
                    .key(set)
                    .arg(json)
                    .arg(&call.id)
                    .arg(prefix)
                    .arg(&call.owner),
            )
            .await?;
        Ok(())
    }

    /// Removes a live call (its call slot is released separately, with
    /// [`Shared::release_call_slot`]). Returns whether it existed.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn remove_call(&self, id: &str) -> Result<bool> {
        self.part("call id", id)?;
        let k = self.keys();
        let (key, prefix) = (k.call(id), k.replica_calls_prefix());
        let n: i64 = self
            .conn()
            .run(REMOVE_CALL.key(key).arg(id).arg(prefix))
            .await?;
        Ok(n == 1)
    }

    /// One live call.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation, and [`Error::Decode`] for
    /// a stored call this version cannot read.
    pub async fn get_call(&self, id: &str) -> Result<Option<LiveCall>> {
        self.part("call id", id)?;
        let key = self.keys().call(id);
        let v: Option<String> = self.conn().run(redis::cmd("GET").arg(key)).await?;
        v.map(|v| {
            serde_json::from_str(&v).map_err(|e| {
                self.stats()
                    .failed(Error::Decode(format!("call {id}: {e}")))
            })
        })
        .transpose()
    }

    /// Every live call of every live replica (calls of a replica whose
    /// heartbeat expired are left out, even before it is reaped).
    /// Undecodable entries are skipped and counted.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn list_calls(&self) -> Result<Vec<LiveCall>> {
        let alive: Vec<String> = self
            .replicas()
            .await?
            .into_iter()
            .filter(|r| r.alive)
            .map(|r| r.info.id)
            .collect();
        if alive.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.keys();
        let mut pipe = redis::pipe();
        for r in &alive {
            pipe.cmd("SMEMBERS").arg(k.replica_calls(r));
        }
        let sets: Vec<Vec<String>> = self.conn().run(&pipe).await?;
        let keys: Vec<String> = sets.iter().flatten().map(|id| k.call(id)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MGET_CHUNK) {
            let chunk = chunk.to_vec();
            let vals: Vec<Option<String>> = self.conn().run(redis::cmd("MGET").arg(chunk)).await?;
            for v in vals.into_iter().flatten() {
                match serde_json::from_str::<LiveCall>(&v) {
                    Ok(call) => out.push(call),
                    Err(e) => {
                        warn!(cause = %e, "skipping a live call");
                        self.stats().failed(Error::Decode(e.to_string()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Takes one of `account_id`'s concurrent-call slots for `call_id`,
    /// atomically across replicas: true if the call now holds a slot
    /// (including when it already did), false when the account is at
    /// `limit`. `limit == 0` means unlimited.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn acquire_call_slot(
        &self,
        account_id: i64,
        call_id: &str,
        limit: u32,
    ) -> Result<bool> {
        self.part("call id", call_id)?;
        let k = self.keys();
        let (acct, slots) = (
            k.account_slots(account_id),
            k.replica_slots(self.replica().as_str()),
        );
        let member = format!("{account_id} {call_id}");
        let r: i64 = self
            .conn()
            .run(
                ACQUIRE
                    .key(acct)
                    .key(slots)
                    .arg(call_id)
                    .arg(limit)
                    .arg(member),
            )
            .await?;
        Ok(r == 1)
    }

    /// Gives back `call_id`'s slot of `account_id`; returns whether it held one.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn release_call_slot(&self, account_id: i64, call_id: &str) -> Result<bool> {
        self.part("call id", call_id)?;
        let k = self.keys();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SREM")
            .arg(k.account_slots(account_id))
            .arg(call_id)
            .cmd("SREM")
            .arg(k.replica_slots(self.replica().as_str()))
            .arg(format!("{account_id} {call_id}"))
            .ignore();
        let (n,): (i64,) = self.conn().run(&pipe).await?;
        Ok(n == 1)
    }

    /// Calls holding a slot of `account_id`, across replicas.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn account_calls(&self, account_id: i64) -> Result<u64> {
        let key = self.keys().account_slots(account_id);
        self.conn().run(redis::cmd("SCARD").arg(key)).await
    }

    /// Removes every call and call slot `replica` holds; returns the calls
    /// removed. [`Shared::reap_dead`] does this for dead replicas; a replica
    /// calls it for itself at start-up to drop what a previous run under the
    /// same id left behind.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn drop_replica_calls(&self, replica: &str) -> Result<u64> {
        self.part("replica", replica)?;
        let k = self.keys();
        let args = [
            k.call_prefix(),
            k.replica_calls_prefix(),
            k.account_slots_prefix(),
            k.replica_slots_prefix(),
            replica.to_owned(),
        ];
        self.conn().run(&DROP_CALLS.arg(&args[..])).await
    }
}
