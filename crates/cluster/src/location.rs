//! The location service: bindings per AOR, shared by every replica.
//!
//! One hash per AOR (contact → binding) keeps a lookup to one `HGETALL`.
//! The sorted set `locidx` scores each AOR by a lower bound of its
//! earliest expiry, so expiry is a range query on the set — never a scan of
//! all keys — and the same set is the AOR index that [`Shared::list`]
//! walks. A write only lowers a score (a new, earlier expiry); the sweep
//! scores an AOR exactly when it comes due, so a phone that refreshes costs
//! its AOR one re-scoring per expiry period, not one per REGISTER. Bindings are
//! stored as compact JSON arrays with the expiry first, which the scripts
//! read with one pattern match.

use std::sync::LazyLock;

use redis::Script;
use switchboard_store::Registration;
use tracing::warn;

use crate::Shared;
use crate::error::{Error, Result};

/// Most bindings [`Shared::list`] returns per call.
pub const MAX_LIST: usize = 10_000;

/// One binding as the replicas share it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedBinding {
    /// The replica the REGISTER came through, which holds the flow to the
    /// phone (requests go through it while it is alive).
    pub replica: String,
    /// The binding itself.
    pub reg: Registration,
}

/// Stored form of a binding, without the AOR and contact (they are the hash
/// key and field). The expiry must stay first: the scripts read it.
type WireOut<'a> = (
    i64,
    &'a str,
    i64,
    Option<i64>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
    &'a str,
    i64,
    Option<f64>,
    i64,
);
type WireIn = (
    i64,
    String,
    i64,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    String,
    i64,
    Option<f64>,
    i64,
);

impl SharedBinding {
    fn encode(&self) -> Result<String> {
        let r = &self.reg;
        let w: WireOut<'_> = (
            r.expires_at,
            &self.replica,
            r.account_id,
            r.user_id,
            &r.received,
            r.path.as_deref(),
            r.instance_id.as_deref(),
            r.reg_id,
            r.user_agent.as_deref(),
            &r.call_id,
            r.cseq,
            r.q,
            r.updated_at,
        );
        serde_json::to_string(&w).map_err(|e| Error::Invalid(format!("binding: {e}")))
    }

    fn decode(aor: &str, contact: &str, v: &str) -> Result<Self> {
        let w: WireIn = serde_json::from_str(v)
            .map_err(|e| Error::Decode(format!("binding {aor} {contact}: {e}")))?;
        let (expires_at, replica, account_id, user_id, received, path, instance_id, reg_id) =
            (w.0, w.1, w.2, w.3, w.4, w.5, w.6, w.7);
        let (user_agent, call_id, cseq, q, updated_at) = (w.8, w.9, w.10, w.11, w.12);
        Ok(Self {
            replica,
            reg: Registration {
                aor: aor.to_owned(),
                contact: contact.to_owned(),
                account_id,
                user_id,
                received,
                path,
                instance_id,
                reg_id,
                user_agent,
                call_id,
                cseq,
                q,
                expires_at,
                updated_at,
            },
        })
    }
}

/// Lua shared by the location scripts.
///
/// - `expiry(v)`: a binding's expiry.
/// - `reindex(key, idx, aor)`: scores the AOR by its exact earliest expiry,
///   or drops it from the index when it has no bindings left (the sweep).
/// - `drop_if_empty(key, idx, aor)`: after removals, drops the AOR from the
///   index when its hash is gone. Removing bindings can only raise the
///   earliest expiry, so the score stays a lower bound.
/// - `upsert(key, idx, aor, first)`: writes the (contact, binding) pairs
///   from `ARGV[first]` on and returns how many contacts were new. The AOR's
///   score only ever moves down here (`ZADD LT`): a refresh, which moves an
///   expiry later, costs no re-scoring; the sweep finds such an AOR due
///   early, claims nothing and scores it exactly.
/// - `too_many(key, first, max)`: whether the pairs from `ARGV[first]` on
///   add a contact that takes the AOR past `max` contacts (0 = no ceiling);
///   refreshing contacts it holds is never too many. Contacts are only
///   looked up when the hash's length plus the pairs could pass `max`.
const LUA_COMMON: &str = r"
local function expiry(v)
  return tonumber(string.match(v, '^%[(%-?%d+)')) or 0
end
local function reindex(key, idx, aor)
  local vals = redis.call('HVALS', key)
  if #vals == 0 then
    redis.call('ZREM', idx, aor)
    return
  end
  local min
  for _, v in ipairs(vals) do
    local e = expiry(v)
    if min == nil or e < min then min = e end
  end
  redis.call('ZADD', idx, min, aor)
end
local function drop_if_empty(key, idx, aor)
  if redis.call('EXISTS', key) == 0 then redis.call('ZREM', idx, aor) end
end
local function upsert(key, idx, aor, first)
  local new, min = 0, nil
  for i = first, #ARGV, 2 do
    new = new + redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    local e = expiry(ARGV[i + 1])
    if min == nil or e < min then min = e end
  end
  if min ~= nil then redis.call('ZADD', idx, 'LT', min, aor) end
  return new
end
local function too_many(key, first, max)
  if max <= 0 or first > #ARGV then return false end
  local len = redis.call('HLEN', key)
  if len + (#ARGV - first + 1) / 2 <= max then return false end
  local seen, new = {}, 0
  for i = first, #ARGV, 2 do
    local c = ARGV[i]
    if not seen[c] then
      seen[c] = true
      if redis.call('HEXISTS', key, c) == 0 then new = new + 1 end
    end
  end
  return new > 0 and len + new > max
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_COMMON}{body}"))
}

/// KEYS: loc:{aor}, locidx, locn. ARGV: aor, max contacts (0 = none), then
/// contact, binding pairs. Returns the number of new contacts, or -1 when
/// the ceiling would be exceeded (nothing written).
static PUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key = KEYS[1]
if too_many(key, 3, tonumber(ARGV[2])) then return -1 end
local new = upsert(key, KEYS[2], ARGV[1], 3)
if new > 0 then redis.call('INCRBY', KEYS[3], new) end
return new
",
    )
});

/// KEYS: loc:{aor}, locidx, locn, nc:{nonce}. ARGV: aor, max contacts
/// (0 = none), nc, nonce ttl (s), the number of contacts to remove, those
/// contacts, then contact, binding pairs. The digest nonce-count guard
/// (as `guard.rs`'s script) and a REGISTER's change in one call: -2 and
/// nothing written when nc is not above the nonce's recorded count;
/// otherwise the count is recorded, the contacts removed, and the pairs
/// upserted as [`PUT`] does (-1 when the ceiling would be exceeded: the
/// removals stand, no pair is written); returns the new contacts.
static GUARDED_CHANGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local nc = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[4])
if cur then
  if nc <= tonumber(cur) then return -2 end
  redis.call('SET', KEYS[4], ARGV[3], 'KEEPTTL')
else
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[4])
end
local key = KEYS[1]
local nrem = tonumber(ARGV[5])
local removed = 0
for i = 6, 5 + nrem do removed = removed + redis.call('HDEL', key, ARGV[i]) end
if removed > 0 then redis.call('DECRBY', KEYS[3], removed) end
local first = 6 + nrem
if too_many(key, first, tonumber(ARGV[2])) then
  if removed > 0 then drop_if_empty(key, KEYS[2], ARGV[1]) end
  return -1
end
local new = upsert(key, KEYS[2], ARGV[1], first)
if new > 0 then redis.call('INCRBY', KEYS[3], new) end
if removed > 0 and first > #ARGV then drop_if_empty(key, KEYS[2], ARGV[1]) end
return new
",
    )
});

/// KEYS: loc:{aor}, locidx, locn. ARGV: aor, contacts… Returns how many
/// were removed.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local n = 0
for i = 2, #ARGV do n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
if n > 0 then
  redis.call('DECRBY', KEYS[3], n)
  drop_if_empty(KEYS[1], KEYS[2], ARGV[1])
end
return n
",
    )
});

/// KEYS: loc:{aor}, locidx, locn. ARGV: aor, replica, received, contacts…
/// Removes each contact whose binding still names that replica and that
/// flow (`received`), and returns the contacts removed. The binding's
/// replica and received are its 2nd and 5th fields.
static REMOVE_FLOW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {}
for i = 4, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local ok, b = pcall(cjson.decode, v)
    if ok and type(b) == 'table' and b[2] == ARGV[2] and b[5] == ARGV[3] then
      redis.call('HDEL', KEYS[1], ARGV[i])
      out[#out + 1] = ARGV[i]
    end
  end
end
if #out > 0 then
  redis.call('DECRBY', KEYS[3], #out)
  drop_if_empty(KEYS[1], KEYS[2], ARGV[1])
end
return out
",
    )
});

/// KEYS: loc:{aor}, locidx, locn. ARGV: aor. Returns how many bindings the
/// AOR had.
static REMOVE_AOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n > 0 then redis.call('DECRBY', KEYS[3], n) end
return n
",
    )
});

/// KEYS: locidx, locn. ARGV: the `loc:` key prefix, now (ms), max. Removes
/// and returns up to max expired bindings as flat (aor, contact, binding)
/// triples. An AOR that comes due with nothing expired (its score was a
/// lower bound: its bindings were refreshed) is scored exactly and left.
/// The hashes are named from the prefix, not passed as KEYS: the AORs due
/// are only known inside the script.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local out, n = {}, 0
local aors = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max)
for _, aor in ipairs(aors) do
  if n >= max then break end
  local key = ARGV[1] .. aor
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if n < max and expiry(all[i + 1]) <= now then
      redis.call('HDEL', key, all[i])
      out[#out + 1] = aor
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
      n = n + 1
    end
  end
  reindex(key, KEYS[1], aor)
end
if n > 0 then redis.call('DECRBY', KEYS[2], n) end
return out
",
    )
});

impl Shared {
    /// Upserts bindings of `aor`, keyed by contact (`reg.aor` is ignored:
    /// the binding is stored under `aor`).
    ///
    /// # Errors
    ///
    /// [`Error::TooManyContacts`] when the AOR would pass
    /// [`crate::Options::max_contacts_per_aor`] (nothing is written), and
    /// the connection errors of every operation.
    pub async fn put_bindings(&self, aor: &str, bindings: &[SharedBinding]) -> Result<()> {
        self.part("aor", aor)?;
        if bindings.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(bindings.len() * 2);
        for b in bindings {
            self.part("contact", &b.reg.contact)?;
            args.push(b.reg.contact.clone());
            args.push(b.encode().map_err(|e| self.stats().failed(e))?);
        }
        let k = self.keys();
        let (key, idx, cnt) = (k.loc(aor), k.loc_idx(), k.loc_count());
        let max = self.inner.opts.max_contacts_per_aor;
        let new: i64 = self
            .conn()
            .run(PUT.key(key).key(idx).key(cnt).arg(aor).arg(max).arg(args))
            .await?;
        if new < 0 {
            return Err(self.stats().failed(Error::TooManyContacts {
                aor: aor.to_owned(),
                max,
            }));
        }
        Ok(())
    }

    /// A REGISTER's change to `aor` behind the digest nonce-count guard,
    /// in one round trip: `Ok(false)` and nothing written when `nc` is not
    /// above every nc seen for `nonce` (a replay, on any replica);
    /// otherwise `nc` is recorded (the record expires `nonce_ttl_secs`
    /// after the nonce was first seen), `removed` are removed and
    /// `bindings` upserted as [`Shared::remove_bindings`] and
    /// [`Shared::put_bindings`] would, and `Ok(true)`.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyContacts`] (the removals stand, nothing is
    /// upserted), and the connection errors of every operation.
    pub async fn guarded_change(
        &self,
        nonce: &str,
        nc: u32,
        nonce_ttl_secs: u64,
        aor: &str,
        removed: &[&str],
        bindings: &[SharedBinding],
    ) -> Result<bool> {
        self.part("nonce", nonce)?;
        self.part("aor", aor)?;
        let mut args = Vec::with_capacity(removed.len() + bindings.len() * 2);
        for c in removed {
            self.part("contact", c)?;
            args.push((*c).to_owned());
        }
        for b in bindings {
            self.part("contact", &b.reg.contact)?;
            args.push(b.reg.contact.clone());
            args.push(b.encode().map_err(|e| self.stats().failed(e))?);
        }
        let k = self.keys();
        let max = self.inner.opts.max_contacts_per_aor;
        let r: i64 = self
            .conn()
            .run(
                GUARDED_CHANGE
                    .key(k.loc(aor))
                    .key(k.loc_idx())
                    .key(k.loc_count())
                    .key(k.nonce(nonce))
                    .arg(aor)
                    .arg(max)
                    .arg(nc)
                    .arg(nonce_ttl_secs.max(1))
                    .arg(removed.len())
                    .arg(args),
            )
            .await?;
        match r {
            -2 => Ok(false),
            -1 => Err(self.stats().failed(Error::TooManyContacts {
                aor: aor.to_owned(),
                max,
            })),
            _ => Ok(true),
        }
    }

    /// Removes the given contacts of `aor`; returns how many existed.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn remove_bindings(&self, aor: &str, contacts: &[&str]) -> Result<u64> {
        self.part("aor", aor)?;
        if contacts.is_empty() {
            return Ok(0);
        }
        let k = self.keys();
        let (key, idx, cnt) = (k.loc(aor), k.loc_idx(), k.loc_count());
        self.conn()
            .run(REMOVE.key(key).key(idx).key(cnt).arg(aor).arg(contacts))
            .await
    }

    /// Removes the given contacts of `aor` that are still bound through
    /// `replica` over the flow `received` (as [`Registration::received`]
    /// writes it); returns the contacts removed. A contact the phone has
    /// since registered again, through another replica or over another
    /// connection, stays.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn remove_flow_bindings(
        &self,
        aor: &str,
        replica: &str,
        received: &str,
        contacts: &[&str],
    ) -> Result<Vec<String>> {
        self.part("aor", aor)?;
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.keys();
        let (key, idx, cnt) = (k.loc(aor), k.loc_idx(), k.loc_count());
        self.conn()
            .run(
                REMOVE_FLOW
                    .key(key)
                    .key(idx)
                    .key(cnt)
                    .arg(aor)
                    .arg(replica)
                    .arg(received)
                    .arg(contacts),
            )
            .await
    }

    /// Removes every binding of `aor`; returns how many there were.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn remove_aor(&self, aor: &str) -> Result<u64> {
        self.part("aor", aor)?;
        let k = self.keys();
        let (key, idx, cnt) = (k.loc(aor), k.loc_idx(), k.loc_count());
        self.conn()
            .run(REMOVE_AOR.key(key).key(idx).key(cnt).arg(aor))
            .await
    }

    /// The unexpired bindings of `aor` (`expires_at > now_ms`), in no
    /// particular order. Undecodable entries are skipped and counted.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn lookup(&self, aor: &str, now_ms: i64) -> Result<Vec<SharedBinding>> {
        self.part("aor", aor)?;
        let key = self.keys().loc(aor);
        let all: Vec<(String, String)> = self.conn().run(redis::cmd("HGETALL").arg(key)).await?;
        Ok(self.decode_live(aor, all, now_ms))
    }

    fn decode_live(
        &self,
        aor: &str,
        fields: Vec<(String, String)>,
        now_ms: i64,
    ) -> Vec<SharedBinding> {
        fields
            .into_iter()
            .filter_map(|(contact, v)| self.decode_logged(aor, &contact, &v))
            .filter(|b| b.reg.expires_at > now_ms)
            .collect()
    }

    fn decode_logged(&self, aor: &str, contact: &str, v: &str) -> Option<SharedBinding> {
        match SharedBinding::decode(aor, contact, v) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(cause = %e, "skipping a shared binding");
                self.stats().failed(e);
                None
            }
        }
    }

    /// Up to `limit` (at most [`MAX_LIST`]) unexpired bindings, AORs taken
    /// in index order (roughly their earliest expiry); for the API. Walks the AOR index
    /// in pages, skipping bindings that expired but were not claimed yet,
    /// and reads at most `4 × MAX_LIST` AORs per call.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn list(&self, now_ms: i64, limit: usize) -> Result<Vec<SharedBinding>> {
        const PAGE: usize = 500;
        let limit = limit.min(MAX_LIST);
        let mut out = Vec::with_capacity(limit.min(PAGE));
        let mut start = 0usize;
        while out.len() < limit && start < 4 * MAX_LIST {
            let k = self.keys();
            let idx = k.loc_idx();
            let (first, last) = (start, start + PAGE - 1);
            let aors: Vec<String> = self
                .conn()
                .run(redis::cmd("ZRANGE").arg(idx).arg(first).arg(last))
                .await?;
            if aors.is_empty() {
                break;
            }
            start += aors.len();
            let mut pipe = redis::pipe();
            for aor in &aors {
                pipe.cmd("HGETALL").arg(k.loc(aor));
            }
            let hashes: Vec<Vec<(String, String)>> = self.conn().run(&pipe).await?;
            for (aor, fields) in aors.iter().zip(hashes) {
                out.extend(self.decode_live(aor, fields, now_ms));
            }
            if aors.len() < PAGE {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Removes and returns up to `max` bindings that expired at or before
    /// `now_ms`. Each expired binding goes to exactly one caller, however
    /// many replicas sweep at once; the work is a range query on the expiry
    /// index, not a scan.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn claim_expired(&self, now_ms: i64, max: usize) -> Result<Vec<SharedBinding>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys();
        let (idx, cnt, prefix) = (k.loc_idx(), k.loc_count(), k.loc_prefix());
        let triples: Vec<(String, String, String)> = self
            .conn()
            .run(CLAIM.key(idx).key(cnt).arg(prefix).arg(now_ms).arg(max))
            .await?;
        Ok(triples
            .into_iter()
            .filter_map(|(aor, contact, v)| self.decode_logged(&aor, &contact, &v))
            .collect())
    }

    /// `(AORs, contacts)` in the location service. Bindings that expired
    /// but were not claimed yet still count. The contact count is a counter
    /// the scripts keep; keys deleted by hand make it drift.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn count(&self) -> Result<(u64, u64)> {
        let k = self.keys();
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD")
            .arg(k.loc_idx())
            .cmd("GET")
            .arg(k.loc_count());
        let (aors, contacts): (u64, Option<i64>) = self.conn().run(&pipe).await?;
        Ok((aors, contacts.map_or(0, |n| u64::try_from(n).unwrap_or(0))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> SharedBinding {
        SharedBinding {
            replica: "sig-0".into(),
            reg: Registration {
                aor: "sip:100001@example.com".into(),
                contact: "sip:100001@192.0.2.10:5060;transport=udp;ob".into(),
                account_id: 1,
                user_id: Some(7),
                received: "udp:203.0.113.5:40000".into(),
                path: Some("<sip:edge.example.com;lr>".into()),
                instance_id: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into()),
                reg_id: Some(1),
                user_agent: Some("Yealink SIP-T46S 66.86.0.15 \"quoted\"".into()),
                call_id: "a84b4c76e66710@pc33".into(),
                cseq: 314159,
                q: Some(0.7),
                expires_at: 1_712_345_678_901,
                updated_at: 1_712_345_378_901,
            },
        }
    }

    #[test]
    fn wire_round_trip_and_expiry_first() {
        let b = binding();
        let v = b.encode().unwrap();
        assert!(v.starts_with("[1712345678901,\"sig-0\","), "{v}");
        let back = SharedBinding::decode(&b.reg.aor, &b.reg.contact, &v).unwrap();
        assert_eq!(back, b);

        let mut bare = binding();
        bare.reg.user_id = None;
        bare.reg.path = None;
        bare.reg.instance_id = None;
        bare.reg.reg_id = None;
        bare.reg.user_agent = None;
        bare.reg.q = None;
        let v = bare.encode().unwrap();
        assert_eq!(
            SharedBinding::decode(&bare.reg.aor, &bare.reg.contact, &v).unwrap(),
            bare
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for v in ["", "{}", "[1,2]", "not json", "[\"x\"]"] {
            assert!(matches!(
                SharedBinding::decode("a", "c", v),
                Err(Error::Decode(_))
            ));
        }
    }
}
