//! The browser phone's settings: where its page tells the browser to
//! register (UI_SIP_WSS_URL) and the SIP domain of its address of record
//! (UI_SIP_DOMAIN, by default the host of that URL).
//!
//! Both go into the page (escaped) and the URL's origin into the page's
//! Content-Security-Policy (`connect-src`), so only a plain `ws://` or
//! `wss://` URL of a host name or address is taken: no user info, no
//! quotes, spaces, `;` or `,` that could end a CSP directive.

/// The checked phone settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// The URL the browser's SIP library opens (`wss://host:port/path`).
    pub wss_url: String,
    /// What the page's CSP `connect-src` allows for it: the URL's origin,
    /// or its scheme alone for an IPv6 literal (CSP host sources cannot
    /// name one).
    pub connect_src: String,
    /// The host part of the phone's address of record, `sip:user@domain`.
    pub domain: String,
}

impl Phone {
    /// `None` when UI_SIP_WSS_URL is unset: the phone page says so.
    ///
    /// # Errors
    /// A message naming the variable at fault.
    pub fn parse(url: Option<&str>, domain: Option<&str>) -> Result<Option<Phone>, String> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            if domain.is_some() {
                return Err("UI_SIP_DOMAIN: only with UI_SIP_WSS_URL".into());
            }
            return Ok(None);
        };
        let bad = |why: &str| format!("UI_SIP_WSS_URL: {url:?} {why}");
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| matches!(s.to_ascii_lowercase().as_str(), "ws" | "wss"))
            .ok_or_else(|| bad("must start with wss:// (or ws:// behind a TLS proxy)"))?;
        if !url.chars().all(|c| c.is_ascii_graphic()) || url.contains(['"', '\'', ';', ',', '\\']) {
            return Err(bad("holds a character a URL of this kind cannot"));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(bad("must not carry user information"));
        }
        let host = host_of(authority).ok_or_else(|| bad("has no valid host[:port]"))?;
        let scheme = scheme.to_ascii_lowercase();
        let connect_src = if host.starts_with('[') {
            format!("{scheme}:")
        } else {
            format!("{scheme}://{}", authority.to_ascii_lowercase())
        };
        let domain = match domain.map(str::trim) {
            None | Some("") => host.to_owned(),
            Some(d) if valid_host(d) => d.to_ascii_lowercase(),
            Some(d) => {
                return Err(format!(
                    "UI_SIP_DOMAIN: {d:?} is not a host name or address"
                ));
            }
        };
        Ok(Some(Phone {
            wss_url: url.to_owned(),
            connect_src,
            domain,
        }))
    }
}

/// The host of `host[:port]` (IPv6 in brackets), when both parts are valid.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(end) = authority.find(']') {
        let (h, tail) = authority.split_at(end + 1);
        (h, tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port {
        p.parse::<u16>().ok().filter(|p| *p > 0)?;
    }
    valid_host(host).then_some(host)
}

/// A DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_domains() {
        assert_eq!(Phone::parse(None, None), Ok(None));
        assert_eq!(Phone::parse(Some("  "), None), Ok(None));
        let p = Phone::parse(Some("wss://SIP.example.com:8089/ws"), None)
            .unwrap()
            .unwrap();
        assert_eq!(p.wss_url, "wss://SIP.example.com:8089/ws");
        assert_eq!(p.connect_src, "wss://sip.example.com:8089");
        assert_eq!(p.domain, "SIP.example.com");
        let p = Phone::parse(Some("ws://127.0.0.1:5066"), Some("pbx.example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(p.connect_src, "ws://127.0.0.1:5066");
        assert_eq!(p.domain, "pbx.example.com");
        let p = Phone::parse(Some("wss://[::1]:8089"), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.connect_src.as_str(), p.domain.as_str()),
            ("wss:", "[::1]")
        );
    }

    #[test]
    fn refusals_name_the_variable() {
        for bad in [
            "https://sip.example.com",
            "sip.example.com:8089",
            "wss://",
            "wss://user:pw@sip.example.com",
            "wss://sip.example.com:0",
            "wss://sip.example.com:99999",
            "wss://sip example.com",
            "wss://sip.example.com; script-src *",
            "wss://sip.example.com,https://evil.example",
            "wss://'self'",
            "wss://[::zz]:8089",
            "wss://-bad-.example.com",
        ] {
            let e = Phone::parse(Some(bad), None).unwrap_err();
            assert!(e.starts_with("UI_SIP_WSS_URL:"), "{bad}: {e}");
        }
        let e = Phone::parse(Some("wss://sip.example.com"), Some("a b")).unwrap_err();
        assert!(e.starts_with("UI_SIP_DOMAIN:"), "{e}");
        let e = Phone::parse(None, Some("example.com")).unwrap_err();
        assert!(e.starts_with("UI_SIP_DOMAIN:"), "{e}");
    }
}
