//! SIP request methods, including extension methods.
//!
//! `rsip::Method` is a closed enum of the 14 well-known methods and parses
//! case-insensitively, while RFC 3261 §7.1 methods are case-sensitive tokens
//! and any token is a valid (extension) method. RFC 4475 §3.1.1.2 (intmeth)
//! and §3.1.1.5 (esc02) are valid requests with such methods, so the view
//! carries this type instead; it converts to and compares with `rsip::Method`.

use std::fmt;

use super::syntax::is_token_str;

/// A request method: one of the well-known methods or an extension token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// INFO (RFC 6086)
    Info,
    /// INVITE (RFC 3261)
    Invite,
    /// MESSAGE (RFC 3428)
    Message,
    /// NOTIFY (RFC 6665)
    Notify,
    /// OPTIONS (RFC 3261)
    Options,
    /// PRACK (RFC 3262)
    PRack,
    /// PUBLISH (RFC 3903)
    Publish,
    /// REFER (RFC 3515)
    Refer,
    /// REGISTER (RFC 3261)
    Register,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// UPDATE (RFC 3311)
    Update,
    /// Any other token, kept exactly as received (methods are case-sensitive:
    /// `InViTe` is an extension method, not INVITE).
    Extension(String),
}

const KNOWN: [(&str, Method); 14] = [
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("INFO", Method::Info),
    ("INVITE", Method::Invite),
    ("MESSAGE", Method::Message),
    ("NOTIFY", Method::Notify),
    ("OPTIONS", Method::Options),
    ("PRACK", Method::PRack),
    ("PUBLISH", Method::Publish),
    ("REFER", Method::Refer),
    ("REGISTER", Method::Register),
    ("SUBSCRIBE", Method::Subscribe),
    ("UPDATE", Method::Update),
];

impl Method {
    /// Parses a method token (case-sensitive). `None` if `s` is not a token.
    pub fn parse(s: &str) -> Option<Method> {
        if !is_token_str(s) {
            return None;
        }
        Some(
            KNOWN
                .iter()
                .find(|(name, _)| *name == s)
                .map_or_else(|| Method::Extension(s.to_owned()), |(_, m)| m.clone()),
        )
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Extension(s) => s,
            known => KNOWN
                .iter()
                .find(|(_, m)| m == known)
                .map_or("", |(name, _)| name),
        }
    }

    /// The rsip equivalent, for code that works with `rsip::Method`; `None`
    /// for extension methods, which rsip cannot represent.
    pub fn to_rsip(&self) -> Option<rsip::Method> {
        Some(match self {
            Method::Ack => rsip::Method::Ack,
            Method::Bye => rsip::Method::Bye,
            Method::Cancel => rsip::Method::Cancel,
            Method::Info => rsip::Method::Info,
            Method::Invite => rsip::Method::Invite,
            Method::Message => rsip::Method::Message,
            Method::Notify => rsip::Method::Notify,
            Method::Options => rsip::Method::Options,
            Method::PRack => rsip::Method::PRack,
            Method::Publish => rsip::Method::Publish,
            Method::Refer => rsip::Method::Refer,
            Method::Register => rsip::Method::Register,
            Method::Subscribe => rsip::Method::Subscribe,
            Method::Update => rsip::Method::Update,
            Method::Extension(_) => return None,
        })
    }
}

impl From<rsip::Method> for Method {
    fn from(m: rsip::Method) -> Self {
        match m {
            rsip::Method::Ack => Method::Ack,
            rsip::Method::Bye => Method::Bye,
            rsip::Method::Cancel => Method::Cancel,
            rsip::Method::Info => Method::Info,
            rsip::Method::Invite => Method::Invite,
            rsip::Method::Message => Method::Message,
            rsip::Method::Notify => Method::Notify,
            rsip::Method::Options => Method::Options,
            rsip::Method::PRack => Method::PRack,
            rsip::Method::Publish => Method::Publish,
            rsip::Method::Refer => Method::Refer,
            rsip::Method::Register => Method::Register,
            rsip::Method::Subscribe => Method::Subscribe,
            rsip::Method::Update => Method::Update,
        }
    }
}

impl PartialEq<rsip::Method> for Method {
    fn eq(&self, other: &rsip::Method) -> bool {
        self.to_rsip() == Some(*other)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<Method>)] = &[
            ("INVITE", Some(Method::Invite)),
            ("PRACK", Some(Method::PRack)),
            ("InViTe", Some(Method::Extension("InViTe".into()))),
            (
                "RE%47IST%45R",
                Some(Method::Extension("RE%47IST%45R".into())),
            ),
            (
                "!interesting-Method0123456789_*+`.%indeed'~",
                Some(Method::Extension(
                    "!interesting-Method0123456789_*+`.%indeed'~".into(),
                )),
            ),
            ("", None),
            ("IN VITE", None),
            ("<INVITE>", None),
        ];
        for (s, want) in cases {
            assert_eq!(&Method::parse(s), want, "{s}");
        }
    }

    #[test]
    fn round_trips_and_rsip() {
        for (name, m) in KNOWN.iter() {
            assert_eq!(m.as_str(), *name);
            let r = m.to_rsip().unwrap();
            assert_eq!(Method::from(r), *m);
            assert!(*m == r);
            assert_eq!(r.to_string(), *name);
        }
        assert_eq!(Method::Extension("FOO".into()).to_rsip(), None);
        assert_eq!(Method::Extension("FOO".into()).to_string(), "FOO");
    }
}
