//! Digest authentication of requests (RFC 8760 / RFC 7616 over SIP).
//!
//! The order of checks is chosen so that cheap refusals come first and an
//! attacker cannot make us do more work than a legitimate phone does:
//! blocked source → credentials present for our realm → user known → nonce
//! ours and fresh → response correct → nonce-count not replayed → user
//! enabled. Only a wrong response (or an unknown user, indistinguishable
//! from outside) counts as a failure for the per-source limiter; a stale or
//! foreign nonce just earns a fresh challenge, as phones expect after a
//! server restart.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchboard_sip::digest::{
    Algorithm, Challenge, Credentials, NonceIssuer, NonceStatus, Replay, ReplayGuard, verify,
};
use switchboard_sip::message::Request;
use switchboard_sip::rsip::Header;
use switchboard_sip::rsip::headers::UntypedHeader;

use crate::directory::{AccountEntry, Directory, UserEntry};
use crate::ratelimit::AuthLimiter;
use crate::registrar::Now;

const REPLAY_SHARDS: usize = 16;

/// Nonces tracked per replay shard, about 50 bytes each: 16 × 65,536 is a
/// million nonces (50 MB at most). Beyond that the oldest are forgotten and
/// their clients re-challenged (see [`ReplayGuard`]).
const REPLAY_ENTRIES_PER_SHARD: usize = 65_536;

/// The result of authenticating one request.
#[derive(Debug)]
pub enum Outcome {
    /// Authenticated as this user.
    Ok(Arc<UserEntry>),
    /// Answer 401/407 with fresh challenges (`stale` per RFC 7616 §3.3).
    Challenge { stale: bool },
    /// Answer 403: the user is disabled, or the source is blocked.
    Forbidden(&'static str),
    /// Say nothing: the source is blocked and the policy is silence.
    Drop,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct AuthStats {
    pub challenges: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
    pub stale: AtomicU64,
    pub replays: AtomicU64,
    pub blocked: AtomicU64,
}

/// Which header carries credentials: `Authorization` for a registrar,
/// `Proxy-Authorization` for calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    Www,
    Proxy,
}

pub struct Authenticator {
    issuer: NonceIssuer,
    replay: Vec<Mutex<ReplayGuard>>,
    hasher: RandomState,
    algorithms: Vec<Algorithm>,
    pub limiter: AuthLimiter,
    block_silently: bool,
    pub stats: AuthStats,
}

impl Authenticator {
    pub fn new(
        secret: [u8; 32],
        nonce_ttl_secs: u64,
        algorithms: Vec<Algorithm>,
        limiter: AuthLimiter,
        block_silently: bool,
    ) -> Self {
        Self {
            issuer: NonceIssuer::new(secret, nonce_ttl_secs),
            replay: (0..REPLAY_SHARDS)
                .map(|_| Mutex::new(ReplayGuard::new(nonce_ttl_secs, REPLAY_ENTRIES_PER_SHARD)))
                .collect(),
            hasher: RandomState::new(),
            algorithms,
            limiter,
            block_silently,
            stats: AuthStats::default(),
        }
    }

    /// Header values for a 401/407: one challenge per configured algorithm,
    /// in the configured order (SHA-256 first when both, RFC 8760 §2.4).
    pub fn challenges(&self, realm: &str, stale: bool, now_unix: u64) -> Vec<String> {
        self.stats.challenges.fetch_add(1, Ordering::Relaxed);
        let nonce = self.issuer.issue(now_unix);
        self.algorithms
            .iter()
            .map(|alg| {
                Challenge {
                    realm: realm.to_string(),
                    nonce: nonce.clone(),
                    algorithm: *alg,
                    qop_auth: true,
                    stale,
                    opaque: None,
                }
                .to_header_value()
            })
            .collect()
    }

    /// Checks the request's credentials for `account`'s realm.
    pub fn authenticate(
        &self,
        req: &Request,
        which: Realm,
        account: &AccountEntry,
        directory: &Directory,
        source: IpAddr,
        now: Now,
    ) -> Outcome {
        let (now_unix, now) = (now.unix_secs(), now.instant);
        if self.limiter.is_blocked(source, now) {
            self.stats.blocked.fetch_add(1, Ordering::Relaxed);
            return self.blocked();
        }
        let Some(creds) = self.credentials(req, which, &account.realm) else {
            return Outcome::Challenge { stale: false };
        };
        match self.issuer.check(&creds.nonce, now_unix) {
            NonceStatus::Valid => {}
            NonceStatus::Stale => {
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                return Outcome::Challenge { stale: true };
            }
            NonceStatus::Invalid => return Outcome::Challenge { stale: false },
        }
        let user = directory.user(account.id, &creds.username);
        let method = req.method.to_string();
        let good = user
            .as_ref()
            .is_some_and(|u| verify(&creds, &method, u.ha1(creds.algorithm)));
        let Some(user) = user.filter(|_| good) else {
            return self.failure(source, now);
        };
        let issued = NonceIssuer::issued_at(&creds.nonce).unwrap_or(0);
        let use_ = {
            let i = (self.hasher.hash_one(&creds.nonce) as usize) % REPLAY_SHARDS;
            match self.replay[i].lock() {
                Ok(mut g) => g.check_and_record(&creds.nonce, creds.nc, issued, now_unix),
                Err(_) => Replay::Forgotten,
            }
        };
        match use_ {
            Replay::Fresh => {}
            Replay::Forgotten => {
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                return Outcome::Challenge { stale: true };
            }
            Replay::Replayed => {
                self.stats.replays.fetch_add(1, Ordering::Relaxed);
                // A replayed nonce-count is an attack or a confused client;
                // either way it proves nothing. Count it and challenge anew.
                return match self.failure(source, now) {
                    Outcome::Challenge { .. } => Outcome::Challenge { stale: true },
                    other => other,
                };
            }
        }
        if !user.enabled {
            return Outcome::Forbidden("User disabled");
        }
        self.stats.successes.fetch_add(1, Ordering::Relaxed);
        Outcome::Ok(user)
    }

    fn failure(&self, source: IpAddr, now: Instant) -> Outcome {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if self.limiter.record_failure(source, now) {
            tracing::warn!(%source, "source blocked after repeated authentication failures");
            return self.blocked();
        }
        Outcome::Challenge { stale: false }
    }

    fn blocked(&self) -> Outcome {
        if self.block_silently {
            Outcome::Drop
        } else {
            Outcome::Forbidden("Too many failed authentications")
        }
    }

    /// The first credentials for `realm` in an algorithm we challenge with.
    /// A phone may carry credentials for several realms (one per proxy on
    /// the path), so the realm picks ours.
    fn credentials(&self, req: &Request, which: Realm, realm: &str) -> Option<Credentials> {
        req.headers
            .iter()
            .filter_map(|h| match (h, which) {
                (Header::Authorization(v), Realm::Www) => Some(v.value()),
                (Header::ProxyAuthorization(v), Realm::Proxy) => Some(v.value()),
                _ => None,
            })
            .filter_map(|v| Credentials::parse(v).ok())
            .find(|c| c.realm == realm && self.algorithms.contains(&c.algorithm))
    }
}
