//! URI comparison (RFC 3261 §19.1.4), strict or with named tolerances.
//!
//! The strict rules, for `sip:`/`sips:` URIs:
//! * `sip` and `sips` never match;
//! * user and password compare case-sensitively, host case-insensitively
//!   (IP literals as addresses: `[::1]` is `[0:0::1]`), and an escape of a
//!   character that need not be escaped equals the character (`%61` = `a`);
//! * user, password, host and port must all match, and a component present
//!   in one URI only never matches, even with its default value
//!   (`sip:h` ≠ `sip:h:5060`);
//! * a parameter in both URIs must have the same value (case-insensitive);
//!   `user`, `ttl`, `method`, `maddr` and `transport` in one URI only never
//!   match; any other parameter in one URI only is ignored;
//! * headers are never ignored: both URIs carry the same set.
//!
//! Other schemes are compared as text, scheme and all, ignoring ASCII case.
//! [`Tolerance`] relaxes exactly two of these rules, for peers (phones
//! computing digest credentials) that write the same URI twice a little
//! differently.

use std::net::IpAddr;

use super::Uri;
use super::uri::normalize_escapes;

/// Differences [`Uri::matches`] accepts on top of RFC 3261 §19.1.4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tolerance {
    /// A port in one URI only (any value) matches; two different ports
    /// still do not.
    pub port_in_one_only: bool,
    /// A `transport` parameter in one URI only matches; two different
    /// transports still do not.
    pub transport_in_one_only: bool,
}

impl Tolerance {
    /// RFC 3261 §19.1.4 as written.
    pub const STRICT: Tolerance = Tolerance {
        port_in_one_only: false,
        transport_in_one_only: false,
    };
}

/// Parameters that never match when present in one URI only (§19.1.4).
const MUST_BE_IN_BOTH: &[&str] = &["user", "ttl", "method", "maddr", "transport"];

impl Uri {
    /// RFC 3261 §19.1.4 equivalence.
    pub fn equivalent(&self, other: &Uri) -> bool {
        self.matches(other, Tolerance::STRICT)
    }

    /// RFC 3261 §19.1.4 equivalence relaxed by `tolerance`.
    pub fn matches(&self, other: &Uri, tolerance: Tolerance) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if self.scheme != "sip" && self.scheme != "sips" {
            return self.to_string().eq_ignore_ascii_case(&other.to_string());
        }
        let ports = match (self.port, other.port) {
            (a, b) if a == b => true,
            (Some(_), None) | (None, Some(_)) => tolerance.port_in_one_only,
            _ => false,
        };
        ports
            && same_escaped(self.user.as_deref(), other.user.as_deref())
            && same_escaped(self.password.as_deref(), other.password.as_deref())
            && same_host(&self.host, &other.host)
            && same_params(self, other, tolerance)
            && same_headers(self.headers.as_deref(), other.headers.as_deref())
    }
}

/// Case-sensitive comparison with unnecessary escapes decoded.
fn same_escaped(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => unescape(a) == unescape(b),
        _ => false,
    }
}

fn same_host(a: &str, b: &str) -> bool {
    let ip = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
    };
    match (ip(a), ip(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn same_params(a: &Uri, b: &Uri, tolerance: Tolerance) -> bool {
    let value = |u: &Uri, name: &str| u.param(name).map(|v| v.map(unescape));
    let names = a.params.iter().chain(&b.params).map(|(n, _)| n.as_str());
    for name in names {
        match (value(a, name), value(b, name)) {
            (Some(x), Some(y)) => {
                let same = match (&x, &y) {
                    (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return false;
                }
            }
            _ => {
                let lower = name.to_ascii_lowercase();
                let tolerated = lower == "transport" && tolerance.transport_in_one_only;
                if MUST_BE_IN_BOTH.contains(&lower.as_str()) && !tolerated {
                    return false;
                }
            }
        }
    }
    true
}

/// Header components: the same `name=value` set, names ignoring case.
fn same_headers(a: Option<&str>, b: Option<&str>) -> bool {
    fn set(h: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = h
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (unescape(k).to_ascii_lowercase(), unescape(v))
            })
            .collect();
        v.sort();
        v
    }
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => set(a) == set(b),
        _ => false,
    }
}

/// The value with unnecessary escapes decoded, so two spellings compare
/// equal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    normalize_escapes(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENIENT: Tolerance = Tolerance {
        port_in_one_only: true,
        transport_in_one_only: true,
    };

    #[test]
    fn rfc3261_19_1_4_examples_and_more() {
        // (a, b, strictly equivalent, equivalent with both tolerances)
        let table: &[(&str, &str, bool, bool)] = &[
            // §19.1.4: equivalent
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
                true,
                true,
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com;newparam=5",
                true,
                true,
            ),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;newparam=5",
                true,
                true,
            ),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
                true,
                true,
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
                true,
                true,
            ),
            // §19.1.4: not equivalent
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
                false,
                false,
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060", false, true),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com;transport=udp",
                false,
                true,
            ),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com:6000;transport=tcp",
                false,
                true,
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
                false,
                false,
            ),
            (
                "sip:bob@phone21.boxesbybob.com",
                "sip:bob@192.0.2.4",
                false,
                false,
            ),
            // beyond the RFC's examples
            (
                "sip:bob@biloxi.com:5060",
                "sip:bob@biloxi.com:5070",
                false,
                false,
            ),
            ("sip:h;transport=tcp", "sip:h;transport=udp", false, false),
            ("sip:h", "sips:h", false, false),
            ("sip:h", "sip:u@h", false, false),
            ("sip:u:pw@h", "sip:u@h", false, false),
            ("sip:Bob@h", "sip:bob@h", false, false),
            ("sip:h;maddr=239.255.255.1", "sip:h", false, false),
            ("sip:h;user=phone", "sip:h", false, false),
            ("sip:h;ttl=1", "sip:h", false, false),
            ("sip:h;lr", "sip:h;lr=on", false, false),
            ("sip:h;lr", "sip:h;LR", true, true),
            ("sip:u@[2001:db8::1]", "sip:u@[2001:DB8:0:0::1]", true, true),
            ("sip:u@[::1]:5060", "sip:u@[::1]", false, true),
            ("sip:a%2fb@h", "sip:a%2Fb@h", true, true),
            ("sip:a%2fb@h", "sip:a/b@h", false, false),
            ("sip:h?a=b", "sip:h?A=b", true, true),
            ("sip:h?a=b", "sip:h?a=B", false, false),
            ("tel:+15551234", "TEL:+15551234", true, true),
            ("tel:+15551234", "tel:+15551235", false, false),
            ("tel:+15551234", "sip:+15551234@h", false, false),
        ];
        for (a, b, strict, lenient) in table {
            let (ua, ub) = (Uri::parse(a).unwrap(), Uri::parse(b).unwrap());
            assert_eq!(ua.equivalent(&ub), *strict, "{a} vs {b} (strict)");
            assert_eq!(ub.equivalent(&ua), *strict, "{b} vs {a} (strict)");
            assert_eq!(ua.matches(&ub, LENIENT), *lenient, "{a} vs {b} (lenient)");
            assert_eq!(ub.matches(&ua, LENIENT), *lenient, "{b} vs {a} (lenient)");
        }
    }

    #[test]
    fn each_tolerance_relaxes_only_its_rule() {
        let port = Tolerance {
            port_in_one_only: true,
            ..Tolerance::STRICT
        };
        let transport = Tolerance {
            transport_in_one_only: true,
            ..Tolerance::STRICT
        };
        let u = |s: &str| Uri::parse(s).unwrap();
        assert!(u("sip:h:5060").matches(&u("sip:h"), port));
        assert!(!u("sip:h:5060").matches(&u("sip:h"), transport));
        assert!(u("sip:h;transport=tcp").matches(&u("sip:h"), transport));
        assert!(!u("sip:h;transport=tcp").matches(&u("sip:h"), port));
    }
}
