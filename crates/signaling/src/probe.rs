//! `switchboard-signaling health`: the Docker HEALTHCHECK of the signaling
//! image, which has no curl.
//!
//! With the server's own settings (environment and flags) it GETs
//! `/api/v1/health` on API_PORT, at API_BIND, or at loopback of the same
//! family when API_BIND is a wildcard (`0.0.0.0` → `127.0.0.1`, `::` →
//! `::1`), within 2 s. Exit 0 on HTTP 200 (the body, the health JSON, is
//! printed on stdout), 1 on anything else with the reason on stderr.

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
const MAX_ANSWER: u64 = 64 * 1024;

/// `switchboard-signaling`: SIP registrar and call server.
///
/// Without a subcommand it serves; `health` asks the server these same
/// settings describe. Flags go before the subcommand; environment
/// variables serve both.
#[derive(Debug, Parser)]
#[command(name = "switchboard-signaling", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// GETs /api/v1/health on API_PORT (loopback when API_BIND is a
    /// wildcard) within 2 s: exit 0 on HTTP 200, 1 otherwise (for Docker's
    /// HEALTHCHECK).
    Health,
}

/// Where the probe sends its request.
pub fn target(config: &Config) -> SocketAddr {
    let ip = match config.api_bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        a => a,
    };
    SocketAddr::new(ip, config.api_port)
}

/// GET /api/v1/health on `addr`: the status code and the body.
pub async fn get_health(addr: SocketAddr, timeout: Duration) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let request = format!(
            "GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: switchboard-signaling-health\r\nConnection: close\r\n\r\n"
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
    parse_answer(&raw).ok_or_else(|| format!("{addr}: not an HTTP answer"))
}

/// The status code of an HTTP/1.x answer, and its body unless chunked.
fn parse_answer(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut status_line = head.lines().next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = status_line.next()?.parse().ok()?;
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        String::new()
    } else {
        body.trim().to_string()
    };
    Some((status, body))
}

/// The `health` subcommand: prints, and says how the process should exit.
pub async fn main(config: &Config) -> ExitCode {
    let addr = target(config);
    match get_health(addr, TIMEOUT).await {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, _)) => {
            eprintln!("switchboard-signaling health: {addr} answered HTTP {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("switchboard-signaling health: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_for_their_status() {
        let cases: [(&str, Option<(u16, &str)>); 5] = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
                Some((200, "{}")),
            ),
            ("HTTP/1.1 404 Not Found\r\n\r\n", Some((404, ""))),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                Some((200, "")),
            ),
            ("SSH-2.0-OpenSSH_9.2\r\n", None),
            ("", None),
        ];
        for (raw, want) in cases {
            let got = parse_answer(raw.as_bytes());
            assert_eq!(got.as_ref().map(|(s, b)| (*s, b.as_str())), want, "{raw:?}");
        }
    }

    #[test]
    fn wildcards_are_asked_on_loopback() {
        let cases = [
            ("0.0.0.0", "127.0.0.1:8080"),
            ("::", "[::1]:8080"),
            ("10.0.0.7", "10.0.0.7:8080"),
        ];
        for (bind, want) in cases {
            let args = [
                "switchboard-signaling",
                "--api-bind",
                bind,
                "--api-port",
                "8080",
            ];
            let config = Cli::parse_from(args).config;
            assert_eq!(target(&config).to_string(), want, "{bind}");
        }
    }
}
