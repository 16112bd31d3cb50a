//! `switchboard-ui health`: the Docker HEALTHCHECK of the UI image, which
//! has no curl.
//!
//! With the server's own settings (environment and flags) it GETs
//! `/health` on UI_PORT, at UI_BIND, or at loopback of the same family
//! when UI_BIND is a wildcard (`0.0.0.0` → `127.0.0.1`, `::` → `::1`),
//! within 2 s. Exit 0 on HTTP 200, 1 on anything else with the reason on
//! stderr.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Config;

/// How long the whole request may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The most of an answer read.
const MAX_ANSWER: u64 = 16 * 1024;

/// `switchboard-ui`: the operators' dashboard.
///
/// Without a subcommand it serves; `health` asks the server these same
/// settings describe. Flags go before the subcommand; environment
/// variables serve both.
#[derive(Debug, Parser)]
#[command(name = "switchboard-ui", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// GETs /health on UI_PORT (loopback when UI_BIND is a wildcard)
    /// within 2 s: exit 0 on HTTP 200, 1 otherwise (Docker's HEALTHCHECK).
    Health,
}

/// Where the probe sends its request.
pub fn target(config: &Config) -> SocketAddr {
    let ip = match config.bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        a => a,
    };
    SocketAddr::new(ip, config.port)
}

/// GET /health on `addr`: the status code of the answer.
pub async fn get_health(addr: SocketAddr, timeout: Duration) -> Result<u16, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: switchboard-ui-health\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("{addr}: no answer within {timeout:?}")),
    };
    status_of(&raw).ok_or_else(|| format!("{addr}: not an HTTP answer"))
}

/// The status code of an HTTP/1.x answer.
fn status_of(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    let mut status_line = text.lines().next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    status_line.next()?.parse().ok()
}

/// The `health` subcommand: prints, and says how the process should exit.
pub async fn main(config: &Config) -> ExitCode {
    let addr = target(config);
    match get_health(addr, TIMEOUT).await {
        Ok(200) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("switchboard-ui health: {addr} answered HTTP {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("switchboard-ui health: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_for_their_status() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\nok"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 Unavailable\r\n\r\n"), Some(503));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }

    #[test]
    fn wildcards_are_asked_on_loopback() {
        let mut c = Config::for_tests(std::env::temp_dir());
        c.port = 3000;
        c.bind = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(target(&c), SocketAddr::from(([127, 0, 0, 1], 3000)));
        c.bind = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert_eq!(target(&c).ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        c.bind = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(target(&c).ip(), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    }
}
