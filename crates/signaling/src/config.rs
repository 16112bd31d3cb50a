//! Start-up configuration: every setting is an environment variable and a
//! CLI flag of the same meaning, parsed once into [`Config`].
//!
//! A bad value stops start-up with a message naming the variable (clap
//! prints `invalid value 'x' for '--port <PORT>'`; the value name is the
//! environment variable's name on purpose).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use switchboard_sip::digest::Algorithm;
use switchboard_sip_stack::endpoint::Limits;
use switchboard_sip_stack::flood::Rate;
use switchboard_sip_stack::transport::TransportConfig;

mod api_tls;
mod cluster;
mod flows;
mod tls;
pub use api_tls::ApiTlsConfig;
pub use cluster::{ClusterConfig, MIN_SECRET};
pub use flows::{FlowConfig, UnregisterOnClose};
pub use tls::TlsConfig;

/// `switchboard-signaling`: SIP registrar and call server.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard-signaling", version, about)]
pub struct Config {
    /// Log filter (tracing EnvFilter syntax: `info`, `debug,sqlx=warn`).
    #[arg(
        long,
        env = "LOGLEVEL",
        value_name = "LOGLEVEL",
        default_value = "info"
    )]
    pub loglevel: String,

    /// SIP port for UDP and TCP on every BIND address.
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 5060)]
    pub port: u16,

    /// Comma-separated local addresses for SIP (`0.0.0.0,::` = IPv4 and IPv6).
    #[arg(
        long,
        env = "BIND",
        value_name = "BIND",
        value_delimiter = ',',
        default_value = "0.0.0.0"
    )]
    pub bind: Vec<IpAddr>,

    /// REST API port.
    #[arg(
        long,
        env = "API_PORT",
        value_name = "API_PORT",
        default_value_t = 8080
    )]
    pub api_port: u16,

    /// REST API address.
    #[arg(
        long,
        env = "API_BIND",
        value_name = "API_BIND",
        default_value = "0.0.0.0"
    )]
    pub api_bind: IpAddr,

    /// Bearer token for the REST API; generated and stored under DATA_DIR when unset.
    #[arg(
        long,
        env = "API_TOKEN",
        value_name = "API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,

    /// A second port serving `/metrics` alone, without token (Prometheus'
    /// annotation-based scraping cannot send API_TOKEN); unset: `/metrics`
    /// only on the API port, behind the token.
    #[arg(long, env = "METRICS_PORT", value_name = "METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Address of METRICS_PORT (default: API_BIND).
    #[arg(
        long,
        env = "METRICS_BIND",
        value_name = "METRICS_BIND",
        requires = "metrics_port"
    )]
    pub metrics_bind: Option<IpAddr>,

    /// Where the embedded SQLite database and generated secrets live.
    #[arg(
        long,
        env = "DATA_DIR",
        value_name = "DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    /// Digest algorithms challenged, in order (`MD5`, `SHA-256`, `SHA-256,MD5`).
    /// MD5 alone by default: many deployed phones (baresip 1.0 among them)
    /// give up on a challenge that lists any other algorithm.
    #[arg(long, env = "AUTH_ALGORITHMS", value_name = "AUTH_ALGORITHMS", value_delimiter = ',', default_value = "MD5", value_parser = parse_algorithm)]
    pub auth_algorithms: Vec<Algorithm>,

    /// Digest realm for accounts without a SIP domain of their own.
    #[arg(
        long,
        env = "REALM",
        value_name = "REALM",
        default_value = "switchboard"
    )]
    pub realm: String,

    /// The JSON dialplan. When the file does not exist the built-in plan
    /// is used (every number dials the user with that extension or name);
    /// a file that exists but is invalid stops start-up.
    #[arg(
        long,
        env = "DIALPLAN_PATH",
        value_name = "DIALPLAN_PATH",
        default_value = "config/dialplan.json"
    )]
    pub dialplan_path: PathBuf,

    /// What a call over its account's `max_concurrent_calls` gets: `503`
    /// (Service Unavailable) or `486` (Busy Here).
    #[arg(
        long,
        env = "LIMIT_RESPONSE",
        value_name = "LIMIT_RESPONSE",
        default_value_t = 503,
        value_parser = parse_limit_response
    )]
    pub limit_response: u16,

    /// Trunks (upstream SIP providers), JSON. Missing file: no trunks.
    #[arg(
        long,
        env = "TRUNKS_PATH",
        value_name = "TRUNKS_PATH",
        default_value = "config/trunks.json"
    )]
    pub trunks_path: PathBuf,

    /// Seconds SIGTERM waits for live calls to end (new calls get 503
    /// meanwhile) before the node stops.
    #[arg(
        long,
        env = "SHUTDOWN_GRACE",
        value_name = "SHUTDOWN_GRACE",
        default_value_t = 30
    )]
    pub shutdown_grace: u64,

    /// Seconds after which any call is ended (BYE both sides, a CDR saying
    /// so), whatever state it is in: no call outlives this by accident.
    #[arg(
        long,
        env = "MAX_CALL_DURATION",
        value_name = "MAX_CALL_DURATION",
        default_value_t = 14_400,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_call_duration: u64,

    /// RFC 4028 session interval asked of phones that support `timer`, in
    /// seconds (0: no session timers); a leg whose refresh fails is ended.
    #[arg(
        long,
        env = "SESSION_EXPIRES",
        value_name = "SESSION_EXPIRES",
        default_value_t = 1800,
        value_parser = parse_session_expires
    )]
    pub session_expires: u32,

    /// The shortest session interval accepted (RFC 4028 `Min-SE`, at least 90).
    #[arg(
        long,
        env = "MIN_SE",
        value_name = "MIN_SE",
        default_value_t = 90,
        value_parser = clap::value_parser!(u32).range(90..)
    )]
    pub min_se: u32,

    /// Most calls in progress on this node; more get 503 (0: no limit).
    #[arg(
        long,
        env = "MAX_CALLS",
        value_name = "MAX_CALLS",
        default_value_t = 10_000
    )]
    pub max_calls: usize,

    /// This node's name in CDRs (default: the host name).
    #[arg(long, env = "NODE_NAME", value_name = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Seconds a nonce stays valid; an older one is answered with `stale=true`.
    #[arg(
        long,
        env = "NONCE_TTL",
        value_name = "NONCE_TTL",
        default_value_t = 300
    )]
    pub nonce_ttl: u64,

    /// Registration interval granted when the phone asks for none.
    #[arg(
        long,
        env = "DEFAULT_EXPIRES",
        value_name = "DEFAULT_EXPIRES",
        default_value_t = 3600
    )]
    pub default_expires: u32,

    /// Shortest registration interval accepted (shorter → 423 with Min-Expires).
    #[arg(
        long,
        env = "MIN_EXPIRES",
        value_name = "MIN_EXPIRES",
        default_value_t = 60
    )]
    pub min_expires: u32,

    /// Longest registration interval granted (longer requests are shortened).
    #[arg(
        long,
        env = "MAX_EXPIRES",
        value_name = "MAX_EXPIRES",
        default_value_t = 3600
    )]
    pub max_expires: u32,

    /// Most contacts per address-of-record; a new one replaces the oldest.
    #[arg(
        long,
        env = "MAX_CONTACTS",
        value_name = "MAX_CONTACTS",
        default_value_t = 10
    )]
    pub max_contacts: usize,

    /// Failed authentications from one source address tolerated per window.
    #[arg(
        long,
        env = "AUTH_FAIL_LIMIT",
        value_name = "AUTH_FAIL_LIMIT",
        default_value_t = 10
    )]
    pub auth_fail_limit: u32,

    /// Failed authentications for one username (of one account or trunk),
    /// from any sources, tolerated per window; over it, the username is
    /// blocked for AUTH_BLOCK_SECONDS except from sources that
    /// authenticated as it in the last 7 days. 0: no per-username limit.
    #[arg(
        long,
        env = "AUTH_USER_FAIL_LIMIT",
        value_name = "AUTH_USER_FAIL_LIMIT",
        default_value_t = 20
    )]
    pub auth_user_fail_limit: u32,

    /// Window for AUTH_FAIL_LIMIT and AUTH_USER_FAIL_LIMIT, in seconds.
    #[arg(
        long,
        env = "AUTH_FAIL_WINDOW",
        value_name = "AUTH_FAIL_WINDOW",
        default_value_t = 60
    )]
    pub auth_fail_window: u64,

    /// How long a source or username over its limit stays blocked, in seconds.
    #[arg(
        long,
        env = "AUTH_BLOCK_SECONDS",
        value_name = "AUTH_BLOCK_SECONDS",
        default_value_t = 300
    )]
    pub auth_block_seconds: u64,

    /// External RTP managers, comma-separated `host:port` or `name=host:port`
    /// (gRPC). Empty: media is anchored by the engine inside this process.
    #[arg(
        long,
        env = "RTPMANAGER_ADDRS",
        value_name = "RTPMANAGER_ADDRS",
        value_delimiter = ','
    )]
    pub rtpmanager_addrs: Vec<String>,

    /// RTP managers discovered on Kubernetes: `<namespace>/<service>` (or
    /// `<service>` in signaling's own namespace), whose EndpointSlices list
    /// the managers. Exclusive with RTPMANAGER_ADDRS.
    #[arg(long, env = "RTPMANAGER_SERVICE", value_name = "RTPMANAGER_SERVICE")]
    pub rtpmanager_service: Option<String>,

    /// With RTPMANAGER_SERVICE, a manager's gRPC port: `ordinal` (managers
    /// on hostNetwork: the slice's port plus the pod's ordinal) or `slice`
    /// (the slice's port as it is).
    #[arg(
        long,
        env = "RTPMANAGER_PORTS",
        value_name = "RTPMANAGER_PORTS",
        value_enum,
        default_value = "ordinal"
    )]
    pub rtpmanager_ports: crate::media::discovery::PortMode,

    /// With RTPMANAGER_SERVICE, the managers' gRPC port when their
    /// EndpointSlices list none (the base port with RTPMANAGER_PORTS=ordinal).
    #[arg(
        long,
        env = "RTPMANAGER_GRPC_PORT",
        value_name = "RTPMANAGER_GRPC_PORT",
        default_value_t = 9090,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub rtpmanager_grpc_port: u16,

    /// With RTPMANAGER_SERVICE, a kubeconfig file (one path; its current
    /// context) to reach the Kubernetes API with; unset: the pod's service
    /// account.
    #[arg(long, env = "KUBECONFIG", value_name = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Token sent to the RTP managers (`authorization: Bearer <token>`),
    /// the same RTPMANAGER_TOKEN they are started with.
    #[arg(long, env = "RTPMANAGER_TOKEN", value_name = "RTPMANAGER_TOKEN")]
    pub rtpmanager_token: Option<String>,

    /// PEM CA certificate(s) the RTP managers' certificates are checked
    /// against; set, the managers are reached over TLS.
    #[arg(long, env = "RTPMANAGER_TLS_CA", value_name = "RTPMANAGER_TLS_CA")]
    pub rtpmanager_tls_ca: Option<PathBuf>,

    /// PEM client certificate shown to the RTP managers (their
    /// GRPC_TLS_CLIENT_CA must have signed it); with RTPMANAGER_TLS_KEY.
    #[arg(long, env = "RTPMANAGER_TLS_CERT", value_name = "RTPMANAGER_TLS_CERT")]
    pub rtpmanager_tls_cert: Option<PathBuf>,

    /// PEM private key of RTPMANAGER_TLS_CERT.
    #[arg(long, env = "RTPMANAGER_TLS_KEY", value_name = "RTPMANAGER_TLS_KEY")]
    pub rtpmanager_tls_key: Option<PathBuf>,

    /// Embedded media: addresses written into SDP, one per BIND address
    /// (default: each BIND address, or the routed one for a wildcard).
    #[arg(
        long,
        env = "RTP_ADVERTISE_ADDR",
        value_name = "RTP_ADVERTISE_ADDR",
        value_delimiter = ','
    )]
    pub rtp_advertise_addr: Vec<IpAddr>,

    /// Embedded media: lowest RTP port.
    #[arg(
        long,
        env = "RTP_PORT_MIN",
        value_name = "RTP_PORT_MIN",
        default_value_t = 10000
    )]
    pub rtp_port_min: u16,

    /// Embedded media: highest RTP port.
    #[arg(
        long,
        env = "RTP_PORT_MAX",
        value_name = "RTP_PORT_MAX",
        default_value_t = 19999
    )]
    pub rtp_port_max: u16,

    /// Embedded media: directory of the WAV files `play_audio` plays.
    #[arg(
        long,
        env = "AUDIO_PATH",
        value_name = "AUDIO_PATH",
        default_value = "./audio"
    )]
    pub audio_path: PathBuf,

    /// Embedded media: where recordings go (default DATA_DIR/recordings).
    #[arg(long, env = "RECORD_PATH", value_name = "RECORD_PATH")]
    pub record_path: Option<PathBuf>,

    /// Seconds without RTP from a leg before its call is ended.
    #[arg(
        long,
        env = "RTP_TIMEOUT",
        value_name = "RTP_TIMEOUT",
        default_value_t = 60
    )]
    pub rtp_timeout: u64,

    /// Embedded media: seconds a session whose leg holds the call lives
    /// without RTP before the engine ends it (others: 2×RTP_TIMEOUT).
    #[arg(
        long,
        env = "RTP_HOLD_TIMEOUT",
        value_name = "RTP_HOLD_TIMEOUT",
        default_value_t = 3600
    )]
    pub rtp_hold_timeout: u64,

    /// Embedded media: where a leg's RTP may be learned from besides its
    /// SDP's exact address: `sdp-ip` or `any` (see the RTP manager's).
    #[arg(
        long,
        env = "RTP_LEARN_FROM",
        value_name = "RTP_LEARN_FROM",
        default_value = "sdp-ip",
        value_parser = switchboard_rtpmanager::config::parse_learn_from
    )]
    pub rtp_learn_from: switchboard_media::learning::Policy,

    /// Requests per second one source (an IPv4 address, an IPv6 /64) may
    /// start (ACKs and responses are never limited); over it: 503 with
    /// Retry-After, over twice it: silence. 0: no limit.
    #[arg(
        long,
        env = "SIP_RATE_PER_IP",
        value_name = "SIP_RATE_PER_IP",
        default_value_t = 100
    )]
    pub sip_rate_per_ip: u32,

    /// Requests one source may start at once before SIP_RATE_PER_IP applies.
    #[arg(
        long,
        env = "SIP_RATE_BURST",
        value_name = "SIP_RATE_BURST",
        default_value_t = 400
    )]
    pub sip_rate_burst: u32,

    /// Most live SIP server transactions (answered ones kept for
    /// retransmissions included); beyond it new requests get 503. 0: no cap.
    #[arg(
        long,
        env = "MAX_TRANSACTIONS",
        value_name = "MAX_TRANSACTIONS",
        default_value_t = 200_000
    )]
    pub max_transactions: usize,

    /// Most simultaneous SIP TCP connections (TLS connections count too).
    #[arg(
        long,
        env = "TCP_MAX_CONNECTIONS",
        value_name = "TCP_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub tcp_max_connections: usize,

    /// Most simultaneous inbound TCP connections from one source (an IPv4
    /// address, an IPv6 /64), TLS connections included. 0: no per-source cap.
    #[arg(
        long,
        env = "TCP_MAX_PER_IP",
        value_name = "TCP_MAX_PER_IP",
        default_value_t = 256
    )]
    pub tcp_max_per_ip: usize,

    /// Seconds an accepted TCP connection may stay without sending a
    /// well-formed SIP message. 0: such connections get the long idle timeout.
    #[arg(
        long,
        env = "TCP_IDLE_NEW",
        value_name = "TCP_IDLE_NEW",
        default_value_t = 20
    )]
    pub tcp_idle_new: u64,

    /// Seconds a SIP message may take to arrive over TCP once its first
    /// byte has. 0: no deadline.
    #[arg(
        long,
        env = "TCP_MESSAGE_TIMEOUT",
        value_name = "TCP_MESSAGE_TIMEOUT",
        default_value_t = 10
    )]
    pub tcp_message_timeout: u64,

    /// Seconds an outbound TCP connect may take.
    #[arg(
        long,
        env = "TCP_CONNECT_TIMEOUT",
        value_name = "TCP_CONNECT_TIMEOUT",
        default_value_t = 5
    )]
    pub tcp_connect_timeout: u64,

    /// What a blocked source gets: `403` (a response) or `drop` (silence).
    #[arg(long, env = "AUTH_BLOCK_ACTION", value_name = "AUTH_BLOCK_ACTION", default_value = "403", value_parser = ["403", "drop"])]
    pub auth_block_action: String,

    /// Postgres, Redis, NATS and CLUSTER_SECRET (`config/cluster.rs`).
    #[command(flatten)]
    pub cluster: ClusterConfig,

    /// SIP over TLS (`config/tls.rs`).
    #[command(flatten)]
    pub tls: TlsConfig,

    /// Bindings of closed connections (`config/flows.rs`).
    #[command(flatten)]
    pub flows: FlowConfig,

    /// HTTPS on API_PORT (`config/api_tls.rs`).
    #[command(flatten)]
    pub api_tls: ApiTlsConfig,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::parse(s.trim())
        .map_err(|_| format!("unknown digest algorithm {s:?} (use MD5 or SHA-256)"))
}

impl Config {
    /// Cross-field checks clap cannot express.
    ///
    /// # Errors
    /// A message naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.bind.is_empty() {
            return Err("BIND: at least one address is required".into());
        }
        if self.auth_algorithms.is_empty() {
            return Err("AUTH_ALGORITHMS: at least one algorithm is required".into());
        }
        if self.min_expires > self.max_expires {
            return Err(format!(
                "MIN_EXPIRES ({}) is larger than MAX_EXPIRES ({})",
                self.min_expires, self.max_expires
            ));
        }
        if self.max_contacts == 0 {
            return Err("MAX_CONTACTS: must be at least 1".into());
        }
        if self.nonce_ttl == 0 {
            return Err("NONCE_TTL: must be at least 1 second".into());
        }
        if self.rtp_port_min > self.rtp_port_max {
            return Err(format!(
                "RTP_PORT_MIN ({}) is above RTP_PORT_MAX ({})",
                self.rtp_port_min, self.rtp_port_max
            ));
        }
        if self.rtp_timeout == 0 {
            return Err("RTP_TIMEOUT: must be at least 1 second".into());
        }
        if self.rtp_hold_timeout == 0 {
            return Err("RTP_HOLD_TIMEOUT: must be at least 1 second".into());
        }
        for a in &self.rtpmanager_addrs {
            crate::media::parse_member(a).map_err(|e| format!("RTPMANAGER_ADDRS: {e}"))?;
        }
        if let Some(s) = &self.rtpmanager_service {
            if !self.rtpmanager_addrs.is_empty() {
                return Err(
                    "RTPMANAGER_SERVICE and RTPMANAGER_ADDRS are both set: the RTP \
                     managers come either from a Kubernetes Service or from a fixed list; \
                     unset one of them"
                        .into(),
                );
            }
            crate::media::discovery::parse_service(s)
                .map_err(|e| format!("RTPMANAGER_SERVICE: {e}"))?;
        }
        if let Some(t) = &self.rtpmanager_token {
            switchboard_rtpmanager::security::validate_token("RTPMANAGER_TOKEN", t)?;
        }
        match (
            &self.rtpmanager_tls_ca,
            &self.rtpmanager_tls_cert,
            &self.rtpmanager_tls_key,
        ) {
            (_, Some(_), None) => {
                return Err("RTPMANAGER_TLS_KEY: needed with RTPMANAGER_TLS_CERT".into());
            }
            (_, None, Some(_)) => {
                return Err("RTPMANAGER_TLS_CERT: needed with RTPMANAGER_TLS_KEY".into());
            }
            (None, Some(_), Some(_)) => {
                return Err("RTPMANAGER_TLS_CA: needed with RTPMANAGER_TLS_CERT".into());
            }
            _ => {}
        }
        if self.sip_rate_per_ip > 0 && self.sip_rate_burst == 0 {
            return Err("SIP_RATE_BURST: must be at least 1 when SIP_RATE_PER_IP is set".into());
        }
        if self.tcp_max_connections == 0 {
            return Err("TCP_MAX_CONNECTIONS: must be at least 1".into());
        }
        if self.tcp_connect_timeout == 0 {
            return Err("TCP_CONNECT_TIMEOUT: must be at least 1 second".into());
        }
        if self.realm.is_empty() || self.realm.contains('"') {
            return Err("REALM: must be non-empty and contain no quote".into());
        }
        self.cluster.validate()?;
        self.tls.validate()?;
        self.api_tls.validate()?;
        if self.cluster.redis_addr.is_some()
            && self.cluster.cluster_addr.is_none()
            && self.bind.iter().all(IpAddr::is_unspecified)
        {
            return Err(
                "CLUSTER_ADDR: required with REDIS_ADDR when BIND is a wildcard \
                 (the ip:port other replicas reach this one's SIP on)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Test and embedding defaults: loopback, ephemeral ports, a given data dir.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut c = Config::parse_from(["switchboard-signaling"]);
        c.bind = vec![IpAddr::from([127, 0, 0, 1])];
        c.port = 0;
        c.api_bind = IpAddr::from([127, 0, 0, 1]);
        c.api_port = 0;
        c.api_token = Some("test-token".into());
        c.tls.tls_port = 0;
        c.dialplan_path = data_dir.join("dialplan.json");
        c.trunks_path = data_dir.join("trunks.json");
        c.audio_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../audio");
        c.data_dir = data_dir;
        c
    }

    /// The node name: NODE_NAME, else the host name.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "switchboard".into())
        })
    }

    pub fn nonce_ttl(&self) -> Duration {
        Duration::from_secs(self.nonce_ttl)
    }

    /// What requests may start: SIP_RATE_PER_IP, SIP_RATE_BURST,
    /// MAX_TRANSACTIONS.
    pub fn sip_limits(&self) -> Limits {
        Limits {
            rate: (self.sip_rate_per_ip > 0).then_some(Rate {
                per_second: self.sip_rate_per_ip,
                burst: self.sip_rate_burst,
            }),
            max_transactions: self.max_transactions,
        }
    }

    /// The SIP transports: BIND, PORT, the TCP_* bounds, the TLS
    /// handshake deadline and the WebSocket listeners (the TLS
    /// certificates are read at start, see `crate::tls`).
    pub fn transport(&self) -> TransportConfig {
        TransportConfig {
            addrs: self.bind.clone(),
            port: self.port,
            max_connections: self.tcp_max_connections,
            max_per_source: self.tcp_max_per_ip,
            idle_new: Duration::from_secs(self.tcp_idle_new),
            message_timeout: Duration::from_secs(self.tcp_message_timeout),
            connect_timeout: Duration::from_secs(self.tcp_connect_timeout),
            handshake_timeout: self.tls.handshake_timeout(),
            // an invalid WS_ALLOWED_ORIGINS stopped start-up in validate()
            ws: self.tls.ws_setup().ok().flatten(),
            ..TransportConfig::default()
        }
    }
}

fn parse_session_expires(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Ok(0),
        Ok(v) if v >= 90 => Ok(v),
        _ => Err("0 (off) or at least 90 seconds (RFC 4028)".into()),
    }
}

fn parse_limit_response(s: &str) -> Result<u16, String> {
    match s {
        "503" => Ok(503),
        "486" => Ok(486),
        _ => Err("must be 503 or 486".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings `args` give, validated as at start-up; the error as
    /// the user would read it. Shared by the config modules' tests.
    pub(crate) fn parse(args: &[&str]) -> Result<Config, String> {
        let c = Config::try_parse_from([&["switchboard-signaling"], args].concat())
            .map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn limit_settings() {
        let c = parse(&[]).expect("defaults are valid");
        let limits = c.sip_limits();
        assert_eq!(
            limits.rate,
            Some(Rate {
                per_second: 100,
                burst: 400
            })
        );
        assert_eq!(limits.max_transactions, 200_000);
        let t = c.transport();
        assert_eq!(t.max_per_source, 256);
        assert_eq!(t.idle_new, Duration::from_secs(20));
        assert_eq!(t.message_timeout, Duration::from_secs(10));
        assert_eq!(t.connect_timeout, Duration::from_secs(5));

        let off = parse(&["--sip-rate-per-ip", "0", "--max-transactions", "0"]).unwrap();
        assert_eq!(off.sip_limits().rate, None);
        assert_eq!(off.sip_limits().max_transactions, 0);

        for (args, names) in [
            (&["--sip-rate-burst", "0"][..], "SIP_RATE_BURST"),
            (&["--tcp-connect-timeout", "0"], "TCP_CONNECT_TIMEOUT"),
            (&["--tcp-max-connections", "0"], "TCP_MAX_CONNECTIONS"),
            (&["--tcp-max-per-ip=-1"], "TCP_MAX_PER_IP"),
            (&["--sip-rate-per-ip", "fast"], "SIP_RATE_PER_IP"),
        ] {
            let err = parse(args).expect_err("refused");
            assert!(err.contains(names), "{args:?}: {err}");
        }
    }

    #[test]
    fn rtpmanager_discovery_settings() {
        use crate::media::discovery::PortMode;
        let c = parse(&["--rtpmanager-service", "switchboard/rtpmanager"]).unwrap();
        assert_eq!(c.rtpmanager_ports, PortMode::Ordinal);
        assert_eq!(c.rtpmanager_grpc_port, 9090);
        let c = parse(&[
            "--rtpmanager-service",
            "rtpmanager",
            "--rtpmanager-ports",
            "slice",
            "--rtpmanager-grpc-port",
            "7000",
        ])
        .unwrap();
        assert_eq!(c.rtpmanager_ports, PortMode::Slice);
        assert_eq!(c.rtpmanager_grpc_port, 7000);
        for (args, names) in [
            (
                &[
                    "--rtpmanager-service",
                    "switchboard/rtpmanager",
                    "--rtpmanager-addrs",
                    "127.0.0.1:9090",
                ][..],
                "RTPMANAGER_SERVICE and RTPMANAGER_ADDRS",
            ),
            (&["--rtpmanager-service", "a/b/c"], "RTPMANAGER_SERVICE"),
            (
                &["--rtpmanager-service", "Switchboard/x"],
                "RTPMANAGER_SERVICE",
            ),
            (&["--rtpmanager-service", "ns/"], "RTPMANAGER_SERVICE"),
            (&["--rtpmanager-ports", "random"], "RTPMANAGER_PORTS"),
            (&["--rtpmanager-grpc-port", "0"], "RTPMANAGER_GRPC_PORT"),
        ] {
            let err = parse(args).expect_err("refused");
            assert!(err.contains(names), "{args:?}: {err}");
        }
    }
}
