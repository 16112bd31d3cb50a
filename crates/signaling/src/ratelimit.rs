//! Failed-authentication limiter, per source IP address.
//!
//! A source that fails digest authentication more than `limit` times within
//! `window` is blocked for `block`. The check on the hot path is one hash
//! lookup in one of several shards, so a brute-force attacker hammering one
//! shard does not slow registrations of other phones, and successful
//! registrations never touch the table at all.
//!
//! Keyed by IP, not IP:port: changing the source port is free for an
//! attacker. A NAT'd office sharing one address is not at risk from one
//! phone with a stale password, which fails once per registration interval.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// Most sources tracked per shard; past it, the entries with the oldest
/// window are evicted so a spoofed-source flood cannot grow memory.
const MAX_PER_SHARD: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// The limiter; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AuthLimiter {
    limit: u32,
    window: Duration,
    block: Duration,
    shards: Vec<Mutex<HashMap<IpAddr, Entry>>>,
    hasher: RandomState,
}

impl AuthLimiter {
    pub fn new(limit: u32, window: Duration, block: Duration) -> Self {
        Self {
            limit,
            window,
            block,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, Entry>> {
        let i = (self.hasher.hash_one(ip) as usize) % SHARDS;
        &self.shards[i]
    }

    /// True while `ip` is blocked.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(shard) = self.shard(&ip).lock() else {
            return false;
        };
        shard
            .get(&ip)
            .and_then(|e| e.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts one failure; returns true when this failure blocks the source.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut shard) = self.shard(&ip).lock() else {
            return false;
        };
        if shard.len() >= MAX_PER_SHARD && !shard.contains_key(&ip) {
            evict_oldest(&mut shard, now, self.window);
        }
        let entry = shard.entry(ip).or_insert(Entry {
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

    /// Sources currently blocked (for metrics).
    pub fn blocked_count(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|s| {
                s.values()
                    .filter(|e| e.blocked_until.is_some_and(|u| now < u))
                    .count()
            })
            .sum()
    }

    /// Drops entries whose window and block have both passed.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                s.retain(|_, e| {
                    now.duration_since(e.window_start) <= self.window
                        || e.blocked_until.is_some_and(|u| now < u)
                });
            }
        }
    }
}

fn evict_oldest(shard: &mut HashMap<IpAddr, Entry>, now: Instant, window: Duration) {
    // First drop everything stale; if that frees nothing, drop an unblocked
    // entry (a blocked attacker must stay blocked).
    shard.retain(|_, e| {
        now.duration_since(e.window_start) <= window || e.blocked_until.is_some_and(|u| now < u)
    });
    if shard.len() >= MAX_PER_SHARD {
        let victim = shard
            .iter()
            .filter(|(_, e)| e.blocked_until.is_none())
            .min_by_key(|(_, e)| e.window_start)
            .map(|(ip, _)| *ip);
        if let Some(ip) = victim {
            shard.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn blocks_after_limit_and_releases_after_block() {
        let l = AuthLimiter::new(3, Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(!l.record_failure(ip(1), t0));
        assert!(!l.record_failure(ip(1), t0));
        assert!(!l.record_failure(ip(1), t0));
        assert!(!l.is_blocked(ip(1), t0));
        assert!(
            l.record_failure(ip(1), t0),
            "4th failure over a limit of 3 blocks"
        );
        assert!(l.is_blocked(ip(1), t0 + Duration::from_secs(299)));
        assert!(!l.is_blocked(ip(2), t0), "other sources unaffected");
        assert!(!l.is_blocked(ip(1), t0 + Duration::from_secs(301)));
        assert_eq!(l.blocked_count(t0), 1);
    }

    #[test]
    fn window_resets_counts() {
        let l = AuthLimiter::new(2, Duration::from_secs(10), Duration::from_secs(300));
        let t0 = Instant::now();
        l.record_failure(ip(1), t0);
        l.record_failure(ip(1), t0);
        // The window passed: counting starts over, no block.
        assert!(!l.record_failure(ip(1), t0 + Duration::from_secs(11)));
        assert!(!l.is_blocked(ip(1), t0 + Duration::from_secs(11)));
    }

    #[test]
    fn sweep_forgets_quiet_sources_but_keeps_blocks() {
        let l = AuthLimiter::new(0, Duration::from_secs(10), Duration::from_secs(100));
        let t0 = Instant::now();
        l.record_failure(ip(1), t0); // blocked at once (limit 0)
        l.record_failure(ip(2), t0 + Duration::from_secs(1));
        l.sweep(t0 + Duration::from_secs(50));
        assert!(l.is_blocked(ip(1), t0 + Duration::from_secs(50)));
        assert_eq!(
            l.shards
                .iter()
                .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
                .sum::<usize>(),
            2,
            "ip(2) is blocked too (limit 0), both kept"
        );
        l.sweep(t0 + Duration::from_secs(200));
        assert_eq!(l.blocked_count(t0 + Duration::from_secs(200)), 0);
    }
}
