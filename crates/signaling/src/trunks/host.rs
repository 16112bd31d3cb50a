//! A trunk's `host`: an IP address or a DNS name, either with an optional
//! `:port`. A name is resolved to its A and AAAA records through the
//! system's resolver (tokio's `lookup_host`; no SRV or NAPTR lookups, so
//! the port is the one written, else 5060, 5061 over TLS) when the trunk
//! is set, every [`RESOLVE_INTERVAL`] after that, and again after a failed
//! registration, a call that found no address, or a call the provider did
//! not answer at all (timeout or transport error), so a provider that moves
//! needs no restart. A lookup that fails keeps the addresses of the last
//! one that worked (a DNS outage does not take a working trunk down); a
//! name that never resolved leaves the trunk without addresses: calls to it
//! fail (480) and its status says why.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Trunk;

/// How often a trunk's host name is looked up again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A parsed `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
    /// Whether `host` names the port (inbound UDP must then come from it).
    pub port_given: bool,
}

impl HostPort {
    /// `ip`, `ip:port`, `[v6]`, `[v6]:port`, `name` or `name:port`;
    /// `default_port` when none is written. The error names the field.
    pub fn parse(host: &str, default_port: u16) -> Result<Self, String> {
        let bad = || {
            format!(
                "host: {host:?} is not an IP address or a host name (either with an optional :port)"
            )
        };
        if let Ok(a) = host.parse::<SocketAddr>() {
            return Ok(Self::ip(a.ip(), a.port(), true));
        }
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(Self::ip(ip, default_port, false));
        }
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port.parse::<u16>().map_err(|_| bad())?)),
            None => (host, None),
        };
        let is_name = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            // not a malformed IP address such as 300.1.1.1
            && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !is_name || port == Some(0) {
            return Err(bad());
        }
        Ok(Self {
            host: Host::Name(name.to_ascii_lowercase()),
            port: port.unwrap_or(default_port),
            port_given: port.is_some(),
        })
    }

    fn ip(ip: IpAddr, port: u16, port_given: bool) -> Self {
        Self {
            host: Host::Ip(ip),
            port,
            port_given,
        }
    }

    /// The host name, when it is one.
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }
}

impl Trunk {
    /// The addresses requests to the trunk may go to, in the resolver's
    /// order: its IP address, or what its name resolved to last.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// Whether one of the trunk's addresses satisfies `f`.
    pub fn has_addr(&self, f: impl Fn(&SocketAddr) -> bool) -> bool {
        self.addrs.read().is_ok_and(|a| a.iter().any(f))
    }

    /// The first of the trunk's addresses `local` has a socket for (say,
    /// the IPv4 one of a name resolving to `::1` and `127.0.0.1` on a node
    /// listening on IPv4 only), with that socket.
    pub fn pick<T>(&self, local: impl Fn(&SocketAddr) -> Option<T>) -> Option<(SocketAddr, T)> {
        self.addrs
            .read()
            .ok()?
            .iter()
            .find_map(|a| local(a).map(|l| (*a, l)))
    }

    /// Looks the trunk's host name up again (nothing to do for an IP
    /// address); the outcome is in its status.
    pub async fn resolve(&self) {
        let Some(name) = self.host.name() else {
            return;
        };
        let lookup = tokio::net::lookup_host((name, self.host.port));
        let found = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => {
                let mut v: Vec<SocketAddr> = Vec::new();
                for a in addrs {
                    if !v.contains(&a) {
                        v.push(a);
                    }
                }
                if v.is_empty() {
                    Err("no A or AAAA record".to_owned())
                } else {
                    Ok(v)
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
        };
        let error = match found {
            Ok(v) => {
                if let Ok(mut a) = self.addrs.write()
                    && *a != v
                {
                    tracing::info!(trunk = %self.config.name, host = %name, addresses = ?v, "trunk host resolved");
                    *a = v;
                }
                None
            }
            Err(e) => {
                let e = format!("host: {name} does not resolve: {e}");
                tracing::warn!(trunk = %self.config.name, cause = %e, "trunk host lookup failed; keeping its last addresses");
                Some(e)
            }
        };
        if let Ok(mut st) = self.status.lock() {
            st.resolve_error = error;
        }
    }

    /// Looks the host name up again in the background (a call found no
    /// address, or the provider did not answer), one lookup at a time.
    pub fn resolve_soon(self: &std::sync::Arc<Self>) {
        use std::sync::atomic::Ordering;
        if !self.is_name() || self.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        let t = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            t.resolve().await;
            t.resolving.store(false, Ordering::Release);
        });
    }

    /// Whether the host is a name that needs lookups.
    pub fn is_name(&self) -> bool {
        self.host.name().is_some()
    }
}
