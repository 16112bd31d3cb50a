//! Trunks (gateways): upstream SIP providers. A trunk is where `dial`
//! targets `gateway/<name>` go (numbers rewritten, the provider's digest
//! challenge answered), where calls come from without a user's digest, and,
//! with `register`, where this node keeps an outbound registration so the
//! provider knows where to send calls.
//!
//! A call comes from a trunk when its source address is the trunk's
//! ([`Trunks::by_source`]) — over any transport, or only over a connection
//! (`"inbound_transport": "tcp"`), since a UDP source address is forgeable.
//! With `"inbound_auth": "digest"` the trunk must also answer our 407 with
//! `inbound_username`/`inbound_password`. Either way, trunk calls are
//! routed only by the dialplan's routes for trunks
//! ([`crate::dialplan::Origin`]).
//!
//! With `"transport": "tls"` the trunk is reached over TLS: its
//! certificate is verified (against the system's CA certificates and
//! TLS_CA_FILE) for `tls_server_name`, else the `domain`, else the host's
//! IP address, which is also sent as SNI when it is a name;
//! `"tls_ca_file"` adds CA certificates trusted for that trunk alone (read
//! when the trunk is set); `"tls_verify": false` accepts any certificate
//! (a provider with a self-signed one).
//!
//! Trunks live in memory, are loaded from `TRUNKS_PATH` at start-up and
//! changed through the API, which writes the file back (mode 0600: it
//! holds the outbound passwords; the inbound password is stored as HA1s
//! only).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_sip::digest::{Algorithm, ha1};
use switchboard_sip_stack::target::TransportKind;
use switchboard_sip_stack::transport::tls::CertificateDer;

/// A trunk as configured (the file and the API body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Taken from the path when the API body leaves it out.
    #[serde(default)]
    pub name: String,
    /// `ip:port` (or `ip`, port 5060, 5061 over TLS) of the provider; no
    /// DNS yet.
    pub host: String,
    /// `udp`, `tcp` or `tls`.
    #[serde(default = "udp")]
    pub transport: String,
    /// Over TLS: check the provider's certificate (default). `false`
    /// accepts any certificate.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub tls_verify: bool,
    /// Over TLS: the name the certificate must carry, sent as SNI
    /// (default: `domain` when it is a host name, else the host's IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Over TLS: a PEM file of CA certificates trusted for this trunk
    /// only, in addition to the system's and TLS_CA_FILE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// `"required"`: calls to the trunk are offered RTP/SAVP with SDES keys
    /// (a plain answer ends that fork); unset or `"optional"`: RTP/AVP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<String>,
    /// Credentials the provider's 401/407 challenges are answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Write-only: never returned by the API.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The SIP domain for From/To/Request-URI (default: the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Keep an outbound registration with the provider.
    #[serde(default)]
    pub register: bool,
    /// Registration interval asked for, seconds.
    #[serde(default = "default_expires")]
    pub expires: u32,
    /// Leading characters removed from a dialled number...
    #[serde(default)]
    pub strip: usize,
    /// ...and what is put in front of it.
    #[serde(default)]
    pub prefix: String,
    /// The account inbound calls from this trunk belong to.
    #[serde(default = "default_account")]
    pub account_id: i64,
    /// Which transports a call from the trunk's address may use to count
    /// as the trunk.
    #[serde(default)]
    pub inbound_transport: InboundTransport,
    /// How calls from the trunk prove themselves beyond their address.
    #[serde(default)]
    pub inbound_auth: InboundAuth,
    /// The username the trunk answers our 407 with (`inbound_auth: digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_username: Option<String>,
    /// Write-only; turned into [`TrunkConfig::inbound_ha1`] on the way in
    /// ([`TrunkConfig::seal`]) and never stored.
    #[serde(default, skip_serializing)]
    pub inbound_password: Option<String>,
    /// The inbound password as HA1s: written to TRUNKS_PATH, never
    /// returned by the API.
    #[serde(default, skip_serializing)]
    pub inbound_ha1: Option<InboundHa1>,
}

/// `inbound_transport`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundTransport {
    /// UDP or a connection: the source address alone (forgeable over UDP).
    #[default]
    Any,
    /// Only a connection (TCP, or TLS): its address was proven by the
    /// handshake. A UDP request from the trunk's address is then treated
    /// as any other caller's (407 for a user's digest).
    Tcp,
}

/// `inbound_auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundAuth {
    /// The source address is enough.
    #[default]
    None,
    /// Calls are challenged (407) and must carry the inbound credentials.
    Digest,
}

/// The inbound password hashed for the realm it was challenged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundHa1 {
    /// The account's realm when the password was set: the HA1s are only
    /// good in it (a changed account domain needs the password again).
    pub realm: String,
    pub md5: String,
    pub sha256: String,
}

fn udp() -> String {
    "udp".into()
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn default_expires() -> u32 {
    3600
}
fn default_account() -> i64 {
    switchboard_store::DEFAULT_ACCOUNT_ID
}

impl TrunkConfig {
    /// Checks the fields; the error names the one at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err("name: letters, digits, - and _ only".into());
        }
        self.addr()?;
        let kind = self.transport_kind()?;
        if kind != TransportKind::Tls
            && (self.tls_server_name.is_some() || !self.tls_verify || self.tls_ca_file.is_some())
        {
            return Err(
                "tls_verify/tls_server_name/tls_ca_file: only with \"transport\": \"tls\"".into(),
            );
        }
        if self.tls_ca_file.is_some() && !self.tls_verify {
            return Err("tls_ca_file: has no use with \"tls_verify\": false".into());
        }
        if let Some(n) = &self.tls_server_name
            && !switchboard_sip_stack::transport::tls::valid_server_name(n)
        {
            return Err(format!("tls_server_name: {n:?} is not a host name"));
        }
        crate::dialplan::Srtp::parse(self.srtp.as_deref(), "srtp")
            .map_err(|e| format!("srtp: {}", e.reason))?;
        if self.register && (self.username.is_none() || self.password.is_none()) {
            return Err("register: needs username and password".into());
        }
        if !(60..=86_400).contains(&self.expires) {
            return Err("expires: 60 to 86400 seconds".into());
        }
        if self
            .prefix
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "+*#".contains(c)))
        {
            return Err("prefix: digits, letters, + * # only".into());
        }
        self.validate_inbound()
    }

    fn validate_inbound(&self) -> Result<(), String> {
        if self.inbound_password.is_some() {
            return Err("inbound_password: not hashed (internal error)".into());
        }
        match self.inbound_auth {
            InboundAuth::None => {
                if self.inbound_username.is_some() || self.inbound_ha1.is_some() {
                    return Err("inbound_username: only with \"inbound_auth\": \"digest\"".into());
                }
            }
            InboundAuth::Digest => {
                let user = self.inbound_username.as_deref().unwrap_or_default();
                if user.is_empty() || user.chars().any(|c| c.is_control() || c == '"') {
                    return Err("inbound_username: needed with inbound_auth digest (no quotes or control characters)".into());
                }
                let Some(h) = &self.inbound_ha1 else {
                    return Err("inbound_password: needed with inbound_auth digest".into());
                };
                let hex =
                    |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
                if h.realm.is_empty() || !hex(&h.md5, 32) || !hex(&h.sha256, 64) {
                    return Err("inbound_ha1: realm, md5 (32 hex) and sha256 (64 hex)".into());
                }
            }
        }
        Ok(())
    }

    /// Replaces a plain `inbound_password` by its HA1s in `realm` (the
    /// account's, where calls from the trunk are challenged).
    pub fn seal(&mut self, realm: &str) {
        if let Some(password) = self.inbound_password.take() {
            let user = self.inbound_username.clone().unwrap_or_default();
            self.inbound_ha1 = Some(InboundHa1 {
                realm: realm.to_owned(),
                md5: ha1(Algorithm::Md5, &user, realm, &password),
                sha256: ha1(Algorithm::Sha256, &user, realm, &password),
            });
        }
    }

    pub fn addr(&self) -> Result<SocketAddr, String> {
        if let Ok(a) = self.host.parse::<SocketAddr>() {
            return Ok(a);
        }
        let port = match self.transport_kind() {
            Ok(TransportKind::Tls) => 5061,
            _ => 5060,
        };
        let ip: IpAddr = self
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("host: {:?} is not an IP address or ip:port", self.host))?;
        Ok(SocketAddr::new(ip, port))
    }

    pub fn transport_kind(&self) -> Result<TransportKind, String> {
        match self.transport.to_ascii_lowercase().as_str() {
            "udp" => Ok(TransportKind::Udp),
            "tcp" => Ok(TransportKind::Tcp),
            "tls" => Ok(TransportKind::Tls),
            other => Err(format!("transport: {other:?} (udp, tcp or tls)")),
        }
    }

    /// The name the trunk's TLS certificate is checked for (and sent as
    /// SNI): `tls_server_name`, else `domain` when it is a host name (not
    /// an IP address, no port); `None`: the host's IP address.
    pub fn tls_name(&self) -> Option<String> {
        if let Some(n) = &self.tls_server_name {
            return Some(n.clone());
        }
        let d = self.domain.as_deref()?;
        let is_name = d.parse::<IpAddr>().is_err()
            && !d.contains([':', '[', ']'])
            && switchboard_sip_stack::transport::tls::valid_server_name(d);
        is_name.then(|| d.to_owned())
    }

    /// The domain written in URIs towards the provider.
    pub fn domain(&self) -> String {
        self.domain.clone().unwrap_or_else(|| {
            self.addr()
                .map(|a| switchboard_sip_stack::dialog::host_port(&a))
                .unwrap_or_else(|_| self.host.clone())
        })
    }

    /// A dialled number as the provider wants it.
    pub fn rewrite(&self, number: &str) -> String {
        let rest: String = number.chars().skip(self.strip).collect();
        format!("{}{rest}", self.prefix)
    }
}

/// What the API shows of a trunk's outbound registration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrunkStatus {
    pub registered: bool,
    /// Last final response to our REGISTER.
    pub last_code: Option<u16>,
    /// Unix ms when the registration runs out.
    pub expires_at: Option<i64>,
    pub failures: u32,
    pub last_error: Option<String>,
}

pub struct Trunk {
    pub config: TrunkConfig,
    pub addr: SocketAddr,
    pub transport: TransportKind,
    /// The certificates of `tls_ca_file`, read when the trunk was set.
    pub tls_ca: Vec<CertificateDer<'static>>,
    pub status: Mutex<TrunkStatus>,
    /// Stops this trunk's registration task when the trunk is replaced.
    pub stop: tokio_util::sync::CancellationToken,
}

impl Trunk {
    fn new(config: TrunkConfig) -> Result<Self, String> {
        config.validate()?;
        let tls_ca = match &config.tls_ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        Ok(Self {
            addr: config.addr()?,
            transport: config.transport_kind()?,
            tls_ca,
            config,
            status: Mutex::new(TrunkStatus::default()),
            stop: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The media policy of calls to the trunk (`srtp`).
    pub fn srtp(&self) -> crate::dialplan::Srtp {
        crate::dialplan::Srtp::parse(self.config.srtp.as_deref(), "srtp").unwrap_or_default()
    }

    pub fn status(&self) -> TrunkStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether a request over `transport` from the trunk's address counts
    /// as the trunk.
    pub fn accepts(&self, transport: TransportKind) -> bool {
        match self.config.inbound_transport {
            InboundTransport::Any => true,
            InboundTransport::Tcp => transport.is_reliable(),
        }
    }

    /// The inbound credentials for `username` challenged in `realm`, when
    /// they are the trunk's.
    pub fn inbound_secret(&self, username: &str, realm: &str) -> Option<InboundHa1> {
        let h = self.config.inbound_ha1.as_ref()?;
        if self.config.inbound_username.as_deref() != Some(username) {
            return None;
        }
        if h.realm != realm {
            tracing::warn!(
                trunk = %self.config.name,
                stored = %h.realm,
                realm,
                "the trunk's inbound password was set for another realm (the account's domain changed): PUT its inbound_password again"
            );
            return None;
        }
        Some(h.clone())
    }
}

/// The CA certificates of a trunk's `tls_ca_file`; the error names the
/// field and the file.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let at = |e: &dyn std::fmt::Display| format!("tls_ca_file: {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| at(&e))?;
    switchboard_sip_stack::transport::tls::ca_certificates(&pem).map_err(|e| at(&e))
}

impl crate::auth::Secret for InboundHa1 {
    fn ha1(&self, alg: Algorithm) -> Option<&str> {
        Some(match alg {
            Algorithm::Md5 => &self.md5,
            Algorithm::Sha256 => &self.sha256,
        })
    }
}

/// The trunks of a node.
#[derive(Default)]
pub struct Trunks {
    by_name: RwLock<HashMap<String, Arc<Trunk>>>,
}

/// A trunk with the secrets its API view leaves out.
#[derive(Serialize)]
struct Full<'a> {
    #[serde(flatten)]
    c: &'a TrunkConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inbound_ha1: Option<&'a InboundHa1>,
}

impl<'a> Full<'a> {
    fn of(c: &'a TrunkConfig) -> Self {
        Full {
            c,
            password: c.password.as_deref(),
            inbound_ha1: c.inbound_ha1.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunksFile {
    trunks: Vec<TrunkConfig>,
}

impl Trunks {
    /// Reads `path` if it exists; `realm_of` gives an account's realm, for
    /// an `inbound_password` written in the file by hand.
    pub fn load(path: &Path, realm_of: impl Fn(i64) -> Option<String>) -> Result<Self, String> {
        let t = Self::default();
        if !path.exists() {
            return Ok(t);
        }
        crate::secrets::warn_if_readable(path);
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: TrunksFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, mut c) in file.trunks.into_iter().enumerate() {
            let name = c.name.clone();
            let at = |e: String| format!("{}: trunks[{i}] ({name:?}): {e}", path.display());
            if c.inbound_password.is_some() {
                let realm = realm_of(c.account_id)
                    .ok_or_else(|| at("account_id: no such account".into()))?;
                c.seal(&realm);
            }
            t.put(c).map_err(at)?;
        }
        Ok(t)
    }

    /// Writes every trunk (with passwords and inbound HA1s) to `path`,
    /// atomically, readable by the owner only.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let list = self.list();
        let full: Vec<Full<'_>> = list.iter().map(|t| Full::of(&t.config)).collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({ "trunks": full }))
            .map_err(std::io::Error::other)?;
        crate::secrets::write_private_atomic(path, &(text + "\n"))
    }

    /// A trunk's whole configuration, secrets included, as the file and the
    /// shared database hold it.
    pub fn stored(config: &TrunkConfig) -> serde_json::Value {
        serde_json::to_value(Full::of(config)).unwrap_or_default()
    }

    /// Adds or replaces a trunk; returns it (and the one it replaced).
    pub fn put(&self, c: TrunkConfig) -> Result<(Arc<Trunk>, Option<Arc<Trunk>>), String> {
        let t = Arc::new(Trunk::new(c)?);
        let old = self
            .by_name
            .write()
            .map_err(|_| "trunk table poisoned".to_owned())?
            .insert(t.config.name.clone(), Arc::clone(&t));
        if let Some(o) = &old {
            o.stop.cancel();
        }
        Ok((t, old))
    }

    pub fn remove(&self, name: &str) -> Option<Arc<Trunk>> {
        let t = self.by_name.write().ok()?.remove(name)?;
        t.stop.cancel();
        Some(t)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Trunk>> {
        self.by_name.read().ok()?.get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Trunk>> {
        let mut v: Vec<Arc<Trunk>> = self
            .by_name
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        v
    }

    /// The trunk a request from `source` over `transport` comes from: same
    /// IP, and the same port when the trunk's host names one and the
    /// request came over UDP (a connection comes from an ephemeral port);
    /// a trunk with `"inbound_transport": "tcp"` only over a connection.
    pub fn by_source(&self, source: &SocketAddr, transport: TransportKind) -> Option<Arc<Trunk>> {
        let map = self.by_name.read().ok()?;
        let candidates = || map.values().filter(|t| t.accepts(transport));
        candidates()
            .find(|t| t.addr == *source)
            .or_else(|| {
                candidates().find(|t| {
                    t.addr.ip() == source.ip()
                        && (transport.is_reliable() || t.config.host.parse::<SocketAddr>().is_err())
                })
            })
            .cloned()
    }
}

impl Trunks {
    /// The TLS trunk at `addr` (outbound connections are checked by its
    /// settings).
    pub fn by_tls_addr(&self, addr: &SocketAddr) -> Option<Arc<Trunk>> {
        let map = self.by_name.read().ok()?;
        map.values()
            .find(|t| t.transport == TransportKind::Tls && t.addr == *addr)
            .cloned()
    }
}

/// Back-off between failed registrations: 5 s doubling to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << failures.min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(host: &str) -> TrunkConfig {
        serde_json::from_value(serde_json::json!({
            "name": "provider", "host": host, "username": "u", "password": "p",
            "strip": 1, "prefix": "+49"
        }))
        .unwrap()
    }

    #[test]
    fn numbers_are_rewritten() {
        let t = trunk("127.0.0.1:5090");
        assert_eq!(t.rewrite("0301234"), "+49301234");
        assert_eq!(t.rewrite(""), "+49");
    }

    #[test]
    fn tls_trunks() {
        let tls = |extra: serde_json::Value| -> Result<TrunkConfig, String> {
            let mut v = serde_json::json!({"name": "p", "host": "192.0.2.9", "transport": "tls"});
            if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                m.extend(e.clone());
            }
            let c: TrunkConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
            c.validate().map(|()| c)
        };
        let t = tls(serde_json::json!({})).unwrap();
        assert_eq!(t.transport_kind(), Ok(TransportKind::Tls));
        assert_eq!(
            t.addr().unwrap(),
            "192.0.2.9:5061".parse::<SocketAddr>().unwrap()
        );
        assert!(t.tls_verify, "verification is on by default");
        assert_eq!(t.tls_name(), None, "the IP address is checked");
        // the name: tls_server_name, else a domain that is a host name
        let cases = [
            (
                serde_json::json!({"domain": "sip.example.com"}),
                Some("sip.example.com"),
            ),
            (serde_json::json!({"domain": "192.0.2.9"}), None),
            (serde_json::json!({"domain": "sip.example.com:5061"}), None),
            (
                serde_json::json!({"domain": "example.com", "tls_server_name": "edge.example.net"}),
                Some("edge.example.net"),
            ),
        ];
        for (extra, want) in cases {
            let t = tls(extra.clone()).unwrap();
            assert_eq!(t.tls_name().as_deref(), want, "{extra}");
        }
        let off = tls(serde_json::json!({"tls_verify": false, "host": "192.0.2.9:5071"})).unwrap();
        assert!(!off.tls_verify);
        assert_eq!(off.addr().unwrap().port(), 5071);
        // stored without the default, with tls_verify when it is off
        let stored = Trunks::stored(&off);
        assert_eq!(stored["tls_verify"], serde_json::json!(false));
        assert!(Trunks::stored(&t).get("tls_verify").is_none());
        for (extra, field) in [
            (
                serde_json::json!({"tls_server_name": "not a name"}),
                "tls_server_name:",
            ),
            (
                serde_json::json!({"transport": "udp", "tls_verify": false}),
                "tls_verify",
            ),
            (
                serde_json::json!({"transport": "tcp", "tls_server_name": "a.example"}),
                "tls_verify",
            ),
            (
                serde_json::json!({"transport": "udp", "tls_ca_file": "/etc/ca.pem"}),
                "tls_verify/tls_server_name/tls_ca_file:",
            ),
            (
                serde_json::json!({"tls_verify": false, "tls_ca_file": "/etc/ca.pem"}),
                "tls_ca_file:",
            ),
        ] {
            let err = tls(extra.clone()).unwrap_err();
            assert!(err.starts_with(field), "{extra}: {err}");
        }
        // the TLS trunk is found by its address for outbound connections
        let trunks = Trunks::default();
        trunks.put(off.clone()).unwrap();
        assert!(
            trunks
                .by_tls_addr(&"192.0.2.9:5071".parse().unwrap())
                .is_some()
        );
        assert!(
            trunks
                .by_tls_addr(&"192.0.2.9:5061".parse().unwrap())
                .is_none()
        );
        // a tls_ca_file is read when the trunk is set
        let dir = std::env::temp_dir().join(format!("trunk-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (missing, junk) = (dir.join("missing.pem"), dir.join("junk.pem"));
        std::fs::write(&junk, "not a certificate").unwrap();
        for (file, says) in [(&missing, "No such file"), (&junk, "no certificate")] {
            let c = tls(serde_json::json!({"tls_ca_file": file})).unwrap();
            let Err(err) = trunks.put(c) else {
                panic!("{} accepted", file.display())
            };
            let want = format!("tls_ca_file: {}: ", file.display());
            assert!(err.starts_with(&want) && err.contains(says), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validation_names_the_field() {
        let mut t = trunk("example.com");
        assert!(t.validate().unwrap_err().starts_with("host:"));
        t = trunk("127.0.0.1");
        assert_eq!(
            t.addr().unwrap(),
            "127.0.0.1:5060".parse::<SocketAddr>().unwrap()
        );
        t.transport = "sctp".into();
        assert!(t.validate().unwrap_err().starts_with("transport:"));
        t = trunk("127.0.0.1");
        t.register = true;
        t.password = None;
        assert!(t.validate().unwrap_err().starts_with("register:"));
        t = trunk("127.0.0.1");
        t.name = "a b".into();
        assert!(t.validate().unwrap_err().starts_with("name:"));
    }

    #[test]
    fn source_matching_uses_the_port_when_given_and_the_inbound_transport() {
        use TransportKind::{Tcp, Udp};
        let trunks = Trunks::default();
        trunks.put(trunk("127.0.0.1:5090")).unwrap();
        let mut any_port = trunk("127.0.0.2");
        any_port.name = "other".into();
        trunks.put(any_port).unwrap();
        let mut tcp_only = trunk("127.0.0.3:5060");
        tcp_only.name = "tcp-only".into();
        tcp_only.inbound_transport = InboundTransport::Tcp;
        trunks.put(tcp_only).unwrap();
        // (source, transport, trunk)
        for (source, transport, want) in [
            ("127.0.0.1:5090", Udp, Some("provider")),
            ("127.0.0.1:5091", Udp, None),
            // a connection comes from an ephemeral port
            ("127.0.0.1:40000", Tcp, Some("provider")),
            ("127.0.0.2:40000", Udp, Some("other")),
            ("127.0.0.2:40000", Tcp, Some("other")),
            // inbound_transport tcp: UDP from the address is not the trunk
            ("127.0.0.3:5060", Udp, None),
            ("127.0.0.3:5060", Tcp, Some("tcp-only")),
            ("127.0.0.3:41000", Tcp, Some("tcp-only")),
            ("127.0.0.4:5060", Udp, None),
        ] {
            assert_eq!(
                trunks
                    .by_source(&source.parse().unwrap(), transport)
                    .map(|t| t.config.name.clone())
                    .as_deref(),
                want,
                "{source} over {transport}"
            );
        }
    }

    #[test]
    fn inbound_digest_stores_ha1s_only() {
        let mut c: TrunkConfig = serde_json::from_value(serde_json::json!({
            "name": "p", "host": "127.0.0.1", "inbound_auth": "digest",
            "inbound_username": "in", "inbound_password": "in-secret"
        }))
        .unwrap();
        assert!(c.validate().unwrap_err().starts_with("inbound_password:"));
        c.seal("switchboard");
        c.validate().unwrap();
        assert_eq!(c.inbound_password, None);
        let h = c.inbound_ha1.clone().unwrap();
        assert_eq!(h.md5, ha1(Algorithm::Md5, "in", "switchboard", "in-secret"));
        // the API shows neither password nor HA1s...
        let shown = serde_json::to_value(&c).unwrap();
        assert!(shown.get("inbound_password").is_none(), "{shown}");
        assert!(shown.get("inbound_ha1").is_none(), "{shown}");
        assert_eq!(shown["inbound_auth"], "digest");
        // ...the file keeps the HA1s, not the password
        let dir = std::env::temp_dir().join(format!("sb-trunks-{}", rand::random::<u32>()));
        let path = dir.join("trunks.json");
        let trunks = Trunks::default();
        trunks.put(c).unwrap();
        trunks.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&h.sha256) && !text.contains("in-secret"),
            "{text}"
        );
        let back = Trunks::load(&path, |_| None).unwrap();
        let t = back.get("p").unwrap();
        assert_eq!(t.inbound_secret("in", "switchboard"), Some(h));
        assert_eq!(t.inbound_secret("other", "switchboard"), None);
        assert_eq!(t.inbound_secret("in", "example.com"), None, "other realm");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inbound_fields_are_validated() {
        let base = serde_json::json!({"name": "p", "host": "127.0.0.1"});
        // (extra fields, error prefix)
        for (extra, err) in [
            (
                serde_json::json!({"inbound_auth": "digest"}),
                "inbound_username:",
            ),
            (
                serde_json::json!({"inbound_auth": "digest", "inbound_username": "u"}),
                "inbound_password:",
            ),
            (
                serde_json::json!({"inbound_username": "u"}),
                "inbound_username:",
            ),
            (
                serde_json::json!({"inbound_auth": "digest", "inbound_username": "u",
                    "inbound_ha1": {"realm": "r", "md5": "xyz", "sha256": "00"}}),
                "inbound_ha1:",
            ),
        ] {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let c: TrunkConfig = serde_json::from_value(v).unwrap();
            assert!(c.validate().unwrap_err().starts_with(err), "{extra}");
        }
        let bad: Result<TrunkConfig, _> = serde_json::from_value(
            serde_json::json!({"name": "p", "host": "127.0.0.1", "inbound_transport": "udp"}),
        );
        assert!(bad.is_err(), "inbound_transport is any or tcp");
    }

    #[test]
    fn passwords_are_not_serialized_for_the_api() {
        let t = trunk("127.0.0.1");
        let v = serde_json::to_value(&t).unwrap();
        assert!(v.get("password").is_none(), "{v}");
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(10), Duration::from_secs(300));
    }
}
