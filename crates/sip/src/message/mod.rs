//! Parsing SIP messages into a validated view (RFC 3261 §7, §20, §25;
//! RFC 4475 verdicts).
//!
//! # How parsing works, and why rsip's message tokenizer is not used on raw bytes
//!
//! `parse` runs on every datagram (a registrar does ~40k/s), so it is a single
//! pass with no regex and few allocations:
//!
//! 1. **Our line scanner** splits the start line, the header lines and the
//!    body (CRLF only; a bare CR or LF is an error). It unfolds continuation
//!    lines (LWS becomes one SP) and accepts whitespace before the colon.
//!    Header values that are not UTF-8 (legacy Latin-1 display names) are
//!    converted lossily instead of refused.
//!    rsip's `SipMessage::try_from` cannot be used on the wire bytes: it
//!    fails on folded lines and `Via  :` (RFC 4475 §3.1.1.1 wsinv, §3.1.1.7
//!    longreq), on extension methods (§3.1.1.2 intmeth, §3.1.1.5 esc02), on
//!    valid unusual Request-URIs (§3.1.1.3 esc01, §3.1.1.9 semiuri, §3.3.2
//!    unkscm) — and it accepts a dozen of the §3.1.2 invalid messages.
//! 2. **rsip tokenizes each header**: the (long-form) name and the unfolded
//!    value go through `rsip::headers::header::Tokenizer`, which picks the
//!    `rsip::Header` variant; the result is kept in [`Request::headers`].
//!    Compact names (`v`, `f`, `i`, ...) are expanded first so rsip maps them
//!    to their typed variants too.
//! 3. **Validation** of the headers the stack relies on: Via, From, To,
//!    Call-ID, CSeq (number < 2^31, method equal to the request method),
//!    Max-Forwards (0..=255), Content-Length (datagram rule: a longer body is
//!    truncated, a shorter one is an error), Contact, Date (RFC 1123, GMT)
//!    and single-instance headers appearing once.
//!
//! On failure, [`ParseError::bad_request`] holds the 400 (or 505) to send
//! back when the request's Via/From/To/Call-ID/CSeq can be recovered.

mod addr;
mod method;
mod recover;
mod syntax;
mod uri;
mod uri_eq;
mod via;

use std::borrow::Cow;

pub use addr::NameAddr;
pub use method::Method;
/// Re-exported here too, next to the `rsip::Headers` the view carries.
pub use rsip;
pub use uri::Uri;
pub use uri_eq::Tolerance;
pub use via::Via;

use rsip::headers::UntypedHeader;
use syntax::{
    Kind, expand_compact, is_token, is_wsp, kind_of, parse_digits, split_top_level, trim_lws,
};

/// Why a message was refused, and what to answer if anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// Human-readable cause (for logs and counters).
    pub reason: String,
    /// A complete response (`SIP/2.0 400 <reason>`, or `505 Version Not
    /// Supported` for an unknown SIP version) ready to send back, when the
    /// input was a request other than ACK and its Via, From, To, Call-ID and
    /// CSeq could be recovered. `None`: drop the message and count it.
    pub bad_request: Option<Vec<u8>>,
}

/// A parsed and validated SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// A validated SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method (extension methods included, see [`Method`]).
    pub method: Method,
    /// The Request-URI. Its scheme may be anything (RFC 4475 §3.3.2): the
    /// application answers 416 for schemes it does not handle.
    pub uri: Uri,
    /// Call-ID value.
    pub call_id: String,
    /// CSeq sequence number (< 2^31).
    pub cseq: u32,
    /// CSeq method; always equal to `method` for a parsed request.
    pub cseq_method: Method,
    /// Every Via element in order, topmost first (at least one).
    pub vias: Vec<Via>,
    /// From header.
    pub from: NameAddr,
    /// To header.
    pub to: NameAddr,
    /// Max-Forwards, if present (0..=255).
    pub max_forwards: Option<u32>,
    /// All headers as tokenized by rsip, in order, compact names expanded.
    pub headers: rsip::Headers,
    /// The body, exactly Content-Length bytes when that header is present.
    pub body: Vec<u8>,
}

/// A validated SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub code: u16,
    /// Reason phrase (may be empty, RFC 4475 §3.1.1.13; UTF-8, §3.1.1.12).
    pub reason: String,
    /// Call-ID value.
    pub call_id: String,
    /// CSeq sequence number (< 2^31).
    pub cseq: u32,
    /// CSeq method: the method of the request this answers.
    pub cseq_method: Method,
    /// Every Via element in order, topmost first (at least one).
    pub vias: Vec<Via>,
    /// From header.
    pub from: NameAddr,
    /// To header.
    pub to: NameAddr,
    /// All headers as tokenized by rsip, in order, compact names expanded.
    pub headers: rsip::Headers,
    /// The body, exactly Content-Length bytes when that header is present.
    pub body: Vec<u8>,
}

/// The Contact header(s) of a request: a REGISTER may carry `*` to remove
/// every binding (RFC 3261 §10.2.2) or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *`
    Star,
    /// The contact addresses in order (empty when there is no Contact).
    List(Vec<NameAddr>),
}

/// Internal failure: a 400 cause, or the 505 case.
enum Fail {
    Bad(Cow<'static, str>),
    Version,
}

impl From<&'static str> for Fail {
    fn from(s: &'static str) -> Self {
        Fail::Bad(Cow::Borrowed(s))
    }
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Bad(Cow::Owned(s))
    }
}

/// Parses one complete SIP message: a UDP datagram, or one message cut out
/// of a stream by [`crate::framing::check`]. Leading CRLFs are skipped.
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    parse_message(bytes).map_err(|fail| {
        let (code, phrase, reason) = match fail {
            Fail::Version => (
                505,
                Cow::Borrowed("Version Not Supported"),
                Cow::Borrowed("unsupported SIP version"),
            ),
            Fail::Bad(r) => (400, r.clone(), r),
        };
        ParseError {
            bad_request: recover::error_response(bytes, code, &phrase),
            reason: reason.into_owned(),
        }
    })
}

fn parse_message(bytes: &[u8]) -> Result<Message, Fail> {
    let mut input = bytes;
    while let Some(rest) = input.strip_prefix(b"\r\n") {
        input = rest;
    }
    if input.is_empty() {
        return Err("empty message".into());
    }
    let scanned = scan(input)?;
    let is_response = scanned.start.len() >= 4 && scanned.start[..4].eq_ignore_ascii_case(b"SIP/");
    if is_response {
        let (code, reason) = status_line(scanned.start)?;
        let c = common(scanned.headers, scanned.body)?;
        Ok(Message::Response(Response {
            code,
            reason,
            call_id: c.call_id,
            cseq: c.cseq,
            cseq_method: c.cseq_method,
            vias: c.vias,
            from: c.from,
            to: c.to,
            headers: c.headers,
            body: c.body,
        }))
    } else {
        let (method, uri) = request_line(scanned.start)?;
        let c = common(scanned.headers, scanned.body)?;
        // RFC 3261 §8.1.1.5: the CSeq method matches the request method, for
        // ACK and CANCEL too (RFC 4475 §3.1.2.17, §3.1.2.18).
        if c.cseq_method != method {
            return Err("CSeq method does not match the request method".into());
        }
        Ok(Message::Request(Request {
            method,
            uri,
            call_id: c.call_id,
            cseq: c.cseq,
            cseq_method: c.cseq_method,
            vias: c.vias,
            from: c.from,
            to: c.to,
            max_forwards: c.max_forwards,
            headers: c.headers,
            body: c.body,
        }))
    }
}

// ---------------------------------------------------------------------------
// Line scanner

/// One logical header line: the name as received and the unfolded value.
struct RawHeader<'a> {
    name: &'a str,
    value: Cow<'a, str>,
}

struct Scanned<'a> {
    start: &'a [u8],
    headers: Vec<RawHeader<'a>>,
    body: &'a [u8],
}

/// Returns the line starting at `pos` (without CRLF) and the position after
/// its CRLF. A bare CR or LF is an error: RFC 3261 §7 lines end in CRLF.
fn line(input: &[u8], pos: usize) -> Result<(&[u8], usize), Fail> {
    let rest = input.get(pos..).unwrap_or_default();
    match rest.iter().position(|b| *b == b'\r' || *b == b'\n') {
        Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
            Ok((&rest[..i], pos + i + 2))
        }
        Some(_) => Err("bare CR or LF in message head".into()),
        None => Err("headers not terminated by an empty line".into()),
    }
}

fn scan(input: &[u8]) -> Result<Scanned<'_>, Fail> {
    let (start, mut pos) = line(input, 0)?;
    let mut headers = Vec::with_capacity(16);
    loop {
        if input.get(pos..).is_some_and(|r| r.starts_with(b"\r\n")) {
            pos += 2;
            break;
        }
        let (first, mut next) = line(input, pos)?;
        if first.first().is_some_and(|b| is_wsp(*b)) {
            return Err("continuation line without a header".into());
        }
        let mut end = pos + first.len();
        let mut folded = false;
        // RFC 3261 §7.3.1: a line starting with SP/HT continues the header.
        while input.get(next).is_some_and(|b| is_wsp(*b)) {
            let (cont, after) = line(input, next)?;
            end = next + cont.len();
            next = after;
            folded = true;
        }
        headers.push(split_header(&input[pos..end], folded)?);
        pos = next;
    }
    Ok(Scanned {
        start,
        headers,
        body: input.get(pos..).unwrap_or_default(),
    })
}

/// Splits `name *WSP ":" value`, unfolding the value if needed.
fn split_header(raw: &[u8], folded: bool) -> Result<RawHeader<'_>, Fail> {
    let colon = raw
        .iter()
        .position(|b| *b == b':')
        .ok_or("header line without ':'")?;
    let mut name_end = colon;
    while name_end > 0 && is_wsp(raw[name_end - 1]) {
        name_end -= 1;
    }
    let name = &raw[..name_end];
    if name.is_empty() || !name.iter().all(|b| is_token(*b)) {
        return Err("invalid header name".into());
    }
    // Token characters are ASCII, so this cannot fail.
    let name = std::str::from_utf8(name).map_err(|_| "invalid header name")?;
    // RFC 3261 text is UTF-8, but legacy phones put Latin-1 display names in
    // From/To; refusing their REGISTERs outright helps nobody, so invalid
    // sequences become U+FFFD (rsip needs `&str` anyway).
    let value = match String::from_utf8_lossy(&raw[colon + 1..]) {
        Cow::Borrowed(v) if folded => Cow::Owned(unfold(v)),
        Cow::Borrowed(v) => Cow::Borrowed(trim_lws(v)),
        Cow::Owned(v) if folded => Cow::Owned(unfold(&v)),
        Cow::Owned(v) => Cow::Owned(trim_lws(&v).to_owned()),
    };
    Ok(RawHeader { name, value })
}

/// Replaces every `*WSP CRLF 1*WSP` with a single SP and trims the ends.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, part) in value.split("\r\n").enumerate() {
        let part = if i == 0 {
            part
        } else {
            part.trim_start_matches([' ', '\t'])
        };
        if i > 0 {
            let trimmed = out.trim_end_matches([' ', '\t']).len();
            out.truncate(trimmed);
            out.push(' ');
        }
        out.push_str(part);
    }
    trim_lws(&out).to_owned()
}

// ---------------------------------------------------------------------------
// Start lines

/// `Method SP Request-URI SP SIP-Version`: exactly one SP between elements
/// and none at the end (RFC 4475 §3.1.2.8–3.1.2.10).
fn request_line(start: &[u8]) -> Result<(Method, Uri), Fail> {
    let line = std::str::from_utf8(start).map_err(|_| "Request-Line is not UTF-8")?;
    let mut parts = line.split(' ');
    let (Some(m), Some(u), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed Request-Line".into());
    };
    if m.is_empty() || u.is_empty() || v.is_empty() {
        return Err("malformed Request-Line".into());
    }
    let method = Method::parse(m).ok_or("invalid method in Request-Line")?;
    check_version(v)?;
    let uri = Uri::parse(u).map_err(|e| format!("invalid Request-URI: {e}"))?;
    // RFC 3261 §19.1.1 forbids headers in a Request-URI (RFC 4475 §3.1.2.11).
    if (uri.scheme == "sip" || uri.scheme == "sips") && uri.headers.is_some() {
        return Err("invalid Request-URI: headers are not allowed".into());
    }
    Ok((method, uri))
}

/// `SIP/2.0` (case-insensitive, RFC 3261 §7.1). Another well-formed version
/// is the 505 case (RFC 4475 §3.1.2.16); anything else is a 400.
fn check_version(v: &str) -> Result<(), Fail> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..]
            .split_once('.')
            .is_some_and(|(a, b)| parse_digits(a).is_some() && parse_digits(b).is_some());
    if well_formed {
        Err(Fail::Version)
    } else {
        Err("invalid SIP-Version".into())
    }
}

/// `SIP-Version SP 3DIGIT SP Reason-Phrase`. A missing SP before an empty
/// reason is tolerated; a code of other than three digits is not (RFC 4475
/// §3.1.2.19).
fn status_line(start: &[u8]) -> Result<(u16, String), Fail> {
    let sp = start
        .iter()
        .position(|b| *b == b' ')
        .ok_or("malformed Status-Line")?;
    let version = std::str::from_utf8(&start[..sp]).map_err(|_| "invalid SIP-Version")?;
    check_version(version)?;
    let rest = &start[sp + 1..];
    let code_digits = rest.get(..3).ok_or("invalid status code")?;
    if !code_digits.iter().all(u8::is_ascii_digit) {
        return Err("invalid status code".into());
    }
    let reason = match rest.get(3) {
        None => &[][..],
        Some(b' ') => &rest[4..],
        Some(_) => return Err("invalid status code".into()),
    };
    let code = code_digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=699).contains(&code) {
        return Err("invalid status code".into());
    }
    if reason.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
        return Err("control character in Reason-Phrase".into());
    }
    // Same leniency as header values: a Latin-1 reason phrase is not worth
    // losing a response over.
    Ok((code, String::from_utf8_lossy(reason).into_owned()))
}

// ---------------------------------------------------------------------------
// Headers shared by requests and responses

struct Common {
    call_id: String,
    cseq: u32,
    cseq_method: Method,
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    max_forwards: Option<u32>,
    headers: rsip::Headers,
    body: Vec<u8>,
}

/// Tracks which single-instance headers were seen (RFC 4475 §3.3.8, §3.3.9).
#[derive(Default)]
struct Seen {
    content_type: bool,
    expires: bool,
    date: bool,
}

fn once<T>(slot: &Option<T>, name: &str) -> Result<(), Fail> {
    if slot.is_some() {
        Err(format!("multiple {name} headers").into())
    } else {
        Ok(())
    }
}

fn once_flag(flag: &mut bool, name: &str) -> Result<(), Fail> {
    if std::mem::replace(flag, true) {
        Err(format!("multiple {name} headers").into())
    } else {
        Ok(())
    }
}

fn common(raw_headers: Vec<RawHeader<'_>>, body: &[u8]) -> Result<Common, Fail> {
    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    let (mut max_forwards, mut content_length) = (None, None);
    let mut seen = Seen::default();
    let mut headers = Vec::with_capacity(raw_headers.len());
    for raw in raw_headers {
        let name = expand_compact(raw.name);
        let value: &str = &raw.value;
        match kind_of(name) {
            Kind::Via => {
                for element in split_top_level(value, b',') {
                    vias.push(Via::parse(element).map_err(|e| format!("invalid Via: {e}"))?);
                }
            }
            Kind::From => {
                once(&from, "From")?;
                from = Some(NameAddr::parse(value).map_err(|e| format!("invalid From: {e}"))?);
            }
            Kind::To => {
                once(&to, "To")?;
                to = Some(NameAddr::parse(value).map_err(|e| format!("invalid To: {e}"))?);
            }
            Kind::CallId => {
                once(&call_id, "Call-ID")?;
                if value.is_empty()
                    || value
                        .bytes()
                        .any(|b| b.is_ascii_control() || b == b' ' || b == b',')
                {
                    return Err("invalid Call-ID".into());
                }
                call_id = Some(value.to_owned());
            }
            Kind::CSeq => {
                once(&cseq, "CSeq")?;
                cseq = Some(parse_cseq(value)?);
            }
            Kind::MaxForwards => {
                once(&max_forwards, "Max-Forwards")?;
                let n = parse_digits(value)
                    .filter(|n| *n <= 255)
                    .ok_or("invalid Max-Forwards")?;
                max_forwards = Some(n as u32);
            }
            Kind::ContentLength => {
                once(&content_length, "Content-Length")?;
                let n = parse_digits(value)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or("invalid Content-Length")?;
                content_length = Some(n);
            }
            Kind::ContentType => {
                once_flag(&mut seen.content_type, "Content-Type")?;
                if !value.contains('/') {
                    return Err("invalid Content-Type".into());
                }
            }
            Kind::Expires => once_flag(&mut seen.expires, "Expires")?,
            Kind::Date => {
                once_flag(&mut seen.date, "Date")?;
                if !valid_date(value) {
                    return Err("invalid Date: not an RFC 1123 GMT date".into());
                }
            }
            Kind::Contact => validate_contacts(value)?,
            Kind::Other => {}
        }
        let header = rsip::headers::header::Tokenizer::from((name.as_bytes(), value.as_bytes()))
            .try_into()
            .map_err(|e: rsip::Error| format!("header rejected by tokenizer: {e}"))?;
        headers.push(header);
    }
    if vias.is_empty() {
        return Err("missing Via header".into());
    }
    let from = from.ok_or("missing From header")?;
    let to = to.ok_or("missing To header")?;
    let call_id = call_id.ok_or("missing Call-ID header")?;
    let (cseq, cseq_method) = cseq.ok_or("missing CSeq header")?;
    // Datagram rule (RFC 3261 §18.3): octets past Content-Length are
    // discarded (RFC 4475 §3.1.1.8); fewer octets than announced is an error
    // (§3.1.2.2). Without Content-Length the body is the rest of the datagram.
    let body = match content_length {
        Some(n) if n > body.len() => return Err("Content-Length larger than the body".into()),
        Some(n) => &body[..n],
        None => body,
    };
    Ok(Common {
        call_id,
        cseq,
        cseq_method,
        vias,
        from,
        to,
        max_forwards,
        headers: headers.into(),
        body: body.to_vec(),
    })
}

/// `CSeq: 1*DIGIT LWS Method`, the number below 2^31 (RFC 3261 §8.1.1.5).
fn parse_cseq(value: &str) -> Result<(u32, Method), Fail> {
    let split = value.find([' ', '\t']).ok_or("invalid CSeq")?;
    let n = parse_digits(&value[..split])
        .filter(|n| *n < (1 << 31))
        .ok_or("invalid CSeq: number out of range")?;
    let method = Method::parse(trim_lws(&value[split..])).ok_or("invalid CSeq method")?;
    Ok((n as u32, method))
}

fn validate_contacts(value: &str) -> Result<(), Fail> {
    for element in split_top_level(value, b',') {
        if trim_lws(element) != "*" {
            NameAddr::parse(element).map_err(|e| format!("invalid Contact: {e}"))?;
        }
    }
    Ok(())
}

/// RFC 1123 date as RFC 3261 §20.17 requires: `Sat, 13 Nov 2010 23:29:00 GMT`.
fn valid_date(v: &str) -> bool {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && DAYS.contains(&&b[0..3])
        && &b[3..5] == b", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.contains(&&b[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &b[25..29] == b" GMT"
}

// ---------------------------------------------------------------------------
// Header access

/// The wire name and value of an rsip header. rsip has no accessor for this,
/// and the view needs it for lookups and serialization.
pub fn header_parts(h: &rsip::Header) -> (&str, &str) {
    use rsip::Header as H;
    match h {
        H::Accept(v) => ("Accept", v.value()),
        H::AcceptEncoding(v) => ("Accept-Encoding", v.value()),
        H::AcceptLanguage(v) => ("Accept-Language", v.value()),
        H::AlertInfo(v) => ("Alert-Info", v.value()),
        H::Allow(v) => ("Allow", v.value()),
        H::AuthenticationInfo(v) => ("Authentication-Info", v.value()),
        H::Authorization(v) => ("Authorization", v.value()),
        H::CSeq(v) => ("CSeq", v.value()),
        H::CallId(v) => ("Call-ID", v.value()),
        H::CallInfo(v) => ("Call-Info", v.value()),
        H::Contact(v) => ("Contact", v.value()),
        H::ContentDisposition(v) => ("Content-Disposition", v.value()),
        H::ContentEncoding(v) => ("Content-Encoding", v.value()),
        H::ContentLanguage(v) => ("Content-Language", v.value()),
        H::ContentLength(v) => ("Content-Length", v.value()),
        H::ContentType(v) => ("Content-Type", v.value()),
        H::Date(v) => ("Date", v.value()),
        H::ErrorInfo(v) => ("Error-Info", v.value()),
        H::Event(v) => ("Event", v.value()),
        H::Expires(v) => ("Expires", v.value()),
        H::From(v) => ("From", v.value()),
        H::InReplyTo(v) => ("In-Reply-To", v.value()),
        H::MaxForwards(v) => ("Max-Forwards", v.value()),
        H::MimeVersion(v) => ("MIME-Version", v.value()),
        H::MinExpires(v) => ("Min-Expires", v.value()),
        H::Organization(v) => ("Organization", v.value()),
        H::Other(n, v) => (n.as_str(), v.as_str()),
        H::Priority(v) => ("Priority", v.value()),
        H::ProxyAuthenticate(v) => ("Proxy-Authenticate", v.value()),
        H::ProxyAuthorization(v) => ("Proxy-Authorization", v.value()),
        H::ProxyRequire(v) => ("Proxy-Require", v.value()),
        H::RecordRoute(v) => ("Record-Route", v.value()),
        H::ReplyTo(v) => ("Reply-To", v.value()),
        H::Require(v) => ("Require", v.value()),
        H::RetryAfter(v) => ("Retry-After", v.value()),
        H::Route(v) => ("Route", v.value()),
        H::Server(v) => ("Server", v.value()),
        H::Subject(v) => ("Subject", v.value()),
        H::SubscriptionState(v) => ("Subscription-State", v.value()),
        H::Supported(v) => ("Supported", v.value()),
        H::Timestamp(v) => ("Timestamp", v.value()),
        H::To(v) => ("To", v.value()),
        H::Unsupported(v) => ("Unsupported", v.value()),
        H::UserAgent(v) => ("User-Agent", v.value()),
        H::Via(v) => ("Via", v.value()),
        H::Warning(v) => ("Warning", v.value()),
        H::WwwAuthenticate(v) => ("WWW-Authenticate", v.value()),
    }
}

fn find_header<'a>(headers: &'a rsip::Headers, name: &str) -> Option<&'a str> {
    let want = expand_compact(name);
    headers
        .iter()
        .map(header_parts)
        .find(|(n, _)| n.eq_ignore_ascii_case(want))
        .map(|(_, v)| v)
}

fn find_lines<'a>(headers: &'a rsip::Headers, name: &str) -> Vec<&'a str> {
    let want = expand_compact(name);
    headers
        .iter()
        .map(header_parts)
        .filter(|(n, _)| n.eq_ignore_ascii_case(want))
        .map(|(_, v)| v)
        .collect()
}

/// The values of a list header's value (`a, "b,c" <d>, e`), split at
/// top-level commas like [`Request::header_values`] (commas inside quotes
/// and `<>` do not split), trimmed, empty ones dropped.
pub fn split_header_values(value: &str) -> Vec<String> {
    split_top_level(value, b',')
        .map(trim_lws)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn find_values<'a>(headers: &'a rsip::Headers, name: &str) -> Vec<&'a str> {
    let want = expand_compact(name);
    headers
        .iter()
        .map(header_parts)
        .filter(|(n, _)| n.eq_ignore_ascii_case(want))
        .flat_map(|(_, v)| split_top_level(v, b','))
        .map(trim_lws)
        .filter(|v| !v.is_empty())
        .collect()
}

/// Writes the headers (Content-Length recomputed from the body) and the body.
fn write_tail(out: &mut Vec<u8>, headers: &rsip::Headers, body: &[u8]) {
    for (name, value) in headers.iter().map(header_parts) {
        if name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

impl Request {
    /// First value of a header, case-insensitive; compact forms are
    /// understood on both sides (`header("v")` finds `Via`). The value is
    /// the whole (unfolded) line, including any commas.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of a list header, split at top-level commas across all
    /// lines (commas inside quotes and `<>` do not split). Not meaningful
    /// for headers whose values contain commas (Date, WWW-Authenticate).
    pub fn header_values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        find_values(&self.headers, name)
    }

    /// The Contact header(s): `*` or the parsed addresses. On error the
    /// [`ParseError::bad_request`] holds a 400 for this request.
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        let values = self.header_values("Contact");
        if values.contains(&"*") {
            if values.len() == 1 {
                return Ok(Contacts::Star);
            }
            return Err(self.error("Contact '*' mixed with other contacts"));
        }
        values
            .into_iter()
            .map(|v| NameAddr::parse(v).map_err(|e| self.error(&format!("invalid Contact: {e}"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Contacts::List)
    }

    /// The Expires header as delta-seconds; `None` when absent or malformed
    /// (RFC 3261 §20.19 / RFC 4475 §3.1.2.4: treat a bad value as absent and
    /// use the default).
    pub fn expires(&self) -> Option<u32> {
        self.header("Expires")
            .and_then(parse_digits)
            .and_then(|n| u32::try_from(n).ok())
    }

    /// Serializes the request (headers unfolded, compact names expanded,
    /// Content-Length recomputed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
        write_tail(&mut out, &self.headers, &self.body);
        out
    }

    fn error(&self, reason: &str) -> ParseError {
        ParseError {
            reason: reason.to_owned(),
            bad_request: (self.method != Method::Ack)
                .then(|| crate::response::response(self, 400, reason).build()),
        }
    }
}

impl Response {
    /// First value of a header; see [`Request::header`].
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of a list header; see [`Request::header_values`].
    pub fn header_values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        find_values(&self.headers, name)
    }

    /// Every line of a header, whole (for headers whose values contain
    /// commas: one `WWW-Authenticate` challenge per line).
    pub fn header_lines<'a>(&'a self, name: &str) -> Vec<&'a str> {
        find_lines(&self.headers, name)
    }

    /// Serializes the response (headers unfolded, compact names expanded,
    /// Content-Length recomputed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.code, self.reason).as_bytes());
        write_tail(&mut out, &self.headers, &self.body);
        out
    }
}

impl Message {
    /// Call-ID of either kind of message (transaction and dialog matching).
    pub fn call_id(&self) -> &str {
        match self {
            Message::Request(r) => &r.call_id,
            Message::Response(r) => &r.call_id,
        }
    }

    /// CSeq number and method of either kind of message.
    pub fn cseq(&self) -> (u32, &Method) {
        match self {
            Message::Request(r) => (r.cseq, &r.cseq_method),
            Message::Response(r) => (r.cseq, &r.cseq_method),
        }
    }

    /// Via elements of either kind of message, topmost first.
    pub fn vias(&self) -> &[Via] {
        match self {
            Message::Request(r) => &r.vias,
            Message::Response(r) => &r.vias,
        }
    }

    /// All headers of either kind of message.
    pub fn headers(&self) -> &rsip::Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// Body of either kind of message.
    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// Serializes either kind of message.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests;
