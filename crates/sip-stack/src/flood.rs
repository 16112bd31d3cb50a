//! Per-source request rate limit: a token bucket per [`Source`] (an IPv4
//! address, an IPv6 /64).
//!
//! Each source has two buckets of `burst` tokens refilled at `per_second`:
//! requests spend from the first; once it is empty, each refusal (a
//! stateless 503) spends from the second; once both are empty the request is
//! dropped without a word. So a source sending at up to the rate is served,
//! up to twice the rate it hears 503 for the excess, and beyond that it
//! hears nothing more: our answers to one source never exceed twice its
//! allowed rate (after two bursts), whatever it sends, and a spoofed source
//! cannot turn us into an amplifier (a 503 is no larger than the request it
//! answers).
//!
//! The table is sharded and bounded: a source whose buckets are full again
//! carries no information and is forgotten on the next sweep; when a shard
//! is full of active sources, an arbitrary one is evicted (counted) and
//! starts over with full buckets. Pure: the caller passes the time.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::source::Source;

const SHARDS: usize = 16;

/// How often a shard forgets the sources whose buckets have refilled.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How often a full shard may be swept before evicting instead.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A per-source rate: `per_second` requests sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// What to do with one request that would start a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate.
    Admit,
    /// Over the rate: answer 503 with Retry-After, statelessly.
    Refuse,
    /// Over twice the rate: say nothing.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    replies: f64,
    at: Instant,
}

struct Shard {
    map: HashMap<Source, Bucket>,
    swept: Instant,
}

/// The limiter; shared behind an `Arc` or inside the endpoint.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    per_shard: usize,
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
    evictions: AtomicU64,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let add = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + add).min(burst);
        self.replies = (self.replies + add).min(burst);
        self.at = now;
    }

    /// Whether both buckets are full by `now`: the entry says nothing a
    /// fresh one would not.
    fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let add = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens + add >= burst && self.replies + add >= burst
    }
}

impl RateLimiter {
    /// A limiter for `rate`, tracking at most about `capacity` sources.
    pub fn new(rate: Rate, capacity: usize) -> Self {
        let now = Instant::now();
        Self {
            rate: f64::from(rate.per_second.max(1)),
            burst: f64::from(rate.burst.max(1)),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shards: std::array::from_fn(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    swept: now,
                })
            }),
            hasher: RandomState::new(),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, source: &Source) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(source) as usize % SHARDS]
    }

    /// Counts one request from `ip` that would start a transaction.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let source = Source::of(ip);
        let (rate, burst) = (self.rate, self.burst);
        let mut shard = self
            .shard(&source)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let shard = &mut *shard;
        if now.saturating_duration_since(shard.swept) >= SWEEP_EVERY {
            shard.map.retain(|_, b| !b.is_full(now, rate, burst));
            shard.swept = now;
        }
        if !shard.map.contains_key(&source) && shard.map.len() >= self.per_shard {
            if now.saturating_duration_since(shard.swept) >= FULL_SWEEP_EVERY {
                shard.map.retain(|_, b| !b.is_full(now, rate, burst));
                shard.swept = now;
            }
            if shard.map.len() >= self.per_shard {
                let victim = shard.map.keys().next().copied();
                if let Some(victim) = victim {
                    shard.map.remove(&victim);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let bucket = shard.map.entry(source).or_insert(Bucket {
            tokens: burst,
            replies: burst,
            at: now,
        });
        bucket.refill(now, rate, burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Admit
        } else if bucket.replies >= 1.0 {
            bucket.replies -= 1.0;
            Verdict::Refuse
        } else {
            Verdict::Drop
        }
    }

    /// Whether a request from `ip` would be dropped now ([`Verdict::Drop`]),
    /// without counting it: lets the endpoint drop a flood before parsing.
    pub fn is_flooding(&self, ip: IpAddr, now: Instant) -> bool {
        let source = Source::of(ip);
        let shard = self
            .shard(&source)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.map.get(&source).is_some_and(|b| {
            let mut b = *b;
            b.refill(now, self.rate, self.burst);
            b.tokens < 1.0 && b.replies < 1.0
        })
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Sources forgotten at the capacity while still active.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn run(l: &RateLimiter, from: &str, n: usize, now: Instant) -> Vec<Verdict> {
        (0..n).map(|_| l.check(ip(from), now)).collect()
    }

    fn count(v: &[Verdict], which: Verdict) -> usize {
        v.iter().filter(|x| **x == which).count()
    }

    #[test]
    fn burst_then_refuse_then_drop() {
        let l = RateLimiter::new(
            Rate {
                per_second: 10,
                burst: 5,
            },
            1000,
        );
        let t0 = Instant::now();
        let v = run(&l, "192.0.2.1", 20, t0);
        assert_eq!(v[..5], [Verdict::Admit; 5]);
        assert_eq!(v[5..10], [Verdict::Refuse; 5]);
        assert_eq!(v[10..], [Verdict::Drop; 10]);
        assert!(l.is_flooding(ip("192.0.2.1"), t0));
        assert!(!l.is_flooding(ip("192.0.2.2"), t0), "unknown source");
        // other sources are not affected
        assert_eq!(l.check(ip("192.0.2.2"), t0), Verdict::Admit);
        // 100 ms later one token (and one reply) has come back
        let t1 = t0 + Duration::from_millis(100);
        assert!(!l.is_flooding(ip("192.0.2.1"), t1));
        assert_eq!(
            run(&l, "192.0.2.1", 3, t1),
            [Verdict::Admit, Verdict::Refuse, Verdict::Drop]
        );
    }

    #[test]
    fn a_steady_sender_at_the_rate_is_always_admitted() {
        let l = RateLimiter::new(
            Rate {
                per_second: 100,
                burst: 10,
            },
            1000,
        );
        let t0 = Instant::now();
        for i in 0..1000 {
            let now = t0 + Duration::from_millis(10 * i);
            assert_eq!(l.check(ip("192.0.2.1"), now), Verdict::Admit, "request {i}");
        }
    }

    #[test]
    fn twice_the_rate_is_refused_half_the_time_and_never_dropped() {
        let l = RateLimiter::new(
            Rate {
                per_second: 100,
                burst: 10,
            },
            1000,
        );
        let t0 = Instant::now();
        let v: Vec<_> = (0..2000)
            .map(|i| l.check(ip("192.0.2.1"), t0 + Duration::from_micros(5000 * i)))
            .collect();
        assert_eq!(count(&v, Verdict::Drop), 0);
        let refused = count(&v, Verdict::Refuse);
        assert!((985..=1000).contains(&refused), "{refused}");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = RateLimiter::new(
            Rate {
                per_second: 1,
                burst: 2,
            },
            1000,
        );
        let t0 = Instant::now();
        assert_eq!(l.check(ip("2001:db8:0:1::1"), t0), Verdict::Admit);
        assert_eq!(l.check(ip("2001:db8:0:1::2"), t0), Verdict::Admit);
        assert_eq!(l.check(ip("2001:db8:0:1:ffff::3"), t0), Verdict::Refuse);
        assert_eq!(l.check(ip("2001:db8:0:2::1"), t0), Verdict::Admit);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_refilled_sources() {
        let l = RateLimiter::new(
            Rate {
                per_second: 10,
                burst: 10,
            },
            SHARDS * 4,
        );
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(l.check(a, t0), Verdict::Admit);
        }
        assert!(l.tracked() <= SHARDS * 4, "{}", l.tracked());
        assert!(l.evictions() >= 1000 - (SHARDS * 4) as u64);
        // a minute later every bucket is full again: swept on the next visit
        let later = t0 + Duration::from_secs(60);
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            l.check(a, later);
        }
        let evicted = l.evictions();
        let t2 = later + Duration::from_secs(60);
        l.check(ip("192.0.2.1"), t2);
        assert_eq!(l.evictions(), evicted, "a swept shard has room");
    }
}
