//! NATS subject names of Switchboard events, and the escaping that makes any
//! id (an AOR, a call UUID, an RTP manager name) one valid subject token.
//!
//! Subjects are `{root}.{family}.{id}.{verb}`, with `root` = `switchboard`
//! in production (configurable so tests on a shared server stay apart):
//!
//! | family          | id                 | verbs                                            |
//! |-----------------|--------------------|--------------------------------------------------|
//! | `calls`         | call UUID          | `received` `ringing` `answered` `ended`          |
//! | `registrations` | AOR                | `registered` `refreshed` `unregistered` `expired` |
//! | `sessions`      | media session id   | `created` `dtmf` `timeout` `destroyed`           |
//! | `rtpmanagers`   | RTP manager name   | `up` `down` `draining`                           |
//!
//! A subscriber picks what it wants with wildcards, e.g.
//! `switchboard.calls.*.ended` or `switchboard.registrations.>`.
//!
//! # Token escaping
//!
//! A NATS subject token must not be empty and must not contain `.` (the
//! separator), `*` or `>` (wildcards) or whitespace. Ids come from peers
//! (`sip:alice@example.com` has a dot), so [`escape_token`] percent-encodes,
//! as `%XX` with two uppercase hex digits, every byte that is `.`, `*`, `>`,
//! `%` itself, an ASCII control or space (`0x00..=0x20`, `0x7F`) or not ASCII
//! (each UTF-8 byte of such a character); the empty string becomes the lone
//! token `%`. Everything else stays as it is:
//! `sip:alice@example.com` → `sip:alice@example%2Ecom`.
//!
//! [`unescape_token`] accepts only what [`escape_token`] produces (uppercase
//! hex, no needless escapes), so the two are inverse bijections and one id
//! has exactly one subject.

use std::fmt;

/// The default subject root.
pub const DEFAULT_ROOT: &str = "switchboard";

/// Bytes [`escape_token`] encodes.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'.' | b'*' | b'>' | b'%') || b <= 0x20 || b >= 0x7F
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Encodes `id` as one valid NATS subject token (see the module docs).
pub fn escape_token(id: &str) -> String {
    if id.is_empty() {
        return "%".to_owned();
    }
    let bytes = id.as_bytes();
    if !bytes.iter().any(|&b| needs_escape(b)) {
        return id.to_owned();
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for &b in bytes {
        if needs_escape(b) {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
        } else {
            out.push(b);
        }
    }
    // only ASCII was pushed: every byte that is not is escaped
    String::from_utf8(out).unwrap_or_default()
}

/// Decodes a token made by [`escape_token`].
///
/// # Errors
/// A token `escape_token` cannot have produced: empty, holding a byte it
/// escapes, a `%` not followed by two uppercase hex digits, an escape of a
/// byte that needs none, or bytes that are not UTF-8 once decoded.
pub fn unescape_token(token: &str) -> Result<String, String> {
    if token == "%" {
        return Ok(String::new());
    }
    if token.is_empty() {
        return Err("empty token".to_owned());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                return Err(format!("truncated escape at byte {i}"));
            };
            let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
                return Err(format!("bad escape at byte {i}"));
            };
            let decoded = hi << 4 | lo;
            if !needs_escape(decoded) {
                return Err(format!("needless escape at byte {i}"));
            }
            out.push(decoded);
            i += 3;
        } else if needs_escape(b) {
            return Err(format!("unescaped byte 0x{b:02X} at {i}"));
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "escapes decode to invalid UTF-8".to_owned())
}

/// Uppercase hex digit value (lowercase is not what `escape_token` writes).
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `s` is usable as a subject root (e.g. `switchboard` or
/// `t1234.switchboard`): dot-separated tokens, none empty, no wildcard, no
/// whitespace or control byte.
pub fn valid_root(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| !matches!(b, b'*' | b'>') && b > 0x20 && b != 0x7F)
        })
}

/// The four event families, each a subject level under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `calls`: one call (the A-leg and its B-legs), id = call UUID.
    Calls,
    /// `registrations`: bindings of an AOR, id = the AOR.
    Registrations,
    /// `sessions`: one media session on an RTP manager, id = session id.
    Sessions,
    /// `rtpmanagers`: an RTP manager as signaling sees it, id = its name.
    RtpManagers,
}

impl Family {
    /// Every family, for building stream subject lists.
    pub const ALL: [Family; 4] = [
        Family::Calls,
        Family::Registrations,
        Family::Sessions,
        Family::RtpManagers,
    ];

    /// The subject token, e.g. `calls`.
    pub fn token(self) -> &'static str {
        match self {
            Family::Calls => "calls",
            Family::Registrations => "registrations",
            Family::Sessions => "sessions",
            Family::RtpManagers => "rtpmanagers",
        }
    }

    /// The singular used in payload `type`s, e.g. `call` in `call.answered`.
    pub fn type_prefix(self) -> &'static str {
        match self {
            Family::Calls => "call",
            Family::Registrations => "registration",
            Family::Sessions => "session",
            Family::RtpManagers => "rtpmanager",
        }
    }

    /// The family of a subject token.
    pub fn from_token(token: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.token() == token)
    }

    /// The wildcard subject of the whole family: `{root}.{family}.>`.
    pub fn wildcard(self, root: &str) -> String {
        format!("{root}.{}.>", self.token())
    }
}

/// Defines a verb enum with its subject token.
macro_rules! verbs {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $token:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every verb of the family.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The subject token, e.g. `answered`.
            pub fn token(self) -> &'static str {
                match self {
                    $($name::$variant => $token),+
                }
            }

            /// The verb of a subject token.
            pub fn from_token(token: &str) -> Option<$name> {
                match token {
                    $($token => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.token())
            }
        }
    };
}

verbs! {
    /// What happened to a call.
    CallVerb {
        /// An INVITE was accepted for routing.
        Received = "received",
        /// A callee is ringing (first 180/183).
        Ringing = "ringing",
        /// A callee answered (200 OK to the INVITE).
        Answered = "answered",
        /// The call is over (hangup, failure or cancel).
        Ended = "ended",
    }
}

verbs! {
    /// What happened to a registrar binding.
    RegistrationVerb {
        /// A new binding.
        Registered = "registered",
        /// An existing binding re-registered.
        Refreshed = "refreshed",
        /// Removed by the phone (Expires: 0), or with the connection it
        /// was registered over (the phone can no longer be reached).
        Unregistered = "unregistered",
        /// Removed by the registrar because it was not refreshed.
        Expired = "expired",
    }
}

verbs! {
    /// What happened to a media session.
    SessionVerb {
        /// The RTP manager created the session.
        Created = "created",
        /// A DTMF digit was detected.
        Dtmf = "dtmf",
        /// No media arrived for the media timeout.
        Timeout = "timeout",
        /// The session is gone.
        Destroyed = "destroyed",
    }
}

verbs! {
    /// What happened to an RTP manager.
    RtpManagerVerb {
        /// Ready: takes new sessions.
        Up = "up",
        /// Unreachable or removed.
        Down = "down",
        /// Terminating: keeps its sessions, takes no new ones.
        Draining = "draining",
    }
}

/// A verb of any family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// A call verb.
    Call(CallVerb),
    /// A registration verb.
    Registration(RegistrationVerb),
    /// A session verb.
    Session(SessionVerb),
    /// An RTP manager verb.
    RtpManager(RtpManagerVerb),
}

impl Verb {
    /// The family the verb belongs to.
    pub fn family(self) -> Family {
        match self {
            Verb::Call(_) => Family::Calls,
            Verb::Registration(_) => Family::Registrations,
            Verb::Session(_) => Family::Sessions,
            Verb::RtpManager(_) => Family::RtpManagers,
        }
    }

    /// The subject token, e.g. `answered`.
    pub fn token(self) -> &'static str {
        match self {
            Verb::Call(v) => v.token(),
            Verb::Registration(v) => v.token(),
            Verb::Session(v) => v.token(),
            Verb::RtpManager(v) => v.token(),
        }
    }

    /// The verb of `family` named by `token`.
    pub fn from_token(family: Family, token: &str) -> Option<Verb> {
        match family {
            Family::Calls => CallVerb::from_token(token).map(Verb::Call),
            Family::Registrations => RegistrationVerb::from_token(token).map(Verb::Registration),
            Family::Sessions => SessionVerb::from_token(token).map(Verb::Session),
            Family::RtpManagers => RtpManagerVerb::from_token(token).map(Verb::RtpManager),
        }
    }

    /// The payload `type`, e.g. `call.answered`.
    pub fn type_name(self) -> String {
        format!("{}.{}", self.family().type_prefix(), self.token())
    }

    /// The verb of a payload `type` such as `registration.expired`.
    pub fn from_type_name(type_name: &str) -> Option<Verb> {
        let (prefix, token) = type_name.split_once('.')?;
        let family = Family::ALL
            .into_iter()
            .find(|f| f.type_prefix() == prefix)?;
        Verb::from_token(family, token)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.family().type_prefix(), self.token())
    }
}

/// The subject of `verb` happening to `id`: `{root}.{family}.{escaped id}.{verb}`.
pub fn subject(root: &str, verb: Verb, id: &str) -> String {
    format!(
        "{root}.{}.{}.{}",
        verb.family().token(),
        escape_token(id),
        verb.token()
    )
}

/// What an event subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectParts {
    /// The id, unescaped.
    pub id: String,
    /// The verb (and with it the family).
    pub verb: Verb,
}

/// Splits an event subject under `root` into its id and verb.
///
/// # Errors
/// A subject not under `root`, of an unknown family or verb, with a wrong
/// number of tokens, or whose id token is not a valid escape.
pub fn parse_subject(root: &str, subject: &str) -> Result<SubjectParts, String> {
    let rest = subject
        .strip_prefix(root)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| format!("subject {subject:?} is not under {root:?}"))?;
    let mut tokens = rest.split('.');
    let (Some(family), Some(id), Some(verb), None) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return Err(format!(
            "subject {subject:?}: expected {root}.<family>.<id>.<verb>"
        ));
    };
    let family =
        Family::from_token(family).ok_or_else(|| format!("unknown event family {family:?}"))?;
    let verb = Verb::from_token(family, verb)
        .ok_or_else(|| format!("unknown verb {verb:?} for {}", family.token()))?;
    let id = unescape_token(id).map_err(|e| format!("subject {subject:?}: id token: {e}"))?;
    Ok(SubjectParts { id, verb })
}

#[cfg(test)]
mod tests;
