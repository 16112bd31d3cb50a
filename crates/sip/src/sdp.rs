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
        push_line(out, format_args!("a=rtpmap:{pt} {name}/{rate}"));
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
mod tests {
    use super::*;

    fn crlf(s: &str) -> String {
        s.replace('\n', "\r\n")
    }

    const BARESIP: &str = "v=0
o=- 2907328226 1460617612 IN IP4 192.168.1.10
s=-
c=IN IP4 192.168.1.10
t=0 0
m=audio 10430 RTP/AVP 96 0 8 101
b=AS:64
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1406424397 cname:a2b2c3d4
a=rtcp-mux
a=ptime:20
";

    const LINPHONE: &str = "v=0
o=alice 3210 1453 IN IP4 10.0.0.5
s=Talk
c=IN IP4 10.0.0.5
t=0 0
a=ice-pwd:31ec21eb38b2ec6d36e8dc7b
a=ice-ufrag:0bf8e5ea
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 SILK/16000
a=rtpmap:98 speex/16000
a=fmtp:98 vbr=on
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 nack sli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:97 nack pli
";

    const DESK_PHONE: &str = "v=0
o=- 20022 20022 IN IP4 172.16.0.21
s=SDP data
c=IN IP4 172.16.0.21
t=0 0
m=audio 11796 RTP/AVP 9 0 8 18 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=ptime:20
a=sendrecv
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
";

    /// sipp's built-in uac scenario after `[media_ip]` etc. are substituted.
    const SIPP: &str = "v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

    const IPV6: &str = "v=0
o=- 1 2 IN IP6 ::1
s=-
c=IN IP6 ::1
t=0 0
m=audio 5004 RTP/AVP 8 0 101
a=rtpmap:101 telephone-event/8000
";

    const HOLD_SENDONLY: &str = "v=0
o=- 20022 20023 IN IP4 172.16.0.21
s=-
c=IN IP4 172.16.0.21
t=0 0
m=audio 11796 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendonly
";

    const HOLD_INACTIVE: &str = "v=0
o=- 1 3 IN IP4 10.1.1.1
s=-
c=IN IP4 10.1.1.1
t=0 0
m=audio 4000 RTP/AVP 0
a=inactive
";

    const HOLD_ZERO: &str = "v=0
o=- 1 3 IN IP4 10.1.1.1
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 4000 RTP/AVP 8
";

    /// No `t=`, session attributes before `c=`, `c=` after `t=`'s place.
    const SLOPPY: &str = "v=0
o=- 7 7 IN IP4 10.9.9.9
s=-
a=sendrecv
a=ptime:30
c=IN IP4 10.9.9.9
m=audio 4002 RTP/AVP 0 8
";

    const MEDIA_C: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4004 RTP/AVP 8
c=IN IP4 203.0.113.7
a=recvonly
";

    const NO_RTPMAP: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4006 RTP/AVP 8 0 96 13
";

    const TE96: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4008 RTP/AVP 0 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
";

    const PCMA_ONLY: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4010 RTP/AVP 8
a=rtpmap:8 PCMA/8000
";

    /// A video-first offer: audio is the second m= line.
    const VIDEO_FIRST: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=video 5000 RTP/AVP 96
a=rtpmap:96 H264/90000
m=audio 5002 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
m=application 5004 UDP/BFCP *
";

    fn pcm(pt: u8) -> AudioCodec {
        let name = if pt == 0 { "PCMU" } else { "PCMA" };
        AudioCodec {
            payload_type: pt,
            name: name.into(),
            clock_rate: 8000,
        }
    }

    struct Case {
        name: &'static str,
        sdp: &'static str,
        crlf: bool,
        connection: &'static str,
        audio_port: u16,
        audio_index: usize,
        pts: &'static [u8],
        te: Option<u8>,
        direction: Direction,
        ptime: Option<u32>,
        rtcp_mux: bool,
        media: usize,
    }

    const CASES: &[Case] = &[
        Case {
            name: "baresip",
            sdp: BARESIP,
            crlf: true,
            connection: "192.168.1.10",
            audio_port: 10430,
            audio_index: 0,
            pts: &[96, 0, 8],
            te: Some(101),
            direction: Direction::SendRecv,
            ptime: Some(20),
            rtcp_mux: true,
            media: 1,
        },
        Case {
            name: "linphone",
            sdp: LINPHONE,
            crlf: true,
            connection: "10.0.0.5",
            audio_port: 7078,
            audio_index: 0,
            pts: &[96, 97, 98, 0, 8, 18],
            te: Some(100),
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            media: 2,
        },
        Case {
            name: "desk phone",
            sdp: DESK_PHONE,
            crlf: true,
            connection: "172.16.0.21",
            audio_port: 11796,
            audio_index: 0,
            pts: &[9, 0, 8, 18],
            te: Some(101),
            direction: Direction::SendRecv,
            ptime: Some(20),
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "sipp",
            sdp: SIPP,
            crlf: true,
            connection: "127.0.0.1",
            audio_port: 6000,
            audio_index: 0,
            pts: &[0],
            te: None,
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "ipv6",
            sdp: IPV6,
            crlf: true,
            connection: "::1",
            audio_port: 5004,
            audio_index: 0,
            pts: &[8, 0],
            te: Some(101),
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "hold sendonly",
            sdp: HOLD_SENDONLY,
            crlf: true,
            connection: "172.16.0.21",
            audio_port: 11796,
            audio_index: 0,
            pts: &[0],
            te: Some(101),
            direction: Direction::SendOnly,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "hold inactive",
            sdp: HOLD_INACTIVE,
            crlf: true,
            connection: "10.1.1.1",
            audio_port: 4000,
            audio_index: 0,
            pts: &[0],
            te: None,
            direction: Direction::Inactive,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "hold c=0.0.0.0",
            sdp: HOLD_ZERO,
            crlf: true,
            connection: "0.0.0.0",
            audio_port: 4000,
            audio_index: 0,
            pts: &[8],
            te: None,
            direction: Direction::SendOnly,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "LF only, no t=, a= before c=",
            sdp: SLOPPY,
            crlf: false,
            connection: "10.9.9.9",
            audio_port: 4002,
            audio_index: 0,
            pts: &[0, 8],
            te: None,
            direction: Direction::SendRecv,
            ptime: Some(30),
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "LF-only desk phone",
            sdp: DESK_PHONE,
            crlf: false,
            connection: "172.16.0.21",
            audio_port: 11796,
            audio_index: 0,
            pts: &[9, 0, 8, 18],
            te: Some(101),
            direction: Direction::SendRecv,
            ptime: Some(20),
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "media-level c= overrides",
            sdp: MEDIA_C,
            crlf: true,
            connection: "203.0.113.7",
            audio_port: 4004,
            audio_index: 0,
            pts: &[8],
            te: None,
            direction: Direction::RecvOnly,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "no rtpmap for static PTs",
            sdp: NO_RTPMAP,
            crlf: true,
            connection: "10.0.0.1",
            audio_port: 4006,
            audio_index: 0,
            pts: &[8, 0, 13],
            te: None,
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "telephone-event at 96",
            sdp: TE96,
            crlf: true,
            connection: "10.0.0.1",
            audio_port: 4008,
            audio_index: 0,
            pts: &[0],
            te: Some(96),
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "PCMA only",
            sdp: PCMA_ONLY,
            crlf: true,
            connection: "10.0.0.1",
            audio_port: 4010,
            audio_index: 0,
            pts: &[8],
            te: None,
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            media: 1,
        },
        Case {
            name: "video first",
            sdp: VIDEO_FIRST,
            crlf: true,
            connection: "10.0.0.1",
            audio_port: 5002,
            audio_index: 1,
            pts: &[0],
            te: Some(101),
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            media: 3,
        },
    ];

    #[test]
    fn parses_real_world_offers() {
        for case in CASES {
            let text = if case.crlf {
                crlf(case.sdp)
            } else {
                case.sdp.to_owned()
            };
            let d = parse(text.as_bytes())
                .unwrap_or_else(|e| panic!("{}: parse failed: {e}", case.name));
            let n = case.name;
            assert_eq!(d.connection, Some(case.connection.parse().unwrap()), "{n}");
            assert_eq!(d.audio_port, case.audio_port, "{n}");
            assert_eq!(d.audio_index, Some(case.audio_index), "{n}");
            let pts: Vec<u8> = d.codecs.iter().map(|c| c.payload_type).collect();
            assert_eq!(pts, case.pts, "{n}");
            assert_eq!(d.telephone_event, case.te, "{n}");
            assert_eq!(d.direction, case.direction, "{n}");
            assert_eq!(d.ptime, case.ptime, "{n}");
            assert_eq!(d.rtcp_mux, case.rtcp_mux, "{n}");
            assert_eq!(d.media.len(), case.media, "{n}");
            assert_eq!(d.media[case.audio_index].media, "audio", "{n}");
            for c in &d.codecs {
                assert_eq!(c.name, c.name.to_ascii_uppercase(), "{n}");
            }
        }
    }

    #[test]
    fn codec_details() {
        let d = parse(crlf(BARESIP).as_bytes()).unwrap();
        assert_eq!(d.origin_session_id, 2907328226);
        assert_eq!(d.origin_version, 1460617612);
        assert_eq!(
            d.codecs[0],
            AudioCodec {
                payload_type: 96,
                name: "OPUS".into(),
                clock_rate: 48000
            }
        );
        assert_eq!(&d.codecs[1..], &[pcm(0), pcm(8)]);

        let d = parse(crlf(NO_RTPMAP).as_bytes()).unwrap();
        assert_eq!(&d.codecs[..2], &[pcm(8), pcm(0)]);
        assert_eq!(d.codecs[2].name, "CN");

        let d = parse(crlf(LINPHONE).as_bytes()).unwrap();
        assert_eq!(d.media[1].media, "video");
        assert_eq!(d.media[1].port, 9078);
        assert_eq!(d.media[1].proto, "RTP/AVP");
        assert_eq!(d.media[1].formats, ["96", "97"]);
        assert_eq!(d.codecs[1].name, "SILK");
    }

    #[test]
    fn remote_rtp_address() {
        let d = parse(SIPP.as_bytes()).unwrap();
        assert_eq!(d.remote_rtp(), Some("127.0.0.1:6000".parse().unwrap()));
        let d = parse(IPV6.as_bytes()).unwrap();
        assert_eq!(d.remote_rtp(), Some("[::1]:5004".parse().unwrap()));
        let d = parse(HOLD_ZERO.as_bytes()).unwrap();
        assert_eq!(d.remote_rtp(), None);
    }

    #[test]
    fn tolerated_oddities() {
        let cases: &[(&str, &str)] = &[
            (
                "missing o=",
                "v=0\ns=-\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\n",
            ),
            ("no v=", "c=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0"),
            (
                "blank lines",
                "v=0\r\n\r\nc=IN IP4 1.2.3.4\r\n\r\nm=audio 1 RTP/AVP 0\r\n\r\n",
            ),
            (
                "unknown lines",
                "v=0\nc=IN IP4 1.2.3.4\nx=what\nz=0\nm=audio 1 RTP/AVP 0\n",
            ),
            (
                "ttl and port count",
                "v=0\nc=IN IP4 1.2.3.4/127\nm=audio 1/2 RTP/AVP 0\n",
            ),
            (
                "bracketed IPv6",
                "v=0\nc=IN IP6 [2001:db8::1]\nm=audio 1 RTP/AVP 0\n",
            ),
            (
                "bad attributes",
                "v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:x\na=ptime:y\na=\n",
            ),
            (
                "bad c= on video",
                "v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\nm=video 2 RTP/AVP 96\nc=IN IP4 host.example\n",
            ),
            (
                "trailing spaces",
                "v=0 \nc=IN IP4 1.2.3.4  \nm=audio 1 RTP/AVP 0 \n",
            ),
        ];
        for (name, sdp) in cases {
            let d = parse(sdp.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(d.codecs, [pcm(0)], "{name}");
            assert_eq!(d.audio_port, 1, "{name}");
        }
        let d = parse(b"v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=ptime:20.0\n").unwrap();
        assert_eq!(d.ptime, Some(20));
        // A declined audio stream needs no address.
        let d = parse(b"v=0\nm=audio 0 RTP/AVP 0\n").unwrap();
        assert_eq!((d.audio_port, d.connection), (0, None));
    }

    /// Whether an error is the one a case expects.
    type Check = fn(&SdpError) -> bool;

    #[test]
    fn rejects_malformed() {
        let cases: &[(&str, &[u8], Check)] = &[
            ("empty", b"", |e| *e == SdpError::Empty),
            ("whitespace", b"\r\n \r\n", |e| *e == SdpError::Empty),
            ("not utf-8", b"v=0\r\n\xff\xfe\x00\x81", |e| {
                *e == SdpError::NotUtf8
            }),
            ("binary", b"\x00\x01\x02\x03garbage\x7f", |e| {
                matches!(e, SdpError::Malformed(_))
            }),
            ("text", b"hello world", |e| {
                matches!(e, SdpError::Malformed(_))
            }),
            (
                "version",
                b"v=1\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0",
                |e| matches!(e, SdpError::Malformed(m) if m.contains("line 1")),
            ),
            (
                "port",
                b"v=0\nc=IN IP4 1.2.3.4\nm=audio abc RTP/AVP 0",
                |e| matches!(e, SdpError::Malformed(m) if m.contains("line 3") && m.contains("m=audio abc")),
            ),
            (
                "port range",
                b"v=0\nc=IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0",
                |e| matches!(e, SdpError::Malformed(_)),
            ),
            ("short m=", b"v=0\nc=IN IP4 1.2.3.4\nm=audio 4000", |e| {
                matches!(e, SdpError::Malformed(_))
            }),
            (
                "origin",
                b"v=0\no=- abc 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0",
                |e| matches!(e, SdpError::Malformed(m) if m.contains("o=-")),
            ),
            (
                "c= address",
                b"v=0\nc=IN IP4 pbx.example.com\nm=audio 1 RTP/AVP 0",
                |e| matches!(e, SdpError::Malformed(m) if m.contains("c=IN")),
            ),
            ("c= short", b"v=0\nc=IN IP4\nm=audio 1 RTP/AVP 0", |e| {
                matches!(e, SdpError::Malformed(_))
            }),
            (
                "no audio",
                b"v=0\nc=IN IP4 1.2.3.4\nm=video 1 RTP/AVP 96",
                |e| *e == SdpError::NoAudio,
            ),
            (
                "no m= at all",
                b"v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\n",
                |e| *e == SdpError::NoAudio,
            ),
            ("no connection", b"v=0\nm=audio 1 RTP/AVP 0", |e| {
                *e == SdpError::NoConnection
            }),
            // sipp's template before substitution.
            (
                "sipp template",
                b"v=0\nc=IN IP[media_ip_type] [media_ip]\nm=audio [media_port] RTP/AVP 0",
                |e| matches!(e, SdpError::Malformed(_)),
            ),
        ];
        for (name, body, check) in cases {
            let err = parse(body).expect_err(name);
            assert!(check(&err), "{name}: unexpected {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn every_prefix_parses_without_panic() {
        for sdp in [LINPHONE, BARESIP, VIDEO_FIRST, IPV6] {
            let text = crlf(sdp);
            let bytes = text.as_bytes();
            for end in 0..=bytes.len() {
                let _ = parse(&bytes[..end]);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift over an SDP-flavoured alphabet, plus raw bytes.
        let alphabet = b"vocmat=:/ 0123456789.IPN46\r\n\xc3\xa9\xffaudio";
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 200) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse(&body);
            let raw: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse(&raw);
        }
    }

    fn local4() -> LocalMedia {
        LocalMedia {
            address: "198.51.100.2".parse().unwrap(),
            port: 30000,
            session_id: 42,
            version: 1,
        }
    }

    #[test]
    fn offer_exact_text() {
        let sdp = offer(
            &local4(),
            &[(0, "PCMU"), (8, "PCMA")],
            Some(101),
            Direction::SendRecv,
            20,
        );
        assert_eq!(
            sdp,
            "v=0\r\n\
             o=switchboard 42 1 IN IP4 198.51.100.2\r\n\
             s=switchboard\r\n\
             c=IN IP4 198.51.100.2\r\n\
             t=0 0\r\n\
             m=audio 30000 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
    }

    #[test]
    fn offer_parses_back() {
        let local = LocalMedia {
            address: "2001:db8::5".parse().unwrap(),
            port: 40000,
            session_id: 7,
            version: 9,
        };
        let sdp = offer(&local, &[(8, "PCMA")], None, Direction::SendOnly, 20);
        assert!(sdp.contains("c=IN IP6 2001:db8::5\r\n"));
        assert!(sdp.contains("o=switchboard 7 9 IN IP6 2001:db8::5\r\n"));
        assert!(!sdp.contains("rtcp-mux"));
        let d = parse(sdp.as_bytes()).unwrap();
        assert_eq!(d.origin_session_id, 7);
        assert_eq!(d.origin_version, 9);
        assert_eq!(d.connection, Some(local.address));
        assert_eq!(d.audio_port, 40000);
        assert_eq!(d.codecs, [pcm(8)]);
        assert_eq!(d.telephone_event, None);
        assert_eq!(d.direction, Direction::SendOnly);
        assert_eq!(d.ptime, Some(20));
        assert!(!d.rtcp_mux);
        assert_eq!(d.media.len(), 1);
    }

    #[test]
    fn answers_parse_back() {
        struct AnswerCase {
            name: &'static str,
            sdp: &'static str,
            supported: &'static [&'static str],
            chosen_pt: u8,
            override_: Option<Direction>,
            direction: Direction,
        }
        let cases = [
            AnswerCase {
                name: "baresip",
                sdp: BARESIP,
                supported: &["PCMU", "PCMA"],
                chosen_pt: 0,
                override_: None,
                direction: Direction::SendRecv,
            },
            AnswerCase {
                name: "linphone, offer order wins",
                sdp: LINPHONE,
                supported: &["pcma", "pcmu"],
                chosen_pt: 0,
                override_: None,
                direction: Direction::SendRecv,
            },
            AnswerCase {
                name: "desk phone",
                sdp: DESK_PHONE,
                supported: &["PCMA"],
                chosen_pt: 8,
                override_: None,
                direction: Direction::SendRecv,
            },
            AnswerCase {
                name: "hold",
                sdp: HOLD_SENDONLY,
                supported: &["PCMU"],
                chosen_pt: 0,
                override_: None,
                direction: Direction::RecvOnly,
            },
            AnswerCase {
                name: "hold c=0.0.0.0",
                sdp: HOLD_ZERO,
                supported: &["PCMU", "PCMA"],
                chosen_pt: 8,
                override_: None,
                direction: Direction::RecvOnly,
            },
            AnswerCase {
                name: "override",
                sdp: TE96,
                supported: &["PCMU"],
                chosen_pt: 0,
                override_: Some(Direction::Inactive),
                direction: Direction::Inactive,
            },
            AnswerCase {
                name: "video first",
                sdp: VIDEO_FIRST,
                supported: &["PCMU"],
                chosen_pt: 0,
                override_: None,
                direction: Direction::SendRecv,
            },
            AnswerCase {
                name: "ipv6",
                sdp: IPV6,
                supported: &["PCMU", "PCMA"],
                chosen_pt: 8,
                override_: None,
                direction: Direction::SendRecv,
            },
        ];
        let local = local4();
        for case in cases {
            let n = case.name;
            let remote = parse(crlf(case.sdp).as_bytes()).unwrap();
            let codec = choose_codec(&remote, case.supported).unwrap();
            assert_eq!(codec.payload_type, case.chosen_pt, "{n}");
            let sdp = answer(
                &local,
                &remote,
                (codec.payload_type, &codec.name),
                case.override_,
                20,
            );
            assert!(sdp.ends_with("\r\n") && !sdp.contains("\n\n"), "{n}");
            assert_eq!(sdp.matches('\n').count(), sdp.matches("\r\n").count());
            let d = parse(sdp.as_bytes()).unwrap();
            assert_eq!(d.connection, Some(local.address), "{n}");
            assert_eq!(d.audio_port, local.port, "{n}");
            assert_eq!(d.audio_index, remote.audio_index, "{n}");
            assert_eq!(d.codecs, [pcm(case.chosen_pt)], "{n}");
            assert_eq!(d.telephone_event, remote.telephone_event, "{n}");
            assert_eq!(d.direction, case.direction, "{n}");
            assert_eq!(d.ptime, Some(20), "{n}");
            assert_eq!(d.media.len(), remote.media.len(), "{n}");
            for (i, (ours, theirs)) in d.media.iter().zip(&remote.media).enumerate() {
                assert_eq!(ours.media, theirs.media, "{n}");
                assert_eq!(ours.proto, theirs.proto, "{n}");
                if Some(i) != remote.audio_index {
                    assert_eq!(ours.port, 0, "{n}: m= line {i} not declined");
                    assert_eq!(ours.formats, theirs.formats[..1], "{n}");
                }
            }
        }
    }

    #[test]
    fn answer_text_declines_video() {
        let remote = parse(crlf(LINPHONE).as_bytes()).unwrap();
        let sdp = answer(&local4(), &remote, (8, "PCMA"), None, 20);
        assert!(
            sdp.ends_with(
                "m=audio 30000 RTP/AVP 8 100\r\n\
                 a=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:100 telephone-event/8000\r\n\
                 a=fmtp:100 0-16\r\n\
                 a=ptime:20\r\n\
                 a=sendrecv\r\n\
                 m=video 0 RTP/AVP 96\r\n"
            ),
            "{sdp}"
        );
    }

    #[test]
    fn answer_declines_declined_audio() {
        let remote =
            parse(b"v=0\nm=audio 0 RTP/AVP 0\nm=audio 4000 RTP/AVP 0\nc=IN IP4 1.2.3.4\n").unwrap();
        let sdp = answer(&local4(), &remote, (0, "PCMU"), None, 20);
        let d = parse(sdp.as_bytes()).unwrap();
        assert_eq!(d.media.len(), 2);
        assert!(d.media.iter().all(|m| m.port == 0));
    }

    #[test]
    fn choose_codec_keeps_offer_order_and_pt() {
        let remote = parse(crlf(DESK_PHONE).as_bytes()).unwrap();
        assert_eq!(choose_codec(&remote, &["PCMA", "PCMU"]), Some(&pcm(0)));
        assert_eq!(choose_codec(&remote, &["g722"]).unwrap().payload_type, 9);
        assert_eq!(choose_codec(&remote, &["opus"]), None);
        assert_eq!(choose_codec(&remote, &[]), None);
        let remote = parse(crlf(PCMA_ONLY).as_bytes()).unwrap();
        assert_eq!(choose_codec(&remote, &["PCMU", "PCMA"]), Some(&pcm(8)));
        assert_eq!(choose_codec(&remote, &["PCMU"]), None);
    }

    #[test]
    fn direction_helpers() {
        let table = [
            (Direction::SendRecv, Direction::SendRecv, "sendrecv"),
            (Direction::SendOnly, Direction::RecvOnly, "sendonly"),
            (Direction::RecvOnly, Direction::SendOnly, "recvonly"),
            (Direction::Inactive, Direction::Inactive, "inactive"),
        ];
        for (d, rev, s) in table {
            assert_eq!(d.reversed(), rev);
            assert_eq!(d.as_str(), s);
            assert_eq!(d.to_string(), s);
            assert_eq!(Direction::from_attr(&s.to_ascii_uppercase()), Some(d));
        }
    }
}
