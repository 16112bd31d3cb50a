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
//! `host` may be a DNS name, resolved when the trunk is set and again
//! every minute ([`host`]); a call comes from the trunk when it comes from
//! any of the addresses the name resolved to.
//!
//! With `"transport": "tls"` the trunk is reached over TLS: its
//! certificate is verified (against the system's CA certificates and
//! TLS_CA_FILE) for `tls_server_name`, else the host name, else the
//! `domain` when it is a name, else the host's IP address; a name is also
//! sent as SNI;
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

pub mod host;
pub use host::{Host, HostPort, RESOLVE_INTERVAL};
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
    /// The provider: an IP address or a DNS name (A/AAAA only, no SRV),
    /// with `:port` or port 5060 (5061 over TLS).
    pub host: String,
    /// `udp`, `tcp` or `tls`.
    #[serde(default = "udp")]
    pub transport: String,
    /// Over TLS: check the provider's certificate (default). `false`
    /// accepts any certificate.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub tls_verify: bool,
    /// Over TLS: the name the certificate must carry, sent as SNI
    /// (default: the host when it is a name, else `domain` when it is a
    /// host name, else the host's IP).
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
        self.host_port()?;
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

    /// `host` parsed, with the transport's default port.
    pub fn host_port(&self) -> Result<HostPort, String> {
        let port = match self.transport_kind() {
            Ok(TransportKind::Tls) => 5061,
            _ => 5060,
        };
        HostPort::parse(&self.host, port)
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
    /// SNI): `tls_server_name`, else the host when it is a name, else
    /// `domain` when it is a host name (not an IP address, no port);
    /// `None`: the host's IP address.
    pub fn tls_name(&self) -> Option<String> {
        if let Some(n) = &self.tls_server_name {
            return Some(n.clone());
        }
        if let Ok(HostPort {
            host: Host::Name(n),
            ..
        }) = self.host_port()
        {
            return Some(n);
        }
        let d = self.domain.as_deref()?;
        let is_name = d.parse::<IpAddr>().is_err()
            && !d.contains([':', '[', ']'])
            && switchboard_sip_stack::transport::tls::valid_server_name(d);
        is_name.then(|| d.to_owned())
    }

    /// The domain written in URIs towards the provider (default: the
    /// host, with its port when it is an IP address or names one).
    pub fn domain(&self) -> String {
        if let Some(d) = &self.domain {
            return d.clone();
        }
        match self.host_port() {
            Ok(HostPort {
                host: Host::Ip(ip),
                port,
                ..
            }) => switchboard_sip_stack::dialog::host_port(&SocketAddr::new(ip, port)),
            Ok(HostPort {
                host: Host::Name(n),
                port,
                port_given: true,
            }) => format!("{n}:{port}"),
            Ok(HostPort {
                host: Host::Name(n),
                ..
            }) => n,
            Err(_) => self.host.clone(),
        }
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
    /// The addresses requests go to (what a host name resolved to last).
    pub addresses: Vec<SocketAddr>,
    /// Why the host name did not resolve at its last lookup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve_error: Option<String>,
}

pub struct Trunk {
    pub config: TrunkConfig,
    /// `host`, parsed when the trunk was set.
    pub host: HostPort,
    /// Its addresses ([`Trunk::addrs`]): the IP address, or what the name
    /// resolved to last (none before the first answer).
    addrs: RwLock<Vec<SocketAddr>>,
    /// A lookup started by [`Trunk::resolve_soon`] is under way.
    resolving: std::sync::atomic::AtomicBool,
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
        let host = config.host_port()?;
        let (addrs, status) = match &host.host {
            Host::Ip(ip) => (
                vec![SocketAddr::new(*ip, host.port)],
                TrunkStatus::default(),
            ),
            Host::Name(n) => (
                Vec::new(),
                TrunkStatus {
                    resolve_error: Some(format!("host: {n} not looked up yet")),
                    ..TrunkStatus::default()
                },
            ),
        };
        Ok(Self {
            transport: config.transport_kind()?,
            tls_ca,
            config,
            host,
            addrs: RwLock::new(addrs),
            resolving: std::sync::atomic::AtomicBool::new(false),
            status: Mutex::new(status),
            stop: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The media policy of calls to the trunk (`srtp`).
    pub fn srtp(&self) -> crate::dialplan::Srtp {
        crate::dialplan::Srtp::parse(self.config.srtp.as_deref(), "srtp").unwrap_or_default()
    }

    pub fn status(&self) -> TrunkStatus {
        let mut s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        s.addresses = self.addrs();
        s
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

    /// The trunk a request from `source` over `transport` comes from: the
    /// IP of one of its addresses (any its name resolved to), and the same
    /// port when the trunk's host names one and the request came over UDP
    /// (a connection comes from an ephemeral port); a trunk with
    /// `"inbound_transport": "tcp"` only over a connection.
    pub fn by_source(&self, source: &SocketAddr, transport: TransportKind) -> Option<Arc<Trunk>> {
        let map = self.by_name.read().ok()?;
        let candidates = || map.values().filter(|t| t.accepts(transport));
        candidates()
            .find(|t| t.has_addr(|a| a == source))
            .or_else(|| {
                candidates().find(|t| {
                    (transport.is_reliable() || !t.host.port_given)
                        && t.has_addr(|a| a.ip() == source.ip())
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
            .find(|t| t.transport == TransportKind::Tls && t.has_addr(|a| a == addr))
            .cloned()
    }
}

/// Back-off between failed registrations: 5 s doubling to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << failures.min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests;
