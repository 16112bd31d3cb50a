//! One Via header element (RFC 3261 §20.42, §18.2.1, RFC 3581).
//!
//! LWS is allowed around `/`, `;`, `=` and `:` (RFC 4475 §3.1.1.1 folds
//! a Via across three lines); empty parameters make the element invalid
//! (RFC 4475 §3.1.2.1). Unknown transports are kept (§3.1.1.10).

use super::addr::valid_gen_value;
use super::syntax::{is_host_char, is_token, is_wsp, parse_digits, quoted_end};

/// A parsed Via element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token in upper case (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...).
    pub transport: String,
    /// sent-by host as received (IPv6 with brackets).
    pub host: String,
    /// sent-by port, if given.
    pub port: Option<u16>,
    /// The `branch` parameter.
    pub branch: Option<String>,
    /// `rport` (RFC 3581): `Some(None)` for a bare `;rport`.
    pub rport: Option<Option<u16>>,
    /// The `received` parameter.
    pub received: Option<String>,
    /// Every parameter in order (names lower-cased), including the above.
    pub params: Vec<(String, Option<String>)>,
    /// The whole element as received (after unfolding), for copying into
    /// responses unchanged (RFC 3261 §8.2.6.2).
    pub raw: String,
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.s.as_bytes().get(self.i).is_some_and(|b| is_wsp(*b)) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.as_bytes().get(self.i) == Some(&c) {
            self.i += 1;
            self.skip_ws();
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.s.as_bytes().get(self.i).is_some_and(|b| f(*b)) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
}

impl Via {
    /// Parses one Via element (the text between commas).
    pub fn parse(input: &str) -> Result<Via, &'static str> {
        let raw = input.trim_matches([' ', '\t']);
        let mut c = Cursor { s: raw, i: 0 };
        let name = c.take_while(is_token);
        if name.is_empty() || !c.eat(b'/') {
            return Err("invalid Via sent-protocol");
        }
        let version = c.take_while(is_token);
        if version.is_empty() || !c.eat(b'/') {
            return Err("invalid Via sent-protocol");
        }
        let transport = c.take_while(is_token);
        if transport.is_empty() {
            return Err("invalid Via transport");
        }
        let before = c.i;
        c.skip_ws();
        if c.i == before {
            return Err("missing space before Via sent-by");
        }
        let host = if c.s.as_bytes().get(c.i) == Some(&b'[') {
            let start = c.i;
            c.i += 1;
            c.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            if c.s.as_bytes().get(c.i) != Some(&b']') {
                return Err("invalid Via host");
            }
            c.i += 1;
            &c.s[start..c.i]
        } else {
            c.take_while(is_host_char)
        };
        if host.is_empty() {
            return Err("invalid Via host");
        }
        let port = if c.eat(b':') {
            let digits = c.take_while(|b| b.is_ascii_digit());
            let v = parse_digits(digits).ok_or("invalid Via port")?;
            Some(u16::try_from(v).map_err(|_| "invalid Via port")?)
        } else {
            None
        };
        let mut via = Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_owned(),
            port,
            branch: None,
            rport: None,
            received: None,
            params: Vec::new(),
            raw: raw.to_owned(),
        };
        c.skip_ws();
        while !c.at_end() {
            if !c.eat(b';') {
                return Err("unexpected text in Via");
            }
            let pname = c.take_while(is_token);
            if pname.is_empty() {
                return Err("empty Via parameter");
            }
            let value = if c.eat(b'=') {
                let v = if c.s.as_bytes().get(c.i) == Some(&b'"') {
                    let end =
                        quoted_end(&c.s.as_bytes()[c.i..]).ok_or("bad quoted Via parameter")?;
                    let v = &c.s[c.i..c.i + end + 1];
                    c.i += end + 1;
                    v
                } else {
                    c.take_while(|b| is_token(b) || matches!(b, b'[' | b']' | b':'))
                };
                valid_gen_value(v).map_err(|_| "invalid Via parameter value")?;
                Some(v)
            } else {
                None
            };
            c.skip_ws();
            let lname = pname.to_ascii_lowercase();
            match lname.as_str() {
                "branch" => via.branch = value.map(str::to_owned),
                "received" => via.received = value.map(str::to_owned),
                "rport" => {
                    via.rport = Some(match value {
                        None => None,
                        Some(v) => {
                            let n = parse_digits(v).ok_or("invalid rport")?;
                            Some(u16::try_from(n).map_err(|_| "invalid rport")?)
                        }
                    });
                }
                _ => {}
            }
            via.params.push((lname, value.map(str::to_owned)));
        }
        Ok(via)
    }

    /// Looks up a parameter by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        // (input, transport, host, port, branch, rport, received)
        type Row<'a> = (
            &'a str,
            &'a str,
            &'a str,
            Option<u16>,
            Option<&'a str>,
            Option<Option<u16>>,
            Option<&'a str>,
        );
        let cases: &[Row] = &[
            (
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776",
                "UDP",
                "192.0.2.1",
                Some(5060),
                Some("z9hG4bK776"),
                None,
                None,
            ),
            (
                "SIP  /   2.0 /UDP     192.0.2.2;branch=390skdjuw",
                "UDP",
                "192.0.2.2",
                None,
                Some("390skdjuw"),
                None,
                None,
            ),
            (
                "SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8",
                "TCP",
                "spindle.example.com",
                None,
                Some("z9hG4bK9ikj8"),
                None,
                None,
            ),
            (
                "SIP/2.0/tls h;rport;branch=z9hG4bKx",
                "TLS",
                "h",
                None,
                Some("z9hG4bKx"),
                Some(None),
                None,
            ),
            (
                "SIP/2.0/UDP h:5070;rport=5071;received=192.0.2.9",
                "UDP",
                "h",
                Some(5070),
                None,
                Some(Some(5071)),
                Some("192.0.2.9"),
            ),
            (
                "SIP/2.0/UDP [2001:db8::1]:5060;received=[2001:db8::2]",
                "UDP",
                "[2001:db8::1]",
                Some(5060),
                None,
                None,
                Some("[2001:db8::2]"),
            ),
            (
                "SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
                "TCP",
                "host1.example.com",
                None,
                Some("z9hG4bK-.!%66*_+`'~"),
                None,
                None,
            ),
            (
                "SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
                "UNKNOWN",
                "t4.example.com",
                None,
                Some("z9hG4bKasd0f3en"),
                None,
                None,
            ),
            (
                "SIP/2.0/UDP iftgw.example.com",
                "UDP",
                "iftgw.example.com",
                None,
                None,
                None,
                None,
            ),
            (
                "SIP/2.0/WSS x.invalid;branch=z9hG4bK1;alias",
                "WSS",
                "x.invalid",
                None,
                Some("z9hG4bK1"),
                None,
                None,
            ),
        ];
        for (input, transport, host, port, branch, rport, received) in cases {
            let v = Via::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(v.transport, *transport, "{input}");
            assert_eq!(v.host, *host, "{input}");
            assert_eq!(v.port, *port, "{input}");
            assert_eq!(v.branch.as_deref(), *branch, "{input}");
            assert_eq!(v.rport, *rport, "{input}");
            assert_eq!(v.received.as_deref(), *received, "{input}");
            assert_eq!(v.raw, input.trim());
        }
    }

    #[test]
    fn rejects() {
        for input in [
            "",
            "SIP/2.0",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0/UDP192.0.2.1",
            "SIP/2.0/UDP 192.0.2.15;;",
            ";",
            "SIP/2.0/UDP h;branch=",
            "SIP/2.0/UDP h:70000",
            "SIP/2.0/UDP h:x",
            "SIP/2.0/UDP h;rport=x",
            "SIP/2.0/UDP h junk",
            "SIP 2.0/UDP h",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP h;branch=\"x",
        ] {
            assert!(Via::parse(input).is_err(), "{input:?} should fail");
        }
    }
}
