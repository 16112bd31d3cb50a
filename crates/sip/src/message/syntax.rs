//! Character classes and small splitting helpers shared by the message
//! parsers. Everything works on bytes or `&str` slices of the input: no
//! allocation, no regex, because this runs for every received message.

/// RFC 3261 `token` character.
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Space or horizontal tab (RFC 5234 `WSP`).
pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A non-empty string made only of token characters.
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Trims SP/HT on both ends (not other Unicode whitespace: SIP only knows these).
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Characters allowed in a host name, IPv4 literal or IPv6 reference. `_`
/// is not in the RFC 3261 grammar but is common in real host names, and
/// accepting it costs nothing.
pub(crate) fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// Validates a `host` (hostname, IPv4address or `[IPv6reference]`).
pub(crate) fn is_valid_host(h: &str) -> bool {
    let b = h.as_bytes();
    match b.first() {
        None => false,
        Some(b'[') => {
            b.len() > 2
                && b[b.len() - 1] == b']'
                && b[1..b.len() - 1]
                    .iter()
                    .all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.')
        }
        Some(_) => b.iter().all(|c| is_host_char(*c)),
    }
}

/// Splits a header value at top-level commas: commas inside a quoted string
/// (with `\` escapes) or inside `<...>` do not separate. Empty elements are
/// kept so callers can reject them where the grammar forbids them.
pub(crate) fn split_top_level(s: &str, sep: u8) -> SplitTop<'_> {
    SplitTop {
        s,
        pos: 0,
        done: false,
        sep,
    }
}

/// Iterator returned by [`split_top_level`].
pub(crate) struct SplitTop<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
    sep: u8,
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_quote = false;
        let mut in_angle = false;
        while i < bytes.len() {
            let b = bytes[i];
            if in_quote {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_quote = false,
                    _ => {}
                }
            } else if b == b'"' {
                in_quote = true;
            } else if b == b'<' {
                in_angle = true;
            } else if b == b'>' {
                in_angle = false;
            } else if b == self.sep && !in_angle {
                self.pos = i + 1;
                return self.s.get(start..i);
            }
            i += 1;
        }
        self.done = true;
        self.s.get(start..)
    }
}

/// Finds the end of a quoted string that starts at `s[0] == '"'`; returns
/// the index of the closing quote, or `None` if it is unterminated.
pub(crate) fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Which header a name denotes, for the headers the validated view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Expires,
    Date,
    Other,
}

/// Expands an RFC 3261 §7.3.3 / IANA compact header name to its long form;
/// any other name comes back unchanged.
pub(crate) fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => name,
    }
}

/// Classifies a (long-form) header name, case-insensitively.
pub(crate) fn kind_of(full_name: &str) -> Kind {
    const TABLE: [(&str, Kind); 11] = [
        ("Via", Kind::Via),
        ("From", Kind::From),
        ("To", Kind::To),
        ("Call-ID", Kind::CallId),
        ("CSeq", Kind::CSeq),
        ("Max-Forwards", Kind::MaxForwards),
        ("Content-Length", Kind::ContentLength),
        ("Content-Type", Kind::ContentType),
        ("Contact", Kind::Contact),
        ("Expires", Kind::Expires),
        ("Date", Kind::Date),
    ];
    TABLE
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(full_name))
        .map_or(Kind::Other, |(_, k)| *k)
}

/// Parses a run of ASCII digits into a `u64`, refusing empty input,
/// non-digits and overflow (RFC 4475 §3.1.2.4/5 send 20+ digit values).
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Validates the characters of a `%`-escaped URI component: every byte must
/// satisfy `allowed` or be part of a `%HH` escape.
pub(crate) fn valid_escaped(s: &str, allowed: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986/3261 `unreserved` = alphanum / mark.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let cases: &[(&str, &[&str])] = &[
            ("a, b", &["a", " b"]),
            (
                "\"x, y\" <sip:a>, <sip:b;c=d,e>",
                &["\"x, y\" <sip:a>", " <sip:b;c=d,e>"],
            ),
            ("\"q\\\",\" <sip:a>", &["\"q\\\",\" <sip:a>"]),
            ("", &[""]),
            (";;,,", &[";;", "", ""]),
        ];
        for (input, want) in cases {
            let got: Vec<&str> = split_top_level(input, b',').collect();
            assert_eq!(&got, want, "input {input:?}");
        }
    }

    #[test]
    fn compact_names_expand() {
        for (c, full) in [
            ("v", "Via"),
            ("F", "From"),
            ("t", "To"),
            ("i", "Call-ID"),
            ("m", "Contact"),
            ("l", "Content-Length"),
            ("c", "Content-Type"),
            ("k", "Supported"),
            ("e", "Content-Encoding"),
            ("s", "Subject"),
            ("o", "Event"),
            ("u", "Allow-Events"),
            ("Via", "Via"),
            ("q", "q"),
        ] {
            assert_eq!(expand_compact(c), full);
        }
    }

    #[test]
    fn digits_and_escapes() {
        assert_eq!(parse_digits("0009"), Some(9));
        assert_eq!(parse_digits("36893488147419103232"), None);
        assert_eq!(parse_digits("-1"), None);
        assert_eq!(parse_digits(""), None);
        assert!(valid_escaped("a%20b", is_unreserved));
        assert!(!valid_escaped("a%2", is_unreserved));
        assert!(!valid_escaped("a%zz", is_unreserved));
        assert!(!valid_escaped("%", is_unreserved));
    }

    #[test]
    fn hosts() {
        for (h, ok) in [
            ("example.com", true),
            ("192.0.2.1", true),
            ("[::1]", true),
            ("[2001:db8::1]", true),
            ("", false),
            ("a b", false),
            ("[]", false),
            ("[::1", false),
        ] {
            assert_eq!(is_valid_host(h), ok, "{h}");
        }
    }
}
