//! Settings of the shared state several replicas use: Postgres, Redis,
//! NATS JetStream and the secret that ties the replicas together.
//!
//! Each of the three servers is optional and any combination works; unset
//! they fall back to the embedded defaults (SQLite under `DATA_DIR`, state
//! in memory, events in process). Their values are checked here at start,
//! so a malformed URL stops start-up with the variable's name; whether the
//! server answers is not (an unreachable one makes the node `degraded`,
//! never a crash loop).

use std::net::SocketAddr;

use clap::Args;
use sha2::{Digest, Sha256};

/// The shortest CLUSTER_SECRET accepted, in bytes.
pub const MIN_SECRET: usize = 32;

#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// Postgres (`postgres://user:pass@host:5432/db`); unset: the embedded
    /// SQLite database under DATA_DIR.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Redis for the state replicas share (`host:port`, `redis://…`,
    /// `rediss://…`); unset: this node's memory only.
    #[arg(
        long,
        env = "REDIS_ADDR",
        value_name = "REDIS_ADDR",
        hide_env_values = true
    )]
    pub redis_addr: Option<String>,

    /// NATS servers for events and CDRs (`nats://host:4222`, comma-separated
    /// for several); unset: events stay in this process.
    #[arg(
        long,
        env = "NATS_URL",
        value_name = "NATS_URL",
        hide_env_values = true
    )]
    pub nats_url: Option<String>,

    /// Shared by every replica (at least 32 bytes): keys the digest nonces
    /// (a challenge from one replica is answered to another) and the flow
    /// tokens replicas route each other's phones with. Required when any of
    /// DATABASE_URL, REDIS_ADDR or NATS_URL is set.
    #[arg(
        long,
        env = "CLUSTER_SECRET",
        value_name = "CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,

    /// `ip:port` the other replicas reach this one's SIP on (UDP and TCP);
    /// default: the first BIND address (or, for a wildcard, the address
    /// routed towards Redis) and PORT.
    #[arg(long, env = "CLUSTER_ADDR", value_name = "CLUSTER_ADDR")]
    pub cluster_addr: Option<SocketAddr>,

    /// Prefix of every Redis key this platform writes (several platforms,
    /// or tests, can share one Redis).
    #[arg(
        long,
        env = "REDIS_PREFIX",
        value_name = "REDIS_PREFIX",
        default_value = "sb:"
    )]
    pub redis_prefix: String,

    /// First subject token of every NATS subject (`switchboard`: events on
    /// `switchboard.calls.…`, CDRs on `switchboard.cdr.raw`).
    #[arg(
        long,
        env = "NATS_PREFIX",
        value_name = "NATS_PREFIX",
        default_value = "switchboard"
    )]
    pub nats_prefix: String,

    /// Size bound of each JetStream stream (events, CDRs), in bytes; the
    /// server reserves it at creation, so it must fit its storage. Past it
    /// the oldest events go, and new CDRs wait in the spool.
    #[arg(
        long,
        env = "NATS_STREAM_MAX_BYTES",
        value_name = "NATS_STREAM_MAX_BYTES",
        default_value_t = 1 << 30,
        value_parser = clap::value_parser!(i64).range(1 << 20..)
    )]
    pub nats_stream_max_bytes: i64,
}

impl ClusterConfig {
    /// Whether any shared server is configured.
    pub fn is_clustered(&self) -> bool {
        self.database_url.is_some() || self.redis_addr.is_some() || self.nats_url.is_some()
    }

    /// The checks clap cannot make; the message names the variable.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.database_url {
            check_database_url(url)?;
        }
        if let Some(addr) = &self.redis_addr {
            check_redis_addr(addr)?;
        }
        if let Some(urls) = &self.nats_url {
            check_nats_url(urls)?;
        }
        match &self.cluster_secret {
            Some(s) if s.len() < MIN_SECRET => Err(format!(
                "CLUSTER_SECRET: {} bytes is too short; at least {MIN_SECRET} are required",
                s.len()
            )),
            None if self.is_clustered() => Err(
                "CLUSTER_SECRET: required when DATABASE_URL, REDIS_ADDR or NATS_URL is set".into(),
            ),
            _ => Ok(()),
        }?;
        if self.redis_prefix.is_empty() || self.redis_prefix.len() > 64 {
            return Err("REDIS_PREFIX: 1 to 64 characters".into());
        }
        if !valid_subject_root(&self.nats_prefix) {
            return Err(
                "NATS_PREFIX: one or more dot-separated tokens of letters, digits, '-' and '_'"
                    .into(),
            );
        }
        Ok(())
    }

    /// A 32-byte key for `purpose` derived from CLUSTER_SECRET, or `None`
    /// when no secret is set (each node then draws its own at random).
    pub fn derived_key(&self, purpose: &str) -> Option<[u8; 32]> {
        let secret = self.cluster_secret.as_ref()?;
        let mut h = Sha256::new();
        h.update(b"switchboard/");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(secret.as_bytes());
        Some(h.finalize().into())
    }
}

fn check_database_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("DATABASE_URL: must start with postgres:// (unset it for the embedded SQLite)")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() && !rest.contains("host=") {
        return Err("DATABASE_URL: no host".into());
    }
    check_port("DATABASE_URL", host)
}

fn check_redis_addr(addr: &str) -> Result<(), String> {
    let rest = match addr.split_once("://") {
        Some(("redis" | "rediss", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "REDIS_ADDR: unknown scheme {scheme:?} (use host:port, redis:// or rediss://)"
            ));
        }
        None => {
            return match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
                _ => Err(format!("REDIS_ADDR: {addr:?} is not host:port")),
            };
        }
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return Err("REDIS_ADDR: no host".into());
    }
    check_port("REDIS_ADDR", host)
}

fn check_nats_url(urls: &str) -> Result<(), String> {
    let mut any = false;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        any = true;
        let rest = match url.split_once("://") {
            Some(("nats" | "tls", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "NATS_URL: unknown scheme {scheme:?} in {url:?} (use nats://host:port)"
                ));
            }
            None => url,
        };
        let host = rest.rsplit('@').next().unwrap_or_default();
        let host = host.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("NATS_URL: no host in {url:?}"));
        }
        check_port("NATS_URL", host)?;
    }
    if any {
        Ok(())
    } else {
        Err("NATS_URL: no server given".into())
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`: a port, if given, is a number.
fn check_port(var: &str, host_port: &str) -> Result<(), String> {
    let port = if let Some(rest) = host_port.strip_prefix('[') {
        match rest.split_once(']') {
            Some((_, "")) => None,
            Some((_, p)) => Some(p.strip_prefix(':').unwrap_or("x")),
            None => return Err(format!("{var}: unclosed '[' in {host_port:?}")),
        }
    } else {
        host_port.split_once(':').map(|(_, p)| p)
    };
    match port {
        Some(p) if p.parse::<u16>().is_err() => Err(format!("{var}: bad port {p:?}")),
        _ => Ok(()),
    }
}

fn valid_subject_root(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        c: ClusterConfig,
    }

    fn check(args: &[&str]) -> Result<ClusterConfig, String> {
        let t = T::try_parse_from([&["t"], args].concat()).map_err(|e| e.to_string())?;
        t.c.validate()?;
        Ok(t.c)
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn embedded_by_default() {
        let c = check(&[]).unwrap();
        assert!(!c.is_clustered());
        assert_eq!(c.derived_key("nonce"), None);
    }

    #[test]
    fn good_values() {
        for args in [
            &["--database-url", "postgres://sb:pw@db:5432/switchboard"][..],
            &[
                "--database-url",
                "postgresql://localhost/sb?sslmode=disable",
            ],
            &["--redis-addr", "127.0.0.1:6379"],
            &["--redis-addr", "redis-0.redis:6379"],
            &["--redis-addr", "redis://:pw@127.0.0.1:6379/0"],
            &["--redis-addr", "rediss://[::1]:6380"],
            &["--nats-url", "nats://127.0.0.1:4222"],
            &[
                "--nats-url",
                "nats://a:4222, nats://b:4222,nats://user:pw@c",
            ],
        ] {
            let c = check(&[args, &["--cluster-secret", SECRET]].concat());
            assert!(c.is_ok(), "{args:?}: {c:?}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (args, var) in [
            (&["--database-url", "mysql://db/x"][..], "DATABASE_URL"),
            (&["--database-url", "postgres://db:port/x"], "DATABASE_URL"),
            (&["--database-url", "postgres:///x"], "DATABASE_URL"),
            (&["--redis-addr", "localhost"], "REDIS_ADDR"),
            (&["--redis-addr", "http://x:1"], "REDIS_ADDR"),
            (&["--redis-addr", "redis://x:99999"], "REDIS_ADDR"),
            (&["--redis-addr", "redis://[::1:6379"], "REDIS_ADDR"),
            (&["--nats-url", "http://x:4222"], "NATS_URL"),
            (&["--nats-url", " , "], "NATS_URL"),
            (&["--nats-url", "nats://x:port"], "NATS_URL"),
            (&["--nats-prefix", "a..b"], "NATS_PREFIX"),
            (&["--nats-prefix", "a.*"], "NATS_PREFIX"),
            (&["--redis-prefix", ""], "REDIS_PREFIX"),
        ] {
            let err = check(&[args, &["--cluster-secret", SECRET]].concat()).unwrap_err();
            assert!(err.contains(var), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_secret_is_required_and_long() {
        let err = check(&["--redis-addr", "127.0.0.1:6379"]).unwrap_err();
        assert!(err.contains("CLUSTER_SECRET"), "{err}");
        let err = check(&["--nats-url", "nats://x", "--cluster-secret", "short"]).unwrap_err();
        assert!(
            err.contains("CLUSTER_SECRET") && err.contains("too short"),
            "{err}"
        );
        let c = check(&["--cluster-secret", SECRET]).unwrap();
        let (a, b) = (c.derived_key("nonce"), c.derived_key("flow"));
        assert!(a.is_some() && a != b, "one key per purpose");
        assert_eq!(a, c.derived_key("nonce"), "the same on every replica");
    }
}
