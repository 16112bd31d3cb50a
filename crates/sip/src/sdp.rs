//! SDP (RFC 4566) for media anchoring: the RTP manager parses the peer's
//! offer or answer into a [`Description`] and writes its own offer or answer
//! (RFC 3264) pointing at its own address and port.
//!
//! Only audio is anchored: PCMU (PT 0), PCMA (PT 8) and telephone-event
//! (RFC 4733). Every other m= line is declined in answers with port 0,
//! keeping the m= line count and order (RFC 3264 §6).
//!
//! The parser is our own rather than the `sdp` crate's, whose state machine
//! rejects SDP that phones really send: a missing `t=`, `c=` after `t=`,
//! `a=` lines before `c=`, unknown line types. Ours is tolerant: LF or CRLF
//! line ends, blank lines, any line order within a section, unknown line
//! types and unknown or malformed attributes are ignored. It only fails on
//! what the RTP manager cannot work around: a non-UTF-8 or empty body, a line
//! not of the form `x=...`, a bad `v=`, `o=`, `m=` or used `c=` line, no audio
//! m= line, or no connection address for an active audio stream.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

pub mod crypto;
pub mod webrtc;

/// The media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`, the default.
    SendRecv,
    /// `a=sendonly`, usually a peer putting the call on hold.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The direction seen from the other side: sendonly and recvonly swap,
    /// the others stay (what an answer to this direction carries).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// The attribute name, e.g. `sendrecv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name case-insensitively.
    fn from_attr(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.as_str()))
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An audio payload format offered on the audio m= line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioCodec {
    /// The RTP payload type, as the offerer numbered it.
    pub payload_type: u8,
    /// The encoding name in upper case, e.g. `PCMU` (encoding names are
    /// case-insensitive, RFC 4855 §3).
    pub name: String,
    /// The RTP clock rate, e.g. 8000.
    pub clock_rate: u32,
}

/// One m= line as written by the peer.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaLine {
    /// The media type: `audio`, `video`, `application`, ...
    pub media: String,
    /// The transport port (a `/<count>` suffix is dropped); 0 = declined.
    pub port: u16,
    /// The transport protocol, e.g. `RTP/AVP`.
    pub proto: String,
    /// The format list (payload types for RTP).
    pub formats: Vec<String>,
    /// Its `a=mid` (RFC 8843), repeated when an answer declines the line.
    pub mid: Option<String>,
}

/// What the RTP manager needs from a peer's SDP.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// `o=` session id (0 when `o=` is missing).
    pub origin_session_id: u64,
    /// `o=` session version (0 when `o=` is missing); a re-INVITE with the
    /// same version carries no change.
    pub origin_version: u64,
    /// The audio m= line's `c=` address if present, else the session-level
    /// one; `None` only when the audio stream is declined. `0.0.0.0` is kept
    /// as written (RFC 2543 hold): send nothing there.
    pub connection: Option<IpAddr>,
    /// Port of the first audio m= line (0 = declined).
    pub audio_port: u16,
    /// Index of the first audio m= line among all m= lines (always `Some`
    /// from [`parse`]).
    pub audio_index: Option<usize>,
    /// Audio codecs in offer order, telephone-event excluded. Static payload
    /// types (RFC 3551, e.g. 0 and 8) are known without `a=rtpmap`; dynamic
    /// ones without `a=rtpmap` are skipped.
    pub codecs: Vec<AudioCodec>,
    /// The payload type of `telephone-event/8000` (RFC 4733), if offered.
    pub telephone_event: Option<u8>,
    /// The audio m= line's direction attribute, else the session-level one,
    /// else sendrecv. A sendrecv stream with an unspecified `c=` address
    /// (`0.0.0.0`, the RFC 2543 hold) is reported as [`Direction::SendOnly`],
    /// as most B2BUAs treat it (RFC 3264 §8.4).
    pub direction: Direction,
    /// `a=ptime` in milliseconds (media level, else session level).
    pub ptime: Option<u32>,
    /// `a=rtcp-mux` (RFC 5761) on the audio stream.
    pub rtcp_mux: bool,
    /// Every m= line, in order, for declining the non-audio ones.
    pub media: Vec<MediaLine>,
    /// The audio stream's `a=crypto` values (RFC 4568), unparsed; see
    /// [`crypto::choose`].
    pub crypto: Vec<String>,
    /// ICE and DTLS parameters of the audio stream (WebRTC); empty for a
    /// phone's SDP.
    pub webrtc: webrtc::Transport,
}

impl Description {
    /// Where to send the peer's RTP: `None` when the audio stream is declined
    /// or the address is unspecified (hold via `c=0.0.0.0`).
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        let ip = self.connection?;
        if self.audio_port == 0 || ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, self.audio_port))
    }

    /// The audio m= line's transport protocol (`RTP/AVP`, `RTP/SAVP`, ...).
    pub fn audio_proto(&self) -> &str {
        self.audio_index
            .and_then(|i| self.media.get(i))
            .map_or("RTP/AVP", |m| m.proto.as_str())
    }

    /// Whether the audio stream is SRTP keyed in SDP: `RTP/SAVP` (RFC 3711).
    pub fn is_savp(&self) -> bool {
        self.audio_proto().eq_ignore_ascii_case("RTP/SAVP")
    }
}

/// Why an SDP body was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// The body is not UTF-8 text.
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    /// The body has no lines.
    #[error("SDP body is empty")]
    Empty,
    /// A line we cannot read; the message names the line and the reason.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No `m=audio` line.
    #[error("SDP has no audio m= line")]
    NoAudio,
    /// The audio stream is active but has no `c=` at media or session level.
    #[error("SDP has no c= connection address for the audio stream")]
    NoConnection,
}

/// A `Malformed` error naming line `no` (1-based), its start and the reason.
fn malformed(no: usize, line: &str, why: &str) -> SdpError {
    let mut shown: String = line.chars().take(60).collect();
    if shown.len() < line.len() {
        shown.push_str("...");
    }
    SdpError::Malformed(format!("line {no} `{shown}`: {why}"))
}

/// The attributes gathered for the session level or one m= section.
#[derive(Default)]
struct Section<'a> {
    /// First `c=` value with its line number and full line, parsed lazily so
    /// a bad `c=` on a section we ignore cannot fail the call.
    connection: Option<(usize, &'a str, &'a str)>,
    direction: Option<Direction>,
    ptime: Option<u32>,
    rtcp_mux: bool,
    /// `a=crypto` values.
    crypto: Vec<&'a str>,
    /// `(pt, encoding name, clock rate)` from `a=rtpmap`.
    rtpmaps: Vec<(u8, &'a str, u32)>,
    /// ICE, DTLS, mid and BUNDLE attributes.
    webrtc: webrtc::Attrs<'a>,
}

impl<'a> Section<'a> {
    /// Records an `a=` value; unknown or malformed attributes are ignored
    /// (RFC 4566 §5.13).
    fn attribute(&mut self, value: &'a str) {
        let (name, val) = value.split_once(':').unwrap_or((value, ""));
        let name = name.trim();
        let val = val.trim();
        if let Some(d) = Direction::from_attr(name) {
            self.direction = Some(d);
        } else if name.eq_ignore_ascii_case("rtpmap") {
            if let Some(map) = parse_rtpmap(val) {
                self.rtpmaps.push(map);
            }
        } else if name.eq_ignore_ascii_case("ptime") {
            // Some phones write `20.0`; keep the whole milliseconds.
            let ms = val.split('.').next().unwrap_or("");
            if let Ok(ms) = ms.parse::<u32>() {
                self.ptime = Some(ms);
            }
        } else if name.eq_ignore_ascii_case("rtcp-mux") {
            self.rtcp_mux = true;
        } else if name.eq_ignore_ascii_case("crypto") && self.crypto.len() < 16 {
            // a few lines are plenty to choose from; more are ignored
            self.crypto.push(val);
        } else {
            self.webrtc.attribute(name, val);
        }
    }

    fn rtpmap(&self, pt: u8) -> Option<(&'a str, u32)> {
        self.rtpmaps
            .iter()
            .find(|(p, _, _)| *p == pt)
            .map(|&(_, name, rate)| (name, rate))
    }
}

/// `<pt> <name>/<rate>[/<channels>]`; a missing rate is taken as 8000.
fn parse_rtpmap(val: &str) -> Option<(u8, &str, u32)> {
    let (pt, enc) = val.split_once(|c: char| c.is_ascii_whitespace())?;
    let pt = pt.parse::<u8>().ok().filter(|pt| *pt < 128)?;
    let mut parts = enc.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let rate = match parts.next() {
        Some(r) => r.trim().parse::<u32>().ok()?,
        None => 8000,
    };
    Some((pt, name, rate))
}

/// The RFC 3551 static audio payload types: `(pt, name, clock rate)`.
const STATIC_AUDIO: &[(u8, &str, u32)] = &[
    (0, "PCMU", 8000),
    (3, "GSM", 8000),
    (4, "G723", 8000),
    (5, "DVI4", 8000),
    (6, "DVI4", 16000),
    (7, "LPC", 8000),
    (8, "PCMA", 8000),
    (9, "G722", 8000),
    (10, "L16", 44100),
    (11, "L16", 44100),
    (12, "QCELP", 8000),
    (13, "CN", 8000),
    (14, "MPA", 90000),
    (15, "G728", 8000),
    (16, "DVI4", 11025),
    (17, "DVI4", 22050),
    (18, "G729", 8000),
];

fn static_audio(pt: u8) -> Option<(&'static str, u32)> {
    STATIC_AUDIO
        .iter()
        .find(|(p, _, _)| *p == pt)
        .map(|&(_, name, rate)| (name, rate))
}

/// Parses a `c=` value (`IN IP4 <addr>[/ttl]` or `IN IP6 <addr>`).
fn parse_connection(no: usize, line: &str, value: &str) -> Result<IpAddr, SdpError> {
    let mut fields = value.split_whitespace();
    let (Some(net), Some(_addrtype), Some(addr)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(no, line, "expected `IN IP4|IP6 <address>`"));
    };
    if !net.eq_ignore_ascii_case("IN") {
        return Err(malformed(no, line, "network type is not IN"));
    }
    // Multicast TTL / address count, and brackets some IPv6 stacks add.
    let addr = addr.split('/').next().unwrap_or(addr);
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    addr.parse::<IpAddr>()
        .map_err(|_| malformed(no, line, "address is not an IP address"))
}

/// Parses an `m=` value: `<media> <port>[/<count>] <proto> <fmt>...`.
fn parse_media(no: usize, line: &str, value: &str) -> Result<MediaLine, SdpError> {
    let mut fields = value.split_whitespace();
    let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(
            no,
            line,
            "expected `<media> <port> <proto> <fmt>...`",
        ));
    };
    let port = port.split('/').next().unwrap_or(port);
    let port = port
        .parse::<u16>()
        .map_err(|_| malformed(no, line, "port is not a number 0-65535"))?;
    Ok(MediaLine {
        media: media.to_owned(),
        port,
        proto: proto.to_owned(),
        formats: fields.map(str::to_owned).collect(),
        mid: None,
    })
}

/// Parses `o=<user> <sess-id> <sess-version> ...` into id and version.
fn parse_origin(no: usize, line: &str, value: &str) -> Result<(u64, u64), SdpError> {
    let mut fields = value.split_whitespace().skip(1);
    let id = fields.next().and_then(|f| f.parse::<u64>().ok());
    let version = fields.next().and_then(|f| f.parse::<u64>().ok());
    match (id, version) {
        (Some(id), Some(version)) => Ok((id, version)),
        _ => Err(malformed(
            no,
            line,
            "session id and version must be numbers",
        )),
    }
}

/// Parses a peer's SDP offer or answer (see the module docs for what is
/// tolerated).
pub fn parse(body: &[u8]) -> Result<Description, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;

    let mut origin = None;
    let mut session = Section::default();
    let mut sections: Vec<(MediaLine, Section<'_>)> = Vec::new();
    let mut any_line = false;

    for (i, raw) in text.split('\n').enumerate() {
        let no = i + 1;
        let line = raw.trim_ascii();
        if line.is_empty() {
            continue;
        }
        any_line = true;
        let bytes = line.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
            return Err(malformed(no, line, "not a `<type>=<value>` line"));
        }
        // Both leading bytes are ASCII, so index 2 is a char boundary.
        let value = &line[2..];
        let current = match sections.last_mut() {
            Some((_, s)) => s,
            None => &mut session,
        };
        match bytes[0] {
            b'v' if value.trim() != "0" => {
                return Err(malformed(no, line, "unsupported SDP version"));
            }
            b'o' if origin.is_none() => origin = Some(parse_origin(no, line, value)?),
            b'c' if current.connection.is_none() => current.connection = Some((no, line, value)),
            b'a' => current.attribute(value),
            b'm' => sections.push((parse_media(no, line, value)?, Section::default())),
            // s=, t=, b=, i=, k=, ... and repeats carry nothing we use.
            _ => {}
        }
    }
    if !any_line {
        return Err(SdpError::Empty);
    }

    let audio_index = sections
        .iter()
        .position(|(m, _)| m.media.eq_ignore_ascii_case("audio"))
        .ok_or(SdpError::NoAudio)?;
    let (audio_line, audio) = &sections[audio_index];

    let connection = match audio.connection.or(session.connection) {
        Some((no, line, value)) => Some(parse_connection(no, line, value)?),
        None if audio_line.port == 0 => None,
        None => return Err(SdpError::NoConnection),
    };

    let mut codecs: Vec<AudioCodec> = Vec::new();
    let mut telephone_event = None;
    for fmt in &audio_line.formats {
        let Some(pt) = fmt.parse::<u8>().ok().filter(|pt| *pt < 128) else {
            continue;
        };
        let Some((name, clock_rate)) = audio
            .rtpmap(pt)
            .or_else(|| session.rtpmap(pt))
            .or_else(|| static_audio(pt))
        else {
            continue;
        };
        if name.eq_ignore_ascii_case("telephone-event") {
            if clock_rate == 8000 && telephone_event.is_none() {
                telephone_event = Some(pt);
            }
        } else if !codecs.iter().any(|c| c.payload_type == pt) {
            codecs.push(AudioCodec {
                payload_type: pt,
                name: name.to_ascii_uppercase(),
                clock_rate,
            });
        }
    }

    let mut direction = audio
        .direction
        .or(session.direction)
        .unwrap_or(Direction::SendRecv);
    // with ICE, `c=0.0.0.0` and port 9 only stand in for the candidates
    // (RFC 8839 §4.2.1.2): not a hold
    let ice = webrtc::is_dtls_proto(&audio_line.proto);
    if direction == Direction::SendRecv && !ice && connection.is_some_and(|ip| ip.is_unspecified())
    {
        direction = Direction::SendOnly;
    }

    let (origin_session_id, origin_version) = origin.unwrap_or((0, 0));
    let transport = webrtc::Transport::merge(&session.webrtc, &audio.webrtc);
    let crypto = audio.crypto.iter().map(|c| (*c).to_owned()).collect();
    let ptime = audio.ptime.or(session.ptime);
    let rtcp_mux = audio.rtcp_mux || session.rtcp_mux;
    Ok(Description {
        origin_session_id,
        origin_version,
        connection,
        audio_port: audio_line.port,
        audio_index: Some(audio_index),
        codecs,
        telephone_event,
        direction,
        ptime,
        rtcp_mux,
        crypto,
        webrtc: transport,
        media: sections
            .into_iter()
            .map(|(mut m, s)| {
                m.mid = s.webrtc.mid.map(|mid| {
                    mid.chars()
                        .filter(|c| c.is_ascii_graphic())
                        .take(64)
                        .collect()
                });
                m
            })
            .collect(),
    })
}

/// Our side of the media: what the RTP manager writes into its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// The RTP address, written in `o=` and `c=`.
    pub address: IpAddr,
    /// The RTP port (RTCP is on port + 1; no rtcp-mux).
    pub port: u16,
    /// `o=` session id, fixed for the call leg.
    pub session_id: u64,
    /// `o=` version, incremented on every changed SDP (RFC 3264 §8).
    pub version: u64,
}

/// Appends one line with its CRLF.
fn push_line(out: &mut String, args: fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
    out.push_str("\r\n");
}

/// Keeps an encoding name to token characters so it cannot break a line.
fn token(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '/')
        .collect()
}

/// `v=`, `o=`, `s=`, `c=`, `t=` for our address.
fn session_header(local: &LocalMedia) -> String {
    let ip = if local.address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    };
    let addr = local.address;
    let mut out = String::with_capacity(256);
    push_line(&mut out, format_args!("v=0"));
    push_line(
        &mut out,
        format_args!(
            "o=switchboard {} {} IN {ip} {addr}",
            local.session_id, local.version
        ),
    );
    push_line(&mut out, format_args!("s=switchboard"));
    push_line(&mut out, format_args!("c=IN {ip} {addr}"));
    push_line(&mut out, format_args!("t=0 0"));
    out
}

/// The audio m= line (transport `proto`) and its attributes. `codecs` are
/// `(pt, name, rate)`; `crypto` is the value of an `a=crypto` attribute.
#[allow(clippy::too_many_arguments)]
fn audio_section(
    out: &mut String,
    port: u16,
    proto: &str,
    codecs: &[(u8, String, u32)],
    te_pt: Option<u8>,
    direction: Direction,
    ptime: u32,
    crypto: Option<&str>,
) {
    let te_pt = te_pt.filter(|te| !codecs.iter().any(|(pt, _, _)| pt == te));
    let mut m = format!("m=audio {port} {proto}");
    for pt in codecs.iter().map(|(pt, _, _)| *pt).chain(te_pt) {
        let _ = write!(m, " {pt}");
    }
    push_line(out, format_args!("{m}"));
    for (pt, name, rate) in codecs {
        // Opus is always `opus/48000/2` (RFC 7587 §7), mono or not
        let channels = if name.eq_ignore_ascii_case("opus") {
            "/2"
        } else {
            ""
        };
        push_line(out, format_args!("a=rtpmap:{pt} {name}/{rate}{channels}"));
    }
    if let Some(te) = te_pt {
        push_line(out, format_args!("a=rtpmap:{te} telephone-event/8000"));
        push_line(out, format_args!("a=fmtp:{te} 0-16"));
    }
    if ptime > 0 {
        push_line(out, format_args!("a=ptime:{ptime}"));
    }
    push_line(out, format_args!("a={direction}"));
    if let Some(c) = crypto {
        let c: String = c.chars().filter(|c| !c.is_ascii_control()).collect();
        push_line(out, format_args!("a=crypto:{c}"));
    }
}

/// `RTP/SAVP` with an `a=crypto`, else `RTP/AVP`.
fn savp(crypto: Option<&str>) -> &'static str {
    if crypto.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    }
}

/// An offer listing `codecs` (in this order) plus telephone-event (PT
/// `te_pt`, events 0-16) if `Some`. Clock rates come from the RFC 3551
/// static table, else 8000. A `ptime` of 0 omits `a=ptime`.
pub fn offer(
    local: &LocalMedia,
    codecs: &[(u8, &str)],
    te_pt: Option<u8>,
    direction: Direction,
    ptime: u32,
) -> String {
    offer_with_crypto(local, codecs, te_pt, direction, ptime, None)
}

/// [`offer`], as `RTP/SAVP` with this `a=crypto` value when `crypto` is
/// `Some`.
pub fn offer_with_crypto(
    local: &LocalMedia,
    codecs: &[(u8, &str)],
    te_pt: Option<u8>,
    direction: Direction,
    ptime: u32,
    crypto: Option<&str>,
) -> String {
    let codecs: Vec<(u8, String, u32)> = codecs
        .iter()
        .map(|&(pt, name)| {
            let rate = static_audio(pt).map_or(8000, |(_, rate)| rate);
            (pt, token(name), rate)
        })
        .collect();
    let mut out = session_header(local);
    audio_section(
        &mut out,
        local.port,
        savp(crypto),
        &codecs,
        te_pt,
        direction,
        ptime,
        crypto,
    );
    out
}

/// An answer to `remote`: audio on the first audio m= line with the single
/// chosen codec `(pt, name)` (clock rate as offered, else 8000) and, when the
/// offer had telephone-event, that same PT; direction =
/// `remote.direction.reversed()` unless `direction_override`. Every other m=
/// line, and an audio line the offerer itself set to port 0, is answered
/// with port 0 and its first format (RFC 3264 §6): same m= line count and
/// order. A hand-built `remote` without `audio_index` gets one audio line
/// after its m= lines.
pub fn answer(
    local: &LocalMedia,
    remote: &Description,
    chosen: (u8, &str),
    direction_override: Option<Direction>,
    ptime: u32,
) -> String {
    answer_with_crypto(local, remote, chosen, direction_override, ptime, None)
}

/// [`answer`], with the audio stream `RTP/SAVP` and this `a=crypto` value
/// when `crypto` is `Some`.
pub fn answer_with_crypto(
    local: &LocalMedia,
    remote: &Description,
    chosen: (u8, &str),
    direction_override: Option<Direction>,
    ptime: u32,
    crypto: Option<&str>,
) -> String {
    let (pt, name) = chosen;
    let rate = remote
        .codecs
        .iter()
        .find(|c| c.payload_type == pt)
        .map(|c| c.clock_rate)
        .or_else(|| static_audio(pt).map(|(_, rate)| rate))
        .unwrap_or(8000);
    let codecs = [(pt, token(name), rate)];
    let direction = direction_override.unwrap_or(remote.direction.reversed());

    let mut out = session_header(local);
    let mut wrote_audio = false;
    for (i, m) in remote.media.iter().enumerate() {
        if remote.audio_index == Some(i) && m.port != 0 {
            audio_section(
                &mut out,
                local.port,
                savp(crypto),
                &codecs,
                remote.telephone_event,
                direction,
                ptime,
                crypto,
            );
            wrote_audio = true;
        } else {
            let fmt = m.formats.first().map_or("0", String::as_str);
            push_line(&mut out, format_args!("m={} 0 {} {fmt}", m.media, m.proto));
            if remote.audio_index == Some(i) {
                wrote_audio = true;
            }
        }
    }
    if !wrote_audio {
        audio_section(
            &mut out,
            local.port,
            savp(crypto),
            &codecs,
            remote.telephone_event,
            direction,
            ptime,
            crypto,
        );
    }
    out
}

/// The first codec of `remote.codecs` whose name is in `supported`
/// (case-insensitive), keeping the offerer's payload type. The offerer's
/// preference wins, as RFC 3264 §6.1 recommends.
pub fn choose_codec<'a>(remote: &'a Description, supported: &[&str]) -> Option<&'a AudioCodec> {
    remote
        .codecs
        .iter()
        .find(|c| supported.iter().any(|s| c.name.eq_ignore_ascii_case(s)))
}

#[cfg(test)]
mod tests;
