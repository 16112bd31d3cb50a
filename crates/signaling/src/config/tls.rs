//! SIP over TLS settings: the listener's certificate and key, the port,
//! the extra trust anchors for outbound TLS (trunks), and the deadlines;
//! and SIP over WebSocket (RFC 7118), whose secure port serves the same
//! certificate.
//!
//! TLS is served when TLS_CERT and TLS_KEY are both set (on TLS_PORT,
//! 5061 by default); outbound TLS (trunks with `"transport": "tls"`) works
//! either way, trusting the system's CA certificates and TLS_CA_FILE.
//! WebSocket is off unless WS_PORT or WSS_PORT is set: a new listener
//! facing the Internet is opened only when asked for.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use switchboard_sip_stack::transport::ws::{Origins, WsSetup};

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

    /// Seconds a TLS handshake may take (inbound and outbound), and a
    /// WebSocket upgrade, before the connection is closed.
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

    /// SIP over plain WebSocket port on every BIND address (0: a free
    /// port, for tests); unset: no WebSocket listener.
    #[arg(long, env = "WS_PORT", value_name = "WS_PORT")]
    pub ws_port: Option<u16>,

    /// SIP over secure WebSocket port on every BIND address, with the TLS
    /// certificate (needs TLS_CERT and TLS_KEY; 0: a free port, for
    /// tests); unset: no WSS listener.
    #[arg(long, env = "WSS_PORT", value_name = "WSS_PORT")]
    pub wss_port: Option<u16>,

    /// Comma-separated origins (`https://pbx.example.com`) whose pages may
    /// open a WebSocket, or `*` for any; upgrades without an Origin header
    /// (phones, not browsers) are always allowed. Unset: only those.
    #[arg(
        long,
        env = "WS_ALLOWED_ORIGINS",
        value_name = "WS_ALLOWED_ORIGINS",
        default_value = ""
    )]
    pub ws_allowed_origins: String,
}

impl TlsConfig {
    /// TLS_CERT and TLS_KEY come together.
    ///
    /// # Errors
    /// A message naming the variable that is missing.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("TLS_KEY: needed with TLS_CERT".into()),
            (None, Some(_)) => return Err("TLS_CERT: needed with TLS_KEY".into()),
            _ => {}
        }
        if self.wss_port.is_some() && self.files().is_none() {
            return Err(
                "WSS_PORT: secure WebSocket serves the TLS certificate; set TLS_CERT and \
                 TLS_KEY too (or unset WSS_PORT)"
                    .into(),
            );
        }
        if let (Some(ws), Some(wss)) = (self.ws_port, self.wss_port)
            && ws == wss
            && ws != 0
        {
            return Err(format!("WS_PORT and WSS_PORT: both are {ws}"));
        }
        Origins::parse(&self.ws_allowed_origins).map_err(|e| format!("WS_ALLOWED_ORIGINS: {e}"))?;
        Ok(())
    }

    /// The WebSocket listeners, when WS_PORT or WSS_PORT is set.
    ///
    /// # Errors
    /// An invalid WS_ALLOWED_ORIGINS (as [`TlsConfig::validate`]).
    pub fn ws_setup(&self) -> Result<Option<WsSetup>, String> {
        if self.ws_port.is_none() && self.wss_port.is_none() {
            return Ok(None);
        }
        let origins = Origins::parse(&self.ws_allowed_origins)
            .map_err(|e| format!("WS_ALLOWED_ORIGINS: {e}"))?;
        Ok(Some(WsSetup {
            ws_port: self.ws_port,
            wss_port: self.wss_port,
            origins: Arc::new(origins),
        }))
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
    use switchboard_sip_stack::transport::ws::Origins;

    use crate::config::tests::parse;

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

    #[test]
    fn websocket_settings() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.tls.ws_setup().unwrap().map(|_| ()),
            None,
            "off by default"
        );
        let c = parse(&["--ws-port", "8088"]).unwrap();
        let ws = c.tls.ws_setup().unwrap().unwrap();
        assert_eq!((ws.ws_port, ws.wss_port), (Some(8088), None));
        assert_eq!(*ws.origins, Origins::NoBrowsers);
        let c = parse(&[
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
            "--wss-port",
            "8089",
            "--ws-allowed-origins",
            "https://pbx.example.com, https://app.example.com:8443",
        ])
        .unwrap();
        let ws = c.tls.ws_setup().unwrap().unwrap();
        assert_eq!((ws.ws_port, ws.wss_port), (None, Some(8089)));
        assert!(ws.origins.allows(Some("https://app.example.com:8443")));
        for (args, names) in [
            (&["--wss-port", "8089"][..], "WSS_PORT"),
            (
                &[
                    "--ws-port",
                    "8089",
                    "--tls-cert",
                    "/c",
                    "--tls-key",
                    "/k",
                    "--wss-port",
                    "8089",
                ],
                "WS_PORT and WSS_PORT",
            ),
            (
                &[
                    "--ws-port",
                    "8088",
                    "--ws-allowed-origins",
                    "pbx.example.com",
                ],
                "WS_ALLOWED_ORIGINS",
            ),
            (&["--ws-port", "80000"], "WS_PORT"),
        ] {
            let err = parse(args).expect_err("refused");
            assert!(err.contains(names), "{args:?}: {err}");
        }
    }
}
