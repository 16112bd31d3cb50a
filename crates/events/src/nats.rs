//! The NATS connection shared by the event bus and the CDR stream:
//! `NATS_URL` parsing, connect options, and the health a replica reports.
//!
//! A replica must start, and keep serving calls, while NATS is down: the
//! client is created with `retry_on_initial_connect`, so connecting never
//! fails on an unreachable server (only on a malformed `NATS_URL`), and it
//! reconnects forever with a capped back-off. Until it is connected,
//! [`Nats::health`] says `degraded` with the reason.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, ServerAddr};
use tracing::{info, warn};

/// The environment variable naming the NATS servers.
pub const ENV_NATS_URL: &str = "NATS_URL";

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Parses `NATS_URL`: comma-separated server URLs, `nats://host:port` or
/// `tls://host:port` (a bare `host[:port]` means `nats://`, the port
/// defaults to 4222). Returns them in order, normalized with their scheme.
///
/// # Errors
/// An empty value or entry, a scheme other than `nats`/`tls`, or a URL
/// without a host; the message names `NATS_URL` and never echoes a
/// password given in a URL.
pub fn parse_nats_urls(value: &str) -> Result<Vec<String>, String> {
    if value.trim().is_empty() {
        return Err(format!("{ENV_NATS_URL}: empty"));
    }
    value
        .split(',')
        .enumerate()
        .map(|(i, entry)| {
            let entry = entry.trim();
            let bad = |why: &str| {
                format!(
                    "{ENV_NATS_URL}: entry {} ({:?}): {why}",
                    i + 1,
                    redact(entry)
                )
            };
            if entry.is_empty() {
                return Err(bad("empty"));
            }
            let addr = ServerAddr::from_str(entry).map_err(|e| bad(&e.to_string()))?;
            if !matches!(addr.scheme(), "nats" | "tls") {
                return Err(bad("scheme must be nats:// or tls://"));
            }
            if addr.host().is_empty() {
                return Err(bad("no host"));
            }
            let url = addr.into_inner();
            if !matches!(url.path(), "" | "/") || url.query().is_some() {
                return Err(bad("a server URL has no path or query"));
            }
            Ok(if entry.contains("://") {
                entry.to_owned()
            } else {
                format!("nats://{entry}")
            })
        })
        .collect()
}

/// How a client proves itself to the NATS servers, from the userinfo of
/// the `NATS_URL` entries (`nats://user:password@host`, or
/// `nats://token@host`), percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Token(String),
    UserPassword(String, String),
}

/// The credentials of `urls` (from [`parse_nats_urls`]): every entry must
/// carry the same ones, or none (the servers of one cluster share them).
///
/// # Errors
/// Entries with different credentials, or userinfo that does not decode.
pub fn credentials(urls: &[String]) -> Result<Credentials, String> {
    let mut found: Option<Credentials> = None;
    for (i, u) in urls.iter().enumerate() {
        let url =
            url::Url::parse(u).map_err(|e| format!("{ENV_NATS_URL}: entry {}: {e}", i + 1))?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("{ENV_NATS_URL}: entry {}: userinfo is not UTF-8", i + 1))
        };
        let user = decode(url.username())?;
        let these = match url.password() {
            Some(p) => Credentials::UserPassword(user, decode(p)?),
            None if !user.is_empty() => Credentials::Token(user),
            None => Credentials::None,
        };
        match &found {
            Some(f) if *f != these => {
                return Err(format!(
                    "{ENV_NATS_URL}: the servers' entries carry different credentials"
                ));
            }
            _ => found = Some(these),
        }
    }
    Ok(found.unwrap_or(Credentials::None))
}

/// `entry` with the userinfo of a URL replaced, for error messages.
fn redact(entry: &str) -> String {
    match (entry.find("://"), entry.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &entry[..s], &entry[at..]),
        (None, Some(at)) => format!("***{}", &entry[at..]),
        _ => entry.to_owned(),
    }
}

/// What a replica's health endpoint reports about NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Connected, streams in place (or no NATS configured).
    Ok,
    /// Working on what it has (spool, retries); the reason says why.
    Degraded(String),
}

impl Health {
    /// Whether it is [`Health::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Health::Ok)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ok => f.write_str("ok"),
            Health::Degraded(why) => write!(f, "degraded: {why}"),
        }
    }
}

/// A NATS connection that reconnects by itself, and what it last heard.
///
/// Cheap to clone; the event bus and the CDR stream of a replica may share
/// one.
#[derive(Clone, Debug)]
pub struct Nats {
    client: Client,
    /// Last connection event worth reporting (an error, a disconnect).
    last_problem: Arc<Mutex<Option<String>>>,
}

impl Nats {
    /// Connects to the servers of a `NATS_URL` value in the background.
    ///
    /// Returns at once even when no server answers; the client keeps trying.
    /// `client_name` shows in the server's connection list (use the replica
    /// id).
    ///
    /// # Errors
    /// Only a malformed `nats_urls` (see [`parse_nats_urls`]).
    pub async fn connect(nats_urls: &str, client_name: &str) -> Result<Nats, String> {
        let urls = parse_nats_urls(nats_urls)?;
        let addrs = urls
            .iter()
            .map(|u| ServerAddr::from_str(u).map_err(|e| format!("{ENV_NATS_URL}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let last_problem = Arc::new(Mutex::new(None));
        let problems = Arc::clone(&last_problem);
        // async-nats keeps a URL's userinfo but does not send it: the
        // credentials are given to the connection here
        let options = match credentials(&urls)? {
            Credentials::None => ConnectOptions::new(),
            Credentials::Token(t) => ConnectOptions::with_token(t),
            Credentials::UserPassword(u, p) => ConnectOptions::with_user_and_password(u, p),
        };
        let client = options
            .name(client_name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(CONNECT_TIMEOUT)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let problems = Arc::clone(&problems);
                async move {
                    let problem = match &event {
                        async_nats::Event::Connected => {
                            info!("NATS connected");
                            None
                        }
                        async_nats::Event::SlowConsumer(_) | async_nats::Event::Draining => {
                            return;
                        }
                        other => {
                            warn!(event = %other, "NATS connection");
                            Some(other.to_string())
                        }
                    };
                    if let Ok(mut last) = problems.lock() {
                        *last = problem;
                    }
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| format!("{ENV_NATS_URL}: {e}"))?;
        Ok(Nats {
            client,
            last_problem,
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// `ok` when connected, else `degraded` with what is known.
    pub fn health(&self) -> Health {
        let last = self.last_problem.lock().ok().and_then(|l| l.clone());
        let state = match self.client.connection_state() {
            State::Connected => return Health::Ok,
            State::Pending => "connecting to NATS",
            State::Disconnected => "NATS disconnected, reconnecting",
        };
        Health::Degraded(match last {
            Some(last) => format!("{state} (last: {last})"),
            None => state.to_owned(),
        })
    }
}

/// Reconnection back-off: 100 ms doubling per attempt, capped.
fn reconnect_delay(attempts: usize) -> Duration {
    let exp = u32::try_from(attempts.min(16)).unwrap_or(16);
    Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_RECONNECT_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_parse_and_normalize() {
        let cases: &[(&str, &[&str])] = &[
            ("nats://127.0.0.1:4222", &["nats://127.0.0.1:4222"]),
            ("127.0.0.1:4222", &["nats://127.0.0.1:4222"]),
            (
                "nats://a:4222, tls://b:4223 ,nats://c",
                &["nats://a:4222", "tls://b:4223", "nats://c"],
            ),
            ("nats://[::1]:4222", &["nats://[::1]:4222"]),
        ];
        for (input, want) in cases {
            let got = parse_nats_urls(input).unwrap();
            assert_eq!(&got, want, "{input}");
        }
    }

    #[test]
    fn malformed_nats_urls_name_the_variable() {
        for bad in [
            "",
            "  ",
            "nats://a:4222,",
            "http://a:4222",
            "ws://a:4222",
            "nats://a:notaport",
            "nats://",
            "nats://a:4222/path",
            "nats://a:99999",
        ] {
            let err = parse_nats_urls(bad).unwrap_err();
            assert!(err.starts_with("NATS_URL: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn errors_do_not_echo_passwords() {
        let err = parse_nats_urls("http://user:s3cret@host:4222").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("***@host"), "{err}");
    }

    #[test]
    fn reconnect_delay_grows_and_is_capped() {
        assert_eq!(reconnect_delay(0), Duration::from_millis(100));
        assert_eq!(reconnect_delay(1), Duration::from_millis(200));
        assert_eq!(reconnect_delay(3), Duration::from_millis(800));
        assert_eq!(reconnect_delay(10), MAX_RECONNECT_DELAY);
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }

    #[test]
    fn credentials_come_from_the_urls_userinfo() {
        let c = |v: &str| credentials(&parse_nats_urls(v).unwrap());
        assert_eq!(c("nats://127.0.0.1:4222"), Ok(Credentials::None));
        assert_eq!(c("127.0.0.1:4222"), Ok(Credentials::None));
        assert_eq!(
            c("nats://sb:p%40ss%3Aw@a:4222,nats://sb:p%40ss%3Aw@b:4222"),
            Ok(Credentials::UserPassword("sb".into(), "p@ss:w".into()))
        );
        assert_eq!(
            c("nats://s3cr3t@a:4222"),
            Ok(Credentials::Token("s3cr3t".into()))
        );
        assert!(c("nats://u:p@a:4222,nats://b:4222").is_err());
        assert!(c("nats://u:p@a:4222,nats://u:q@b:4222").is_err());
    }

    #[test]
    fn health_displays_as_the_endpoint_reports_it() {
        assert_eq!(Health::Ok.to_string(), "ok");
        assert_eq!(
            Health::Degraded("NATS disconnected".into()).to_string(),
            "degraded: NATS disconnected"
        );
    }
}
