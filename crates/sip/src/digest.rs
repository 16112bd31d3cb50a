//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616,
//! RFC 8760 for SHA-256), both sides: the registrar challenges and verifies,
//! our UA and trunks answer challenges.
//!
//! Only `qop=auth` (or no qop, for RFC 2069-style clients) is supported;
//! `auth-int` and the `-sess` algorithms are refused, as most SIP deployments
//! do. Nonces are stateless ([`NonceIssuer`]) and bound to the address they
//! were sent to; replayed nonce counts are caught by the bounded
//! [`ReplayGuard`]; the credentials' `uri` must name the Request-URI
//! ([`uri_matches`]).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;

use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::message::{Tolerance, Uri};

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

/// How far the credentials' `uri` may differ from the Request-URI (RFC 3261
/// §19.1.4 otherwise, see [`Uri::matches`]):
///
/// * a port in one of them only: phones set up with `server:port` write
///   the port in the Request-URI and leave it out of the digest `uri`, or
///   the other way round. Two different ports are still a mismatch.
/// * a `transport` parameter in one of them only: some phones add
///   `;transport=tcp` to the Request-URI only. Two different transports
///   are still a mismatch.
///
/// Neither names another resource: the user, host, other parameters and
/// headers, which do, are compared strictly.
pub const DIGEST_URI_TOLERANCE: Tolerance = Tolerance {
    port_in_one_only: true,
    transport_in_one_only: true,
};

/// True when the credentials' `uri` names `request_uri` (RFC 3261 §22.4,
/// RFC 7616 §3.4.6), compared as SIP URIs with [`DIGEST_URI_TOLERANCE`].
/// A `uri` that does not parse matches nothing. Without this check,
/// credentials captured from one request could be replayed on a request
/// to another target while their nonce is valid.
pub fn uri_matches(digest_uri: &str, request_uri: &Uri) -> bool {
    Uri::parse(digest_uri).is_ok_and(|u| u.matches(request_uri, DIGEST_URI_TOLERANCE))
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
    /// Ours, issued to this source, and within its lifetime.
    Valid,
    /// Ours and issued to this source, but expired: challenge again with
    /// `stale=true`.
    Stale,
    /// Not ours for this source: forged, corrupted, from another secret,
    /// or issued to another address (a request with a spoofed source
    /// address carries one of those). Proves nothing either way.
    Invalid,
}

/// The part of a source address a nonce (and the failed-authentication
/// limiter) is bound to: an IPv4 address whole, an IPv6 address by its /64
/// (one host's privacy addresses rotate within it, and whoever holds one
/// address of a /64 usually holds them all). An IPv4-mapped IPv6 address
/// counts as the IPv4 address.
pub fn source_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

/// Issues and checks stateless nonces: `hex(timestamp ‖ random ‖ MAC)`, the
/// MAC being HMAC-SHA256 under a server secret over timestamp, random and
/// the [`source_prefix`] of the address the challenge is sent to, truncated
/// to 128 bits. A nonce is therefore only good from the address it was
/// sent to: someone who obtained one cannot use it in requests whose source
/// address is forged to be a victim's. Any registrar instance sharing the
/// secret can check any nonce, with no per-nonce memory.
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

    /// MAC over timestamp ‖ random ‖ family ‖ 16 address bytes.
    fn mac(&self, data: &[u8; 16], source: IpAddr) -> [u8; 16] {
        let mut msg = [0u8; 33];
        msg[..16].copy_from_slice(data);
        match source_prefix(source) {
            IpAddr::V4(v4) => {
                msg[16] = 4;
                msg[17..21].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                msg[16] = 6;
                msg[17..].copy_from_slice(&v6.octets());
            }
        }
        let full = hmac_sha256(&self.secret, &msg);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A fresh nonce stamped with `now_unix`, for a challenge sent to
    /// `source`.
    pub fn issue(&self, now_unix: u64, source: IpAddr) -> String {
        let mut data = [0u8; 16];
        data[..8].copy_from_slice(&now_unix.to_be_bytes());
        data[8..].copy_from_slice(&rand::random::<u64>().to_be_bytes());
        let mac = self.mac(&data, source);
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

    /// Checks a nonce presented by `source` against the secret, the
    /// address it was issued to and the lifetime.
    pub fn check(&self, nonce: &str, now_unix: u64, source: IpAddr) -> NonceStatus {
        if nonce.len() != NONCE_LEN {
            return NonceStatus::Invalid;
        }
        let Ok(raw) = hex::decode(nonce) else {
            return NonceStatus::Invalid;
        };
        let mut data = [0u8; 16];
        data.copy_from_slice(&raw[..16]);
        if !constant_time_eq(&self.mac(&data, source), &raw[16..]) {
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

/// HMAC-SHA256 (RFC 2104) over the sha2 crate, to avoid one more dependency
/// (the replicas' flow tokens in `sip-stack`'s edge use it too).
pub fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
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
mod tests;
