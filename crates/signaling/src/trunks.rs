//! Trunks (gateways): upstream SIP providers. A trunk is where `dial`
//! targets `gateway/<name>` go (numbers rewritten, the provider's digest
//! challenge answered), where calls come from without a user's digest (its
//! address identifies it), and, with `register`, where this node keeps an
//! outbound registration so the provider knows where to send calls.
//!
//! Trunks live in memory, are loaded from `TRUNKS_PATH` at start-up and
//! changed through the API, which writes the file back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_sip_stack::target::TransportKind;

/// A trunk as configured (the file and the API body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Taken from the path when the API body leaves it out.
    #[serde(default)]
    pub name: String,
    /// `ip:port` (or `ip`, port 5060) of the provider; no DNS yet.
    pub host: String,
    /// `udp` or `tcp`.
    #[serde(default = "udp")]
    pub transport: String,
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
}

fn udp() -> String {
    "udp".into()
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
        self.transport_kind()?;
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
        Ok(())
    }

    pub fn addr(&self) -> Result<SocketAddr, String> {
        if let Ok(a) = self.host.parse::<SocketAddr>() {
            return Ok(a);
        }
        let ip: IpAddr = self
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("host: {:?} is not an IP address or ip:port", self.host))?;
        Ok(SocketAddr::new(ip, 5060))
    }

    pub fn transport_kind(&self) -> Result<TransportKind, String> {
        match self.transport.to_ascii_lowercase().as_str() {
            "udp" => Ok(TransportKind::Udp),
            "tcp" => Ok(TransportKind::Tcp),
            other => Err(format!("transport: {other:?} (udp or tcp)")),
        }
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
    pub status: Mutex<TrunkStatus>,
    /// Stops this trunk's registration task when the trunk is replaced.
    pub stop: tokio_util::sync::CancellationToken,
}

impl Trunk {
    fn new(config: TrunkConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(Self {
            addr: config.addr()?,
            transport: config.transport_kind()?,
            config,
            status: Mutex::new(TrunkStatus::default()),
            stop: tokio_util::sync::CancellationToken::new(),
        })
    }

    pub fn status(&self) -> TrunkStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The trunks of a node.
#[derive(Default)]
pub struct Trunks {
    by_name: RwLock<HashMap<String, Arc<Trunk>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunksFile {
    trunks: Vec<TrunkConfig>,
}

impl Trunks {
    /// Reads `path` if it exists.
    pub fn load(path: &Path) -> Result<Self, String> {
        let t = Self::default();
        if !path.exists() {
            return Ok(t);
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: TrunksFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, c) in file.trunks.into_iter().enumerate() {
            let name = c.name.clone();
            t.put(c)
                .map_err(|e| format!("{}: trunks[{i}] ({name:?}): {e}", path.display()))?;
        }
        Ok(t)
    }

    /// Writes every trunk (with passwords) to `path`, atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Full<'a> {
            #[serde(flatten)]
            c: &'a TrunkConfig,
            #[serde(skip_serializing_if = "Option::is_none")]
            password: Option<&'a str>,
        }
        let list = self.list();
        let full: Vec<Full<'_>> = list
            .iter()
            .map(|t| Full {
                c: &t.config,
                password: t.config.password.as_deref(),
            })
            .collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({ "trunks": full }))
            .map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, path)
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

    /// The trunk a request from `source` comes from: same IP, and the same
    /// port when the trunk's host names one.
    pub fn by_source(&self, source: &SocketAddr) -> Option<Arc<Trunk>> {
        let map = self.by_name.read().ok()?;
        map.values()
            .find(|t| t.addr == *source)
            .or_else(|| {
                map.values().find(|t| {
                    t.addr.ip() == source.ip() && t.config.host.parse::<SocketAddr>().is_err()
                })
            })
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
    fn validation_names_the_field() {
        let mut t = trunk("example.com");
        assert!(t.validate().unwrap_err().starts_with("host:"));
        t = trunk("127.0.0.1");
        assert_eq!(t.addr().unwrap(), "127.0.0.1:5060".parse().unwrap());
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
    fn source_matching_uses_the_port_when_given() {
        let trunks = Trunks::default();
        trunks.put(trunk("127.0.0.1:5090")).unwrap();
        assert!(
            trunks
                .by_source(&"127.0.0.1:5090".parse().unwrap())
                .is_some()
        );
        assert!(
            trunks
                .by_source(&"127.0.0.1:5091".parse().unwrap())
                .is_none()
        );
        let mut any_port = trunk("127.0.0.2");
        any_port.name = "other".into();
        trunks.put(any_port).unwrap();
        assert_eq!(
            trunks
                .by_source(&"127.0.0.2:40000".parse().unwrap())
                .map(|t| t.config.name.clone()),
            Some("other".into())
        );
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
