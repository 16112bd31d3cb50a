//! Input checks shared by every backend.
//!
//! Usernames, extensions and domains end up in SIP URIs and headers, so the
//! store refuses anything that would need escaping there (or allow header
//! injection) before it reaches the database. Each check returns the
//! normalized value, or [`Error::Invalid`] whose message starts with the
//! field name.

use crate::error::{Error, Result};

fn invalid(field: &str, why: &str) -> Error {
    Error::Invalid(format!("{field}: {why}"))
}

/// Longest account name.
const MAX_NAME: usize = 64;
/// Longest username.
const MAX_USERNAME: usize = 64;
/// Longest extension.
const MAX_EXTENSION: usize = 32;
/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 128;
/// Longest domain (DNS limit).
const MAX_DOMAIN: usize = 253;

/// Account name: trimmed, non-empty, no control characters.
pub(crate) fn account_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(invalid("name", "must be at most 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// SIP domain: lowercased; dot-separated labels of `[a-z0-9-]`, none empty
/// and none starting or ending with `-`.
pub(crate) fn domain(domain: &str) -> Result<String> {
    let domain = domain.to_ascii_lowercase();
    if domain.is_empty() {
        return Err(invalid("domain", "must not be empty"));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(invalid("domain", "must be at most 253 characters"));
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(invalid(
            "domain",
            "only letters, digits, '.' and '-' are allowed",
        ));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(invalid("domain", "empty label"));
        }
        if label.len() > 63 {
            return Err(invalid("domain", "label longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("domain", "label must not start or end with '-'"));
        }
    }
    Ok(domain)
}

/// Optional domain, see [`domain`].
pub(crate) fn opt_domain(value: Option<&str>) -> Result<Option<String>> {
    value.map(domain).transpose()
}

/// Call cap: 0 (unlimited) or more.
pub(crate) fn max_concurrent_calls(value: i64) -> Result<i64> {
    if value < 0 {
        return Err(invalid("max_concurrent_calls", "must not be negative"));
    }
    Ok(value)
}

/// An account's SRTP setting: `optional` or `required`.
pub(crate) fn srtp(value: &str) -> Result<String> {
    match value {
        "optional" | "required" => Ok(value.to_owned()),
        _ => Err(invalid("srtp", "must be \"optional\" or \"required\"")),
    }
}

/// Username: 1 to 64 characters of `[A-Za-z0-9._~+-]` (unreserved in a SIP
/// URI user part, so it never needs escaping).
pub(crate) fn username(value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(invalid("username", "must not be empty"));
    }
    if value.len() > MAX_USERNAME {
        return Err(invalid("username", "must be at most 64 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~+-".contains(&b))
    {
        return Err(invalid(
            "username",
            "only letters, digits and '._~+-' are allowed",
        ));
    }
    Ok(value.to_owned())
}

/// Extension: 1 to 32 of digits, `*`, `#` and `+`.
pub(crate) fn extension(value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(invalid("extension", "must not be empty"));
    }
    if value.len() > MAX_EXTENSION {
        return Err(invalid("extension", "must be at most 32 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_digit() || b"*#+".contains(&b))
    {
        return Err(invalid(
            "extension",
            "only digits and '*', '#', '+' are allowed",
        ));
    }
    Ok(value.to_owned())
}

/// Optional extension, see [`extension`].
pub(crate) fn opt_extension(value: Option<&str>) -> Result<Option<String>> {
    value.map(extension).transpose()
}

/// Display name: 1 to 128 characters, no control characters (it is quoted
/// into From headers; CR/LF would inject headers).
pub(crate) fn display_name(value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(invalid(
            "display_name",
            "must not be empty (use null to remove it)",
        ));
    }
    if value.chars().count() > MAX_DISPLAY_NAME {
        return Err(invalid("display_name", "must be at most 128 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            "display_name",
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// Optional display name, see [`display_name`].
pub(crate) fn opt_display_name(value: Option<&str>) -> Result<Option<String>> {
    value.map(display_name).transpose()
}

/// Hex digest of exactly `digits` hex digits, lowercased. Also keeps a
/// plaintext password from being stored by mistake.
fn hex_digest(field: &str, value: &str, digits: usize) -> Result<String> {
    if value.len() != digits || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            field,
            &format!("must be a hex digest of {digits} digits"),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// MD5 HA1: 32 hex digits.
pub(crate) fn ha1_md5(value: &str) -> Result<String> {
    hex_digest("ha1_md5", value, 32)
}

/// SHA-256 HA1: 64 hex digits.
pub(crate) fn ha1_sha256(value: &str) -> Result<String> {
    hex_digest("ha1_sha256", value, 64)
}

/// CDR Call-ID: non-empty (it is the idempotency key).
pub(crate) fn call_id(value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid("call_id", "must not be empty"));
    }
    Ok(())
}

/// Longest trunk name.
const MAX_TRUNK_NAME: usize = 64;
/// Largest trunk configuration, in bytes.
pub(crate) const MAX_TRUNK_CONFIG: usize = 64 * 1024;
/// Largest dialplan, in bytes.
pub(crate) const MAX_DIALPLAN: usize = 4 * 1024 * 1024;

/// Trunk name: 1 to 64 of `[A-Za-z0-9_-]` (what the signaling crate accepts
/// in a trunk's `name`).
pub(crate) fn trunk_name(value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if value.len() > MAX_TRUNK_NAME {
        return Err(invalid("name", "must be at most 64 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "name",
            "only letters, digits, '-' and '_' are allowed",
        ));
    }
    Ok(())
}

/// JSON text of at most `max` bytes whose top level is an object. The text
/// is stored as given (not re-serialized).
pub(crate) fn json_object(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(invalid(field, &format!("must be at most {max} bytes")));
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid(field, "must be a JSON object")),
        Err(e) => Err(invalid(field, &format!("not valid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(
            username("alice.b_1~+-").ok().as_deref(),
            Some("alice.b_1~+-")
        );
        assert_eq!(msg(username("")), "username: must not be empty");
        assert!(msg(username("al ice")).starts_with("username: "));
        assert!(msg(username("a@b")).starts_with("username: "));
        assert!(msg(username("é")).starts_with("username: "));
        assert!(username(&"a".repeat(64)).is_ok());
        assert!(msg(username(&"a".repeat(65))).starts_with("username: "));
    }

    #[test]
    fn extensions() {
        assert!(extension("1001").is_ok());
        assert!(extension("*98#").is_ok());
        assert!(extension("+4930123").is_ok());
        assert_eq!(msg(extension("")), "extension: must not be empty");
        assert!(msg(extension("10a")).starts_with("extension: "));
        assert_eq!(opt_extension(None).ok(), Some(None));
    }

    #[test]
    fn domains() {
        assert_eq!(
            domain("Sip.Example.COM").ok().as_deref(),
            Some("sip.example.com")
        );
        assert!(domain("10.0.0.1").is_ok());
        assert_eq!(msg(domain("")), "domain: must not be empty");
        assert!(msg(domain("exa mple.com")).starts_with("domain: "));
        assert!(msg(domain("example..com")).starts_with("domain: "));
        assert!(msg(domain("-example.com")).starts_with("domain: "));
        assert!(msg(domain("example.com.")).starts_with("domain: "));
        assert!(msg(domain("example.com:5060")).starts_with("domain: "));
    }

    #[test]
    fn digests() {
        assert_eq!(
            ha1_md5(&"AB".repeat(16)).ok(),
            Some("ab".repeat(16)),
            "lowercased"
        );
        assert!(msg(ha1_md5("secret")).starts_with("ha1_md5: "));
        assert!(ha1_sha256(&"0f".repeat(32)).is_ok());
        assert!(msg(ha1_sha256(&"0f".repeat(16))).starts_with("ha1_sha256: "));
        assert!(msg(ha1_sha256(&"zz".repeat(32))).starts_with("ha1_sha256: "));
    }

    #[test]
    fn trunk_names_and_json() {
        assert!(trunk_name("carrier-1_a").is_ok());
        assert_eq!(msg(trunk_name("")), "name: must not be empty");
        assert!(msg(trunk_name("a b")).starts_with("name: "));
        assert!(trunk_name(&"t".repeat(64)).is_ok());
        assert!(msg(trunk_name(&"t".repeat(65))).starts_with("name: "));
        assert!(json_object("config", r#"{"a": 1}"#, 100).is_ok());
        assert_eq!(
            msg(json_object("config", "[1]", 100)),
            "config: must be a JSON object"
        );
        assert!(msg(json_object("config", "{", 100)).starts_with("config: not valid JSON"));
        assert!(
            msg(json_object("config", r#"{"a": 1}"#, 4)).starts_with("config: must be at most")
        );
    }

    #[test]
    fn names_and_display_names() {
        assert_eq!(account_name("  acme ").ok().as_deref(), Some("acme"));
        assert_eq!(msg(account_name("   ")), "name: must not be empty");
        assert!(display_name("Alice Ünal").is_ok());
        assert!(msg(display_name("Alice\r\nVia: x")).starts_with("display_name: "));
        assert!(msg(max_concurrent_calls(-1)).starts_with("max_concurrent_calls: "));
    }
}
