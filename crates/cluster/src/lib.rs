//! Live state that several `switchboard-signaling` replicas share through
//! Redis: the location service, the digest nonce-count replay guard, the
//! failed-auth limiter, live calls, per-account call slots, replica
//! heartbeats, and commands between replicas over pub/sub.
//!
//! Everything goes through [`Shared`], a cheap `Clone` handle.
//! [`Shared::connect`] never waits for the server: the connection is made
//! (and remade) in the background, [`Shared::health`] says whether Redis is
//! usable, and [`Shared::generation`] increments on every (re)connection so
//! a replica can re-publish its own state after an outage. While Redis is
//! down every operation fails fast — at once once the outage is known, and
//! never later than the response timeout — so a SIP transaction never
//! waits on it.
//!
//! Every step that touches several keys, or reads then writes, is one Lua
//! script, so each fact (an expired binding, a dead replica, an account's
//! last call slot) has exactly one winner among concurrent replicas.
//! Scripts build some key names from the prefix, so the layout needs one
//! Redis server (or a primary with replicas), not Redis Cluster.
//!
//! # Key layout
//!
//! All keys start with a configurable prefix `P` (default `sb:`). No hash
//! tags. `{x}` is a value, written as is.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P loc:{aor}` | hash | contact → binding (compact JSON array, expiry first) |
//! | `P locidx` | sorted set | aor, scored by a lower bound of its earliest binding expiry (unix ms; exact after each sweep): the AOR index and the expiry queue |
//! | `P locn` | string | number of bindings (contacts) |
//! | `P nc:{nonce}` | string | highest nonce-count seen; expires with the nonce |
//! | `P af:{key}` | string | failed authentications in the current window; expires with it |
//! | `P blk:{key}` | string | present while `key` is blocked |
//! | `P call:{id}` | string | a live call (JSON) |
//! | `P calls:{replica}` | set | ids of the calls a replica owns |
//! | `P acct:{account}` | set | call ids holding one of the account's call slots |
//! | `P slots:{replica}` | set | `{account} {call id}` slots a replica holds |
//! | `P hb:{replica}` | string | heartbeat; expires after the heartbeat TTL |
//! | `P replicas` | sorted set | replica id, scored by its last heartbeat (unix ms) |
//! | `P rinfo` | hash | replica id → its last [`ReplicaInfo`] (JSON) |
//! | `P cmd:all`, `P cmd:to:{replica}` | pub/sub channels | [`Command`]s to every / one replica |
//!
//! Bindings of a replica that dies stay (the phone is still reachable
//! directly); its calls and call slots are removed by the one survivor that
//! reaps it ([`Shared::reap_dead`]).

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod addr;
mod calls;
mod commands;
mod conn;
mod error;
mod guard;
mod location;
mod replicas;
mod stats;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use addr::parse_redis_addr;
pub use calls::{CallState, LegInfo, LegSide, LiveCall};
pub use commands::{Command, Message};
pub use conn::Health;
pub use error::{Error, Result};
pub use location::{MAX_LIST, SharedBinding};
pub use replicas::{ReplicaInfo, ReplicaStatus};
pub use stats::{Stats, StatsSnapshot};

use conn::Conn;

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "sb:";

/// Longest accepted key part (AOR, contact, nonce, limiter key, call id).
/// SIP input is bounded long before this; the check keeps a bug from
/// writing megabyte keys.
pub const MAX_KEY_PART: usize = 1024;

/// The identity of one signaling replica: 1–64 characters of
/// `[A-Za-z0-9._-]` (a pod or host name fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// Checks `id`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when empty, longer than 64, or with other characters.
    pub fn new(id: &str) -> Result<Self> {
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(Error::Invalid(format!(
                "replica id {id:?}: 1-64 characters of [A-Za-z0-9._-]"
            )))
        }
    }

    /// A random id, `r-` and 12 hex digits.
    pub fn random() -> Self {
        Self(format!("r-{:012x}", rand::random::<u64>() >> 16))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Settings of a [`Shared`] handle.
#[derive(Clone)]
pub struct Options {
    /// A Redis URL, e.g. from [`parse_redis_addr`].
    pub url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// This replica.
    pub replica: ReplicaId,
    /// Bound on every operation (and the connection's response timeout).
    pub op_timeout: Duration,
    /// Bound on each connection attempt.
    pub connect_timeout: Duration,
    /// Lifetime of a heartbeat; a replica silent this long is dead.
    pub heartbeat_ttl: Duration,
    /// Hard ceiling on contacts per AOR in Redis (the registrar enforces
    /// its own, lower limit first); 0 disables it.
    pub max_contacts_per_aor: u32,
    /// Capacity of a subscriber's command queue; commands beyond it are
    /// dropped and counted.
    pub command_queue: usize,
}

impl Options {
    /// Defaults: 1 s operation and connect timeouts, 10 s heartbeat TTL, at
    /// most 64 contacts per AOR, a 1024-command queue.
    pub fn new(url: &str, prefix: &str, replica: ReplicaId) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            replica,
            op_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            heartbeat_ttl: Duration::from_secs(10),
            max_contacts_per_aor: 64,
            command_queue: 1024,
        }
    }
}

impl fmt::Debug for Options {
    /// Leaves out the URL's user and password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match (self.url.split_once("://"), self.url.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
            _ => self.url.clone(),
        };
        f.debug_struct("Options")
            .field("url", &url)
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat_ttl", &self.heartbeat_ttl)
            .field("max_contacts_per_aor", &self.max_contacts_per_aor)
            .field("command_queue", &self.command_queue)
            .finish()
    }
}

/// Handle on the shared state; clones share one connection. The background
/// tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

struct Inner {
    opts: Options,
    keys: Keys,
    conn: Arc<Conn>,
    stats: Arc<Stats>,
    /// Cancelled when the last handle goes: stops the supervisor and the
    /// subscribers.
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.inner.opts.prefix)
            .field("replica", &self.inner.opts.replica)
            .field("health", &self.health())
            .finish()
    }
}

impl Shared {
    /// Connects with default [`Options`]. See [`Shared::connect_with`].
    ///
    /// # Errors
    ///
    /// Only for a malformed URL or prefix, never because Redis is down.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn connect(url: &str, prefix: &str, replica: ReplicaId) -> Result<Self> {
        Self::connect_with(Options::new(url, prefix, replica))
    }

    /// Starts the background connection and its supervisor, and returns at
    /// once: an unreachable server makes the handle degraded, not an error.
    ///
    /// # Errors
    ///
    /// Only for a malformed URL or prefix (empty, over 64 bytes, or with
    /// whitespace).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn connect_with(opts: Options) -> Result<Self> {
        let p = &opts.prefix;
        if p.is_empty() || p.len() > 64 || p.chars().any(char::is_whitespace) {
            return Err(Error::Invalid(format!(
                "key prefix {p:?}: 1-64 characters, no whitespace"
            )));
        }
        if opts.url.starts_with("rediss://") {
            // redis builds its rustls config from the process-wide crypto
            // provider, and rustls panics when it cannot pick one (several
            // compiled in, none installed). ring is the workspace's provider
            // (tonic uses it too); a provider installed earlier wins. ring is
            // deprecated in rustls 0.23.48 only for lacking post-quantum key
            // exchange.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(opts.url.as_str())
            .map_err(|e| Error::Invalid(format!("redis URL: {e}")))?;
        let stats = Arc::new(Stats::default());
        let conn = Arc::new(Conn::new(
            client,
            opts.op_timeout,
            opts.connect_timeout,
            stats.clone(),
        )?);
        let stop = CancellationToken::new();
        tokio::spawn(conn.clone().supervise(stop.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                keys: Keys(opts.prefix.clone()),
                opts,
                conn,
                stats,
                _stop_on_drop: stop.clone().drop_guard(),
                stop,
            }),
        })
    }

    /// This replica's id.
    pub fn replica(&self) -> &ReplicaId {
        &self.inner.opts.replica
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.opts.prefix
    }

    /// Whether Redis answered the last probe.
    pub fn health(&self) -> Health {
        self.inner.conn.health()
    }

    /// Health changes, for a task that reacts to outages.
    pub fn health_watch(&self) -> watch::Receiver<Health> {
        self.inner.conn.health_watch()
    }

    /// The connection generation: 0 until the first connection, then +1 on
    /// every new connection and every recovery from an outage. A replica
    /// re-publishes its bindings, calls and heartbeat when it changes: the
    /// server may have restarted empty, and writes failed meanwhile.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.inner.conn.generation()
    }

    /// Waits until Redis answers (a probe succeeded), at most `max`.
    /// Returns whether it did.
    pub async fn wait_ready(&self, max: Duration) -> bool {
        let mut h = self.health_watch();
        tokio::time::timeout(max, h.wait_for(|h| *h == Health::Ok))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }
}

/// Key and channel names (the layout in the crate docs).
#[derive(Debug)]
struct Keys(String);

impl Keys {
    fn k(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }
    fn k2(&self, name: &str, part: &str) -> String {
        format!("{}{name}{part}", self.0)
    }
    fn loc_prefix(&self) -> String {
        self.k("loc:")
    }
    fn loc(&self, aor: &str) -> String {
        self.k2("loc:", aor)
    }
    fn loc_idx(&self) -> String {
        self.k("locidx")
    }
    fn loc_count(&self) -> String {
        self.k("locn")
    }
    fn nonce(&self, nonce: &str) -> String {
        self.k2("nc:", nonce)
    }
    fn auth_fail(&self, key: &str) -> String {
        self.k2("af:", key)
    }
    fn blocked(&self, key: &str) -> String {
        self.k2("blk:", key)
    }
    fn call_prefix(&self) -> String {
        self.k("call:")
    }
    fn call(&self, id: &str) -> String {
        self.k2("call:", id)
    }
    fn replica_calls_prefix(&self) -> String {
        self.k("calls:")
    }
    fn replica_calls(&self, replica: &str) -> String {
        self.k2("calls:", replica)
    }
    fn account_slots_prefix(&self) -> String {
        self.k("acct:")
    }
    fn account_slots(&self, account_id: i64) -> String {
        self.k2("acct:", &account_id.to_string())
    }
    fn replica_slots_prefix(&self) -> String {
        self.k("slots:")
    }
    fn replica_slots(&self, replica: &str) -> String {
        self.k2("slots:", replica)
    }
    fn heartbeat_prefix(&self) -> String {
        self.k("hb:")
    }
    fn heartbeat(&self, replica: &str) -> String {
        self.k2("hb:", replica)
    }
    fn replicas(&self) -> String {
        self.k("replicas")
    }
    fn replica_info(&self) -> String {
        self.k("rinfo")
    }
    fn channel_all(&self) -> String {
        self.k("cmd:all")
    }
    fn channel_to(&self, replica: &str) -> String {
        self.k2("cmd:to:", replica)
    }
}

impl Shared {
    /// Checks one caller-supplied key part (counted as an `invalid` failure).
    fn part<'a>(&self, what: &str, s: &'a str) -> Result<&'a str> {
        if s.is_empty() || s.len() > MAX_KEY_PART {
            Err(self.inner.stats.failed(Error::Invalid(format!(
                "{what}: 1-{MAX_KEY_PART} bytes, got {}",
                s.len()
            ))))
        } else {
            Ok(s)
        }
    }
}

#[cfg(test)]
#[test]
fn options_debug_hides_the_password() {
    let o = Options::new(
        "rediss://app:s3cret@redis.example:6380/1",
        DEFAULT_PREFIX,
        ReplicaId::new("sig-0").unwrap(),
    );
    let d = format!("{o:?}");
    assert!(
        d.contains("rediss://***@redis.example:6380/1") && !d.contains("s3cret"),
        "{d}"
    );
    assert!(ReplicaId::new("").is_err() && ReplicaId::new("a b").is_err());
    assert!(ReplicaId::new(&"x".repeat(65)).is_err());
    let r = ReplicaId::random();
    assert!(
        ReplicaId::new(r.as_str()).is_ok() && r.as_str().len() == 14,
        "{r}"
    );
}

/// Compile-time check: the operations' futures can be spawned.
#[cfg(test)]
#[allow(dead_code)]
fn futures_are_send(s: &Shared, b: &[SharedBinding], c: &LiveCall, i: &ReplicaInfo) {
    fn send<T: Send>(_: T) {}
    send(s.put_bindings("", b));
    send(s.remove_bindings("", &[]));
    send(s.lookup("", 0));
    send(s.list(0, 0));
    send(s.claim_expired(0, 0));
    send(s.count());
    send(s.nonce_count_advance("", 0, 0));
    send(s.record_auth_failure("", 0));
    send(s.block("", 0));
    send(s.put_call(c));
    send(s.list_calls());
    send(s.acquire_call_slot(0, "", 0));
    send(s.heartbeat(i, 0));
    send(s.reap_dead(0, 0));
    send(s.broadcast(&Command::ConfigChanged));
}
