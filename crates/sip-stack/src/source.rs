//! The unit per-source limits count by.
//!
//! An IPv4 address is one source. An IPv6 source is its /64: a subscriber
//! is normally given a whole /64 (RFC 6177), so counting single IPv6
//! addresses would let one host take 2^64 fresh identities for free.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A source address as limits see it: IPv4 as is, IPv6 cut to its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` belongs to (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("::1", "::/64"),
        ];
        for (ip, want) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(Source::of(ip).to_string(), want, "{ip}");
        }
        assert_eq!(
            Source::of("2001:db8::1".parse().unwrap()),
            Source::of("2001:db8::ffff:1".parse().unwrap())
        );
        assert_ne!(
            Source::of("2001:db8:0:1::1".parse().unwrap()),
            Source::of("2001:db8:0:2::1".parse().unwrap())
        );
    }
}
