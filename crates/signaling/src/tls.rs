//! The TLS certificates a node serves, kept current: SIP over TLS's
//! (TLS_CERT/TLS_KEY, with the transports' TLS setup: [`setup`]) and the
//! REST API's (API_TLS_CERT/API_TLS_KEY: [`api_setup`]). Each is read
//! again on SIGHUP ([`TlsCert::reload`]) and whenever its files change on
//! disk ([`spawn_watcher`], which polls their modification times), so a
//! renewed certificate (cert-manager, ACME) is served from the next
//! handshake on without a restart. A new file that does not load (half
//! written, a key that is not the certificate's) is logged and the
//! certificate in use is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::ServerConfig;
use switchboard_sip_stack::transport::tls::{
    ServerCert, TlsClient, TlsPeer, TlsSetup, certified_key,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{ApiTlsConfig, TlsConfig};
use crate::trunks::Trunks;

/// What a file looked like when it was last read: its modification time
/// and length (`None`: it could not be read).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Whether the files should be read again: when either changed since the
/// last attempt, and both can be read now. (A failed attempt records the
/// stamps too, so a bad file is reported once, not at every poll, and is
/// tried again when it changes.)
fn changed(last: (Stamp, Stamp), now: (Stamp, Stamp)) -> bool {
    now != last && now.0.is_some() && now.1.is_some()
}

/// The variables a certificate's files are set by, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertVars {
    pub cert: &'static str,
    pub key: &'static str,
}

/// SIP over TLS's (and WSS's) certificate.
pub const SIP_CERT: CertVars = CertVars {
    cert: "TLS_CERT",
    key: "TLS_KEY",
};

/// The REST API's certificate.
pub const API_CERT: CertVars = CertVars {
    cert: "API_TLS_CERT",
    key: "API_TLS_KEY",
};

/// A listener's certificate and the files it comes from.
pub struct TlsCert {
    pub served: Arc<ServerCert>,
    /// Which settings name the files.
    pub vars: CertVars,
    cert: PathBuf,
    key: PathBuf,
    /// The files' stamps at the last load attempt.
    seen: Mutex<(Stamp, Stamp)>,
}

impl TlsCert {
    /// Reads the files.
    ///
    /// # Errors
    /// A file that cannot be read, or a certificate and key that do not
    /// load together; the message names the variable (`vars`).
    pub fn load(vars: CertVars, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let seen = (stamp(cert), stamp(key));
        let (c, k) = read_pair(vars, cert, key)?;
        let served = ServerCert::from_pem(&c, &k)
            .map_err(|e| anyhow::anyhow!("{}/{}: {e}", vars.cert, vars.key))?;
        Ok(Self {
            served,
            vars,
            cert: cert.to_owned(),
            key: key.to_owned(),
            seen: Mutex::new(seen),
        })
    }

    /// Reads the files again and serves them from the next handshake on.
    ///
    /// # Errors
    /// As [`TlsCert::load`]; the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let now = (stamp(&self.cert), stamp(&self.key));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = now;
        }
        let (c, k) = read_pair(self.vars, &self.cert, &self.key)?;
        let key = certified_key(&c, &k)
            .map_err(|e| anyhow::anyhow!("{}/{}: {e}", self.vars.cert, self.vars.key))?;
        self.served.replace(key);
        Ok(())
    }

    /// Reloads when the files changed since the last attempt; returns
    /// whether it tried.
    fn reload_if_changed(&self) -> bool {
        let now = (stamp(&self.cert), stamp(&self.key));
        let last = self.seen.lock().map(|s| *s).unwrap_or((None, None));
        if !changed(last, now) {
            return false;
        }
        match self.reload() {
            Ok(()) => info!(
                var = self.vars.cert,
                cert = %self.cert.display(),
                "TLS certificate reloaded (file changed)"
            ),
            Err(e) => error!("TLS certificate not reloaded, keeping the one in use: {e:#}"),
        }
        true
    }
}

fn read_pair(vars: CertVars, cert: &Path, key: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let c = std::fs::read(cert).with_context(|| format!("{}: {}", vars.cert, cert.display()))?;
    let k = std::fs::read(key).with_context(|| format!("{}: {}", vars.key, key.display()))?;
    Ok((c, k))
}

/// The transports' TLS from the settings: the listener when TLS_CERT and
/// TLS_KEY are set, and the client trusting the system's CA certificates
/// and TLS_CA_FILE.
///
/// # Errors
/// Unreadable or invalid files (the message names the variable).
pub fn setup(config: &TlsConfig) -> anyhow::Result<(TlsSetup, Option<Arc<TlsCert>>)> {
    let extra = match &config.tls_ca_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("TLS_CA_FILE: {}", p.display()))?),
        None => None,
    };
    let client =
        TlsClient::new(true, extra.as_deref()).map_err(|e| anyhow::anyhow!("TLS_CA_FILE: {e}"))?;
    if client.anchors() == 0 {
        warn!(
            "no trusted CA certificates (none installed, no TLS_CA_FILE): outbound TLS to trunks that verify certificates will fail"
        );
    }
    let cert = match config.files() {
        Some((c, k)) => Some(Arc::new(TlsCert::load(SIP_CERT, &c, &k)?)),
        None => None,
    };
    let listen = match &cert {
        Some(c) => Some((
            config.tls_port,
            c.served
                .server_config()
                .map_err(|e| anyhow::anyhow!("TLS: {e}"))?,
        )),
        None => None,
    };
    Ok((
        TlsSetup {
            listen,
            client: Arc::new(client),
        },
        cert,
    ))
}

/// The REST API's certificate and the server configuration serving it,
/// when API_TLS_CERT and API_TLS_KEY are set. HTTP/1.1 only: no ALPN is
/// offered, so clients speak HTTP/1.1 over it.
///
/// # Errors
/// Unreadable or invalid files (the message names the variable).
pub fn api_setup(
    config: &ApiTlsConfig,
) -> anyhow::Result<Option<(Arc<TlsCert>, Arc<ServerConfig>)>> {
    let Some((c, k)) = config.files() else {
        return Ok(None);
    };
    let cert = Arc::new(TlsCert::load(API_CERT, &c, &k)?);
    let server = cert
        .served
        .server_config()
        .map_err(|e| anyhow::anyhow!("API_TLS_CERT: {e}"))?;
    Ok(Some((cert, server)))
}

/// Polls the certificate files every `every` and reloads them when they
/// change.
pub fn spawn_watcher(
    cert: Arc<TlsCert>,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let c = Arc::clone(&cert);
            // file system calls off the runtime's workers
            let _ = tokio::task::spawn_blocking(move || c.reload_if_changed()).await;
        }
    })
}

/// How outbound TLS to `trunks` is checked: a trunk's `tls_verify`, name
/// and `tls_ca_file`; other destinations get the defaults.
pub fn trunk_peers(
    trunks: Arc<Trunks>,
) -> impl Fn(std::net::SocketAddr) -> Option<TlsPeer> + Send + Sync {
    move |addr| {
        let trunk = trunks.by_tls_addr(&addr)?;
        Some(TlsPeer {
            server_name: trunk.config.tls_name(),
            insecure: !trunk.config.tls_verify,
            extra_ca: trunk.tls_ca.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, len: u64) -> Stamp {
        Some((SystemTime::UNIX_EPOCH + Duration::from_secs(secs), len))
    }

    #[test]
    fn reload_decisions() {
        let cases = [
            // (last, now, reload?)
            ((at(1, 10), at(1, 20)), (at(1, 10), at(1, 20)), false),
            ((at(1, 10), at(1, 20)), (at(2, 10), at(1, 20)), true),
            ((at(1, 10), at(1, 20)), (at(1, 10), at(2, 20)), true),
            ((at(1, 10), at(1, 20)), (at(1, 11), at(1, 20)), true),
            // a file missing for a moment (a Secret's symlinks swapped)
            ((at(1, 10), at(1, 20)), (None, at(1, 20)), false),
            ((at(1, 10), at(1, 20)), (at(2, 10), None), false),
            // back after being missing, changed or not: read again
            ((None, at(1, 20)), (at(1, 10), at(1, 20)), true),
        ];
        for (last, now, want) in cases {
            assert_eq!(changed(last, now), want, "{last:?} -> {now:?}");
        }
    }
}
