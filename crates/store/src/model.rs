//! Records stored by Switchboard and the inputs that create or change them.
//!
//! These types are the whole vocabulary between the store and its callers,
//! independent of the database behind it: ids are `i64`, times are unix
//! milliseconds (`*_at` fields, `i64`), and every record is serde-friendly so
//! the API layer can (de)serialize it without mirror types.

use serde::{Deserialize, Deserializer, Serialize};

/// Id of the default account created by the initial migration. It serves
/// every SIP domain no other account claims and cannot be deleted.
pub const DEFAULT_ACCOUNT_ID: i64 = 1;

/// A tenant: a set of users reachable under one SIP domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// Unique human-readable name.
    pub name: String,
    /// Lowercase SIP domain claimed by this account, unique across accounts.
    /// `None` claims nothing (the default account has `None`).
    pub domain: Option<String>,
    /// Cap on simultaneous calls of the account; 0 means unlimited.
    pub max_concurrent_calls: i64,
    /// Creation time, unix ms.
    pub created_at: i64,
    /// SRTP for the account's callers: `optional` (the default) or
    /// `required` (a call offering plain RTP gets 488).
    pub srtp: String,
}

impl Account {
    /// Whether this is the default account, which serves unclaimed domains.
    pub fn is_default(&self) -> bool {
        self.id == DEFAULT_ACCOUNT_ID
    }
}

/// Input of [`Store::create_account`](crate::Store::create_account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    /// Unique name; trimmed, non-empty, at most 64 characters.
    pub name: String,
    /// SIP domain to claim; lowercased and checked for hostname characters.
    #[serde(default)]
    pub domain: Option<String>,
    /// 0 (the default) means unlimited.
    #[serde(default)]
    pub max_concurrent_calls: i64,
    /// `optional` (the default when `None`) or `required`.
    #[serde(default)]
    pub srtp: Option<String>,
}

/// Partial update of an account: `None` leaves a field unchanged.
///
/// `domain` is doubly optional: `Some(None)` (JSON `null`) releases the
/// domain, `None` (field absent) keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPatch {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New domain, or `Some(None)` to release it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub domain: Option<Option<String>>,
    /// New call cap (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<i64>,
    /// New SRTP setting (`optional` or `required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<String>,
}

/// A SIP user that can register and place calls.
///
/// The HA1 digests are password equivalents for digest authentication, so
/// they are never serialized (an API handler returning a `User` as JSON must
/// not leak them); they are still accepted when deserializing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Owning account; deleting the account deletes the user.
    pub account_id: i64,
    /// SIP user part, unique within the account.
    pub username: String,
    /// Dialable extension, unique within the account.
    pub extension: Option<String>,
    /// Name shown to callees.
    pub display_name: Option<String>,
    /// Lowercase hex MD5 of `username:realm:password`.
    #[serde(default, skip_serializing)]
    pub ha1_md5: String,
    /// Lowercase hex SHA-256 of `username:realm:password`.
    #[serde(default, skip_serializing)]
    pub ha1_sha256: String,
    /// Disabled users can neither register nor call.
    pub enabled: bool,
    /// Creation time, unix ms.
    pub created_at: i64,
    /// Last change, unix ms.
    pub updated_at: i64,
}

/// Input of [`Store::create_user`](crate::Store::create_user).
///
/// The caller computes the HA1 digests (the realm is the account's domain or
/// the server-wide realm); the store never sees the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// Owning account.
    pub account_id: i64,
    /// `[A-Za-z0-9._~+-]`, 1 to 64 characters.
    pub username: String,
    /// Digits and `*#+` only.
    #[serde(default)]
    pub extension: Option<String>,
    /// Free text without control characters, at most 128 characters.
    #[serde(default)]
    pub display_name: Option<String>,
    /// 32 hex digits.
    pub ha1_md5: String,
    /// 64 hex digits.
    pub ha1_sha256: String,
    /// Whether the user may register and call.
    pub enabled: bool,
}

/// Partial update of a user: `None` leaves a field unchanged.
///
/// The HA1 digests cover the username, so changing `username` requires new
/// digests, and the two digests are only accepted together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPatch {
    /// New username (requires both digests unless it is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// New extension, or `Some(None)` to remove it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub extension: Option<Option<String>>,
    /// New display name, or `Some(None)` to remove it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<Option<String>>,
    /// New MD5 HA1 (together with `ha1_sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_md5: Option<String>,
    /// New SHA-256 HA1 (together with `ha1_md5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_sha256: Option<String>,
    /// Enable or disable the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl UserPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.username.is_none()
            && self.extension.is_none()
            && self.display_name.is_none()
            && self.ha1_md5.is_none()
            && self.ha1_sha256.is_none()
            && self.enabled.is_none()
    }
}

impl AccountPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.domain.is_none()
            && self.max_concurrent_calls.is_none()
            && self.srtp.is_none()
    }
}

/// One registrar binding (address of record → contact), persisted so a
/// restarted server still reaches phones registered before the restart.
///
/// The store keeps these as given: the registrar owns their meaning and the
/// timestamps (`expires_at`, `updated_at`, unix ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Registration {
    /// Address of record, e.g. `sip:alice@example.com`.
    pub aor: String,
    /// Contact URI; `(aor, contact)` is the key.
    pub contact: String,
    /// Account the AOR belongs to.
    pub account_id: i64,
    /// Registered user, if the AOR is a user's.
    pub user_id: Option<i64>,
    /// Where the REGISTER came from, `"transport:ip:port"`.
    pub received: String,
    /// Path header value (RFC 3327), if any.
    pub path: Option<String>,
    /// `+sip.instance` of the contact (RFC 5626), if any.
    pub instance_id: Option<String>,
    /// `reg-id` of the contact (RFC 5626), if any.
    pub reg_id: Option<i64>,
    /// User-Agent header of the REGISTER.
    pub user_agent: Option<String>,
    /// Call-ID of the REGISTER.
    pub call_id: String,
    /// CSeq number of the REGISTER.
    pub cseq: i64,
    /// Contact `q` preference.
    pub q: Option<f64>,
    /// When the binding expires, unix ms.
    pub expires_at: i64,
    /// When the binding was last refreshed, unix ms.
    pub updated_at: i64,
}

/// Call detail record: what happened on one call, for billing and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Cdr {
    /// Row id, assigned by the store (ignored by `insert_cdr`); newer rows
    /// have larger ids.
    pub id: i64,
    /// The call's own id (a UUID signaling generates); a CDR delivered twice
    /// is stored once.
    pub call_id: String,
    /// The caller's SIP Call-ID, as received (not unique: a peer may reuse
    /// one).
    #[serde(default)]
    pub sip_call_id: Option<String>,
    /// Account of the call, if known.
    pub account_id: Option<i64>,
    /// Calling party (user or number).
    pub caller: String,
    /// Called party (user or number).
    pub callee: String,
    /// Caller's display name.
    pub caller_name: Option<String>,
    /// Where the INVITE came from, `"transport:ip:port"`.
    pub source: String,
    /// INVITE received, unix ms.
    pub invite_at: i64,
    /// First ringing response, unix ms.
    pub ring_at: Option<i64>,
    /// Answer, unix ms.
    pub answer_at: Option<i64>,
    /// Hangup or failure, unix ms.
    pub end_at: Option<i64>,
    /// Ringing duration.
    pub ring_ms: Option<i64>,
    /// Talk duration.
    pub talk_ms: Option<i64>,
    /// Outcome, e.g. `"answered"`, `"busy"`, `"no_answer"`, `"failed"`.
    pub disposition: String,
    /// Final SIP status code, if the call failed.
    pub hangup_code: Option<i64>,
    /// Reason text of the hangup.
    pub hangup_reason: Option<String>,
    /// Who hung up, e.g. `"caller"`, `"callee"`, `"system"`.
    pub hangup_side: Option<String>,
    /// Route that carried the call (numeric id; unused by the JSON
    /// dialplan, whose ids are text: see `route`).
    pub route_id: Option<i64>,
    /// Dialplan route id that carried the call.
    #[serde(default)]
    pub route: Option<String>,
    /// Username of the calling user, when a local user called.
    #[serde(default)]
    pub caller_user: Option<String>,
    /// Username of the user who answered (or was dialled).
    #[serde(default)]
    pub callee_user: Option<String>,
    /// Server node that handled the call.
    pub node: Option<String>,
    /// RTP packets sent.
    pub rtp_sent: Option<i64>,
    /// RTP packets received.
    pub rtp_received: Option<i64>,
    /// RTP packets lost.
    pub rtp_lost: Option<i64>,
    /// Mean jitter.
    pub jitter_ms: Option<f64>,
    /// Estimated mean opinion score.
    pub mos: Option<f64>,
    /// Media relay that handled the RTP.
    pub rtpmanager: Option<String>,
    /// When the store received the record, unix ms (set by the store).
    pub created_at: i64,
}

/// Query of [`Store::list_cdrs`](crate::Store::list_cdrs). Every set field
/// narrows the result; the default lists the newest CDRs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrFilter {
    /// Only this account's calls.
    #[serde(default)]
    pub account_id: Option<i64>,
    /// `invite_at >= from_ms`.
    #[serde(default)]
    pub from_ms: Option<i64>,
    /// `invite_at < to_ms`.
    #[serde(default)]
    pub to_ms: Option<i64>,
    /// Exact caller.
    #[serde(default)]
    pub caller: Option<String>,
    /// Exact callee.
    #[serde(default)]
    pub callee: Option<String>,
    /// Exact disposition.
    #[serde(default)]
    pub disposition: Option<String>,
    /// Exact SIP Call-ID of the caller's leg.
    #[serde(default)]
    pub sip_call_id: Option<String>,
    /// Continue below this id: pass the id of the last row of the previous
    /// page.
    #[serde(default)]
    pub cursor: Option<i64>,
    /// Page size; `None` means [`CdrFilter::DEFAULT_LIMIT`], values are
    /// clamped to `1..=`[`CdrFilter::MAX_LIMIT`].
    #[serde(default)]
    pub limit: Option<u32>,
}

impl CdrFilter {
    /// Page size when `limit` is not given.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// Largest page returned.
    pub const MAX_LIMIT: u32 = 1000;

    /// The page size actually used.
    pub fn effective_limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// Query of [`Store::search_users`](crate::Store::search_users): one page of
/// users by id, with how many match in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFilter {
    /// Only this account's users.
    #[serde(default)]
    pub account_id: Option<i64>,
    /// Case-insensitive (ASCII) substring of the user name, extension or
    /// display name; `%` and `_` are plain characters.
    #[serde(default)]
    pub q: Option<String>,
    /// Matching users skipped before the page.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Page size; `None` means every match from `offset` on (0 counts
    /// without listing).
    #[serde(default)]
    pub limit: Option<u64>,
}

impl UserFilter {
    /// The page size as SQL takes it.
    pub fn sql_limit(&self) -> i64 {
        self.limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX))
    }

    /// The offset as SQL takes it.
    pub fn sql_offset(&self) -> i64 {
        i64::try_from(self.offset.unwrap_or(0)).unwrap_or(i64::MAX)
    }
}

/// The calls of one minute, as [`Store::call_minutes`](crate::Store::call_minutes)
/// counts them from the CDRs (by INVITE time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CallMinute {
    /// Start of the minute, unix ms.
    pub at_ms: i64,
    /// Calls whose INVITE arrived in the minute.
    pub attempted: i64,
    /// Of those, the answered ones.
    pub answered: i64,
    /// Sum and number of the MOS figures (those above 0) of those calls.
    pub mos_sum: f64,
    pub mos_n: i64,
}

/// `s` as a `LIKE` pattern matching it anywhere, with `\` as the escape
/// character, so `%` and `_` in `s` match themselves.
pub(crate) fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Deserializes a present field (even `null`) as `Some(..)`, so that with
/// `#[serde(default)]` an absent field is `None` and `null` is `Some(None)`.
fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
