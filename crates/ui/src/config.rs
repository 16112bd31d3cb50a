//! Start-up configuration: every setting is an environment variable and a
//! CLI flag of the same meaning, parsed once into [`Config`] and checked
//! into [`Settings`] (backends with their tokens, the admin password, the
//! trusted proxies).
//!
//! A bad value stops start-up with a message naming the variable.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use axum::http::Uri;
use clap::Parser;
use rustls::pki_types::CertificateDer;

use crate::secrets;

mod phone;
pub use phone::Phone;

/// `switchboard-ui`: the operators' dashboard of the signaling replicas.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard-ui", version, about)]
pub struct Config {
    /// Log filter (tracing EnvFilter syntax: `info`, `debug,hyper=warn`).
    #[arg(
        long,
        env = "UI_LOGLEVEL",
        value_name = "UI_LOGLEVEL",
        default_value = "info"
    )]
    pub loglevel: String,

    /// HTTP port of the dashboard.
    #[arg(long, env = "UI_PORT", value_name = "UI_PORT", default_value_t = 3000)]
    pub port: u16,

    /// HTTP address of the dashboard.
    #[arg(
        long,
        env = "UI_BIND",
        value_name = "UI_BIND",
        default_value = "0.0.0.0"
    )]
    pub bind: IpAddr,

    /// The signaling REST APIs shown, `name=url,name2=url2`; each URL is the
    /// API's base (`http://10.0.0.5:8080`, `https://sig-0.example:8080`),
    /// the UI adds `/api/v1`. An https:// backend's certificate is checked
    /// against the system's CAs and UI_BACKEND_CA_FILE, for the URL's host.
    #[arg(long, env = "UI_BACKENDS", value_name = "UI_BACKENDS")]
    pub backends: Option<String>,

    /// PEM CA certificate(s) trusted for https:// backends besides the
    /// system's (a private CA, e.g. the cluster's).
    #[arg(long, env = "UI_BACKEND_CA_FILE", value_name = "UI_BACKEND_CA_FILE")]
    pub backend_ca_file: Option<PathBuf>,

    /// Bearer tokens of the backends, `name=token,name2=token2`.
    #[arg(
        long,
        env = "UI_BACKEND_TOKENS",
        value_name = "UI_BACKEND_TOKENS",
        hide_env_values = true
    )]
    pub backend_tokens: Option<String>,

    /// A file of backend tokens, one `name=token` a line (`#` comments);
    /// refused when group or others may read it. Exclusive with
    /// UI_BACKEND_TOKENS.
    #[arg(
        long,
        env = "UI_BACKEND_TOKENS_FILE",
        value_name = "UI_BACKEND_TOKENS_FILE"
    )]
    pub backend_tokens_file: Option<PathBuf>,

    /// The password of the user `admin`; unset: generated into
    /// UI_DATA_DIR/ui_admin_password (mode 0600) and kept there.
    #[arg(
        long,
        env = "UI_ADMIN_PASSWORD",
        value_name = "UI_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    pub admin_password: Option<String>,

    /// Where the generated admin password lives.
    #[arg(
        long,
        env = "UI_DATA_DIR",
        value_name = "UI_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    /// Comma-separated addresses or CIDRs of reverse proxies whose
    /// `X-Forwarded-Proto` and `X-Forwarded-For` are believed.
    #[arg(long, env = "UI_TRUSTED_PROXIES", value_name = "UI_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,

    /// Failed logins one source may make per UI_LOGIN_FAIL_WINDOW seconds;
    /// over it, the source gets 429 until the window ends.
    #[arg(
        long,
        env = "UI_LOGIN_FAIL_LIMIT",
        value_name = "UI_LOGIN_FAIL_LIMIT",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub login_fail_limit: u32,

    /// The window of UI_LOGIN_FAIL_LIMIT, in seconds.
    #[arg(
        long,
        env = "UI_LOGIN_FAIL_WINDOW",
        value_name = "UI_LOGIN_FAIL_WINDOW",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub login_fail_window: u64,

    /// The secure WebSocket URL of signaling the browser phone page
    /// (`/phone`) registers to, e.g. `wss://sip.example.com:8089`; unset:
    /// the page says the phone is not configured.
    #[arg(long, env = "UI_SIP_WSS_URL", value_name = "UI_SIP_WSS_URL")]
    pub sip_wss_url: Option<String>,

    /// The SIP domain of the browser phone's address (`sip:user@domain`);
    /// unset: the host of UI_SIP_WSS_URL.
    #[arg(long, env = "UI_SIP_DOMAIN", value_name = "UI_SIP_DOMAIN")]
    pub sip_domain: Option<String>,
}

/// One signaling API the dashboard reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    /// `http://host:port` or `https://host:port` plus any path prefix,
    /// without a trailing `/`.
    pub base: String,
    /// Its bearer token; never rendered into a page.
    pub token: Option<String>,
}

/// An address or a network of trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Everything checked: what the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub backends: Vec<Backend>,
    pub admin_password: String,
    pub trusted_proxies: Vec<Cidr>,
    /// The browser phone (UI_SIP_WSS_URL); `None`: not configured.
    pub phone: Option<Phone>,
    /// UI_BACKEND_CA_FILE's certificates (empty when unset).
    pub backend_ca: Vec<CertificateDer<'static>>,
}

impl Config {
    /// Test and embedding defaults: loopback, an ephemeral port, no backend.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut c = Config::parse_from(["switchboard-ui"]);
        c.bind = IpAddr::from([127, 0, 0, 1]);
        c.port = 0;
        c.data_dir = data_dir;
        c
    }

    /// Checks the settings and reads (or generates) the secrets.
    ///
    /// # Errors
    /// A message naming the variable at fault.
    pub fn settings(&self) -> Result<Settings, String> {
        let mut backends = parse_backends(self.backends.as_deref().unwrap_or(""))?;
        let tokens = match (&self.backend_tokens, &self.backend_tokens_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "UI_BACKEND_TOKENS and UI_BACKEND_TOKENS_FILE are both set: \
                            unset one of them"
                        .into(),
                );
            }
            (Some(list), None) => parse_tokens("UI_BACKEND_TOKENS", list.split(','))?,
            (None, Some(path)) => {
                let text = secrets::read_private("UI_BACKEND_TOKENS_FILE", path)?;
                parse_tokens("UI_BACKEND_TOKENS_FILE", text.lines())?
            }
            (None, None) => Vec::new(),
        };
        for (name, token) in tokens {
            let Some(b) = backends.iter_mut().find(|b| b.name == name) else {
                return Err(format!(
                    "UI_BACKEND_TOKENS: {name:?} is not a backend of UI_BACKENDS"
                ));
            };
            b.token = Some(token);
        }
        let trusted_proxies = self
            .trusted_proxies
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Cidr::parse(s).map_err(|e| format!("UI_TRUSTED_PROXIES: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let admin_password = match &self.admin_password {
            Some(p) if p.is_empty() => return Err("UI_ADMIN_PASSWORD: must not be empty".into()),
            Some(p) => p.clone(),
            None => admin_password_file(&self.data_dir)?,
        };
        let phone = Phone::parse(self.sip_wss_url.as_deref(), self.sip_domain.as_deref())?;
        let backend_ca = match &self.backend_ca_file {
            Some(path) => crate::tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        Ok(Settings {
            backends,
            admin_password,
            trusted_proxies,
            phone,
            backend_ca,
        })
    }
}

/// The file a generated admin password is kept in.
pub fn admin_password_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ui_admin_password")
}

/// The password in UI_DATA_DIR/ui_admin_password, generated on first start.
fn admin_password_file(data_dir: &Path) -> Result<String, String> {
    let path = admin_password_path(data_dir);
    if path.exists() {
        let p = secrets::read_private("UI_DATA_DIR", &path)?;
        let p = p.trim();
        if !p.is_empty() {
            tracing::info!(path = %path.display(), "admin password read from file");
            return Ok(p.to_owned());
        }
    }
    let password = hex::encode(rand::random::<[u8; 16]>());
    secrets::create_private_dir(data_dir)
        .and_then(|()| secrets::write_private(&path, &password))
        .map_err(|e| format!("UI_DATA_DIR: cannot write {}: {e}", path.display()))?;
    tracing::info!(
        path = %path.display(),
        "admin password generated (UI_ADMIN_PASSWORD unset): log in as admin with the password in this file"
    );
    Ok(password)
}

/// `name=url,name2=url2`: unique names, http:// or https:// URLs with a
/// host.
pub fn parse_backends(list: &str) -> Result<Vec<Backend>, String> {
    let mut out: Vec<Backend> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, url)) = item.split_once('=') else {
            return Err(format!("UI_BACKENDS: {item:?} is not name=url"));
        };
        let (name, url) = (name.trim(), url.trim());
        check_name("UI_BACKENDS", name)?;
        if out.iter().any(|b| b.name == name) {
            return Err(format!("UI_BACKENDS: the name {name:?} is given twice"));
        }
        out.push(Backend {
            name: name.to_owned(),
            base: check_url(name, url)?,
            token: None,
        });
    }
    if out.is_empty() {
        return Err("UI_BACKENDS: at least one backend is required (name=http://host:port)".into());
    }
    Ok(out)
}

fn check_name(var: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{var}: backend name {name:?} must be 1-64 letters, digits, '-', '_' or '.'"
        ))
    }
}

fn check_url(name: &str, url: &str) -> Result<String, String> {
    // the URL is not echoed: a mistyped one may hold credentials
    let bad = |why: &str| format!("UI_BACKENDS: the URL of {name:?} {why}");
    let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s,
        _ => return Err(bad("must start with http:// or https://")),
    };
    let Some(authority) = uri.authority() else {
        return Err(bad("has no host"));
    };
    if authority.host().is_empty() {
        return Err(bad("has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("must not hold credentials (use UI_BACKEND_TOKENS)"));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query"));
    }
    let path = uri.path().trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{path}"))
}

/// `name=token` items; an empty item or a `#` line is skipped.
fn parse_tokens<'a>(
    var: &str,
    items: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items.map(str::trim) {
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        let Some((name, token)) = item.split_once('=') else {
            // the item may be a bare token: never echo it
            return Err(format!("{var}: an entry is not name=token"));
        };
        let (name, token) = (name.trim(), token.trim());
        check_name(var, name)?;
        if token.is_empty() || token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(format!(
                "{var}: the token of {name:?} must be non-empty printable ASCII"
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("{var}: {name:?} is given twice"));
        }
        out.push((name.to_owned(), token.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        Config::try_parse_from([&["switchboard-ui"], args].concat()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).expect("defaults parse");
        assert_eq!(c.port, 3000);
        assert_eq!(c.bind, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.loglevel, "info");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.login_fail_limit, 5);
    }

    #[test]
    fn backends_table() {
        let ok = [
            (
                "a=http://127.0.0.1:8080",
                vec![("a", "http://127.0.0.1:8080")],
            ),
            (
                " a = http://10.0.0.5:8080/ , b=http://[::1]:8081/prefix/",
                vec![
                    ("a", "http://10.0.0.5:8080"),
                    ("b", "http://[::1]:8081/prefix"),
                ],
            ),
            (
                "sig-1.x=http://signaling",
                vec![("sig-1.x", "http://signaling")],
            ),
            (
                "a=https://sig-0.example:8443/,b=https://[::1]:8080,c=http://10.0.0.6:8080",
                vec![
                    ("a", "https://sig-0.example:8443"),
                    ("b", "https://[::1]:8080"),
                    ("c", "http://10.0.0.6:8080"),
                ],
            ),
        ];
        for (input, want) in ok {
            let got = parse_backends(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let got: Vec<(&str, &str)> = got
                .iter()
                .map(|b| (b.name.as_str(), b.base.as_str()))
                .collect();
            assert_eq!(got, want, "{input}");
        }
        let bad = [
            ("", "at least one"),
            ("a", "not name=url"),
            ("=http://x", "backend name"),
            ("a b=http://x", "backend name"),
            ("a=http://x,a=http://y", "given twice"),
            ("a=ftp://x", "must start with http:// or https://"),
            ("a=127.0.0.1:8080", "must start with http:// or https://"),
            ("a=wss://x", "must start with http:// or https://"),
            ("a=http://", "not a URL"),
            ("a=https://", "not a URL"),
            ("a=http://u:secret@x", "credentials"),
            ("a=https://u:secret@x", "credentials"),
            ("a=http://x/?q=1", "query"),
            ("a=not a url", "not a URL"),
        ];
        for (input, want) in bad {
            let err = parse_backends(input).expect_err(input);
            assert!(err.starts_with("UI_BACKENDS"), "{input}: {err}");
            assert!(err.contains(want), "{input}: {err}");
            assert!(!err.contains("secret"), "{input}: {err}");
        }
    }

    #[test]
    fn tokens_table() {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-ui-config-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let pw = ["--admin-password", "pw"];
        let with = |extra: &[&str]| {
            let mut args = vec!["--backends", "a=http://127.0.0.1:1,b=http://127.0.0.1:2"];
            args.extend_from_slice(&pw);
            args.extend_from_slice(extra);
            config(&args)?.settings()
        };
        let s = with(&["--backend-tokens", "a=tok-a, b=tok-b"]).expect("tokens");
        assert_eq!(s.backends[0].token.as_deref(), Some("tok-a"));
        assert_eq!(s.backends[1].token.as_deref(), Some("tok-b"));
        let s = with(&[]).expect("no tokens");
        assert!(s.backends.iter().all(|b| b.token.is_none()));
        for (extra, want) in [
            (&["--backend-tokens", "c=x"][..], "not a backend"),
            (&["--backend-tokens", "secret-token"], "not name=token"),
            (&["--backend-tokens", "a=x,a=y"], "given twice"),
            (&["--backend-tokens", "a="], "non-empty"),
            (
                &["--backend-tokens", "a=x", "--backend-tokens-file", "/f"],
                "both set",
            ),
        ] {
            let err = with(extra).expect_err(want);
            assert!(err.contains(want), "{extra:?}: {err}");
            assert!(err.starts_with("UI_BACKEND_TOKENS"), "{err}");
            assert!(!err.contains("secret-token"), "a token is echoed: {err}");
        }

        // the file: one name=token a line, owner-only
        secrets::create_private_dir(&dir).expect("dir");
        let file = dir.join("tokens");
        secrets::write_private(&file, "# tokens\na=file-a\n\nb = file-b\n").expect("write");
        let path = file.display().to_string();
        let s = with(&["--backend-tokens-file", &path]).expect("file");
        assert_eq!(s.backends[1].token.as_deref(), Some("file-b"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for mode in [0o640, 0o604] {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
                let err = with(&["--backend-tokens-file", &path]).expect_err("readable");
                assert!(err.contains("UI_BACKEND_TOKENS_FILE"), "{err}");
                assert!(err.contains("chmod 600"), "{err}");
            }
        }
        let err = with(&["--backend-tokens-file", "/nonexistent/tokens"]).expect_err("missing");
        assert!(err.contains("UI_BACKEND_TOKENS_FILE"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn trusted_proxies_table() {
        let s = |list: &str| {
            config(&[
                "--backends",
                "a=http://x",
                "--admin-password",
                "pw",
                "--trusted-proxies",
                list,
            ])?
            .settings()
        };
        let p = s("10.0.0.0/8, 127.0.0.1,::1,fd00::/8")
            .expect("valid")
            .trusted_proxies;
        assert_eq!(p.len(), 4);
        let inside = |ip: &str| p.iter().any(|c| c.contains(ip.parse().expect("ip")));
        assert!(inside("10.1.2.3"));
        assert!(inside("127.0.0.1"));
        assert!(inside("::ffff:127.0.0.1"), "IPv4-mapped");
        assert!(inside("::1"));
        assert!(inside("fd12::1"));
        assert!(!inside("11.0.0.1"));
        assert!(!inside("127.0.0.2"));
        assert!(!inside("fe80::1"));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("any")
                .contains("8.8.8.8".parse().expect("ip"))
        );
        for bad in ["10.0.0.0/33", "foo", "1.2.3.4/x", "::/129"] {
            let err = s(bad).expect_err(bad);
            assert!(err.starts_with("UI_TRUSTED_PROXIES"), "{bad}: {err}");
        }
    }

    #[test]
    fn admin_password_is_generated_once_owner_only() {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-ui-pw-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let args = ["--backends", "a=http://x"];
        let mut c = config(&args).expect("parse");
        c.data_dir = dir.join("data");
        let first = c.settings().expect("generated").admin_password;
        assert_eq!(first.len(), 32);
        let second = c.settings().expect("read back").admin_password;
        assert_eq!(first, second, "kept across restarts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = admin_password_path(&c.data_dir);
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = c.settings().expect_err("readable by others");
            assert!(err.contains("UI_DATA_DIR"), "{err}");
        }
        c.admin_password = Some(String::new());
        let err = c.settings().expect_err("empty");
        assert!(err.contains("UI_ADMIN_PASSWORD"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
