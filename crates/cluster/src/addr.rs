//! `REDIS_ADDR` parsing.

use std::net::Ipv6Addr;

/// Turns a `REDIS_ADDR` value into a Redis URL.
///
/// Accepts `host:port`, `host` (port 6379), `[v6]:port`, `[v6]`, and full
/// `redis://…` / `rediss://…` URLs (user, password and database number
/// allowed; `rediss` is TLS). Bare IPv6 without brackets is ambiguous and
/// rejected.
///
/// # Errors
///
/// A message naming `REDIS_ADDR` and the accepted forms. URLs are not echoed
/// back, since they may carry a password.
pub fn parse_redis_addr(s: &str) -> Result<String, String> {
    let s = s.trim();
    const FORMS: &str = "expected host:port, [v6]:port, redis://… or rediss://…";
    if s.is_empty() {
        return Err(format!("REDIS_ADDR is empty ({FORMS})"));
    }
    if let Some((scheme, _)) = s.split_once("://") {
        if scheme != "redis" && scheme != "rediss" {
            return Err(format!(
                "REDIS_ADDR: scheme {scheme:?} is not supported ({FORMS})"
            ));
        }
        return match redis::IntoConnectionInfo::into_connection_info(s) {
            Ok(_) => Ok(s.to_owned()),
            Err(e) => Err(format!("REDIS_ADDR: not a valid {scheme}:// URL: {e}")),
        };
    }
    let bad = || format!("REDIS_ADDR: {s:?} is malformed ({FORMS})");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        v6.parse::<Ipv6Addr>().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{v6}]"), port)
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !host_ok {
            return Err(bad());
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => 6379,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad()),
        },
    };
    Ok(format!("redis://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::parse_redis_addr;

    #[test]
    fn accepted_forms() {
        let ok = |s: &str| parse_redis_addr(s).unwrap();
        assert_eq!(ok("redis:6379"), "redis://redis:6379");
        assert_eq!(ok("127.0.0.1:7000"), "redis://127.0.0.1:7000");
        assert_eq!(ok("cache.svc.local"), "redis://cache.svc.local:6379");
        assert_eq!(ok("[::1]:6380"), "redis://[::1]:6380");
        assert_eq!(ok("[2001:db8::5]"), "redis://[2001:db8::5]:6379");
        assert_eq!(ok("redis://127.0.0.1:6379/2"), "redis://127.0.0.1:6379/2");
        assert_eq!(
            ok("rediss://user:pw@redis.example:6380"),
            "rediss://user:pw@redis.example:6380"
        );
        assert_eq!(ok("  redis:6379\n"), "redis://redis:6379");
    }

    #[test]
    fn malformed_names_the_variable() {
        for bad in [
            "",
            ":6379",
            "redis:",
            "redis:0",
            "redis:70000",
            "redis:port",
            "::1:6379",
            "[::1",
            "[::1]6379",
            "[nope]:6379",
            "http://redis:6379",
            "redis://:6379:99",
            "host name:6379",
        ] {
            let err = parse_redis_addr(bad).unwrap_err();
            assert!(err.contains("REDIS_ADDR"), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn url_errors_do_not_echo_passwords() {
        let err = parse_redis_addr("redis://u:secret@host:notaport").unwrap_err();
        assert!(
            err.contains("REDIS_ADDR") && !err.contains("secret"),
            "{err}"
        );
    }
}
