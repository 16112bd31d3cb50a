//! Transaction identity: which transaction a message belongs to.
//!
//! RFC 3261 §17.1.3 (client: branch + CSeq method) and §17.2.3 (server:
//! branch + sent-by + method, ACK matching the INVITE), with the RFC 2543
//! fallback of §17.2.3 for requests whose branch lacks the magic cookie.
//!
//! Keys are looked up for every message, so they are one boxed string plus
//! two one-byte enums: cheap to hash, compare and clone. The string is a
//! sequence of length-prefixed fields (`7:z9hG4bK…`) so no crafted value can
//! make two different field lists collide.

use std::fmt::Write as _;

use crate::target::TransportKind;

/// The RFC 3261 branch prefix (§8.1.1.7) that makes a branch globally
/// unique and so usable as a transaction id.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Whether `branch` starts with [`MAGIC_COOKIE`]. Compared
/// case-insensitively: the branch is a token, and tokens are
/// case-insensitive (RFC 3261 §7.3.1).
pub fn has_magic_cookie(branch: &str) -> bool {
    branch
        .get(..MAGIC_COOKIE.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(MAGIC_COOKIE))
}

/// Identifies one transaction; equal keys mean "same transaction".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// Length-prefixed fields; for extension methods the method name first.
    text: Box<str>,
    method: KeyMethod,
    side: Side,
}

/// Which matching rule built the key; keeps a looped-back request's server
/// key from ever equalling our own client key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Client,
    Server,
    Legacy,
}

/// The method part of the key. ACK is folded into INVITE because a non-2xx
/// ACK belongs to the INVITE's server transaction (§17.2.3); CANCEL stays
/// apart because it is a transaction of its own (§9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyMethod {
    Invite,
    Cancel,
    Bye,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other method; its name is the first field of `text`.
    Extension,
}

impl KeyMethod {
    /// Method names are case-sensitive (RFC 3261 §7.1).
    fn parse(method: &str) -> Self {
        match method {
            "INVITE" | "ACK" => KeyMethod::Invite,
            "CANCEL" => KeyMethod::Cancel,
            "BYE" => KeyMethod::Bye,
            "REGISTER" => KeyMethod::Register,
            "OPTIONS" => KeyMethod::Options,
            "INFO" => KeyMethod::Info,
            "UPDATE" => KeyMethod::Update,
            "PRACK" => KeyMethod::Prack,
            "SUBSCRIBE" => KeyMethod::Subscribe,
            "NOTIFY" => KeyMethod::Notify,
            "REFER" => KeyMethod::Refer,
            "MESSAGE" => KeyMethod::Message,
            "PUBLISH" => KeyMethod::Publish,
            _ => KeyMethod::Extension,
        }
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            KeyMethod::Invite => "INVITE",
            KeyMethod::Cancel => "CANCEL",
            KeyMethod::Bye => "BYE",
            KeyMethod::Register => "REGISTER",
            KeyMethod::Options => "OPTIONS",
            KeyMethod::Info => "INFO",
            KeyMethod::Update => "UPDATE",
            KeyMethod::Prack => "PRACK",
            KeyMethod::Subscribe => "SUBSCRIBE",
            KeyMethod::Notify => "NOTIFY",
            KeyMethod::Refer => "REFER",
            KeyMethod::Message => "MESSAGE",
            KeyMethod::Publish => "PUBLISH",
            KeyMethod::Extension => return None,
        })
    }
}

/// Builds the length-prefixed text.
struct Fields(String);

impl Fields {
    fn new(method: &str, kind: KeyMethod, capacity: usize) -> Self {
        let mut fields = Fields(String::with_capacity(capacity + 8));
        if kind == KeyMethod::Extension {
            fields.push(method);
        }
        fields
    }

    fn push(&mut self, field: &str) {
        // Writing to a String cannot fail.
        let _ = write!(self.0, "{}:", field.len());
        self.0.push_str(field);
    }

    fn push_lower(&mut self, field: &str) {
        let _ = write!(self.0, "{}:", field.len());
        self.0.extend(field.chars().map(|c| c.to_ascii_lowercase()));
    }

    fn push_num(&mut self, n: u32) {
        let _ = write!(self.0, "{n};");
    }
}

impl TransactionKey {
    /// Server-side key for an RFC 3261 request (§17.2.3): the top Via's
    /// branch and sent-by, and the request method (ACK counts as INVITE).
    ///
    /// Only for a branch that passes [`has_magic_cookie`]: without the
    /// cookie the branch is not unique (RFC 2543) and the request must be
    /// keyed with [`Self::legacy`]; the caller decides, since it holds the
    /// fields the fallback needs. The port defaults per the Via transport
    /// (5060, or 5061 for TLS) so `host` and `host:5060` match; host and
    /// branch are compared case-insensitively.
    pub fn server(
        branch: &str,
        sent_by_host: &str,
        sent_by_port: Option<u16>,
        transport: TransportKind,
        method: &str,
    ) -> Self {
        let kind = KeyMethod::parse(method);
        let port = sent_by_port.unwrap_or(match transport {
            TransportKind::Tls => 5061,
            TransportKind::Udp | TransportKind::Tcp => 5060,
            // RFC 6455's defaults (RFC 7118 §5 leaves the Via port to them)
            TransportKind::Ws => 80,
            TransportKind::Wss => 443,
        });
        let mut f = Fields::new(method, kind, branch.len() + sent_by_host.len() + 6);
        f.push_lower(branch);
        f.push_lower(sent_by_host);
        f.push_num(u32::from(port));
        Self {
            text: f.0.into_boxed_str(),
            method: kind,
            side: Side::Server,
        }
    }

    /// Client-side key (§17.1.3): the branch we put in the top Via and the
    /// CSeq method, so the CANCEL for an INVITE (same branch) is separate.
    pub fn client(branch: &str, method: &str) -> Self {
        let kind = KeyMethod::parse(method);
        let mut f = Fields::new(method, kind, branch.len());
        f.push_lower(branch);
        Self {
            text: f.0.into_boxed_str(),
            method: kind,
            side: Side::Client,
        }
    }

    /// Server-side key for an RFC 2543 request (§17.2.3 fallback): no usable
    /// branch, so the transaction is the Request-URI, tags, Call-ID, CSeq and
    /// top Via taken together.
    ///
    /// The To tag is left out for INVITE, ACK and CANCEL. The ACK for a
    /// non-2xx carries the To tag of our response while the INVITE had none
    /// (§17.2.3 compares it against the response, not the request), and a
    /// CANCEL must find its INVITE via [`Self::cancelled_invite`]. Dropping it
    /// loses nothing: an ACK for a 2xx that lands on the INVITE's
    /// transaction finds it in Accepted and is handed to the TU.
    /// Values are compared as given; the caller normalises the URI if needed.
    /// An absent tag is passed as `""` (a tag is a non-empty token, so
    /// nothing is lost).
    pub fn legacy(
        request_uri: &str,
        from_tag: &str,
        call_id: &str,
        cseq_num: u32,
        cseq_method: &str,
        top_via_raw: &str,
        to_tag: &str,
    ) -> Self {
        let kind = KeyMethod::parse(cseq_method);
        let len = request_uri.len() + call_id.len() + top_via_raw.len() + 32;
        let mut f = Fields::new(cseq_method, kind, len);
        f.push(request_uri);
        f.push(from_tag);
        f.push(call_id);
        f.push_num(cseq_num);
        f.push(top_via_raw);
        if !matches!(kind, KeyMethod::Invite | KeyMethod::Cancel) {
            f.push(to_tag);
        }
        Self {
            text: f.0.into_boxed_str(),
            method: kind,
            side: Side::Legacy,
        }
    }

    /// Whether this is an INVITE (or, server side, ACK) transaction.
    pub fn is_invite(&self) -> bool {
        self.method == KeyMethod::Invite
    }

    /// Whether this key identifies a server transaction.
    pub fn is_server(&self) -> bool {
        self.side != Side::Client
    }

    /// The method the transaction was created for (`INVITE` for ACK).
    pub fn method(&self) -> &str {
        if let Some(name) = self.method.name() {
            return name;
        }
        // Extension: the first field is the method name.
        self.text
            .split_once(':')
            .and_then(|(len, rest)| rest.get(..len.parse::<usize>().ok()?))
            .unwrap_or("")
    }

    /// For a CANCEL's key, the key of the INVITE it cancels: CANCEL carries
    /// the INVITE's branch and sent-by (§9.1), so only the method differs.
    pub fn cancelled_invite(&self) -> Option<Self> {
        (self.method == KeyMethod::Cancel).then(|| Self {
            text: self.text.clone(),
            method: KeyMethod::Invite,
            side: self.side,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRANCH: &str = "z9hG4bK776asdhds";

    fn server(host: &str, port: Option<u16>, t: TransportKind, m: &str) -> TransactionKey {
        TransactionKey::server(BRANCH, host, port, t, m)
    }

    #[test]
    fn magic_cookie_required_for_rfc3261_path() {
        assert!(has_magic_cookie("z9hG4bKabc"));
        assert!(has_magic_cookie("Z9HG4BKabc"));
        assert!(!has_magic_cookie("z9hG4b"));
        assert!(!has_magic_cookie("abc"));
        assert!(!has_magic_cookie("z9hé4bKx"));
    }

    #[test]
    fn server_keys_match_per_17_2_3() {
        let udp = TransportKind::Udp;
        let invite = server("PC33.Atlanta.com", None, udp, "INVITE");
        assert_eq!(
            invite,
            server("pc33.atlanta.com", Some(5060), udp, "INVITE")
        );
        assert_eq!(invite, server("pc33.atlanta.com", None, udp, "ACK"));
        assert!(invite.is_invite() && invite.is_server());
        assert_eq!(invite.method(), "INVITE");
        assert_ne!(
            invite,
            server("pc33.atlanta.com", Some(5070), udp, "INVITE")
        );
        assert_ne!(invite, server("pc34.atlanta.com", None, udp, "INVITE"));
        let cancel = server("pc33.atlanta.com", None, udp, "CANCEL");
        assert_ne!(invite, cancel);
        assert_eq!(cancel.cancelled_invite(), Some(invite.clone()));
        assert_eq!(invite.cancelled_invite(), None);
        assert_ne!(
            server("h", None, udp, "OPTIONS"),
            server("h", None, udp, "REGISTER")
        );
        let upper = TransactionKey::server("Z9HG4BK776ASDHDS", "h", None, udp, "BYE");
        assert_eq!(upper, server("h", None, udp, "BYE"), "branch is a token");
        let other = TransactionKey::server("z9hG4bKx", "pc33.atlanta.com", None, udp, "INVITE");
        assert_ne!(invite, other);
    }

    #[test]
    fn default_port_depends_on_transport() {
        let tls = TransportKind::Tls;
        assert_eq!(
            server("h", None, tls, "BYE"),
            server("h", Some(5061), tls, "BYE")
        );
        assert_ne!(
            server("h", None, tls, "BYE"),
            server("h", Some(5060), tls, "BYE")
        );
        assert_eq!(
            server("h", None, TransportKind::Tcp, "BYE"),
            server("h", Some(5060), TransportKind::Udp, "BYE")
        );
    }

    #[test]
    fn extension_methods_are_distinct_and_case_sensitive() {
        let udp = TransportKind::Udp;
        let a = server("h", None, udp, "FOO");
        let b = server("h", None, udp, "BAR");
        let c = server("h", None, udp, "foo");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.method(), "FOO");
        assert_eq!(c.method(), "foo");
        assert_ne!(
            server("h", None, udp, "invite"),
            server("h", None, udp, "INVITE")
        );
    }

    #[test]
    fn client_keys() {
        let invite = TransactionKey::client(BRANCH, "INVITE");
        assert_eq!(invite, TransactionKey::client(BRANCH, "INVITE"));
        assert_ne!(invite, TransactionKey::client(BRANCH, "CANCEL"));
        assert_ne!(invite, TransactionKey::client("z9hG4bKother", "INVITE"));
        assert!(!invite.is_server());
        // A request we sent that loops back to us is a different transaction.
        let looped = server("h", None, TransportKind::Udp, "INVITE");
        assert_ne!(invite, looped);
    }

    #[test]
    fn legacy_keys_per_17_2_3_fallback() {
        let key = |method: &str, to_tag: &str, num: u32| {
            TransactionKey::legacy(
                "sip:bob@biloxi.com",
                "1928301774",
                "a84b4c76e66710",
                num,
                method,
                "SIP/2.0/UDP pc33.atlanta.com",
                to_tag,
            )
        };
        let invite = key("INVITE", "", 1);
        assert!(invite.is_server() && invite.is_invite());
        assert_eq!(invite, key("ACK", "a6c85cf", 1));
        assert_ne!(invite, key("INVITE", "", 2));
        assert_eq!(
            key("CANCEL", "", 1).cancelled_invite(),
            Some(invite.clone())
        );
        assert_ne!(key("BYE", "x", 1), key("BYE", "y", 1));
        assert_ne!(key("BYE", "", 1), key("BYE", "x", 1));
        // Length prefixes: shifting text between fields changes the key.
        let a = TransactionKey::legacy("ab", "", "c", 1, "BYE", "v", "");
        let b = TransactionKey::legacy("a", "", "bc", 1, "BYE", "v", "");
        assert_ne!(a, b);
        let rfc3261 = server("pc33.atlanta.com", None, TransportKind::Udp, "INVITE");
        assert_ne!(invite, rfc3261);
    }
}
