//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616,
//! RFC 8760 for SHA-256), both sides: the registrar challenges and verifies,
//! our UA and trunks answer challenges.
//!
//! Only `qop=auth` (or no qop, for RFC 2069-style clients) is supported;
//! `auth-int` and the `-sess` algorithms are refused, as most SIP deployments
//! do. Nonces are stateless ([`NonceIssuer`]); replayed nonce counts are
//! caught by the bounded [`ReplayGuard`].

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Why a challenge or credentials could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The scheme is not `Digest` (e.g. RFC 4475 §3.3.7's unknown scheme).
    #[error("authentication scheme is not Digest")]
    NotDigest,
    /// A parameter the message must carry is absent.
    #[error("missing digest parameter {0}")]
    Missing(&'static str),
    /// Syntax error in the parameter list, or a malformed value.
    #[error("malformed digest header: {0}")]
    Malformed(&'static str),
    /// An algorithm other than MD5 / SHA-256.
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
}

/// The digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617), the default when `algorithm` is absent.
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Parses an `algorithm` token case-insensitively. Also accepts
    /// `SHA256`, which some broken clients (and rsip) send.
    pub fn parse(s: &str) -> Result<Algorithm, DigestError> {
        if s.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") || s.eq_ignore_ascii_case("SHA256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::UnsupportedAlgorithm)
        }
    }

    /// The name as written on the wire (`MD5`, `SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex digest of `data`, the form every digest step uses.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Algorithm, DigestError> {
        Algorithm::parse(s)
    }
}

/// `H(username:realm:password)`, what a registrar may store instead of the
/// password.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space, usually the domain.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Hash algorithm.
    pub algorithm: Algorithm,
    /// Whether `qop="auth"` is offered.
    pub qop_auth: bool,
    /// The previous nonce was ours but expired: retry without asking the user.
    pub stale: bool,
    /// Opaque data the client must echo.
    pub opaque: Option<String>,
}

/// An `Authorization` / `Proxy-Authorization` Digest response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Realm from the challenge.
    pub realm: String,
    /// Nonce from the challenge.
    pub nonce: String,
    /// The digest-uri (the Request-URI as the client wrote it).
    pub uri: String,
    /// The request digest, hex.
    pub response: String,
    /// Hash algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop` value, if any (`auth` is the only one verified).
    pub qop: Option<String>,
    /// Nonce count (8 hex digits on the wire).
    pub nc: Option<u32>,
    /// Client nonce.
    pub cnonce: Option<String>,
    /// Opaque value echoed from the challenge.
    pub opaque: Option<String>,
}

/// Escapes a value for a quoted-string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Strips the `Digest` scheme and splits the auth-params into lower-cased
/// names and unquoted values. Tolerates odd spacing, any order, unquoted
/// values and empty list elements; refuses duplicates (a second `response`
/// or `nonce` is at best a bug, at worst an attack).
fn parse_params(header: &str) -> Result<Vec<(String, String)>, DigestError> {
    let s = header.trim_start_matches([' ', '\t']);
    let scheme_end = s.find([' ', '\t']).unwrap_or(s.len());
    if !s[..scheme_end].eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let b = s.as_bytes();
    let mut i = scheme_end;
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',' | b'\r' | b'\n') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'-' | b'_' | b'.')) {
            i += 1;
        }
        let name = s[start..i].to_ascii_lowercase();
        if name.is_empty() {
            return Err(DigestError::Malformed("bad parameter name"));
        }
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(DigestError::Malformed("parameter without '='"));
        }
        i += 1;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            loop {
                match b.get(i) {
                    None => return Err(DigestError::Malformed("unterminated quoted value")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let next = s.get(i + 1..).and_then(|r| r.chars().next());
                        let c = next.ok_or(DigestError::Malformed("unterminated quoted value"))?;
                        v.push(c);
                        i += 1 + c.len_utf8();
                    }
                    Some(_) => {
                        let c = s[i..]
                            .chars()
                            .next()
                            .ok_or(DigestError::Malformed("bad value"))?;
                        v.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            v
        } else {
            let start = i;
            while i < b.len() && !matches!(b[i], b',' | b' ' | b'\t') {
                i += 1;
            }
            s[start..i].to_owned()
        };
        if params.iter().any(|(n, _)| *n == name) {
            return Err(DigestError::Malformed("duplicate parameter"));
        }
        params.push((name, value));
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i < b.len() && b[i] != b',' {
            return Err(DigestError::Malformed("expected ','"));
        }
    }
    Ok(params)
}

fn take(params: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let pos = params.iter().position(|(n, _)| n == name)?;
    Some(params.swap_remove(pos).1)
}

impl Challenge {
    /// Parses a `WWW-Authenticate` / `Proxy-Authenticate` value.
    pub fn parse(header: &str) -> Result<Challenge, DigestError> {
        let mut p = parse_params(header)?;
        let realm = take(&mut p, "realm").ok_or(DigestError::Missing("realm"))?;
        let nonce = take(&mut p, "nonce").ok_or(DigestError::Missing("nonce"))?;
        let algorithm =
            take(&mut p, "algorithm").map_or(Ok(Algorithm::Md5), |a| Algorithm::parse(&a))?;
        let qop_auth = take(&mut p, "qop")
            .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
        let stale = take(&mut p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        let opaque = take(&mut p, "opaque");
        Ok(Challenge {
            realm,
            nonce,
            algorithm,
            qop_auth,
            stale,
            opaque,
        })
    }

    /// Formats the challenge for a `WWW-Authenticate` header.
    pub fn to_header_value(&self) -> String {
        let mut out = format!(
            "Digest realm={}, nonce={}, algorithm={}",
            quote(&self.realm),
            quote(&self.nonce),
            self.algorithm.name()
        );
        if self.qop_auth {
            out.push_str(", qop=\"auth\"");
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        if let Some(o) = &self.opaque {
            let _ = write!(out, ", opaque={}", quote(o));
        }
        out
    }
}

impl Credentials {
    /// Parses an `Authorization` / `Proxy-Authorization` value.
    pub fn parse(header: &str) -> Result<Credentials, DigestError> {
        let mut p = parse_params(header)?;
        let username = take(&mut p, "username").ok_or(DigestError::Missing("username"))?;
        let realm = take(&mut p, "realm").ok_or(DigestError::Missing("realm"))?;
        let nonce = take(&mut p, "nonce").ok_or(DigestError::Missing("nonce"))?;
        let uri = take(&mut p, "uri").ok_or(DigestError::Missing("uri"))?;
        let response = take(&mut p, "response").ok_or(DigestError::Missing("response"))?;
        let algorithm =
            take(&mut p, "algorithm").map_or(Ok(Algorithm::Md5), |a| Algorithm::parse(&a))?;
        let qop = take(&mut p, "qop");
        let nc = match take(&mut p, "nc") {
            None => None,
            Some(nc) => {
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DigestError::Malformed("nc is not 8 hex digits"));
                }
                Some(u32::from_str_radix(&nc, 16).map_err(|_| DigestError::Malformed("nc"))?)
            }
        };
        let cnonce = take(&mut p, "cnonce");
        if qop.is_some() && (nc.is_none() || cnonce.is_none()) {
            return Err(DigestError::Missing("nc/cnonce with qop"));
        }
        let opaque = take(&mut p, "opaque");
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
            nc,
            cnonce,
            opaque,
        })
    }

    /// Formats the credentials for an `Authorization` header.
    pub fn to_header_value(&self) -> String {
        let mut out = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            self.algorithm.name()
        );
        if let Some(q) = &self.qop {
            let _ = write!(out, ", qop={q}");
            if let Some(nc) = self.nc {
                let _ = write!(out, ", nc={nc:08x}");
            }
            if let Some(c) = &self.cnonce {
                let _ = write!(out, ", cnonce={}", quote(c));
            }
        }
        if let Some(o) = &self.opaque {
            let _ = write!(out, ", opaque={}", quote(o));
        }
        out
    }
}

/// The `response` value the credentials should carry, given the stored HA1.
pub fn expected_response(creds: &Credentials, method: &str, ha1: &str) -> String {
    let alg = creds.algorithm;
    let ha2 = alg.hash_hex(format!("{method}:{}", creds.uri).as_bytes());
    match &creds.qop {
        Some(qop) => alg.hash_hex(
            format!(
                "{ha1}:{}:{:08x}:{}:{qop}:{ha2}",
                creds.nonce,
                creds.nc.unwrap_or(0),
                creds.cnonce.as_deref().unwrap_or_default()
            )
            .as_bytes(),
        ),
        None => alg.hash_hex(format!("{ha1}:{}:{ha2}", creds.nonce).as_bytes()),
    }
}

/// Checks the credentials' response in constant time. The caller still has
/// to check the nonce ([`NonceIssuer::check`]), the realm, that `uri`
/// matches the Request-URI, and replay ([`ReplayGuard`]).
pub fn verify(creds: &Credentials, method: &str, ha1: &str) -> bool {
    if let Some(qop) = &creds.qop
        && (!qop.eq_ignore_ascii_case("auth") || creds.nc.is_none() || creds.cnonce.is_none())
    {
        return false;
    }
    let expected = expected_response(creds, method, ha1);
    constant_time_eq(
        expected.as_bytes(),
        creds.response.to_ascii_lowercase().as_bytes(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths are public (the hash size); only the content must not leak.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers a challenge (client side, our UA and trunks).
pub fn respond(
    challenge: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Credentials {
    let (qop, nc, cnonce) = if challenge.qop_auth {
        (Some("auth".to_owned()), Some(nc), Some(cnonce.to_owned()))
    } else {
        (None, None, None)
    };
    let mut creds = Credentials {
        username: username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        response: String::new(),
        algorithm: challenge.algorithm,
        qop,
        nc,
        cnonce,
        opaque: challenge.opaque.clone(),
    };
    let ha1 = ha1(challenge.algorithm, username, &challenge.realm, password);
    creds.response = expected_response(&creds, method, &ha1);
    creds
}

/// Verdict on a nonce presented by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Ours and within its lifetime.
    Valid,
    /// Ours but expired: challenge again with `stale=true`.
    Stale,
    /// Not ours (forged, corrupted or from another secret).
    Invalid,
}

/// Issues and checks stateless nonces: `hex(timestamp ‖ random ‖ MAC)`, the
/// MAC being HMAC-SHA256 over timestamp and random under a server secret,
/// truncated to 128 bits. Any registrar instance sharing the secret can
/// check any nonce, with no per-nonce memory.
#[derive(Clone)]
pub struct NonceIssuer {
    secret: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("NonceIssuer")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

const NONCE_LEN: usize = 64; // 8 + 8 + 16 bytes, hex

impl NonceIssuer {
    /// Creates an issuer; nonces older than `lifetime_secs` are stale.
    pub fn new(secret: [u8; 32], lifetime_secs: u64) -> NonceIssuer {
        NonceIssuer {
            secret,
            lifetime_secs,
        }
    }

    fn mac(&self, data: &[u8; 16]) -> [u8; 16] {
        let full = hmac_sha256(&self.secret, data);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A fresh nonce stamped with `now_unix`.
    pub fn issue(&self, now_unix: u64) -> String {
        let mut data = [0u8; 16];
        data[..8].copy_from_slice(&now_unix.to_be_bytes());
        data[8..].copy_from_slice(&rand::random::<u64>().to_be_bytes());
        let mac = self.mac(&data);
        let mut out = String::with_capacity(NONCE_LEN);
        out.push_str(&hex::encode(data));
        out.push_str(&hex::encode(mac));
        out
    }

    /// The time a nonce says it was issued (unchecked: call
    /// [`NonceIssuer::check`] first).
    pub fn issued_at(nonce: &str) -> Option<u64> {
        u64::from_str_radix(nonce.get(..16)?, 16).ok()
    }

    /// Checks a nonce against the secret and the lifetime.
    pub fn check(&self, nonce: &str, now_unix: u64) -> NonceStatus {
        if nonce.len() != NONCE_LEN {
            return NonceStatus::Invalid;
        }
        let Ok(raw) = hex::decode(nonce) else {
            return NonceStatus::Invalid;
        };
        let mut data = [0u8; 16];
        data.copy_from_slice(&raw[..16]);
        if !constant_time_eq(&self.mac(&data), &raw[16..]) {
            return NonceStatus::Invalid;
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&data[..8]);
        // A timestamp in the future means our clock stepped back: still ours.
        if now_unix.saturating_sub(u64::from_be_bytes(ts)) > self.lifetime_secs {
            NonceStatus::Stale
        } else {
            NonceStatus::Valid
        }
    }
}

/// HMAC-SHA256 (RFC 2104) over the sha2 crate, to avoid one more dependency.
fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[derive(Debug, Clone, Copy)]
enum Use {
    /// qop=auth: highest nonce count accepted so far.
    Counted(u32),
    /// No qop: the nonce has been used once.
    Once,
}

/// What [`ReplayGuard::check_and_record`] made of a nonce use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// First use of this nonce, or a higher `nc`: accept.
    Fresh,
    /// A nonce count (or a qop-less nonce) used before: refuse.
    Replayed,
    /// The guard may have forgotten this nonce to make room: it cannot
    /// tell a replay from a fresh use, so the client gets a new nonce
    /// (`stale=true`). Not the client's fault.
    Forgotten,
}

/// Remembers which nonce counts were used, so a captured `Authorization`
/// cannot be replayed while its nonce is still valid.
///
/// * With qop, `nc` must be strictly greater than any seen for that nonce.
/// * Without qop, each nonce is accepted once.
///
/// Entries are dropped `lifetime_secs` after a nonce was first seen (by then
/// [`NonceIssuer::check`] calls it stale, so its replay fails anyway).
///
/// Memory is bounded by `max_entries`, at about 50 bytes per nonce: a
/// nonce is kept as a keyed 64-bit hash, not as its 64-character text (a
/// collision could only make a fresh use look like a replay, which costs
/// the client one more challenge). When full, the oldest entry is evicted
/// and the guard remembers when that nonce was first seen: any nonce
/// *issued* no later than that may have been forgotten and is answered
/// [`Replay::Forgotten`], so eviction never lets a replay through, and
/// nonces issued after it keep working — a registrar under sustained load
/// never starts refusing every new client.
#[derive(Debug)]
pub struct ReplayGuard {
    lifetime_secs: u64,
    max_entries: usize,
    hasher: std::collections::hash_map::RandomState,
    entries: HashMap<u64, Use>,
    /// (first seen, key) in insertion order; monotonic when `now` is.
    order: VecDeque<(u64, u64)>,
    /// First-seen time of the newest nonce evicted to make room.
    horizon: Option<u64>,
}

impl ReplayGuard {
    /// Creates a guard remembering at most `max_entries` nonces for
    /// `lifetime_secs` each.
    pub fn new(lifetime_secs: u64, max_entries: usize) -> ReplayGuard {
        ReplayGuard {
            lifetime_secs,
            max_entries: max_entries.max(1),
            hasher: Default::default(),
            entries: HashMap::new(),
            order: VecDeque::new(),
            horizon: None,
        }
    }

    /// Number of nonces currently remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn prune(&mut self, now_unix: u64) {
        while let Some(&(seen, key)) = self.order.front() {
            if seen.saturating_add(self.lifetime_secs) > now_unix {
                break;
            }
            self.order.pop_front();
            self.entries.remove(&key);
        }
        if self.entries.is_empty() && self.order.capacity() > 1024 {
            self.order.shrink_to_fit();
            self.entries.shrink_to_fit();
        }
    }

    /// Records a use of `nonce` (issued at `issued_unix`, see
    /// [`NonceIssuer::issued_at`]) with nonce count `nc` (`None` without
    /// qop) and says whether it is fresh.
    pub fn check_and_record(
        &mut self,
        nonce: &str,
        nc: Option<u32>,
        issued_unix: u64,
        now_unix: u64,
    ) -> Replay {
        use std::hash::BuildHasher;
        self.prune(now_unix);
        let key = self.hasher.hash_one(nonce);
        if let Some(entry) = self.entries.get_mut(&key) {
            return match (entry, nc) {
                (Use::Counted(highest), Some(n)) if n > *highest => {
                    *highest = n;
                    Replay::Fresh
                }
                _ => Replay::Replayed,
            };
        }
        if nc == Some(0) {
            return Replay::Replayed;
        }
        if self.horizon.is_some_and(|h| issued_unix <= h) {
            return Replay::Forgotten;
        }
        while self.entries.len() >= self.max_entries {
            let Some((seen, old)) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&old);
            self.horizon = Some(self.horizon.map_or(seen, |h| h.max(seen)));
        }
        let entry = match nc {
            Some(n) => Use::Counted(n),
            None => Use::Once,
        };
        self.entries.insert(key, entry);
        self.order.push_back((now_unix, key));
        Replay::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        let creds = Credentials::parse(
            "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n response=\"6629fae49393a05397450978507c4ef1\",\r\n opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(
            expected_response(&creds, "GET", &h),
            "6629fae49393a05397450978507c4ef1"
        );
        assert!(verify(&creds, "GET", &h));
    }

    #[test]
    fn rfc7616_examples() {
        // RFC 7616 §3.9.1: (algorithm, expected response)
        for (alg, want) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let challenge = Challenge {
                realm: "http-auth@example.org".into(),
                nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
                algorithm: alg,
                qop_auth: true,
                stale: false,
                opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS".into()),
            };
            let creds = respond(
                &challenge,
                "GET",
                "/dir/index.html",
                "Mufasa",
                "Circle of Life",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                1,
            );
            assert_eq!(creds.response, want, "{alg:?}");
            // Through the wire format and back.
            let parsed = Credentials::parse(&creds.to_header_value()).unwrap();
            assert_eq!(parsed, creds);
            let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            assert!(verify(&parsed, "GET", &h));
        }
    }

    #[test]
    fn round_trips_and_failures() {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            for qop_auth in [true, false] {
                let ch = Challenge {
                    realm: "example.com".into(),
                    nonce: "abc".into(),
                    algorithm: alg,
                    qop_auth,
                    stale: true,
                    opaque: None,
                };
                let ch2 = Challenge::parse(&ch.to_header_value()).unwrap();
                assert_eq!(ch2, ch);
                let creds = respond(
                    &ch2,
                    "REGISTER",
                    "sip:example.com",
                    "alice",
                    "s3cret",
                    "c0ffee",
                    7,
                );
                let h = ha1(alg, "alice", "example.com", "s3cret");
                assert!(verify(&creds, "REGISTER", &h));
                let wrong = ha1(alg, "alice", "example.com", "guess");
                assert!(!verify(&creds, "REGISTER", &wrong));
                assert!(!verify(&creds, "INVITE", &h));
                let mut tampered = creds.clone();
                tampered.uri = "sip:evil.example.com".into();
                assert!(!verify(&tampered, "REGISTER", &h));
                let mut upper = creds.clone();
                upper.response = upper.response.to_ascii_uppercase();
                assert!(verify(&upper, "REGISTER", &h));
                if qop_auth {
                    let mut nc = creds.clone();
                    nc.nc = Some(8);
                    assert!(!verify(&nc, "REGISTER", &h));
                    let mut int = creds.clone();
                    int.qop = Some("auth-int".into());
                    assert!(!verify(&int, "REGISTER", &h));
                }
            }
        }
    }

    #[test]
    fn algorithm_names() {
        for (s, want) in [
            ("MD5", Ok(Algorithm::Md5)),
            ("md5", Ok(Algorithm::Md5)),
            ("SHA-256", Ok(Algorithm::Sha256)),
            ("SHA256", Ok(Algorithm::Sha256)),
            ("sha-256", Ok(Algorithm::Sha256)),
            ("MD5-sess", Err(DigestError::UnsupportedAlgorithm)),
            ("SHA-512-256", Err(DigestError::UnsupportedAlgorithm)),
        ] {
            assert_eq!(Algorithm::parse(s), want, "{s}");
        }
        assert_eq!(Algorithm::Sha256.name(), "SHA-256");
        assert_eq!("sha-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!(
            Algorithm::Md5.hash_hex(b""),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn parsing_is_robust() {
        let c = Credentials::parse("digest   response=ABCDEF ,username=bob,realm=\"r\",nonce=n,  uri=\"sip:a\\\"b\"  ,, algorithm=sha-256,qop=auth,nc=0000000a,cnonce=x").unwrap();
        assert_eq!(c.username, "bob");
        assert_eq!(c.uri, "sip:a\"b");
        assert_eq!(c.nc, Some(10));
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let bad: &[(&str, DigestError)] = &[
            (
                "NoOneKnowsThisScheme opaque-data=here",
                DigestError::NotDigest,
            ),
            ("Basic dXNlcjpwYXNz", DigestError::NotDigest),
            ("Digestusername=\"a\"", DigestError::NotDigest),
            (
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"",
                DigestError::Missing("response"),
            ),
            (
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth",
                DigestError::Missing("nc/cnonce with qop"),
            ),
            (
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", nc=1, qop=auth, cnonce=c",
                DigestError::Malformed("nc is not 8 hex digits"),
            ),
            (
                "Digest username=\"a\", username=\"b\"",
                DigestError::Malformed("duplicate parameter"),
            ),
            (
                "Digest username=\"a",
                DigestError::Malformed("unterminated quoted value"),
            ),
            (
                "Digest username",
                DigestError::Malformed("parameter without '='"),
            ),
            (
                "Digest username=a b=c",
                DigestError::Malformed("expected ','"),
            ),
        ];
        for (input, want) in bad {
            assert_eq!(Credentials::parse(input).unwrap_err(), *want, "{input}");
        }
        let ch = Challenge::parse("Digest realm=\"atlanta.com\", domain=\"sip:ss1.carrier.com\", qop=\"auth,auth-int\", nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=MD5").unwrap();
        assert!(ch.qop_auth);
        assert!(!ch.stale);
        assert_eq!(ch.opaque.as_deref(), Some(""));
        assert_eq!(
            Challenge {
                realm: "r".into(),
                nonce: "n".into(),
                algorithm: Algorithm::Sha256,
                qop_auth: true,
                stale: true,
                opaque: Some("o".into())
            }
            .to_header_value(),
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\", stale=true, opaque=\"o\""
        );
    }

    #[test]
    fn nonces() {
        let issuer = NonceIssuer::new([7u8; 32], 300);
        let n = issuer.issue(1_000_000);
        assert_eq!(n.len(), 64);
        assert_ne!(n, issuer.issue(1_000_000));
        // (nonce, now, expected)
        let mut flipped = n.clone().into_bytes();
        flipped[40] = if flipped[40] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let other = NonceIssuer::new([8u8; 32], 300).issue(1_000_000);
        let cases: Vec<(&str, u64, NonceStatus)> = vec![
            (&n, 1_000_000, NonceStatus::Valid),
            (&n, 1_000_300, NonceStatus::Valid),
            (&n, 1_000_301, NonceStatus::Stale),
            (&n, 999_000, NonceStatus::Valid),
            (&flipped, 1_000_000, NonceStatus::Invalid),
            (&other, 1_000_000, NonceStatus::Invalid),
            ("", 1_000_000, NonceStatus::Invalid),
            ("zz", 1_000_000, NonceStatus::Invalid),
            (&n[..63], 1_000_000, NonceStatus::Invalid),
        ];
        for (nonce, now, want) in cases {
            assert_eq!(issuer.check(nonce, now), want, "{nonce} at {now}");
        }
        let non_ascii = "é".repeat(32);
        assert_eq!(issuer.check(&non_ascii, 1_000_000), NonceStatus::Invalid);
        assert!(!format!("{issuer:?}").contains('7'));
    }

    #[test]
    fn replay_guard() {
        use Replay::{Forgotten, Fresh, Replayed};
        let mut g = ReplayGuard::new(100, 3);
        // (nonce, nc, issued, now, expected)
        let steps: &[(&str, Option<u32>, u64, u64, Replay)] = &[
            ("a", Some(1), 0, 0, Fresh),
            ("a", Some(1), 0, 1, Replayed),
            ("a", Some(3), 0, 2, Fresh),
            ("a", Some(2), 0, 3, Replayed),
            ("a", None, 0, 3, Replayed),
            ("b", None, 3, 4, Fresh),
            ("b", None, 3, 5, Replayed),
            ("b", Some(1), 3, 5, Replayed),
            ("c", Some(0), 5, 5, Replayed),
            ("c", Some(1), 5, 6, Fresh),
            // full (a, b, c): a, first seen at 0, is evicted for d
            ("d", Some(1), 7, 7, Fresh),
            // a was issued before the horizon: it may be a replay
            ("a", Some(4), 0, 8, Forgotten),
            // b, c, d are still known
            ("b", None, 3, 8, Replayed),
            ("d", Some(2), 7, 8, Fresh),
            // a fresh nonce still works when full (b is evicted)
            ("e", Some(1), 8, 9, Fresh),
            ("b", None, 3, 9, Forgotten),
            ("e", Some(1), 8, 10, Replayed),
        ];
        for (i, (nonce, nc, issued, now, want)) in steps.iter().enumerate() {
            assert_eq!(
                g.check_and_record(nonce, *nc, *issued, *now),
                *want,
                "step {i}"
            );
        }
        assert_eq!(g.len(), 3);
        // everything expires a lifetime after it was first seen
        assert_eq!(g.check_and_record("f", Some(1), 200, 200), Fresh);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn issued_at_reads_the_timestamp() {
        let issuer = NonceIssuer::new([7; 32], 300);
        let nonce = issuer.issue(1_700_000_123);
        assert_eq!(NonceIssuer::issued_at(&nonce), Some(1_700_000_123));
        assert_eq!(NonceIssuer::issued_at("xyz"), None);
    }
}
