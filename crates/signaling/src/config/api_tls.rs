//! HTTPS on the REST API's port: its certificate and key.
//!
//! API_PORT speaks HTTPS only when API_TLS_CERT and API_TLS_KEY are both
//! set, and plain HTTP only when neither is (one alone stops start-up).
//! The handshake deadline and the reload interval are SIP TLS's
//! (TLS_HANDSHAKE_TIMEOUT, TLS_RELOAD_INTERVAL). METRICS_PORT stays plain
//! HTTP either way.

use std::path::PathBuf;

use clap::Args;

/// `API_TLS_*`.
#[derive(Debug, Clone, Args)]
pub struct ApiTlsConfig {
    /// PEM certificate chain (leaf first) of the REST API; with
    /// API_TLS_KEY, API_PORT speaks HTTPS only. Read again on SIGHUP and
    /// when the file changes.
    #[arg(long, env = "API_TLS_CERT", value_name = "API_TLS_CERT")]
    pub api_tls_cert: Option<PathBuf>,

    /// PEM private key of API_TLS_CERT (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "API_TLS_KEY", value_name = "API_TLS_KEY")]
    pub api_tls_key: Option<PathBuf>,
}

impl ApiTlsConfig {
    /// API_TLS_CERT and API_TLS_KEY come together.
    ///
    /// # Errors
    /// A message naming the variable that is missing.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.api_tls_cert, &self.api_tls_key) {
            (Some(_), None) => Err("API_TLS_KEY: needed with API_TLS_CERT".into()),
            (None, Some(_)) => Err("API_TLS_CERT: needed with API_TLS_KEY".into()),
            _ => Ok(()),
        }
    }

    /// The certificate and key files, when the API speaks HTTPS.
    pub fn files(&self) -> Option<(PathBuf, PathBuf)> {
        self.api_tls_cert.clone().zip(self.api_tls_key.clone())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn api_tls_settings() {
        let c = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.api_tls.files(), None, "plain HTTP by default");
        let c = parse(&[
            "--api-tls-cert",
            "/certs/api.crt",
            "--api-tls-key",
            "/certs/api.key",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.api_tls.files(),
            Some(("/certs/api.crt".into(), "/certs/api.key".into()))
        );
        // SIP's TLS files do not switch the API to HTTPS, nor the other way
        let c = parse(&["--tls-cert", "/c", "--tls-key", "/k"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.api_tls.files(), None);
        for (args, names) in [
            (&["--api-tls-cert", "/c.pem"][..], "API_TLS_KEY"),
            (&["--api-tls-key", "/k.pem"], "API_TLS_CERT"),
        ] {
            let err = parse(args).expect_err("refused");
            assert!(err.starts_with(names), "{args:?}: {err}");
        }
    }
}
