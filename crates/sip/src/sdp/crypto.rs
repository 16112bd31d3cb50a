//! The SDES `a=crypto` attribute (RFC 4568) for SRTP keying in SDP:
//!
//! ```text
//! a=crypto:<tag> <crypto-suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>] [<session-params>]
//! ```
//!
//! Supported: the suites AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32
//! (a 16-byte master key and a 14-byte master salt, 30 bytes, 40 base64
//! characters), one key per line, an optional lifetime. Refused (the line
//! is skipped when choosing, with the reason when none is left): other
//! suites, MKI (we keep one key per direction and never rekey), several
//! keys on a line, session parameters (UNENCRYPTED_SRTP, KDR=, ...: each
//! changes how packets are processed), a lifetime below 2^20 packets (we
//! do not rekey; 2^20 packets are almost six hours of 20 ms audio).
//!
//! Pure functions; a malformed value is an error, never a panic. The key
//! never appears in `Debug` output or error messages.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Master key plus master salt of the supported suites.
pub const KEY_SALT_LEN: usize = 30;
/// Of which the master key.
pub const KEY_LEN: usize = 16;
/// The smallest lifetime (in packets) we accept: we do not rekey.
pub const MIN_LIFETIME: u64 = 1 << 20;

/// An SRTP crypto suite we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (preferred).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit RTP tag.
    AesCm128HmacSha1_32,
}

impl Suite {
    /// The RFC 4568 name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite of an RFC 4568 name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Suite> {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// 16 bytes of master key then 14 of master salt; `Debug` redacts them.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySalt(pub [u8; KEY_SALT_LEN]);

impl KeySalt {
    /// A fresh random key and salt.
    pub fn random() -> KeySalt {
        KeySalt(rand::random())
    }

    pub fn key(&self) -> &[u8] {
        &self.0[..KEY_LEN]
    }

    pub fn salt(&self) -> &[u8] {
        &self.0[KEY_LEN..]
    }
}

impl fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySalt(<redacted>)")
    }
}

/// One `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// Identifies the line; the answer repeats the chosen offer line's tag.
    pub tag: u32,
    pub suite: Suite,
    pub key: KeySalt,
    /// The key's lifetime in packets, when given.
    pub lifetime: Option<u64>,
}

/// Why an `a=crypto` value was refused. No variant carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("a=crypto: malformed ({0})")]
    Malformed(&'static str),
    #[error(
        "a=crypto: unsupported crypto suite {0:?} (supported AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32)"
    )]
    UnsupportedSuite(String),
    #[error("a=crypto: MKI is not supported")]
    Mki,
    #[error("a=crypto: only one key per line is supported")]
    SeveralKeys,
    #[error("a=crypto: session parameters are not supported")]
    SessionParams,
    #[error("a=crypto: key lifetime below 2^20 packets is not supported (we do not rekey)")]
    ShortLifetime,
    #[error("a=crypto: RTP/SAVP offered without a=crypto (SDES)")]
    Missing,
}

/// Parses the value of an `a=crypto:` attribute (after the colon).
pub fn parse(value: &str) -> Result<Crypto, CryptoError> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(tag), Some(suite), Some(params)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(CryptoError::Malformed(
            "expected `<tag> <suite> inline:<key>`",
        ));
    };
    if fields.next().is_some() {
        return Err(CryptoError::SessionParams);
    }
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CryptoError::Malformed("tag is not 1-9 digits"));
    }
    let tag = tag
        .parse::<u32>()
        .map_err(|_| CryptoError::Malformed("tag is not 1-9 digits"))?;
    let suite = Suite::from_name(suite)
        .ok_or_else(|| CryptoError::UnsupportedSuite(suite.chars().take(40).collect::<String>()))?;
    if params.contains(';') {
        return Err(CryptoError::SeveralKeys);
    }
    let (method, info) = params
        .split_once(':')
        .ok_or(CryptoError::Malformed("key parameter is not `inline:...`"))?;
    if !method.eq_ignore_ascii_case("inline") {
        return Err(CryptoError::Malformed("key method is not `inline`"));
    }
    let mut parts = info.split('|');
    let key = parts.next().unwrap_or("");
    let key = decode_key(key)?;
    let mut lifetime = None;
    for (i, part) in parts.enumerate() {
        if part.contains(':') {
            return Err(CryptoError::Mki);
        }
        if i > 0 {
            return Err(CryptoError::Malformed("too many `|` fields"));
        }
        let n = parse_lifetime(part)?;
        if n < MIN_LIFETIME {
            return Err(CryptoError::ShortLifetime);
        }
        lifetime = Some(n);
    }
    Ok(Crypto {
        tag,
        suite,
        key,
        lifetime,
    })
}

fn decode_key(b64: &str) -> Result<KeySalt, CryptoError> {
    // 30 bytes are exactly 40 characters, no padding; anything else is
    // refused before decoding
    if b64.len() != 40 {
        return Err(CryptoError::Malformed("key is not 40 base64 characters"));
    }
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| CryptoError::Malformed("key is not base64"))?;
    let arr: [u8; KEY_SALT_LEN] = bytes
        .try_into()
        .map_err(|_| CryptoError::Malformed("key and salt are not 30 bytes"))?;
    Ok(KeySalt(arr))
}

/// A lifetime: decimal, or `2^<n>`.
fn parse_lifetime(s: &str) -> Result<u64, CryptoError> {
    let bad = CryptoError::Malformed("lifetime is not a number or 2^n");
    if let Some(exp) = s.strip_prefix("2^") {
        let exp = exp.parse::<u32>().map_err(|_| bad.clone())?;
        // SRTP's limit is 2^48; larger exponents are malformed
        if exp > 48 {
            return Err(bad);
        }
        Ok(1u64 << exp)
    } else {
        s.parse::<u64>().map_err(|_| bad)
    }
}

/// The value of our `a=crypto:` attribute (after the colon).
pub fn format(c: &Crypto) -> String {
    let mut out = format!("{} {} inline:{}", c.tag, c.suite, STANDARD.encode(c.key.0));
    if let Some(l) = c.lifetime {
        if l.is_power_of_two() {
            out.push_str(&std::format!("|2^{}", l.trailing_zeros()));
        } else {
            out.push_str(&std::format!("|{l}"));
        }
    }
    out
}

/// The offer line we answer: the first supported one of
/// AES_CM_128_HMAC_SHA1_80, else the first supported _32 line. When none is
/// usable, the error of the first line (or [`CryptoError::Missing`]).
pub fn choose<S: AsRef<str>>(lines: &[S]) -> Result<Crypto, CryptoError> {
    let mut first_err = None;
    let mut ok = Vec::new();
    for l in lines {
        match parse(l.as_ref()) {
            Ok(c) => ok.push(c),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let pick = ok
        .iter()
        .position(|c| c.suite == Suite::AesCm128HmacSha1_80)
        .or(if ok.is_empty() { None } else { Some(0) });
    match pick {
        Some(i) => Ok(ok.swap_remove(i)),
        None => Err(first_err.unwrap_or(CryptoError::Missing)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    /// Tag, suite and lifetime of a parsed line, or why it was refused.
    type Parsed = Result<(u32, Suite, Option<u64>), CryptoError>;

    #[test]
    fn parses_table() {
        let k = |s: &str| decode_key(s).unwrap();
        let cases: &[(&str, Parsed)] = &[
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
                Ok((1, Suite::AesCm128HmacSha1_80, None)),
            ),
            (
                &format!("2 aes_cm_128_hmac_sha1_32 INLINE:{KEY}|2^31"),
                Ok((2, Suite::AesCm128HmacSha1_32, Some(1 << 31))),
            ),
            (
                &format!("  3   AES_CM_128_HMAC_SHA1_80   inline:{KEY}|1048576 "),
                Ok((3, Suite::AesCm128HmacSha1_80, Some(1 << 20))),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:32"),
                Err(CryptoError::Mki),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4"),
                Err(CryptoError::Mki),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^10"),
                Err(CryptoError::ShortLifetime),
            ),
            (
                &format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}"),
                Err(CryptoError::UnsupportedSuite(
                    "AES_256_CM_HMAC_SHA1_80".into(),
                )),
            ),
            (
                &format!("1 F8_128_HMAC_SHA1_80 inline:{KEY}"),
                Err(CryptoError::UnsupportedSuite("F8_128_HMAC_SHA1_80".into())),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
                Err(CryptoError::SessionParams),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}"),
                Err(CryptoError::SeveralKeys),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80",
                Err(CryptoError::Malformed(
                    "expected `<tag> <suite> inline:<key>`",
                )),
            ),
            (
                "",
                Err(CryptoError::Malformed(
                    "expected `<tag> <suite> inline:<key>`",
                )),
            ),
            (
                &format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
                Err(CryptoError::Malformed("tag is not 1-9 digits")),
            ),
            (
                &format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
                Err(CryptoError::Malformed("tag is not 1-9 digits")),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 uri:{KEY}"),
                Err(CryptoError::Malformed("key method is not `inline`")),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline",
                Err(CryptoError::Malformed("key parameter is not `inline:...`")),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
                Err(CryptoError::Malformed("key is not 40 base64 characters")),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
                Err(CryptoError::Malformed("key is not base64")),
            ),
            (
                // 40 characters whose padding makes 28 bytes
                "1 AES_CM_128_HMAC_SHA1_80 inline:YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYQ==",
                Err(CryptoError::Malformed("key and salt are not 30 bytes")),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^99"),
                Err(CryptoError::Malformed("lifetime is not a number or 2^n")),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|soon"),
                Err(CryptoError::Malformed("lifetime is not a number or 2^n")),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31|2^31"),
                Err(CryptoError::Malformed("too many `|` fields")),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:ééééééééééééééééééééé",
                Err(CryptoError::Malformed("key is not 40 base64 characters")),
            ),
        ];
        for (input, want) in cases {
            let got = parse(input).map(|c| {
                assert_eq!(c.key, k(KEY), "{input}");
                (c.tag, c.suite, c.lifetime)
            });
            assert_eq!(&got, want, "{input}");
        }
    }

    #[test]
    fn formats_and_round_trips() {
        let c = Crypto {
            tag: 1,
            suite: Suite::AesCm128HmacSha1_80,
            key: decode_key(KEY).unwrap(),
            lifetime: None,
        };
        assert_eq!(
            format(&c),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")
        );
        for lifetime in [None, Some(1 << 31), Some(2_000_000)] {
            let c = Crypto {
                tag: 7,
                suite: Suite::AesCm128HmacSha1_32,
                key: KeySalt::random(),
                lifetime,
            };
            assert_eq!(parse(&format(&c)).unwrap(), c);
        }
    }

    #[test]
    fn choose_prefers_80_and_skips_unsupported() {
        let l80 = format!("2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}");
        let l32 = format!("1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}");
        let l256 = format!("3 AES_256_CM_HMAC_SHA1_80 inline:{KEY}");
        let mki = format!("4 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4");
        assert_eq!(choose(&[&l32, &l80]).unwrap().tag, 2);
        assert_eq!(choose(&[&l256, &l32]).unwrap().tag, 1);
        assert_eq!(choose(&[&mki, &l32]).unwrap().tag, 1);
        assert_eq!(choose(&[&mki, &l256]), Err(CryptoError::Mki));
        assert_eq!(choose::<&str>(&[]), Err(CryptoError::Missing));
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let c = parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("redacted"));
        for bad in [
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} KDR=1"),
        ] {
            let e = parse(&bad).unwrap_err().to_string();
            assert!(!e.contains(KEY), "{e}");
        }
    }

    #[test]
    fn never_panics_on_junk() {
        let junk = [
            "1 AES_CM_128_HMAC_SHA1_80 inline:|",
            "1 AES_CM_128_HMAC_SHA1_80 inline:||||",
            "1 AES_CM_128_HMAC_SHA1_80 :",
            "\u{0} \u{0} \u{0}",
            "99999999999999999999 x y",
            "1 AES_CM_128_HMAC_SHA1_80 inline:😀😀😀😀😀😀😀😀😀😀",
        ];
        for j in junk {
            assert!(parse(j).is_err(), "{j}");
        }
    }

    #[test]
    fn savp_offer_and_answer_in_sdp() {
        use crate::sdp::{self, Direction, LocalMedia};
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31\r\n"
        );
        let d = sdp::parse(offer.as_bytes()).unwrap();
        assert!(d.is_savp());
        assert_eq!(d.crypto.len(), 2);
        let chosen = choose(&d.crypto).unwrap();
        assert_eq!((chosen.tag, chosen.suite), (2, Suite::AesCm128HmacSha1_80));
        let ours = Crypto {
            key: KeySalt::random(),
            lifetime: None,
            ..chosen
        };
        let local = LocalMedia {
            address: "127.0.0.1".parse().unwrap(),
            port: 5000,
            session_id: 1,
            version: 1,
        };
        let line = format(&ours);
        let text = sdp::answer_with_crypto(&local, &d, (0, "PCMU"), None, 20, Some(&line));
        assert!(text.contains("m=audio 5000 RTP/SAVP 0 101\r\n"), "{text}");
        assert!(
            text.contains(&std::format!("a=crypto:{line}\r\n")),
            "{text}"
        );
        let back = sdp::parse(text.as_bytes()).unwrap();
        assert!(back.is_savp());
        assert_eq!(parse(&back.crypto[0]).unwrap(), ours);
        let plain = sdp::offer(&local, &[(0, "PCMU")], None, Direction::SendRecv, 20);
        let plain = sdp::parse(plain.as_bytes()).unwrap();
        assert!(!plain.is_savp() && plain.crypto.is_empty());
    }
}
