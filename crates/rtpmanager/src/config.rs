//! Start-up configuration of `switchboard-rtpmanager`: environment
//! variables (and CLI flags of the same meaning), resolved once.
//!
//! On Kubernetes the managers run as a StatefulSet whose pods are named
//! `rtpmanager-0`, `rtpmanager-1`, …; every pod shares the node's network
//! (hostNetwork), so each derives its own ports from its ordinal:
//! gRPC on 9090+N and RTP on 10000+100N … 10000+100N+99. Explicit
//! `GRPC_PORT` / `RTP_PORT_MIN` / `RTP_PORT_MAX` win over the derivation.
//!
//! The ordinal is read from the pod's name: `POD_NAME` (the Downward API's
//! `metadata.name`) when set, else `HOSTNAME`. Under hostNetwork a pod's
//! host name is the node's, so the manifests must set `POD_NAME`: without
//! it a node named like `k3s-node-1` would give every manager on it
//! ordinal 1. The start-up log says which variable the ordinal came from
//! ([`Config::identity`]).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use switchboard_media::learning::Policy;

use crate::engine::{EngineConfig, RtpAddress};
use crate::security::GrpcSecurity;

/// `switchboard-rtpmanager`: media anchor for Switchboard calls.
///
/// Without a subcommand it serves; `health` asks the manager these same
/// settings describe (for probes). Flags go before the subcommand;
/// environment variables serve both.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard-rtpmanager", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Calls Health on this configuration's gRPC port and prints the
    /// answer as one line of JSON; exit 0 when the manager answers, 1 when
    /// it does not (for Kubernetes exec probes and Docker's HEALTHCHECK).
    Health(HealthArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Readiness: exit 1 also while the manager is draining (it takes no
    /// new sessions, so it should leave the Service's ready endpoints).
    #[arg(long)]
    pub ready: bool,
}

/// The server's settings (the command line without a subcommand).
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard-rtpmanager", version, about)]
pub struct Config {
    /// Log filter (tracing EnvFilter syntax).
    #[arg(
        long,
        env = "LOGLEVEL",
        value_name = "LOGLEVEL",
        default_value = "info"
    )]
    pub loglevel: String,

    /// gRPC port (default 9090, or 9090+N for a pod named `*-N`).
    #[arg(long, env = "GRPC_PORT", value_name = "GRPC_PORT")]
    pub grpc_port: Option<u16>,

    /// gRPC address. Loopback by default: any other address needs
    /// RTPMANAGER_TOKEN.
    #[arg(
        long,
        env = "GRPC_BIND",
        value_name = "GRPC_BIND",
        default_value = "127.0.0.1"
    )]
    pub grpc_bind: IpAddr,

    /// Shared secret every gRPC call must carry (`authorization: Bearer
    /// <token>`); required when GRPC_BIND is not a loopback address.
    #[arg(long, env = "RTPMANAGER_TOKEN", value_name = "RTPMANAGER_TOKEN")]
    pub rtpmanager_token: Option<String>,

    /// PEM certificate (chain) of the gRPC port: with GRPC_TLS_KEY, gRPC
    /// is served over TLS.
    #[arg(long, env = "GRPC_TLS_CERT", value_name = "GRPC_TLS_CERT")]
    pub grpc_tls_cert: Option<PathBuf>,

    /// PEM private key of GRPC_TLS_CERT.
    #[arg(long, env = "GRPC_TLS_KEY", value_name = "GRPC_TLS_KEY")]
    pub grpc_tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): clients must present a certificate signed by
    /// one of them (mutual TLS). Needs GRPC_TLS_CERT.
    #[arg(long, env = "GRPC_TLS_CLIENT_CA", value_name = "GRPC_TLS_CLIENT_CA")]
    pub grpc_tls_client_ca: Option<PathBuf>,

    /// Comma-separated RTP socket addresses, at most one per family
    /// (`0.0.0.0,::` serves IPv4 and IPv6 phones and bridges them).
    #[arg(
        long,
        env = "RTP_BIND",
        value_name = "RTP_BIND",
        value_delimiter = ',',
        default_value = "0.0.0.0"
    )]
    pub rtp_bind: Vec<IpAddr>,

    /// Comma-separated addresses written into SDP, one per RTP_BIND entry
    /// (on Kubernetes the node IP from the Downward API). Default: each
    /// RTP_BIND address when it is a specific one, else the address the
    /// host routes from.
    #[arg(
        long,
        env = "RTP_ADVERTISE_ADDR",
        value_name = "RTP_ADVERTISE_ADDR",
        value_delimiter = ','
    )]
    pub rtp_advertise_addr: Vec<IpAddr>,

    /// Lowest RTP port (default 10000, or 10000+100N for a pod named `*-N`).
    #[arg(long, env = "RTP_PORT_MIN", value_name = "RTP_PORT_MIN")]
    pub rtp_port_min: Option<u16>,

    /// Highest RTP port (default 19999, or 10000+100N+99 for a pod named `*-N`).
    #[arg(long, env = "RTP_PORT_MAX", value_name = "RTP_PORT_MAX")]
    pub rtp_port_max: Option<u16>,

    /// Directory of the WAV files calls may play.
    #[arg(
        long,
        env = "AUDIO_PATH",
        value_name = "AUDIO_PATH",
        default_value = "./audio"
    )]
    pub audio_path: PathBuf,

    /// Directory recordings are written under.
    #[arg(
        long,
        env = "RECORD_PATH",
        value_name = "RECORD_PATH",
        default_value = "./recordings"
    )]
    pub record_path: PathBuf,

    /// Seconds without RTP before a session reports an RTP timeout; after
    /// twice as long the manager ends the session itself.
    #[arg(
        long,
        env = "RTP_TIMEOUT",
        value_name = "RTP_TIMEOUT",
        default_value_t = 60
    )]
    pub rtp_timeout: u64,

    /// Seconds a session whose leg holds the call (sends no RTP by its
    /// SDP) lives without RTP before the manager ends it.
    #[arg(
        long,
        env = "RTP_HOLD_TIMEOUT",
        value_name = "RTP_HOLD_TIMEOUT",
        default_value_t = 3600
    )]
    pub rtp_hold_timeout: u64,

    /// Where a leg's RTP may be learned from besides its SDP's exact
    /// address: `sdp-ip` (the SDP's IP, any port; any IP when the SDP's
    /// address is a private one) or `any` (any IP, after probation).
    #[arg(
        long,
        env = "RTP_LEARN_FROM",
        value_name = "RTP_LEARN_FROM",
        default_value = "sdp-ip",
        value_parser = parse_learn_from
    )]
    pub rtp_learn_from: Policy,

    /// Pod name (Kubernetes: the Downward API's `metadata.name`); its `-N`
    /// suffix is the StatefulSet ordinal. Wins over HOSTNAME, which under
    /// hostNetwork is the node's name.
    #[arg(long, env = "POD_NAME", value_name = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Host name; its `-N` suffix is the StatefulSet ordinal when POD_NAME
    /// is not set.
    #[arg(long, env = "HOSTNAME", value_name = "HOSTNAME", default_value = "")]
    pub hostname: String,

    /// Seconds the manager waits after SIGTERM for its live sessions to end
    /// (it takes no new ones meanwhile) before it ends the rest and exits;
    /// the default matches a terminationGracePeriodSeconds of one hour.
    #[arg(
        long,
        env = "SHUTDOWN_GRACE",
        value_name = "SHUTDOWN_GRACE",
        default_value_t = 3600
    )]
    pub shutdown_grace: u64,
}

/// Where the ordinal of a manager came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// `POD_NAME` or `HOSTNAME`: the variable whose value was used.
    pub source: &'static str,
    /// That variable's value.
    pub name: &'a str,
    /// The StatefulSet ordinal at the end of `name`, if any.
    pub ordinal: Option<u16>,
}

/// `POD_NAME` when set and not empty, else `HOSTNAME`.
pub fn identity<'a>(pod_name: Option<&'a str>, hostname: &'a str) -> Identity<'a> {
    let (source, name) = match pod_name.map(str::trim) {
        Some(p) if !p.is_empty() => ("POD_NAME", p),
        _ => ("HOSTNAME", hostname.trim()),
    };
    Identity {
        source,
        name,
        ordinal: ordinal(name),
    }
}

/// `RTP_LEARN_FROM`: `sdp-ip` or `any`.
pub fn parse_learn_from(s: &str) -> Result<Policy, String> {
    match s.trim() {
        "sdp-ip" => Ok(Policy::SdpIp),
        "any" => Ok(Policy::AnyIp),
        _ => Err(format!("{s:?}: expected sdp-ip or any")),
    }
}

/// Ports of a manager after the ordinal rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub grpc: u16,
    pub rtp_min: u16,
    pub rtp_max: u16,
}

/// The StatefulSet ordinal at the end of a pod name (`rtpmanager-3` → 3).
pub fn ordinal(hostname: &str) -> Option<u16> {
    let (_, n) = hostname.rsplit_once('-')?;
    if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u16 = n.parse().ok()?;
    // 10000 + 100·N + 99 must stay a port
    (n <= 554).then_some(n)
}

/// Explicit settings win; unset ones follow the ordinal rule, or the
/// single-manager defaults without an ordinal.
pub fn derive_ports(
    hostname: &str,
    grpc: Option<u16>,
    rtp_min: Option<u16>,
    rtp_max: Option<u16>,
) -> Ports {
    match ordinal(hostname) {
        Some(n) => Ports {
            grpc: grpc.unwrap_or(9090u16.saturating_add(n)),
            rtp_min: rtp_min.unwrap_or(10000 + 100 * n),
            rtp_max: rtp_max.unwrap_or(10000 + 100 * n + 99),
        },
        None => Ports {
            grpc: grpc.unwrap_or(9090),
            rtp_min: rtp_min.unwrap_or(10000),
            rtp_max: rtp_max.unwrap_or(19999),
        },
    }
}

impl Config {
    /// The name the StatefulSet ordinal is read from, and the ordinal.
    pub fn identity(&self) -> Identity<'_> {
        identity(self.pod_name.as_deref(), &self.hostname)
    }

    pub fn ports(&self) -> Ports {
        derive_ports(
            self.identity().name,
            self.grpc_port,
            self.rtp_port_min,
            self.rtp_port_max,
        )
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::new(self.grpc_bind, self.ports().grpc)
    }

    /// The engine's settings; an error names the variable at fault.
    pub fn engine(&self) -> Result<EngineConfig, String> {
        let ports = self.ports();
        if ports.rtp_min > ports.rtp_max {
            return Err(format!(
                "RTP_PORT_MIN {} is above RTP_PORT_MAX {}",
                ports.rtp_min, ports.rtp_max
            ));
        }
        if self.rtp_timeout == 0 {
            return Err("RTP_TIMEOUT: must be at least 1 second".into());
        }
        if self.rtp_hold_timeout == 0 {
            return Err("RTP_HOLD_TIMEOUT: must be at least 1 second".into());
        }
        let addresses = rtp_addresses(&self.rtp_bind, &self.rtp_advertise_addr)?;
        Ok(EngineConfig {
            addresses,
            port_min: ports.rtp_min,
            port_max: ports.rtp_max,
            audio_path: self.audio_path.clone(),
            record_path: self.record_path.clone(),
            rtp_timeout: Duration::from_secs(self.rtp_timeout),
            rtp_hold_timeout: Duration::from_secs(self.rtp_hold_timeout),
            rtcp_interval: crate::engine::RTCP_INTERVAL,
            source_policy: self.rtp_learn_from,
        })
    }

    /// How the gRPC port is protected (reads the TLS files); an error names
    /// the variable at fault.
    pub fn security(&self) -> Result<GrpcSecurity, String> {
        GrpcSecurity::from_settings(
            self.grpc_bind,
            self.rtpmanager_token.as_deref(),
            self.grpc_tls_cert.as_deref(),
            self.grpc_tls_key.as_deref(),
            self.grpc_tls_client_ca.as_deref(),
        )
    }
}

/// Pairs RTP_BIND with RTP_ADVERTISE_ADDR (or a derived address).
pub fn rtp_addresses(bind: &[IpAddr], advertise: &[IpAddr]) -> Result<Vec<RtpAddress>, String> {
    if bind.is_empty() {
        return Err("RTP_BIND: no address".into());
    }
    if bind.iter().filter(|b| b.is_ipv4()).count() > 1
        || bind.iter().filter(|b| b.is_ipv6()).count() > 1
    {
        return Err("RTP_BIND: at most one IPv4 and one IPv6 address".into());
    }
    if !advertise.is_empty() && advertise.len() != bind.len() {
        return Err(format!(
            "RTP_ADVERTISE_ADDR: {} addresses for {} RTP_BIND addresses",
            advertise.len(),
            bind.len()
        ));
    }
    bind.iter()
        .enumerate()
        .map(|(i, b)| {
            let adv = match advertise.get(i) {
                Some(a) => *a,
                None if !b.is_unspecified() => *b,
                None => route_source(b.is_ipv6()).ok_or_else(|| {
                    format!(
                        "RTP_ADVERTISE_ADDR: RTP_BIND {b} is a wildcard and no local \
                         address routes anywhere; set RTP_ADVERTISE_ADDR"
                    )
                })?,
            };
            if adv.is_ipv6() != b.is_ipv6() {
                return Err(format!(
                    "RTP_ADVERTISE_ADDR: {adv} is not of the same family as RTP_BIND {b}"
                ));
            }
            Ok(RtpAddress {
                bind: *b,
                advertise: adv,
            })
        })
        .collect()
}

/// The local address the host would send from to the outside (found with
/// a connected UDP socket; nothing is sent).
pub fn route_source(v6: bool) -> Option<IpAddr> {
    let (bind, probe): (SocketAddr, SocketAddr) = if v6 {
        ("[::]:0".parse().ok()?, "[2001:db8::1]:9".parse().ok()?)
    } else {
        ("0.0.0.0:0".parse().ok()?, "192.0.2.1:9".parse().ok()?)
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(probe).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_pod_name() {
        let cases = [
            ("rtpmanager-0", Some(0)),
            ("rtpmanager-7", Some(7)),
            ("switchboard-rtpmanager-12", Some(12)),
            ("rtpmanager", None),
            ("rtpmanager-", None),
            ("rtpmanager-x1", None),
            ("rtpmanager-1000", None),
            ("rtpmanager-555", None),
            ("rtpmanager-554", Some(554)),
            ("", None),
            ("node-7f9c-abc12", None),
        ];
        for (host, want) in cases {
            assert_eq!(ordinal(host), want, "{host}");
        }
    }

    #[test]
    fn the_pod_name_wins_over_the_host_name() {
        // (POD_NAME, HOSTNAME) → (variable used, ordinal, gRPC port)
        let cases = [
            // hostNetwork: the host name is the node's, POD_NAME the pod's
            (
                Some("rtpmanager-3"),
                "k3s-node-1",
                ("POD_NAME", Some(3), 9093),
            ),
            (
                Some("rtpmanager-0"),
                "k3s-node-1",
                ("POD_NAME", Some(0), 9090),
            ),
            // a pod network: both are the pod's name
            (
                Some("rtpmanager-2"),
                "rtpmanager-2",
                ("POD_NAME", Some(2), 9092),
            ),
            (None, "rtpmanager-2", ("HOSTNAME", Some(2), 9092)),
            // POD_NAME missing under hostNetwork: the node's `-1` is taken
            // for an ordinal (the start-up log names HOSTNAME as its source)
            (None, "k3s-node-1", ("HOSTNAME", Some(1), 9091)),
            (None, "k3s-server", ("HOSTNAME", None, 9090)),
            // an empty POD_NAME counts as unset
            (Some(""), "rtpmanager-4", ("HOSTNAME", Some(4), 9094)),
            (Some("  "), "rtpmanager-4", ("HOSTNAME", Some(4), 9094)),
            // a POD_NAME without an ordinal (a Deployment's pod) still wins:
            // the single-manager defaults, not the node's suffix
            (
                Some("rtpmanager-7f9c-abc12"),
                "k3s-node-1",
                ("POD_NAME", None, 9090),
            ),
            (Some("rtpmanager"), "k3s-node-1", ("POD_NAME", None, 9090)),
            (None, "", ("HOSTNAME", None, 9090)),
        ];
        for (pod, host, (source, ord, grpc)) in cases {
            let id = identity(pod, host);
            assert_eq!((id.source, id.ordinal), (source, ord), "{pod:?} {host}");
            let p = derive_ports(id.name, None, None, None);
            assert_eq!(p.grpc, grpc, "{pod:?} {host}");
        }
    }

    #[test]
    fn the_flags_carry_the_pod_name() {
        let c = Config::parse_from([
            "switchboard-rtpmanager",
            "--pod-name",
            "rtpmanager-5",
            "--hostname",
            "k3s-node-1",
        ]);
        assert_eq!(
            c.identity(),
            Identity {
                source: "POD_NAME",
                name: "rtpmanager-5",
                ordinal: Some(5)
            }
        );
        assert_eq!(
            c.ports(),
            Ports {
                grpc: 9095,
                rtp_min: 10500,
                rtp_max: 10599
            }
        );
        let c = Config::parse_from([
            "switchboard-rtpmanager",
            "--pod-name",
            "rtpmanager-5",
            "--grpc-port",
            "7000",
        ]);
        assert_eq!(c.ports().grpc, 7000, "an explicit GRPC_PORT wins");
    }

    #[test]
    fn ports_follow_the_ordinal_unless_set() {
        let cases = [
            ("rtpmanager-0", None, None, None, (9090, 10000, 10099)),
            ("rtpmanager-2", None, None, None, (9092, 10200, 10299)),
            ("rtpmanager-2", Some(7000), None, None, (7000, 10200, 10299)),
            (
                "rtpmanager-2",
                None,
                Some(30000),
                Some(30999),
                (9092, 30000, 30999),
            ),
            ("laptop", None, None, None, (9090, 10000, 19999)),
            (
                "laptop",
                Some(9999),
                Some(40000),
                None,
                (9999, 40000, 19999),
            ),
        ];
        for (host, g, min, max, (eg, emin, emax)) in cases {
            let p = derive_ports(host, g, min, max);
            assert_eq!((p.grpc, p.rtp_min, p.rtp_max), (eg, emin, emax), "{host}");
        }
    }

    #[test]
    fn advertise_addresses_pair_with_binds() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = rtp_addresses(&[ip("127.0.0.1"), ip("::1")], &[]).unwrap();
        assert_eq!(a[0].advertise, ip("127.0.0.1"));
        assert_eq!(a[1].advertise, ip("::1"));
        let a = rtp_addresses(&[ip("0.0.0.0")], &[ip("10.1.2.3")]).unwrap();
        assert_eq!(a[0].advertise, ip("10.1.2.3"));
        let e = rtp_addresses(&[ip("0.0.0.0")], &[ip("::1")]).unwrap_err();
        assert!(e.starts_with("RTP_ADVERTISE_ADDR"), "{e}");
        let e = rtp_addresses(&[ip("127.0.0.1"), ip("127.0.0.2")], &[]).unwrap_err();
        assert!(e.starts_with("RTP_BIND"), "{e}");
        let e = rtp_addresses(&[ip("127.0.0.1")], &[ip("10.0.0.1"), ip("10.0.0.2")]).unwrap_err();
        assert!(e.contains("2 addresses for 1"), "{e}");
    }
}
