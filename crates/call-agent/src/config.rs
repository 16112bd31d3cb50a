//! The call agent's settings: every one an environment variable (the names
//! switchboard-operator gives a Job's container, sipstuff's for the SIP
//! ones) and a flag of the same meaning (sipstuff's `call` flags).
//!
//! Everything is read as text and checked here into [`Settings`], so an
//! empty variable (a Secret key that is there but blank) counts as unset
//! and every refusal names the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use switchboard_sip_stack::target::TransportKind;

/// `switchboard-call`: places one outbound call and prints its report.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "switchboard-call", version, about)]
pub struct Config {
    /// Who to call: a number or user (`1002`, `+4912345678`), or a SIP URI.
    #[arg(long, env = "CALL_DEST")]
    pub dest: Option<String>,
    /// Text to speak (TTS); exactly one of --text and --wav.
    #[arg(long, env = "CALL_TEXT")]
    pub text: Option<String>,
    /// WAV file to play (any rate, channels, 8–32-bit PCM or float).
    #[arg(long, env = "CALL_WAV")]
    pub wav: Option<String>,
    /// Seconds to wait for the answer, 1–600 (60).
    #[arg(long, env = "CALL_TIMEOUT")]
    pub timeout: Option<String>,
    /// Seconds to wait after the answer before anything else, 0–30.
    #[arg(long = "pre-delay", env = "CALL_PRE_DELAY")]
    pub pre_delay: Option<String>,
    /// Seconds between repetitions, 0–30.
    #[arg(long = "inter-delay", env = "CALL_INTER_DELAY")]
    pub inter_delay: Option<String>,
    /// Seconds to wait after the last repetition before hanging up, 0–30.
    #[arg(long = "post-delay", env = "CALL_POST_DELAY")]
    pub post_delay: Option<String>,
    /// Seconds of remote silence to wait for before playing, 0–30.
    #[arg(long = "wait-for-silence", env = "CALL_WAIT_FOR_SILENCE")]
    pub wait_for_silence: Option<String>,
    /// How many times to play, 1–100 (1).
    #[arg(long, env = "CALL_REPEAT")]
    pub repeat: Option<String>,
    /// Piper voice (model file stem under the TTS data directory).
    #[arg(long = "piper-model", env = "TTS_MODEL")]
    pub tts_model: Option<String>,
    /// TTS output rate (0: the engine's own), 0–48000.
    #[arg(long = "tts-sample-rate", env = "TTS_SAMPLE_RATE")]
    pub tts_sample_rate: Option<String>,
    /// Where Piper voices are (default: PIPER_DATA_DIR).
    #[arg(long = "tts-data-dir", env = "TTS_DATA_DIR")]
    pub tts_data_dir: Option<String>,
    /// Whisper model file (e.g. `ggml-tiny.bin`) under the STT data directory.
    #[arg(long = "stt-model", env = "STT_MODEL")]
    pub stt_model: Option<String>,
    /// Transcription language (`en`, `de`, …).
    #[arg(long = "stt-language", env = "STT_LANGUAGE")]
    pub stt_language: Option<String>,
    /// Where Whisper models are (default: WHISPER_DATA_DIR).
    #[arg(long = "stt-data-dir", env = "STT_DATA_DIR")]
    pub stt_data_dir: Option<String>,
    /// Record the remote party to this WAV (relative: under RECORDING_DIR).
    #[arg(long, env = "CALL_RECORD")]
    pub record: Option<String>,
    /// Transcribe the recording into the report (needs --record).
    #[arg(long, env = "CALL_TRANSCRIBE", num_args = 0..=1, default_missing_value = "true")]
    pub transcribe: Option<String>,
    /// Debug logging on stderr.
    #[arg(long, env = "CALL_VERBOSE", num_args = 0..=1, default_missing_value = "true")]
    pub verbose: Option<String>,
    /// The SIP server (registrar and proxy): `host` or `host:port`.
    #[arg(long = "sip-server", env = "SIP_SERVER")]
    pub sip_server: Option<String>,
    #[arg(long = "sip-port", env = "SIP_PORT")]
    pub sip_port: Option<String>,
    #[arg(long = "sip-user", env = "SIP_USER")]
    pub sip_user: Option<String>,
    #[arg(long = "sip-password", env = "SIP_PASSWORD", hide_env_values = true)]
    pub sip_password: Option<String>,
    /// udp, tcp or tls (udp).
    #[arg(long = "sip-transport", env = "SIP_TRANSPORT")]
    pub sip_transport: Option<String>,
    /// disabled, optional or mandatory (disabled).
    #[arg(long = "sip-srtp", env = "SIP_SRTP")]
    pub sip_srtp: Option<String>,
    /// Verify the server's TLS certificate (true).
    #[arg(long = "sip-tls-verify-server", env = "SIP_TLS_VERIFY_SERVER")]
    pub sip_tls_verify: Option<String>,
    /// Extra trust anchors (PEM) for the server's certificate.
    #[arg(long = "sip-tls-ca-file", env = "SIP_TLS_CA_FILE")]
    pub sip_tls_ca_file: Option<String>,
    /// STUN servers (`host:port`, comma-separated) to learn our public address.
    #[arg(long = "stun-servers", env = "SIP_STUN_SERVERS")]
    pub stun_servers: Option<String>,
    /// ICE (RFC 8445) for the media: candidates in the offer, checks when
    /// the answer does ICE (false).
    #[arg(long = "ice-enabled", env = "SIP_ICE_ENABLED")]
    pub ice_enabled: Option<String>,
    #[arg(long = "turn-server", env = "SIP_TURN_SERVER")]
    pub turn_server: Option<String>,
    #[arg(long = "turn-enabled", env = "SIP_TURN_ENABLED")]
    pub turn_enabled: Option<String>,
    #[arg(long = "turn-username", env = "SIP_TURN_USERNAME")]
    pub turn_username: Option<String>,
    #[arg(
        long = "turn-password",
        env = "SIP_TURN_PASSWORD",
        hide_env_values = true
    )]
    pub turn_password: Option<String>,
    #[arg(long = "turn-transport", env = "SIP_TURN_TRANSPORT")]
    pub turn_transport: Option<String>,
    /// Seconds between CRLF keep-alives on the SIP flow, 0–600 (0: none).
    #[arg(long = "keepalive-sec", env = "SIP_KEEPALIVE_SEC")]
    pub keepalive_sec: Option<String>,
    /// The address to advertise in SDP (and the Contact) instead of ours.
    #[arg(long = "public-address", env = "SIP_PUBLIC_ADDRESS")]
    pub public_address: Option<String>,
    /// Where volumes put Piper voices, Whisper models and recordings.
    #[arg(long = "piper-data-dir", env = "PIPER_DATA_DIR", hide = true)]
    pub piper_data_dir: Option<String>,
    #[arg(long = "whisper-data-dir", env = "WHISPER_DATA_DIR", hide = true)]
    pub whisper_data_dir: Option<String>,
    #[arg(long = "recording-dir", env = "RECORDING_DIR", hide = true)]
    pub recording_dir: Option<String>,
}

/// SRTP for the call's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpMode {
    /// Plain RTP/AVP.
    Disabled,
    /// RTP/SAVP first; a 488 answer gets the plain offer.
    Optional,
    /// RTP/SAVP only: a 488 ends the call as rejected.
    Mandatory,
}

/// What to play.
#[derive(Debug, Clone, PartialEq)]
pub enum Audio {
    Text(String),
    Wav(PathBuf),
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dest: String,
    pub audio: Audio,
    pub timeout: Duration,
    pub pre_delay: Duration,
    pub inter_delay: Duration,
    pub post_delay: Duration,
    pub wait_for_silence: Option<Duration>,
    pub repeat: u32,
    pub tts_model: Option<String>,
    pub tts_sample_rate: u32,
    pub tts_data_dir: Option<PathBuf>,
    pub stt_model: Option<String>,
    pub stt_language: Option<String>,
    pub stt_data_dir: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub transcribe: bool,
    pub verbose: bool,
    /// `host[:port]` as given (a name is resolved when the call starts).
    pub server_host: String,
    pub server_port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub transport: TransportKind,
    pub srtp: SrtpMode,
    pub tls_verify: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub stun_servers: Vec<String>,
    pub ice: bool,
    /// TURN relay for the media (`SIP_TURN_SERVER` `host:port`, UDP).
    pub turn: Option<Turn>,
    pub keepalive: Option<Duration>,
    pub public_address: Option<std::net::IpAddr>,
}

/// A TURN server and its long-term credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub server: String,
    pub username: String,
    pub password: String,
}

/// A refused setting: the variable and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn set(v: Option<&String>) -> Option<&str> {
    v.map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn err<T>(var: &str, why: impl std::fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{var}: {why}")))
}

fn seconds(var: &str, v: Option<&String>, max: f64) -> Result<Option<Duration>, ConfigError> {
    let Some(s) = set(v) else { return Ok(None) };
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=max).contains(&x) => Ok(Some(Duration::from_secs_f64(x))),
        _ => err(
            var,
            format!("{s:?} is not a number of seconds in 0..={max}"),
        ),
    }
}

fn integer(
    var: &str,
    v: Option<&String>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    let Some(s) = set(v) else { return Ok(None) };
    match s.parse::<u64>() {
        Ok(x) if range.contains(&x) => Ok(Some(x)),
        _ => err(
            var,
            format!(
                "{s:?} is not an integer in {}..={}",
                range.start(),
                range.end()
            ),
        ),
    }
}

fn boolean(var: &str, v: Option<&String>, default: bool) -> Result<bool, ConfigError> {
    match set(v).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => err(var, format!("{other:?} is not true or false")),
    }
}

impl Config {
    /// Checks everything into [`Settings`].
    ///
    /// # Errors
    /// The first refused setting, naming its variable.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let Some(dest) = set(self.dest.as_ref()) else {
            return err("CALL_DEST", "required (who to call)");
        };
        if dest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
        {
            return err(
                "CALL_DEST",
                format!("{dest:?} is not a number, user or SIP URI"),
            );
        }
        let audio = match (set(self.text.as_ref()), set(self.wav.as_ref())) {
            (Some(t), None) => Audio::Text(t.to_owned()),
            (None, Some(w)) => Audio::Wav(PathBuf::from(w)),
            (Some(_), Some(_)) => {
                return err("CALL_TEXT/CALL_WAV", "exactly one of them, not both");
            }
            (None, None) => return err("CALL_TEXT/CALL_WAV", "exactly one of them is required"),
        };
        let transport = match set(self.sip_transport.as_ref())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("udp") => TransportKind::Udp,
            Some("tcp") => TransportKind::Tcp,
            Some("tls") => TransportKind::Tls,
            Some(o) => return err("SIP_TRANSPORT", format!("{o:?} is not udp, tcp or tls")),
        };
        let srtp = match set(self.sip_srtp.as_ref())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("disabled") => SrtpMode::Disabled,
            Some("optional") => SrtpMode::Optional,
            Some("mandatory") => SrtpMode::Mandatory,
            Some(o) => {
                return err(
                    "SIP_SRTP",
                    format!("{o:?} is not disabled, optional or mandatory"),
                );
            }
        };
        let (server_host, port_in_host) = server(set(self.sip_server.as_ref()), dest)?;
        let default_port = if transport == TransportKind::Tls {
            5061
        } else {
            5060
        };
        let server_port = match integer("SIP_PORT", self.sip_port.as_ref(), 1..=65535)? {
            Some(p) => u16::try_from(p).unwrap_or(default_port),
            None => port_in_host.unwrap_or(default_port),
        };
        let transcribe = boolean("CALL_TRANSCRIBE", self.transcribe.as_ref(), false)?;
        let record = set(self.record.as_ref()).map(|r| {
            let p = PathBuf::from(r);
            match set(self.recording_dir.as_ref()) {
                Some(dir) if p.is_relative() => PathBuf::from(dir).join(p),
                _ => p,
            }
        });
        if transcribe && record.is_none() {
            return err(
                "CALL_TRANSCRIBE",
                "needs CALL_RECORD (the recording is what is transcribed)",
            );
        }
        let user = set(self.sip_user.as_ref()).map(str::to_owned);
        let password = self.sip_password.clone().filter(|p| !p.is_empty());
        let public_address = match set(self.public_address.as_ref()) {
            None => None,
            Some(a) => match a.parse() {
                Ok(ip) => Some(ip),
                Err(_) => return err("SIP_PUBLIC_ADDRESS", format!("{a:?} is not an IP address")),
            },
        };
        let turn_enabled = boolean("SIP_TURN_ENABLED", self.turn_enabled.as_ref(), false)?;
        let dir = |primary: Option<&String>, fallback: Option<&String>| {
            set(primary).or(set(fallback)).map(PathBuf::from)
        };
        Ok(Settings {
            dest: dest.to_owned(),
            audio,
            timeout: Duration::from_secs(
                integer("CALL_TIMEOUT", self.timeout.as_ref(), 1..=600)?.unwrap_or(60),
            ),
            pre_delay: seconds("CALL_PRE_DELAY", self.pre_delay.as_ref(), 30.0)?
                .unwrap_or_default(),
            inter_delay: seconds("CALL_INTER_DELAY", self.inter_delay.as_ref(), 30.0)?
                .unwrap_or_default(),
            post_delay: seconds("CALL_POST_DELAY", self.post_delay.as_ref(), 30.0)?
                .unwrap_or_default(),
            wait_for_silence: seconds(
                "CALL_WAIT_FOR_SILENCE",
                self.wait_for_silence.as_ref(),
                30.0,
            )?
            .filter(|d| !d.is_zero()),
            repeat: u32::try_from(
                integer("CALL_REPEAT", self.repeat.as_ref(), 1..=100)?.unwrap_or(1),
            )
            .unwrap_or(1),
            tts_model: set(self.tts_model.as_ref()).map(str::to_owned),
            tts_sample_rate: u32::try_from(
                integer("TTS_SAMPLE_RATE", self.tts_sample_rate.as_ref(), 0..=48_000)?.unwrap_or(0),
            )
            .unwrap_or(0),
            tts_data_dir: dir(self.tts_data_dir.as_ref(), self.piper_data_dir.as_ref()),
            stt_model: set(self.stt_model.as_ref()).map(str::to_owned),
            stt_language: set(self.stt_language.as_ref()).map(str::to_owned),
            stt_data_dir: dir(self.stt_data_dir.as_ref(), self.whisper_data_dir.as_ref()),
            record,
            transcribe,
            verbose: boolean("CALL_VERBOSE", self.verbose.as_ref(), false)?,
            server_host,
            server_port,
            user,
            password,
            transport,
            srtp,
            tls_verify: boolean("SIP_TLS_VERIFY_SERVER", self.sip_tls_verify.as_ref(), true)?,
            tls_ca_file: set(self.sip_tls_ca_file.as_ref()).map(PathBuf::from),
            stun_servers: set(self.stun_servers.as_ref())
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            ice: boolean("SIP_ICE_ENABLED", self.ice_enabled.as_ref(), false)?,
            turn: self.turn(turn_enabled)?,
            keepalive: integer("SIP_KEEPALIVE_SEC", self.keepalive_sec.as_ref(), 0..=600)?
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            public_address,
        })
    }
}

impl Config {
    /// The TURN server, used unless SIP_TURN_ENABLED says false; UDP only.
    fn turn(&self, enabled: bool) -> Result<Option<Turn>, ConfigError> {
        let Some(server) = set(self.turn_server.as_ref()) else {
            return Ok(None);
        };
        if !enabled && set(self.turn_enabled.as_ref()).is_some() {
            return Ok(None);
        }
        match set(self.turn_transport.as_ref())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("udp") => {}
            Some(o) => {
                return err(
                    "SIP_TURN_TRANSPORT",
                    format!("{o:?}: only udp is supported"),
                );
            }
        }
        let server = server.trim_start_matches("turn:").to_owned();
        if !server.contains(':') {
            return err("SIP_TURN_SERVER", format!("{server:?} is not host:port"));
        }
        Ok(Some(Turn {
            server,
            username: set(self.turn_username.as_ref())
                .unwrap_or_default()
                .to_owned(),
            password: self.turn_password.clone().unwrap_or_default(),
        }))
    }
}

/// The server's host and any port in it: SIP_SERVER, else the host of a
/// SIP URI destination.
fn server(given: Option<&str>, dest: &str) -> Result<(String, Option<u16>), ConfigError> {
    let (var, text) = match given {
        Some(s) => ("SIP_SERVER", s.to_owned()),
        None => match dest
            .strip_prefix("sip:")
            .or_else(|| dest.strip_prefix("sips:"))
        {
            Some(rest) => match rest.split_once('@') {
                Some((_, host)) => (
                    "CALL_DEST",
                    host.split([';', '?']).next().unwrap_or("").to_owned(),
                ),
                None => {
                    return err(
                        "SIP_SERVER",
                        "required (or a destination URI naming the host)",
                    );
                }
            },
            None => {
                return err(
                    "SIP_SERVER",
                    "required (or a destination URI naming the host)",
                );
            }
        },
    };
    let text = text.trim_start_matches("sip:").to_owned();
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok((bracket(sa.ip()), Some(sa.port())));
    }
    if let Ok(ip) = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok((bracket(ip), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h.to_owned(), Some(p)),
            _ => return err(var, format!("{text:?}: bad port")),
        },
        None => (text.clone(), None),
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !ok {
        return err(var, format!("{text:?} is not a host name or address"));
    }
    Ok((host, port))
}

fn bracket(ip: std::net::IpAddr) -> String {
    if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

#[cfg(test)]
mod tests;
