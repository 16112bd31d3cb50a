//! `name-addr` / `addr-spec` values of From, To, Contact, Route and friends
//! (RFC 3261 §20.10, §25.1).
//!
//! The checks here are what make RFC 4475 §3.1.2.6 (unterminated quote),
//! §3.1.2.13 (`?` in an addr-spec without `<>`), §3.1.2.14 (spaces inside
//! `<>`) and §3.1.2.15 (non-token display name) come out invalid, while
//! keeping §3.1.1.2 (token display names, UTF-8 quoted parameter) and
//! §3.1.1.6 (no space before `<`) valid.

use std::fmt;

use super::syntax::{is_token, is_token_str, is_wsp, quoted_end, split_top_level, trim_lws};
use super::uri::{Uri, validate};

/// A display name, URI and header parameters, as in From/To/Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name: the inside of the quotes (escapes kept) or the token
    /// sequence as received; `None` when absent.
    pub display: Option<String>,
    /// URI text without the `<>` (validated with [`Uri::parse`]).
    pub uri: String,
    /// Header parameters after the address, in order; names lower-cased,
    /// values as received (quoted values keep their quotes).
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parses one name-addr or addr-spec with its parameters. Fails on
    /// anything left over (e.g. a second comma-separated value).
    pub fn parse(input: &str) -> Result<NameAddr, &'static str> {
        let s = trim_lws(input);
        if s.is_empty() {
            return Err("empty address");
        }
        let bytes = s.as_bytes();
        let (display, uri, rest) = if bytes[0] == b'"' {
            let end = quoted_end(bytes).ok_or("unterminated quoted display name")?;
            let after = s[end + 1..].trim_start_matches([' ', '\t']);
            if !after.starts_with('<') {
                return Err("quoted display name not followed by <URI>");
            }
            let (uri, rest) = angle(after)?;
            (Some(s[1..end].to_owned()), uri, rest)
        } else if let Some(lt) = s.find('<') {
            let disp = trim_lws(&s[..lt]);
            if !disp.bytes().all(|b| is_token(b) || is_wsp(b)) {
                return Err("display name is neither a token sequence nor quoted");
            }
            let (uri, rest) = angle(&s[lt..])?;
            let display = (!disp.is_empty()).then(|| disp.to_owned());
            (display, uri, rest)
        } else {
            // addr-spec form: the URI ends at the first `;` and cannot carry
            // `?` headers or commas (RFC 3261 §20: those need `<>`).
            let end = s.find(';').unwrap_or(s.len());
            let uri = trim_lws(&s[..end]);
            if uri
                .bytes()
                .any(|b| matches!(b, b'?' | b',' | b' ' | b'\t' | b'<' | b'>'))
            {
                return Err("URI with '?', ',' or spaces must be enclosed in <>");
            }
            (None, uri, &s[end..])
        };
        validate(uri)?;
        let params = parse_header_params(rest)?;
        Ok(NameAddr {
            display,
            uri: uri.to_owned(),
            params,
        })
    }

    /// Looks up a header parameter by (case-insensitive) name: `Some(None)`
    /// for a parameter without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The `tag` parameter (dialog identification, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Parses [`NameAddr::uri`]; it was validated, so this only fails for a
    /// hand-built value.
    pub fn parsed_uri(&self) -> Result<Uri, &'static str> {
        Uri::parse(&self.uri)
    }
}

/// Splits `<uri>rest`, refusing whitespace just inside the brackets.
fn angle(s: &str) -> Result<(&str, &str), &'static str> {
    let inner_start = 1;
    let gt = s.find('>').ok_or("missing '>'")?;
    let uri = &s[inner_start..gt];
    if uri.is_empty() || uri.starts_with([' ', '\t']) || uri.ends_with([' ', '\t']) {
        return Err("whitespace or nothing inside <>");
    }
    Ok((uri, &s[gt + 1..]))
}

/// Parses `*( SEMI generic-param )`, tolerating LWS around `;` and `=`.
pub(crate) fn parse_header_params(
    rest: &str,
) -> Result<Vec<(String, Option<String>)>, &'static str> {
    let rest = trim_lws(rest);
    let mut params = Vec::new();
    if rest.is_empty() {
        return Ok(params);
    }
    let Some(rest) = rest.strip_prefix(';') else {
        return Err("unexpected text after address");
    };
    for piece in split_top_level(rest, b';') {
        let piece = trim_lws(piece);
        let (name, value) = match piece.find('=') {
            Some(eq) => (trim_lws(&piece[..eq]), Some(trim_lws(&piece[eq + 1..]))),
            None => (piece, None),
        };
        if !is_token_str(name) {
            return Err("empty or invalid header parameter");
        }
        if let Some(v) = value {
            valid_gen_value(v)?;
        }
        params.push((name.to_ascii_lowercase(), value.map(str::to_owned)));
    }
    Ok(params)
}

/// `gen-value = token / host / quoted-string`.
pub(crate) fn valid_gen_value(v: &str) -> Result<(), &'static str> {
    let b = v.as_bytes();
    if b.is_empty() {
        return Err("empty parameter value");
    }
    if b[0] == b'"' {
        return match quoted_end(b) {
            Some(end) if end == b.len() - 1 => Ok(()),
            _ => Err("bad quoted parameter value"),
        };
    }
    if b.iter()
        .all(|c| is_token(*c) || matches!(c, b'[' | b']' | b':'))
    {
        Ok(())
    } else {
        Err("invalid parameter value")
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{d}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        // (input, display, uri, params)
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            &'a [(&'a str, Option<&'a str>)],
        );
        let cases: &[Row] = &[
            ("<sip:a@b>", None, "sip:a@b", &[]),
            ("sip:a@b;tag=1", None, "sip:a@b", &[("tag", Some("1"))]),
            (
                "\"A B\" <sip:a@b>;tag=x;lr",
                Some("A B"),
                "sip:a@b",
                &[("tag", Some("x")), ("lr", None)],
            ),
            (
                "caller<sip:caller@example.com>;tag=323",
                Some("caller"),
                "sip:caller@example.com",
                &[("tag", Some("323"))],
            ),
            (
                "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8",
                Some("J Rosenberg \\\\\\\""),
                "sip:jdrosen@example.com",
                &[("tag", Some("98asjd8"))],
            ),
            (
                "  sip:vivekg@example.com ;   tag    = 1918181833n",
                None,
                "sip:vivekg@example.com",
                &[("tag", Some("1918181833n"))],
            ),
            (
                "Bob <sip:b@h>;Expires=60;Q=0.5",
                Some("Bob"),
                "sip:b@h",
                &[("expires", Some("60")), ("q", Some("0.5"))],
            ),
            (
                "<sip:h>;p=\"a;b,c\"",
                None,
                "sip:h",
                &[("p", Some("\"a;b,c\""))],
            ),
            ("isbn:2983792873", None, "isbn:2983792873", &[]),
            (
                "<http://www.example.com>;tag=3",
                None,
                "http://www.example.com",
                &[("tag", Some("3"))],
            ),
            (
                "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
                None,
                "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
                &[],
            ),
            (
                "<sip:h>;received=[::1]",
                None,
                "sip:h",
                &[("received", Some("[::1]"))],
            ),
        ];
        for (input, display, uri, params) in cases {
            let na = NameAddr::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(na.display.as_deref(), *display, "{input}");
            assert_eq!(na.uri, *uri, "{input}");
            let got: Vec<(&str, Option<&str>)> = na
                .params
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_deref()))
                .collect();
            assert_eq!(&got, params, "{input}");
            // Display re-parses to the same address (display may gain quotes).
            let again = NameAddr::parse(&na.to_string()).unwrap();
            assert_eq!(again.uri, na.uri);
            assert_eq!(again.params, na.params);
        }
    }

    #[test]
    fn rejects() {
        for input in [
            "",
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:a@b>, <sip:c@d>",
            "sip:a@b, sip:c@d",
            "<sip:a@b",
            "<>",
            "<sip:a@b>;tag=",
            "<sip:a@b>;=x",
            "<sip:a@b> junk",
            "\"x\" sip:a@b",
            "<sip:a@b>;p=\"unterminated",
        ] {
            assert!(NameAddr::parse(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn tag_lookup() {
        let na = NameAddr::parse("<sip:a@b>;TAG=abc").unwrap();
        assert_eq!(na.tag(), Some("abc"));
        assert_eq!(na.param("Tag"), Some(Some("abc")));
        assert_eq!(NameAddr::parse("<sip:a@b>").unwrap().tag(), None);
    }
}
