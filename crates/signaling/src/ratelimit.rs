//! Failed-authentication limiter, per source and per username.
//!
//! * **Per source.** A source that fails digest authentication more than
//!   `source_limit` times within `window` is blocked for `block`. A source
//!   is an IPv4 address, or an IPv6 /64 ([`source_prefix`]): changing the
//!   port is free for an attacker, and so is picking another address in
//!   the /64 it was given. A NAT'd office sharing one address is not at
//!   risk from one phone with a stale password, which fails once per
//!   registration interval.
//! * **Per username.** More than `user_limit` failures for one username
//!   (of one account or trunk) within `window`, from any mix of sources,
//!   block that username for `block` — but only for sources that have not
//!   authenticated successfully as that user within `trust`. A guesser
//!   spreading over many addresses is stopped, while the real user's
//!   phones, at the addresses they authenticated from before, carry on: the
//!   attacker cannot lock the user out. Failures for unknown usernames are
//!   counted alike, so a block does not reveal which usernames exist.
//!
//! The authenticator counts a failure only for a wrong response to a nonce
//! issued to that very source (see [`crate::auth`]), so requests with a
//! forged source address never count against the address they name.
//!
//! Every table is sharded (an attacker hammering one shard does not slow
//! the others) and bounded: when a shard is full the entry with the oldest
//! window that is not blocked is evicted, so a flood cannot grow memory and
//! a blocked attacker stays blocked. Successful authentications touch only
//! the trust table.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use switchboard_sip::digest::source_prefix;

const SHARDS: usize = 16;

/// Most keys tracked per shard, per table (16 × 16,384 = 262,144 sources,
/// as many usernames, and as many trusted user–source pairs).
const MAX_PER_SHARD: usize = 16_384;

/// How long a source that authenticated as a user stays exempt from that
/// username's block. A phone in use re-registers at least every
/// `MAX_EXPIRES` (an hour by default); a week also covers phones switched
/// off over a holiday weekend.
pub const DEFAULT_TRUST: Duration = Duration::from_secs(7 * 24 * 3600);

/// A username in its scope (account or trunk), hashed: the tables keep
/// eight bytes per username, whatever length an attacker sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey(u64);

/// Which limit a failure reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Below both limits.
    No,
    /// This failure blocked the source.
    Source,
    /// This failure blocked the username (for untrusted sources).
    User,
}

/// Limits and durations.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per source per window before it is blocked.
    pub source_limit: u32,
    /// Failures per username per window before it is blocked; 0: no
    /// per-username limit.
    pub user_limit: u32,
    pub window: Duration,
    pub block: Duration,
    /// How long a successful authentication exempts its source from the
    /// username's block.
    pub trust: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Entry {
    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|u| now < u)
    }
}

/// Failure counts by key, sharded and bounded.
#[derive(Debug)]
struct Table<K> {
    limit: u32,
    window: Duration,
    block: Duration,
    shards: Vec<Mutex<HashMap<K, Entry>>>,
    hasher: RandomState,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new(limit: u32, window: Duration, block: Duration) -> Self {
        Self {
            limit,
            window,
            block,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, k: &K) -> &Mutex<HashMap<K, Entry>> {
        &self.shards[(self.hasher.hash_one(k) as usize) % SHARDS]
    }

    fn is_blocked(&self, k: K, now: Instant) -> bool {
        let Ok(shard) = self.shard(&k).lock() else {
            return false;
        };
        shard.get(&k).is_some_and(|e| e.blocked(now))
    }

    /// Counts one failure; true when this failure blocks the key.
    fn record_failure(&self, k: K, now: Instant) -> bool {
        let Ok(mut shard) = self.shard(&k).lock() else {
            return false;
        };
        if shard.len() >= MAX_PER_SHARD && !shard.contains_key(&k) {
            self.evict_oldest(&mut shard, now);
            if shard.len() >= MAX_PER_SHARD {
                // Full of blocked keys: this one goes uncounted for now.
                return false;
            }
        }
        let entry = shard.entry(k).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(entry.window_start) > self.window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures > self.limit && entry.blocked_until.is_none_or(|u| u <= now) {
            entry.blocked_until = Some(now + self.block);
            return true;
        }
        false
    }

    /// Blocks `k` until `until` (a block decided elsewhere: another replica).
    fn block(&self, k: K, until: Instant) {
        let Ok(mut shard) = self.shard(&k).lock() else {
            return;
        };
        if shard.len() >= MAX_PER_SHARD && !shard.contains_key(&k) {
            self.evict_oldest(&mut shard, until);
        }
        let entry = shard.entry(k).or_insert(Entry {
            window_start: until,
            failures: 0,
            blocked_until: None,
        });
        entry.blocked_until = Some(entry.blocked_until.map_or(until, |u| u.max(until)));
    }

    fn keep(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.window_start) <= self.window || e.blocked(now)
    }

    fn evict_oldest(&self, shard: &mut HashMap<K, Entry>, now: Instant) {
        // First drop everything stale; if that frees nothing, drop an
        // unblocked entry (a blocked attacker must stay blocked).
        shard.retain(|_, e| self.keep(e, now));
        if shard.len() >= MAX_PER_SHARD {
            let victim = shard
                .iter()
                .filter(|(_, e)| !e.blocked(now))
                .min_by_key(|(_, e)| e.window_start)
                .map(|(k, _)| *k);
            if let Some(k) = victim {
                shard.remove(&k);
            }
        }
    }

    fn blocked_count(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|s| s.values().filter(|e| e.blocked(now)).count())
            .sum()
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.len()))
            .sum()
    }

    fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                s.retain(|_, e| self.keep(e, now));
            }
        }
    }
}

/// Sources that authenticated successfully as a user: (user, a keyed hash
/// of the source's address or /64) → when it last did, in seconds since
/// `epoch`. 24 bytes an entry, because every registered phone has one: a
/// registrar with a hundred thousand phones holds a hundred thousand. (A
/// hash collision could only make a source trusted by mistake with odds of
/// 2⁻⁶⁴.)
type TrustShard = HashMap<(UserKey, u64), u32>;

#[derive(Debug)]
struct Trusted {
    ttl: Duration,
    epoch: Instant,
    shards: Vec<Mutex<TrustShard>>,
    hasher: RandomState,
}

impl Trusted {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn key(&self, user: UserKey, source: IpAddr) -> (usize, (UserKey, u64)) {
        let k = (user, self.hasher.hash_one(source));
        ((self.hasher.hash_one(k) as usize) % SHARDS, k)
    }

    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn fresh(&self, at: u32, now: u32) -> bool {
        u64::from(now.saturating_sub(at)) < self.ttl.as_secs()
    }

    fn record(&self, user: UserKey, source: IpAddr, now: Instant) {
        let (i, k) = self.key(user, source);
        let now = self.secs(now);
        let Ok(mut shard) = self.shards[i].lock() else {
            return;
        };
        if shard.len() >= MAX_PER_SHARD && !shard.contains_key(&k) {
            shard.retain(|_, at| self.fresh(*at, now));
            if shard.len() >= MAX_PER_SHARD {
                let oldest = shard.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k);
                if let Some(o) = oldest {
                    shard.remove(&o);
                }
            }
        }
        shard.insert(k, now);
    }

    fn contains(&self, user: UserKey, source: IpAddr, now: Instant) -> bool {
        let (i, k) = self.key(user, source);
        let now = self.secs(now);
        self.shards[i]
            .lock()
            .ok()
            .and_then(|s| s.get(&k).copied())
            .is_some_and(|at| self.fresh(at, now))
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.len()))
            .sum()
    }

    fn sweep(&self, now: Instant) {
        let now = self.secs(now);
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                s.retain(|_, at| self.fresh(*at, now));
            }
        }
    }
}

/// The limiter; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AuthLimiter {
    sources: Table<IpAddr>,
    users: Option<Table<UserKey>>,
    trusted: Trusted,
    hasher: RandomState,
    limits: Limits,
    /// Where each failing source (its /64 for IPv6) is also reported: the
    /// count the replicas share (see `cluster`). Full: not reported.
    feed: OnceLock<mpsc::Sender<IpAddr>>,
}

impl AuthLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            sources: Table::new(limits.source_limit, limits.window, limits.block),
            users: (limits.user_limit > 0)
                .then(|| Table::new(limits.user_limit, limits.window, limits.block)),
            trusted: Trusted::new(limits.trust),
            hasher: RandomState::new(),
            limits,
            feed: OnceLock::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reports every failing source to `feed` as well (once).
    pub fn set_feed(&self, feed: mpsc::Sender<IpAddr>) {
        let _ = self.feed.set(feed);
    }

    /// Blocks a source (its /64 for IPv6) for `block`: a block decided by
    /// the count all replicas share.
    pub fn block_source(&self, ip: IpAddr, block: Duration, now: Instant) {
        self.sources.block(source_prefix(ip), now + block);
    }

    /// The key of `username` within `scope` (an account, a trunk).
    pub fn user_key(&self, scope: impl Hash, username: &str) -> UserKey {
        UserKey(self.hasher.hash_one((scope, username)))
    }

    /// True while the source `ip` (its /64 for IPv6) is blocked.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources.is_blocked(source_prefix(ip), now)
    }

    /// True while `user` is blocked for `ip`: the username is over its
    /// limit and `ip` has not authenticated as it recently.
    pub fn user_blocked_for(&self, user: UserKey, ip: IpAddr, now: Instant) -> bool {
        self.users.as_ref().is_some_and(|t| t.is_blocked(user, now))
            && !self.trusted.contains(user, source_prefix(ip), now)
    }

    /// Counts one failure of `ip` (as `user`, when the username is known to
    /// the caller) and says which limit it reached.
    pub fn record_failure(&self, ip: IpAddr, user: Option<UserKey>, now: Instant) -> Blocked {
        let prefix = source_prefix(ip);
        if let Some(feed) = self.feed.get() {
            let _ = feed.try_send(prefix);
        }
        let by_source = self.sources.record_failure(prefix, now);
        let by_user = match (&self.users, user) {
            (Some(t), Some(u)) => t.record_failure(u, now),
            _ => false,
        };
        match (by_source, by_user) {
            (true, _) => Blocked::Source,
            (false, true) => Blocked::User,
            (false, false) => Blocked::No,
        }
    }

    /// Remembers that `ip` authenticated as `user`.
    pub fn record_success(&self, user: UserKey, ip: IpAddr, now: Instant) {
        self.trusted.record(user, source_prefix(ip), now);
    }

    /// Sources currently blocked (for metrics).
    pub fn blocked_count(&self, now: Instant) -> usize {
        self.sources.blocked_count(now)
    }

    /// Usernames currently blocked (for metrics).
    pub fn blocked_users_count(&self, now: Instant) -> usize {
        self.users.as_ref().map_or(0, |t| t.blocked_count(now))
    }

    /// Entries held: (sources, usernames, trusted user–source pairs).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.sources.len(),
            self.users.as_ref().map_or(0, Table::len),
            self.trusted.len(),
        )
    }

    /// Drops entries whose window and block have both passed, and trust
    /// that ran out.
    pub fn sweep(&self, now: Instant) {
        self.sources.sweep(now);
        if let Some(t) = &self.users {
            t.sweep(now);
        }
        self.trusted.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limiter(source_limit: u32, user_limit: u32) -> AuthLimiter {
        AuthLimiter::new(Limits {
            source_limit,
            user_limit,
            window: Duration::from_secs(60),
            block: Duration::from_secs(300),
            trust: Duration::from_secs(3600),
        })
    }

    #[test]
    fn blocks_after_limit_and_releases_after_block() {
        let l = limiter(3, 0);
        let t0 = Instant::now();
        let a = ip("127.0.0.1");
        for _ in 0..3 {
            assert_eq!(l.record_failure(a, None, t0), Blocked::No);
        }
        assert!(!l.is_blocked(a, t0));
        assert_eq!(
            l.record_failure(a, None, t0),
            Blocked::Source,
            "4th failure over a limit of 3 blocks"
        );
        assert!(l.is_blocked(a, t0 + Duration::from_secs(299)));
        assert!(
            !l.is_blocked(ip("127.0.0.2"), t0),
            "other sources unaffected"
        );
        assert!(!l.is_blocked(a, t0 + Duration::from_secs(301)));
        assert_eq!(l.blocked_count(t0), 1);
    }

    #[test]
    fn window_resets_counts() {
        let l = AuthLimiter::new(Limits {
            source_limit: 2,
            user_limit: 0,
            window: Duration::from_secs(10),
            block: Duration::from_secs(300),
            trust: DEFAULT_TRUST,
        });
        let t0 = Instant::now();
        let a = ip("127.0.0.1");
        l.record_failure(a, None, t0);
        l.record_failure(a, None, t0);
        // The window passed: counting starts over, no block.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(l.record_failure(a, None, later), Blocked::No);
        assert!(!l.is_blocked(a, later));
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let l = limiter(3, 0);
        let t0 = Instant::now();
        // A guesser rotating through its /64: one address per attempt.
        let outcomes: Vec<Blocked> = (1..=4)
            .map(|i| l.record_failure(ip(&format!("2001:db8:1:2::{i:x}")), None, t0))
            .collect();
        assert_eq!(
            outcomes,
            [Blocked::No, Blocked::No, Blocked::No, Blocked::Source]
        );
        // (address, blocked)
        for (a, blocked) in [
            ("2001:db8:1:2::1", true),
            ("2001:db8:1:2:ffff:1234:5678:9abc", true),
            ("2001:db8:1:3::1", false),
            ("2001:db8:1::1", false),
        ] {
            assert_eq!(l.is_blocked(ip(a), t0), blocked, "{a}");
        }
        // IPv4 addresses stay separate, mapped or not.
        for i in 1..=4 {
            l.record_failure(ip(&format!("192.0.2.{i}")), None, t0);
        }
        assert!(!l.is_blocked(ip("192.0.2.1"), t0));
        for _ in 0..3 {
            l.record_failure(ip("::ffff:192.0.2.9"), None, t0);
        }
        assert_eq!(l.record_failure(ip("192.0.2.9"), None, t0), Blocked::Source);
        assert!(l.is_blocked(ip("::ffff:192.0.2.9"), t0));
    }

    #[test]
    fn a_username_block_spares_its_trusted_sources() {
        let l = limiter(100, 5);
        let t0 = Instant::now();
        let alice = l.user_key(1i64, "alice");
        let home = ip("198.51.100.7");
        l.record_success(alice, home, t0);
        // Six guessers, one failure each: the sixth blocks the username.
        let mut last = Blocked::No;
        for i in 1..=6 {
            last = l.record_failure(ip(&format!("203.0.113.{i}")), Some(alice), t0);
        }
        assert_eq!(last, Blocked::User);
        assert_eq!(l.blocked_users_count(t0), 1);
        // (source, blocked for alice)
        for (a, blocked) in [
            ("203.0.113.1", true),
            ("203.0.113.99", true),
            ("198.51.100.7", false),
        ] {
            assert_eq!(l.user_blocked_for(alice, ip(a), t0), blocked, "{a}");
            assert!(!l.is_blocked(ip(a), t0), "{a}: the sources are not blocked");
        }
        // Other usernames, and the same name in another account, are free.
        assert!(!l.user_blocked_for(l.user_key(1i64, "bob"), ip("203.0.113.1"), t0));
        assert!(!l.user_blocked_for(l.user_key(2i64, "alice"), ip("203.0.113.1"), t0));
        // The block ends after five minutes.
        let t1 = t0 + Duration::from_secs(200);
        assert!(!l.user_blocked_for(alice, home, t1));
        assert!(l.user_blocked_for(alice, ip("203.0.113.1"), t1));
        assert!(!l.user_blocked_for(alice, ip("203.0.113.1"), t0 + Duration::from_secs(301)));
    }

    #[test]
    fn trust_runs_out() {
        let l = AuthLimiter::new(Limits {
            source_limit: 100,
            user_limit: 1,
            window: Duration::from_secs(60),
            block: Duration::from_secs(300),
            trust: Duration::from_secs(100),
        });
        let t0 = Instant::now();
        let alice = l.user_key(1i64, "alice");
        let home = ip("198.51.100.7");
        l.record_success(alice, home, t0);
        let t1 = t0 + Duration::from_secs(50);
        l.record_failure(ip("203.0.113.1"), Some(alice), t1);
        l.record_failure(ip("203.0.113.2"), Some(alice), t1);
        assert!(!l.user_blocked_for(alice, home, t1 + Duration::from_secs(49)));
        assert!(l.user_blocked_for(alice, home, t1 + Duration::from_secs(51)));
    }

    #[test]
    fn trust_is_per_64() {
        let l = limiter(100, 1);
        let t0 = Instant::now();
        let u = l.user_key("trunk", "provider");
        l.record_success(u, ip("2001:db8:5:6::1"), t0);
        l.record_failure(ip("192.0.2.1"), Some(u), t0);
        l.record_failure(ip("192.0.2.2"), Some(u), t0);
        assert!(!l.user_blocked_for(u, ip("2001:db8:5:6::abcd"), t0));
        assert!(l.user_blocked_for(u, ip("2001:db8:5:7::1"), t0));
        // more sources of that user are trusted beside the first
        for i in 1..=9 {
            l.record_success(
                u,
                ip(&format!("198.51.100.{i}")),
                t0 + Duration::from_secs(i),
            );
        }
        let t1 = t0 + Duration::from_secs(10);
        assert!(!l.user_blocked_for(u, ip("2001:db8:5:6::1"), t1));
        assert!(!l.user_blocked_for(u, ip("198.51.100.9"), t1));
        assert!(l.user_blocked_for(u, ip("198.51.100.10"), t1));
        assert_eq!(l.sizes().2, 10);
    }

    #[test]
    fn sweep_forgets_quiet_entries_but_keeps_blocks() {
        let l = AuthLimiter::new(Limits {
            source_limit: 0,
            user_limit: 0,
            window: Duration::from_secs(10),
            block: Duration::from_secs(100),
            trust: Duration::from_secs(30),
        });
        let t0 = Instant::now();
        l.record_failure(ip("127.0.0.1"), None, t0); // blocked at once (limit 0)
        l.record_failure(ip("127.0.0.2"), None, t0 + Duration::from_secs(1));
        l.record_success(l.user_key(1i64, "u"), ip("127.0.0.3"), t0);
        l.sweep(t0 + Duration::from_secs(50));
        assert!(l.is_blocked(ip("127.0.0.1"), t0 + Duration::from_secs(50)));
        assert_eq!(
            l.sizes(),
            (2, 0, 0),
            "both sources blocked (limit 0) and kept; trust gone"
        );
        l.sweep(t0 + Duration::from_secs(200));
        assert_eq!(l.blocked_count(t0 + Duration::from_secs(200)), 0);
        assert_eq!(l.sizes(), (0, 0, 0));
    }
}
