//! URIs as they appear in the Request-URI and in name-addr headers.
//!
//! `sip:`/`sips:` URIs are parsed and validated per RFC 3261 §25.1 (the
//! userinfo may contain `;`, `?`, `/` and escapes — RFC 4475 §3.1.1.2,
//! §3.1.1.3, §3.1.1.9 — so it is located by the `@` first). `tel:` URIs
//! get their parameters split. Any other scheme is kept opaque: RFC 4475
//! §3.3.2–3.3.4 say such URIs are syntactically fine and it is the
//! application that answers 416, so parsing must not fail on them.

use std::fmt;

use super::syntax::{is_unreserved, is_valid_host, parse_digits, valid_escaped};

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme in lower case (`sip`, `sips`, `tel`, or any other).
    pub scheme: String,
    /// User part (escapes kept as received), for `sip`/`sips` only.
    pub user: Option<String>,
    /// Password part of the userinfo (deprecated but legal, RFC 4475 §3.1.1.2).
    pub password: Option<String>,
    /// Host as received (IPv6 references keep their brackets). For `tel:` the
    /// subscriber number; for other schemes the whole opaque part.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters in order, as received (look them up with [`Uri::param`],
    /// which ignores case).
    pub params: Vec<(String, Option<String>)>,
    /// The `?`-headers component as received (without the `?`), if any.
    pub headers: Option<String>,
}

/// `user` characters besides unreserved/escaped (RFC 3261 `user-unreserved`).
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar` = param-unreserved / unreserved (escaped checked separately).
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hname`/`hvalue` characters, plus the `=`/`&` that structure them.
fn is_header_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
        )
}

/// Characters allowed in an opaque URI of an unknown scheme: anything
/// printable except the delimiters that end a URI inside a header.
fn is_opaque_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"')
}

/// A validated URI as borrowed slices of the input: validation allocates
/// nothing, so checking the URI of every From/To/Contact stays cheap.
struct Parts<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    /// The `;`-separated parameters (validated), without the leading `;`.
    params: Option<&'a str>,
    headers: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn parse(s: &'a str) -> Result<Parts<'a>, &'static str> {
        let colon = s.find(':').ok_or("URI has no scheme")?;
        let scheme = &s[..colon];
        let sb = scheme.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err("invalid URI scheme");
        }
        let rest = &s[colon + 1..];
        if rest.is_empty() || !rest.bytes().all(is_opaque_char) {
            return Err("invalid characters in URI");
        }
        let mut parts = Parts {
            scheme,
            user: None,
            password: None,
            host: rest,
            port: None,
            params: None,
            headers: None,
        };
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            parts.sip(rest)?;
        } else if scheme.eq_ignore_ascii_case("tel") {
            let (number, params) = split_once_opt(rest, ';');
            if number.is_empty() {
                return Err("empty tel number");
            }
            parts.host = number;
            parts.params = params.map(check_params).transpose()?;
        }
        Ok(parts)
    }

    fn sip(&mut self, rest: &'a str) -> Result<(), &'static str> {
        // The userinfo may itself contain `;` and `?`, so find `@` first:
        // neither params nor headers may contain an unescaped `@`.
        let (userinfo, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if let Some(ui) = userinfo {
            let (u, p) = split_once_opt(ui, ':');
            if u.is_empty() || !valid_escaped(u, is_user_char) {
                return Err("invalid user in URI");
            }
            if let Some(p) = p
                && !valid_escaped(p, is_password_char)
            {
                return Err("invalid password in URI");
            }
            self.user = Some(u);
            self.password = p;
        }
        let (before_headers, headers) = split_once_opt(hostpart, '?');
        if let Some(h) = headers
            && (h.is_empty() || !valid_escaped(h, is_header_char))
        {
            return Err("invalid headers in URI");
        }
        let (hostport, params) = split_once_opt(before_headers, ';');
        let (host, port) = split_host_port(hostport)?;
        self.host = host;
        self.port = port;
        self.params = params.map(check_params).transpose()?;
        self.headers = headers;
        Ok(())
    }
}

fn split_once_opt(s: &str, c: char) -> (&str, Option<&str>) {
    match s.split_once(c) {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// Validates `pname[=pvalue]` pieces separated by `;`.
fn check_params(params: &str) -> Result<&str, &'static str> {
    for p in params.split(';') {
        let (name, value) = split_once_opt(p, '=');
        if name.is_empty() || !valid_escaped(name, is_param_char) {
            return Err("invalid URI parameter");
        }
        if let Some(v) = value
            && (v.is_empty() || !valid_escaped(v, is_param_char))
        {
            return Err("invalid URI parameter value");
        }
    }
    Ok(params)
}

/// Checks a URI without building it.
pub(crate) fn validate(s: &str) -> Result<(), &'static str> {
    Parts::parse(s).map(|_| ())
}

impl Uri {
    /// Parses and validates a URI (the text between `<` and `>`, or a bare
    /// Request-URI).
    pub fn parse(s: &str) -> Result<Uri, &'static str> {
        let p = Parts::parse(s)?;
        let params = p
            .params
            .map(|ps| {
                ps.split(';')
                    .map(|piece| {
                        let (n, v) = split_once_opt(piece, '=');
                        (n.to_owned(), v.map(str::to_owned))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Uri {
            scheme: p.scheme.to_ascii_lowercase(),
            user: p.user.map(str::to_owned),
            password: p.password.map(str::to_owned),
            host: p.host.to_owned(),
            port: p.port,
            params,
            headers: p.headers.map(str::to_owned),
        })
    }

    /// Looks up a URI parameter by (case-insensitive) name: `Some(None)` for
    /// a parameter without value such as `;lr`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The address-of-record key a registrar files bindings under:
    /// `scheme:user@host` with the host lower-cased, escapes of unreserved
    /// characters in the user decoded (RFC 3261 §19.1.4 makes `%75ser` and
    /// `user` equal), and port, parameters and headers dropped.
    pub fn aor(&self) -> String {
        let host = self.host.to_ascii_lowercase();
        match &self.user {
            Some(user) => {
                let mut out =
                    String::with_capacity(self.scheme.len() + user.len() + host.len() + 2);
                out.push_str(&self.scheme);
                out.push(':');
                normalize_escapes(user, &mut out);
                out.push('@');
                out.push_str(&host);
                out
            }
            None => format!("{}:{}", self.scheme, host),
        }
    }
}

/// Copies `s` into `out`, decoding `%HH` escapes of unreserved characters
/// and upper-casing the hex of the escapes that must stay.
pub(super) fn normalize_escapes(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2))
            && let (Some(h), Some(l)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            // Both nibbles are < 16, so the byte fits.
            let byte = (h * 16 + l) as u8;
            if is_unreserved(byte) {
                out.push(byte as char);
            } else {
                out.push('%');
                out.push_str(&format!("{byte:02X}"));
            }
            i += 3;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
}

/// Splits `host[:port]`, handling `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => {
                let after = &s[end + 1..];
                match after.strip_prefix(':') {
                    Some(p) => (&s[..=end], Some(p)),
                    None if after.is_empty() => (&s[..=end], None),
                    None => return Err("invalid host"),
                }
            }
            None => return Err("invalid host"),
        }
    } else {
        match s.find(':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    if !is_valid_host(host) {
        return Err("invalid host");
    }
    let port = match port {
        None => None,
        Some(p) => {
            let v = parse_digits(p).ok_or("invalid port")?;
            Some(u16::try_from(v).map_err(|_| "invalid port")?)
        }
    };
    Ok((host, port))
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        f.write_str(":")?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (input, scheme, user, host, port, #params)
        type Row<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<u16>,
            usize,
        );
        let ok: &[Row] = &[
            (
                "sip:alice@example.com",
                "sip",
                Some("alice"),
                "example.com",
                None,
                0,
            ),
            (
                "SIPS:Alice@Example.COM:5061;transport=tcp",
                "sips",
                Some("Alice"),
                "Example.COM",
                Some(5061),
                1,
            ),
            ("sip:example.com;lr", "sip", None, "example.com", None, 1),
            (
                "sip:[2001:db8::1]:5060",
                "sip",
                None,
                "[2001:db8::1]",
                Some(5060),
                0,
            ),
            (
                "sip:user;par=u%40example.net@example.com",
                "sip",
                Some("user;par=u%40example.net"),
                "example.com",
                None,
                0,
            ),
            (
                "sip:sips%3Auser%40example.com@example.net",
                "sip",
                Some("sips%3Auser%40example.com"),
                "example.net",
                None,
                0,
            ),
            (
                "sip:null-%00-null@example.com",
                "sip",
                Some("null-%00-null"),
                "example.com",
                None,
                0,
            ),
            (
                "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
                "sip",
                Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"),
                "example.com",
                None,
                0,
            ),
            (
                "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
                "sip",
                Some("cal%6Cer"),
                "host5.example.net",
                None,
                2,
            ),
            (
                "tel:+1-201-555-0123;phone-context=example.com",
                "tel",
                None,
                "+1-201-555-0123",
                None,
                1,
            ),
            (
                "nobodyKnowsThisScheme:totallyopaquecontent",
                "nobodyknowsthisscheme",
                None,
                "totallyopaquecontent",
                None,
                0,
            ),
            (
                "soap.beep://192.0.2.103:3002",
                "soap.beep",
                None,
                "//192.0.2.103:3002",
                None,
                0,
            ),
            (
                "sip:user@example.com?Route=%3Csip:example.com%3E",
                "sip",
                Some("user"),
                "example.com",
                None,
                0,
            ),
        ];
        for (s, scheme, user, host, port, np) in ok {
            let u = Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(u.scheme, *scheme, "{s}");
            assert_eq!(u.user.as_deref(), *user, "{s}");
            assert_eq!(u.host, *host, "{s}");
            assert_eq!(u.port, *port, "{s}");
            assert_eq!(u.params.len(), *np, "{s}");
            // Display gives back something that parses to the same URI.
            assert_eq!(Uri::parse(&u.to_string()), Ok(u.clone()), "{s}");
        }
        let bad = [
            "",
            "sip",
            "sip:",
            ":user@host",
            "1sip:host",
            "<sip:user@example.com>",
            "sip:user@example.com; lr",
            "sip:user@ex ample.com",
            "sip:@example.com",
            "sip:user@",
            "sip:user@host:99999",
            "sip:user@host:x",
            "sip:us%2er@host%",
            "sip:user@host;;lr",
            "sip:user@host;=x",
            "sip:user@host;a=",
            "sip:user@host?",
            "sip:a\"b@host",
            "sip:user@[::1",
            "tel:",
        ];
        for s in bad {
            assert!(Uri::parse(s).is_err(), "{s} should fail");
        }
    }

    #[test]
    fn aor_table() {
        for (s, aor) in [
            (
                "sip:Alice@Example.COM:5060;transport=udp",
                "sip:Alice@example.com",
            ),
            ("sip:%75se%72@example.com", "sip:user@example.com"),
            ("sip:a%40b@example.com", "sip:a%40b@example.com"),
            ("sip:a%3ab@example.com", "sip:a%3Ab@example.com"),
            ("sip:Example.com", "sip:example.com"),
            ("tel:+15551234", "tel:+15551234"),
        ] {
            assert_eq!(Uri::parse(s).unwrap().aor(), aor, "{s}");
        }
    }

    #[test]
    fn param_lookup() {
        let u = Uri::parse("sip:h;LR;Transport=TCP").unwrap();
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("transport"), Some(Some("TCP")));
        assert_eq!(u.param("maddr"), None);
    }
}
