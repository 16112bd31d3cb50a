//! Digest authentication of requests (RFC 8760 / RFC 7616 over SIP).
//!
//! The order of checks is chosen so that cheap refusals come first, an
//! attacker cannot make us do more work than a legitimate phone does, and
//! nothing a forged source address can carry ever counts against the
//! address it names:
//!
//! 1. source blocked → 403 (or silence);
//! 2. no credentials for our realm → challenge;
//! 3. nonce not ours *for this source* ([`NonceIssuer`] binds each nonce
//!    to the address the challenge went to) → challenge, nothing counted:
//!    a request with a spoofed source can only carry a nonce issued to
//!    someone else; expired → challenge with `stale=true`;
//! 4. credentials' `uri` not the Request-URI ([`uri_matches`]) → 403
//!    `Digest URI Mismatch`, not counted (the response is not even
//!    checked, so it is no password oracle; a phone that computes the uri
//!    wrongly sees why instead of being asked for its password forever);
//! 5. username blocked for this source (see [`crate::ratelimit`]) → 403;
//! 6. response wrong, or user unknown (indistinguishable from outside) →
//!    one failure for the source and the username, challenge;
//! 7. nonce count replayed → challenge with `stale=true`, not counted: the
//!    response was right, so no password is being guessed, and an on-path
//!    attacker replaying a victim's request must not get the victim
//!    blocked;
//! 8. user disabled → 403.
//!
//! Success makes the source trusted for that username.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchboard_sip::digest::{
    Algorithm, Challenge, Credentials, NonceIssuer, NonceStatus, Replay, ReplayGuard, uri_matches,
    verify,
};
use switchboard_sip::message::Request;
use switchboard_sip::rsip::Header;
use switchboard_sip::rsip::headers::UntypedHeader;

use crate::directory::{AccountEntry, Directory, UserEntry};
use crate::ratelimit::{AuthLimiter, Blocked, UserKey};
use crate::registrar::Now;

const REPLAY_SHARDS: usize = 16;

/// Nonces tracked per replay shard, about 50 bytes each: 16 × 65,536 is a
/// million nonces (50 MB at most). Beyond that the oldest are forgotten and
/// their clients re-challenged (see [`ReplayGuard`]).
const REPLAY_ENTRIES_PER_SHARD: usize = 65_536;

/// The nonce a request authenticated with and its count (`nc`; 1 for a
/// nonce used without qop, which may be used once), for the replay guard
/// a cluster shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceUse {
    pub nonce: String,
    pub nc: u32,
}

/// The result of authenticating one request as a `T` (a user, a trunk).
#[derive(Debug)]
pub enum Outcome<T = Arc<UserEntry>> {
    /// Authenticated as this one.
    Ok(T),
    /// Answer 401/407 with fresh challenges (`stale` per RFC 7616 §3.3).
    Challenge { stale: bool },
    /// Answer 403: the user is disabled, the source or username is
    /// blocked, or the digest `uri` is not the Request-URI.
    Forbidden(&'static str),
    /// Say nothing: the source is blocked and the policy is silence.
    Drop,
}

impl<T> Outcome<T> {
    /// The same verdict about what `f` makes of the authenticated one.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Ok(t) => Outcome::Ok(f(t)),
            Outcome::Challenge { stale } => Outcome::Challenge { stale },
            Outcome::Forbidden(r) => Outcome::Forbidden(r),
            Outcome::Drop => Outcome::Drop,
        }
    }
}

/// What can authenticate: something with stored HA1s.
pub trait Secret {
    /// The HA1 for `alg` in the realm challenged, if there is one.
    fn ha1(&self, alg: Algorithm) -> Option<&str>;
    /// False refuses the request after a correct response.
    fn enabled(&self) -> bool {
        true
    }
}

impl Secret for Arc<UserEntry> {
    fn ha1(&self, alg: Algorithm) -> Option<&str> {
        Some(UserEntry::ha1(self, alg))
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
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
    /// Nonces that were not ours for the source presenting them.
    pub foreign_nonces: AtomicU64,
    /// Credentials whose `uri` was not the Request-URI.
    pub uri_mismatches: AtomicU64,
}

/// Which header carries credentials: `Authorization` for a registrar,
/// `Proxy-Authorization` for calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    Www,
    Proxy,
}

/// Where a username lives, for the per-username limiter: an account's
/// users and a trunk's inbound credentials are separate namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    Account(i64),
    Trunk(&'a str),
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

    /// Header values for a 401/407 sent to `source`: one challenge per
    /// configured algorithm, in the configured order (SHA-256 first when
    /// both, RFC 8760 §2.4), sharing one nonce bound to `source`.
    pub fn challenges(
        &self,
        realm: &str,
        stale: bool,
        now_unix: u64,
        source: IpAddr,
    ) -> Vec<String> {
        self.stats.challenges.fetch_add(1, Ordering::Relaxed);
        let nonce = self.issuer.issue(now_unix, source);
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

    /// What can be answered without state, before any transaction exists:
    /// a blocked source, or a request carrying no credentials for `realm`
    /// (a challenge). `None`: credentials to verify with [`Self::authenticate`].
    pub fn screen<T>(
        &self,
        req: &Request,
        which: Realm,
        realm: &str,
        source: IpAddr,
        now: Now,
    ) -> Option<Outcome<T>> {
        if self.limiter.is_blocked(source, now.instant) {
            self.stats.blocked.fetch_add(1, Ordering::Relaxed);
            return Some(self.blocked());
        }
        self.credentials(req, which, realm)
            .is_none()
            .then_some(Outcome::Challenge { stale: false })
    }

    /// Checks the request's credentials as a user of `account`.
    pub fn authenticate(
        &self,
        req: &Request,
        which: Realm,
        account: &AccountEntry,
        directory: &Directory,
        source: IpAddr,
        now: Now,
    ) -> Outcome {
        self.authenticate_nonce(req, which, account, directory, source, now)
            .map(|(user, _)| user)
    }

    /// [`Authenticator::authenticate`], also giving the nonce and count the
    /// request authenticated with (for a cluster's shared replay guard).
    pub fn authenticate_nonce(
        &self,
        req: &Request,
        which: Realm,
        account: &AccountEntry,
        directory: &Directory,
        source: IpAddr,
        now: Now,
    ) -> Outcome<(Arc<UserEntry>, NonceUse)> {
        self.check_credentials(
            req,
            which,
            &account.realm,
            Scope::Account(account.id),
            source,
            now,
            |username| directory.user(account.id, username),
        )
    }

    /// Checks the request's credentials for `realm`, `lookup` finding the
    /// secret of a username within `scope` (see the module documentation
    /// for the order of checks).
    #[allow(clippy::too_many_arguments)]
    pub fn authenticate_with<T: Secret>(
        &self,
        req: &Request,
        which: Realm,
        realm: &str,
        scope: Scope<'_>,
        source: IpAddr,
        now: Now,
        lookup: impl FnOnce(&str) -> Option<T>,
    ) -> Outcome<T> {
        self.check_credentials(req, which, realm, scope, source, now, lookup)
            .map(|(who, _)| who)
    }

    /// [`Authenticator::authenticate_with`], also giving the nonce and
    /// count the request authenticated with.
    #[allow(clippy::too_many_arguments)]
    fn check_credentials<T: Secret>(
        &self,
        req: &Request,
        which: Realm,
        realm: &str,
        scope: Scope<'_>,
        source: IpAddr,
        now: Now,
        lookup: impl FnOnce(&str) -> Option<T>,
    ) -> Outcome<(T, NonceUse)> {
        let (now_unix, now) = (now.unix_secs(), now.instant);
        if self.limiter.is_blocked(source, now) {
            self.stats.blocked.fetch_add(1, Ordering::Relaxed);
            return self.blocked();
        }
        let Some(creds) = self.credentials(req, which, realm) else {
            return Outcome::Challenge { stale: false };
        };
        match self.issuer.check(&creds.nonce, now_unix, source) {
            NonceStatus::Valid => {}
            NonceStatus::Stale => {
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                return Outcome::Challenge { stale: true };
            }
            NonceStatus::Invalid => {
                self.stats.foreign_nonces.fetch_add(1, Ordering::Relaxed);
                return Outcome::Challenge { stale: false };
            }
        }
        if !uri_matches(&creds.uri, &req.uri) {
            self.stats.uri_mismatches.fetch_add(1, Ordering::Relaxed);
            return Outcome::Forbidden("Digest URI Mismatch");
        }
        let key = self.limiter.user_key(scope, &creds.username);
        if self.limiter.user_blocked_for(key, source, now) {
            self.stats.blocked.fetch_add(1, Ordering::Relaxed);
            return self.blocked();
        }
        let method = req.method.to_string();
        let who = lookup(&creds.username).filter(|w| {
            w.ha1(creds.algorithm)
                .is_some_and(|ha1| verify(&creds, &method, ha1))
        });
        let Some(who) = who else {
            return self.failure(source, key, now);
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
                return Outcome::Challenge { stale: true };
            }
        }
        if !who.enabled() {
            return Outcome::Forbidden("User disabled");
        }
        self.limiter.record_success(key, source, now);
        self.stats.successes.fetch_add(1, Ordering::Relaxed);
        let nc = creds.nc.unwrap_or(1);
        Outcome::Ok((
            who,
            NonceUse {
                nonce: creds.nonce,
                nc,
            },
        ))
    }

    fn failure<T>(&self, source: IpAddr, user: UserKey, now: Instant) -> Outcome<T> {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        match self.limiter.record_failure(source, Some(user), now) {
            Blocked::No => Outcome::Challenge { stale: false },
            Blocked::Source => {
                tracing::warn!(%source, "source blocked after repeated authentication failures");
                self.blocked()
            }
            Blocked::User => {
                tracing::warn!(
                    %source,
                    "username blocked after repeated authentication failures \
                     (sources it authenticated from recently are exempt)"
                );
                self.blocked()
            }
        }
    }

    fn blocked<T>(&self) -> Outcome<T> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_sip::digest::{ha1, respond};
    use switchboard_sip::message::{Message, parse};

    use super::*;
    use crate::ratelimit::Limits;

    const REALM: &str = "switchboard";

    struct Phone(String);

    impl Secret for Phone {
        fn ha1(&self, alg: Algorithm) -> Option<&str> {
            (alg == Algorithm::Md5).then_some(self.0.as_str())
        }
    }

    fn auth(source_limit: u32, user_limit: u32) -> Authenticator {
        Authenticator::new(
            [9; 32],
            300,
            vec![Algorithm::Md5],
            AuthLimiter::new(Limits {
                source_limit,
                user_limit,
                window: Duration::from_secs(60),
                block: Duration::from_secs(300),
                trust: Duration::from_secs(3600),
            }),
            false,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A REGISTER to `request_uri` carrying `authorization`, if any.
    fn register(request_uri: &str, authorization: Option<&str>) -> Request {
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let text = format!(
            "REGISTER {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{}\r\nFrom: <sip:alice@switchboard>;tag=1\r\nTo: <sip:alice@switchboard>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n",
            rand::random::<u32>()
        );
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    /// The nonce of a challenge sent to `to`.
    fn nonce_for(a: &Authenticator, to: IpAddr) -> String {
        let h = a.challenges(REALM, false, Now::current().unix_secs(), to);
        Challenge::parse(&h[0]).unwrap().nonce
    }

    /// Credentials for `uri` with `password` against `nonce`.
    fn answer(nonce: &str, uri: &str, user: &str, password: &str, nc: u32) -> String {
        let ch = Challenge {
            realm: REALM.into(),
            nonce: nonce.into(),
            algorithm: Algorithm::Md5,
            qop_auth: true,
            stale: false,
            opaque: None,
        };
        respond(&ch, "REGISTER", uri, user, password, "cn", nc).to_header_value()
    }

    fn check(a: &Authenticator, req: &Request, from: IpAddr, user: &str) -> Outcome<Phone> {
        let secret = ha1(Algorithm::Md5, user, REALM, "right-password");
        a.authenticate_with(
            req,
            Realm::Www,
            REALM,
            Scope::Account(1),
            from,
            Now::current(),
            |_| Some(Phone(secret)),
        )
    }

    fn label<T>(o: &Outcome<T>) -> String {
        match o {
            Outcome::Ok(_) => "ok".into(),
            Outcome::Challenge { stale } => format!("challenge stale={stale}"),
            Outcome::Forbidden(r) => format!("403 {r}"),
            Outcome::Drop => "drop".into(),
        }
    }

    #[test]
    fn a_nonce_from_another_address_is_challenged_and_never_counted() {
        let a = auth(3, 3);
        let (attacker, victim) = (ip("203.0.113.5"), ip("198.51.100.7"));
        let nonce = nonce_for(&a, attacker);
        // The attacker forges the victim's address, wrong password, 20 times.
        for _ in 0..20 {
            let creds = answer(&nonce, "sip:switchboard", "alice", "guess", 1);
            let req = register("sip:switchboard", Some(&creds));
            assert_eq!(
                label(&check(&a, &req, victim, "alice")),
                "challenge stale=false"
            );
        }
        assert!(!a.limiter.is_blocked(victim, Instant::now()));
        assert_eq!(a.stats.failures.load(Ordering::Relaxed), 0);
        assert_eq!(a.stats.foreign_nonces.load(Ordering::Relaxed), 20);
        // The right password with the attacker's nonce proves nothing either.
        let creds = answer(&nonce, "sip:switchboard", "alice", "right-password", 1);
        let req = register("sip:switchboard", Some(&creds));
        assert_eq!(
            label(&check(&a, &req, victim, "alice")),
            "challenge stale=false"
        );
        // The victim, with its own nonce, gets in.
        let nonce = nonce_for(&a, victim);
        let creds = answer(&nonce, "sip:switchboard", "alice", "right-password", 1);
        let req = register("sip:switchboard", Some(&creds));
        assert_eq!(label(&check(&a, &req, victim, "alice")), "ok");
    }

    #[test]
    fn wrong_answers_to_own_nonces_block_the_source() {
        let a = auth(3, 0);
        let from = ip("203.0.113.5");
        let mut seen = Vec::new();
        for _ in 0..5 {
            let nonce = nonce_for(&a, from);
            let creds = answer(&nonce, "sip:switchboard", "alice", "guess", 1);
            let req = register("sip:switchboard", Some(&creds));
            seen.push(label(&check(&a, &req, from, "alice")));
        }
        assert_eq!(
            seen,
            [
                "challenge stale=false",
                "challenge stale=false",
                "challenge stale=false",
                "403 Too many failed authentications",
                "403 Too many failed authentications",
            ]
        );
        assert_eq!(a.stats.failures.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_guesser_rotating_through_its_64_is_one_source() {
        let a = auth(3, 0);
        let mut last = String::new();
        for i in 1..=4 {
            let from = ip(&format!("2001:db8:7:7::{i}"));
            let nonce = nonce_for(&a, from);
            let creds = answer(&nonce, "sip:switchboard", "alice", "guess", 1);
            let req = register("sip:switchboard", Some(&creds));
            last = label(&check(&a, &req, from, "alice"));
        }
        assert_eq!(last, "403 Too many failed authentications");
        // another /64 is another source
        let from = ip("2001:db8:7:8::1");
        let nonce = nonce_for(&a, from);
        let creds = answer(&nonce, "sip:switchboard", "alice", "right-password", 1);
        let req = register("sip:switchboard", Some(&creds));
        assert_eq!(label(&check(&a, &req, from, "alice")), "ok");
    }

    #[test]
    fn a_guesser_spread_over_addresses_is_stopped_by_the_username_limit() {
        let a = auth(100, 4);
        let home = ip("198.51.100.7");
        let login = |from: IpAddr, password: &str| {
            let nonce = nonce_for(&a, from);
            let creds = answer(&nonce, "sip:switchboard", "alice", password, 1);
            label(&check(
                &a,
                &register("sip:switchboard", Some(&creds)),
                from,
                "alice",
            ))
        };
        assert_eq!(login(home, "right-password"), "ok");
        let seen: Vec<String> = (1..=6)
            .map(|i| login(ip(&format!("203.0.113.{i}")), "guess"))
            .collect();
        assert_eq!(seen[..4], ["challenge stale=false"; 4]);
        assert_eq!(seen[4..], ["403 Too many failed authentications"; 2]);
        // Even the right password from a new address is refused now...
        assert_eq!(
            login(ip("203.0.113.50"), "right-password"),
            "403 Too many failed authentications"
        );
        // ...while alice's own address still gets in, and bob is unaffected.
        assert_eq!(login(home, "right-password"), "ok");
        let nonce = nonce_for(&a, ip("203.0.113.1"));
        let creds = answer(&nonce, "sip:switchboard", "bob", "right-password", 1);
        let req = register("sip:switchboard", Some(&creds));
        assert_eq!(label(&check(&a, &req, ip("203.0.113.1"), "bob")), "ok");
    }

    #[test]
    fn uri_mismatch_is_refused_and_replays_are_rechallenged_uncounted() {
        let a = auth(1, 1);
        let from = ip("198.51.100.7");
        let nonce = nonce_for(&a, from);
        // (Request-URI, digest uri, outcome)
        let table = [
            (
                "sip:switchboard",
                "sip:other.example",
                "403 Digest URI Mismatch",
            ),
            (
                "sip:switchboard:5060",
                "sip:switchboard:5070",
                "403 Digest URI Mismatch",
            ),
            ("sip:switchboard;transport=tcp", "sip:switchboard", "ok"),
        ];
        for (nc, (request_uri, digest_uri, want)) in (1u32..).zip(table) {
            let creds = answer(&nonce, digest_uri, "alice", "right-password", nc);
            let req = register(request_uri, Some(&creds));
            assert_eq!(label(&check(&a, &req, from, "alice")), want, "{digest_uri}");
        }
        // The accepted request again (same nc): a replay, not a failure.
        let creds = answer(&nonce, "sip:switchboard", "alice", "right-password", 3);
        let req = register("sip:switchboard;transport=tcp", Some(&creds));
        for _ in 0..3 {
            assert_eq!(
                label(&check(&a, &req, from, "alice")),
                "challenge stale=true"
            );
        }
        assert_eq!(a.stats.failures.load(Ordering::Relaxed), 0);
        assert_eq!(a.stats.uri_mismatches.load(Ordering::Relaxed), 2);
        assert!(!a.limiter.is_blocked(from, Instant::now()));
    }
}
