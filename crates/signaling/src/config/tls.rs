//! SIP over TLS settings: the listener's certificate and key, the port,
//! the extra trust anchors for outbound TLS (trunks), and the deadlines.
//!
//! TLS is served when TLS_CERT and TLS_KEY are both set (on TLS_PORT,
//! 5061 by default); outbound TLS (trunks with `"transport": "tls"`) works
//! either way, trusting the system's CA certificates and TLS_CA_FILE.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// `TLS_*`.
#[derive(Debug, Clone, Args)]
pub struct TlsConfig {
    /// SIP over TLS port on every BIND address, served when TLS_CERT and
    /// TLS_KEY are set (0: a free port, for tests).
    #[arg(
        long,
        env = "TLS_PORT",
        value_name = "TLS_PORT",
        default_value_t = 5061
    )]
    pub tls_port: u16,

    /// PEM certificate chain of the TLS listener (leaf first); with
    /// TLS_KEY. Read again on SIGHUP and when the file changes.
    #[arg(long, env = "TLS_CERT", value_name = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of TLS_CERT (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY", value_name = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) trusted for outbound TLS besides the system's.
    #[arg(long, env = "TLS_CA_FILE", value_name = "TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// Seconds a TLS handshake may take (inbound and outbound) before the
    /// connection is closed.
    #[arg(
        long,
        env = "TLS_HANDSHAKE_TIMEOUT",
        value_name = "TLS_HANDSHAKE_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub tls_handshake_timeout: u64,

    /// Seconds between checks of TLS_CERT and TLS_KEY for a change on disk
    /// (0: only SIGHUP reloads them).
    #[arg(
        long,
        env = "TLS_RELOAD_INTERVAL",
        value_name = "TLS_RELOAD_INTERVAL",
        default_value_t = 5
    )]
    pub tls_reload_interval: u64,
}

impl TlsConfig {
    /// TLS_CERT and TLS_KEY come together.
    ///
    /// # Errors
    /// A message naming the variable that is missing.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err("TLS_KEY: needed with TLS_CERT".into()),
            (None, Some(_)) => Err("TLS_CERT: needed with TLS_KEY".into()),
            _ => Ok(()),
        }
    }

    /// The certificate and key files, when TLS is served.
    pub fn files(&self) -> Option<(PathBuf, PathBuf)> {
        self.tls_cert.clone().zip(self.tls_key.clone())
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout)
    }

    /// How often the files are checked; `None`: never (SIGHUP only).
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.tls_reload_interval > 0).then(|| Duration::from_secs(self.tls_reload_interval))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::Config;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let c = Config::try_parse_from([&["switchboard-signaling"], args].concat())
            .map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn tls_settings() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.tls.tls_port, 5061);
        assert_eq!(c.tls.files(), None, "no TLS listener without files");
        assert_eq!(c.tls.handshake_timeout().as_secs(), 10);
        assert_eq!(c.tls.reload_interval().map(|d| d.as_secs()), Some(5));
        let c = parse(&[
            "--tls-cert",
            "/certs/tls.crt",
            "--tls-key",
            "/certs/tls.key",
            "--tls-port",
            "5071",
            "--tls-reload-interval",
            "0",
        ])
        .unwrap();
        assert_eq!(c.tls.tls_port, 5071);
        assert!(c.tls.files().is_some());
        assert_eq!(c.tls.reload_interval(), None);
        assert_eq!(c.transport().tls.as_ref().map(|_| ()), None, "set at start");
        for (args, names) in [
            (&["--tls-cert", "/c.pem"][..], "TLS_KEY"),
            (&["--tls-key", "/k.pem"], "TLS_CERT"),
            (&["--tls-handshake-timeout", "0"], "TLS_HANDSHAKE_TIMEOUT"),
            (&["--tls-port", "70000"], "TLS_PORT"),
        ] {
            let err = parse(args).expect_err("refused");
            assert!(err.contains(names), "{args:?}: {err}");
        }
    }
}
