//! The JSON dialplan: parsed and validated as a whole, then matched per
//! call. Pure: no I/O except [`Dialplan::load`].
//!
//! ```json
//! { "version": "1.0",
//!   "routes": [
//!     { "id": "internal", "name": "Extensions", "pattern": "1*", "priority": 50,
//!       "actions": [ { "type": "dial",
//!                      "params": { "target": "user/${destination}", "timeout": 30 } } ] } ] }
//! ```
//!
//! Patterns are globs (`*` any run of characters, `?` one); the enabled
//! route with the lowest priority that matches wins (ties: file order); a
//! route with `account_id` only serves that account's callers; a route
//! serves local users unless its `from` names trunks ([`origin`]). A dialplan
//! that names an unknown action, a bad target, an unknown variable or a
//! duplicate id is rejected whole with an error naming the route, so a bad
//! edit never replaces the last good dialplan.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod origin;
mod srtp;

pub use srtp::Srtp;

pub use origin::{Origin, RouteFrom};

/// Dial timeout when a `dial` action names none.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest dial timeout accepted.
const MAX_DIAL_TIMEOUT_SECS: u64 = 600;

/// Variables every call has.
pub const BUILTIN_VARIABLES: &[&str] = &["destination", "caller_id", "caller_name", "call_id"];

/// The file format, as written and served by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialplanFile {
    #[serde(default = "default_version")]
    pub version: String,
    pub routes: Vec<RouteFile>,
}

fn default_version() -> String {
    "1.0".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub pattern: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<i64>,
    /// The callers served: absent for local users, `trunk` for calls from
    /// any trunk, `trunk/<name>` from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A route for trunk calls may dial `gateway/...` targets only with this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_trunk_to_trunk: bool,
    /// Leave media between the phones (SDP passed through unchanged)
    /// instead of anchoring it on an RTP manager.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct_media: bool,
    /// `"optional"` (the default) or `"required"`: a caller offering plain
    /// RTP gets 488 (see [`Srtp`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<String>,
    pub actions: Vec<ActionFile>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionFile {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

/// A validated dialplan.
#[derive(Debug, Clone)]
pub struct Dialplan {
    /// As loaded, for the API.
    pub file: DialplanFile,
    /// Enabled routes, best first.
    routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: String,
    pub pattern: String,
    pub priority: i64,
    pub account_id: Option<i64>,
    /// The callers it serves.
    pub from: RouteFrom,
    pub direct_media: bool,
    pub srtp: Srtp,
    pub actions: Vec<Action>,
}

/// What a route does, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Ring every target in parallel; the first answer wins.
    Dial {
        targets: Vec<DialTarget>,
        timeout: Duration,
    },
    /// Refuse (before an answer) or end (after) the call.
    Hangup { code: u16, reason: String },
    /// Answer the call ourselves.
    Answer,
    /// Set a variable (`caller_name` changes the name shown to the callee).
    Set { name: String, value: String },
    /// Answer, then play WAV files (names under AUDIO_PATH, `${vars}`
    /// allowed) `repeat` times.
    PlayAudio { files: Vec<String>, repeat: u32 },
    /// Answer, then send the caller's audio back until it hangs up (or
    /// `timeout`).
    Echo { timeout: Option<Duration> },
    /// Record to `file` under the RTP manager's recording directory: the
    /// caller's audio from here on (mono), or with `both_sides` the next
    /// bridge in stereo (caller left, callee right).
    Record { file: String, both_sides: bool },
    /// Answer, then wait.
    Wait { duration: Duration },
    /// Answer, then collect up to `max` DTMF digits (ending early on `#`)
    /// within `timeout` into `${variable}`.
    ReadDigits {
        max: u32,
        timeout: Duration,
        variable: String,
    },
}

/// Where a `dial` goes; values may hold `${variables}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    /// Every registered contact of a user, by extension or username.
    User(String),
    /// A SIP URI.
    Uri(String),
    /// A configured trunk.
    Gateway(String),
}

/// A dialplan that cannot be used, naming where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct DialplanError {
    /// e.g. `routes[2] (id "internal").actions[0].params.target`.
    pub path: String,
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> DialplanError {
    DialplanError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Hangup reasons by name, for `{"type": "hangup", "params": {"reason": "busy"}}`.
const NAMED_HANGUPS: &[(&str, u16)] = &[
    ("busy", 486),
    ("no_answer", 480),
    ("unavailable", 480),
    ("not_found", 404),
    ("rejected", 603),
    ("decline", 603),
    ("forbidden", 403),
    ("congestion", 503),
    ("normal", 0),
];

impl Dialplan {
    /// Parses and validates a dialplan from JSON text.
    pub fn parse(text: &str) -> Result<Self, DialplanError> {
        let file: DialplanFile =
            serde_json::from_str(text).map_err(|e| err("dialplan", e.to_string()))?;
        Self::from_file(file)
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, DialplanError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), e.to_string()))?;
        Self::parse(&text).map_err(|e| err(format!("{}: {}", path.display(), e.path), e.reason))
    }

    /// The dialplan used when none is configured: every extension dials
    /// the user who has it.
    pub fn builtin() -> Self {
        let file = DialplanFile {
            version: default_version(),
            routes: vec![RouteFile {
                id: "extensions".into(),
                name: Some("Dial the user with this extension or username".into()),
                pattern: "*".into(),
                priority: 100,
                enabled: true,
                account_id: None,
                from: None,
                allow_trunk_to_trunk: false,
                direct_media: false,
                srtp: None,
                actions: vec![ActionFile {
                    kind: "dial".into(),
                    params: serde_json::json!({"target": "user/${destination}", "timeout": 30}),
                }],
            }],
        };
        match Self::from_file(file.clone()) {
            Ok(d) => d,
            Err(_) => Self {
                file,
                routes: Vec::new(),
            },
        }
    }

    /// Validates a parsed file.
    pub fn from_file(file: DialplanFile) -> Result<Self, DialplanError> {
        if file.version.split('.').next() != Some("1") {
            return Err(err(
                "version",
                format!("unsupported version {:?} (expected 1.x)", file.version),
            ));
        }
        let mut ids = HashSet::new();
        let mut routes = Vec::new();
        for (i, r) in file.routes.iter().enumerate() {
            let here = format!("routes[{i}] (id {:?})", r.id);
            if r.id.trim().is_empty() {
                return Err(err(format!("routes[{i}].id"), "must not be empty"));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(err(here, "duplicate route id"));
            }
            if r.pattern.is_empty() {
                return Err(err(format!("{here}.pattern"), "must not be empty"));
            }
            if r.actions.is_empty() {
                return Err(err(
                    format!("{here}.actions"),
                    "a route needs at least one action",
                ));
            }
            let mut vars: HashSet<String> =
                BUILTIN_VARIABLES.iter().map(|v| (*v).to_owned()).collect();
            let mut actions = Vec::with_capacity(r.actions.len());
            for (j, a) in r.actions.iter().enumerate() {
                let at = format!("{here}.actions[{j}]");
                actions.push(action(a, &at, &mut vars)?);
            }
            let from = origin::check(r, &actions, &here)?;
            let srtp = Srtp::parse(r.srtp.as_deref(), &format!("{here}.srtp"))?;
            if r.enabled {
                routes.push((
                    i,
                    Route {
                        id: r.id.clone(),
                        pattern: r.pattern.clone(),
                        priority: r.priority,
                        account_id: r.account_id,
                        from,
                        direct_media: r.direct_media,
                        srtp,
                        actions,
                    },
                ));
            }
        }
        routes.sort_by_key(|(i, r)| (r.priority, *i));
        Ok(Self {
            file,
            routes: routes.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// The route for a call to `destination` from a local user of
    /// `account_id`.
    pub fn route(&self, destination: &str, account_id: i64) -> Option<&Route> {
        self.route_for(destination, account_id, Origin::User)
    }

    /// The route for a call to `destination` from `origin`, of `account_id`.
    pub fn route_for(
        &self,
        destination: &str,
        account_id: i64,
        origin: Origin<'_>,
    ) -> Option<&Route> {
        self.routes.iter().find(|r| {
            r.from.serves(origin)
                && r.account_id.is_none_or(|a| a == account_id)
                && glob(&r.pattern, destination)
        })
    }

    /// Number of enabled routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn params(
    a: &ActionFile,
    at: &str,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, DialplanError> {
    let map = match &a.params {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m.clone(),
        _ => return Err(err(format!("{at}.params"), "must be an object")),
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(err(
            format!("{at}.params.{k}"),
            format!(
                "unknown parameter for {:?} (known: {})",
                a.kind,
                allowed.join(", ")
            ),
        ));
    }
    Ok(map)
}

fn string(
    map: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<String>, DialplanError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(format!("{at}.params.{key}"), "must be a string")),
    }
}

/// `one` (a string) and `many` (a list of strings) together, each with the
/// path that names it in errors.
fn one_or_many(
    map: &serde_json::Map<String, Value>,
    one: &str,
    many: &str,
    at: &str,
) -> Result<Vec<(String, String)>, DialplanError> {
    let mut out = Vec::new();
    if let Some(v) = string(map, one, at)? {
        out.push((format!("{at}.params.{one}"), v));
    }
    match map.get(many) {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (k, v) in list.iter().enumerate() {
                let here = format!("{at}.params.{many}[{k}]");
                match v {
                    Value::String(s) => out.push((here, s.clone())),
                    _ => return Err(err(here, "must be a string")),
                }
            }
        }
        Some(_) => {
            return Err(err(
                format!("{at}.params.{many}"),
                "must be a list of strings",
            ));
        }
    }
    Ok(out)
}

fn action(a: &ActionFile, at: &str, vars: &mut HashSet<String>) -> Result<Action, DialplanError> {
    match a.kind.as_str() {
        "dial" => {
            let p = params(a, at, &["target", "targets", "timeout"])?;
            let raw = one_or_many(&p, "target", "targets", at)?;
            if raw.is_empty() {
                return Err(err(format!("{at}.params"), "dial needs a target"));
            }
            let mut targets = Vec::with_capacity(raw.len());
            for (here, t) in raw {
                check_template(&t, &here, vars)?;
                targets.push(dial_target(&t).map_err(|r| err(here, r))?);
            }
            let timeout = match p.get("timeout") {
                None | Some(Value::Null) => DEFAULT_DIAL_TIMEOUT,
                Some(v) => match v.as_u64() {
                    Some(s) if (1..=MAX_DIAL_TIMEOUT_SECS).contains(&s) => Duration::from_secs(s),
                    _ => {
                        return Err(err(
                            format!("{at}.params.timeout"),
                            format!("must be whole seconds from 1 to {MAX_DIAL_TIMEOUT_SECS}"),
                        ));
                    }
                },
            };
            Ok(Action::Dial { targets, timeout })
        }
        "hangup" => {
            let p = params(a, at, &["reason", "code"])?;
            let reason = string(&p, "reason", at)?;
            let code = match p.get("code") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64().and_then(|c| u16::try_from(c).ok()) {
                    Some(c) if (400..=699).contains(&c) => Some(c),
                    _ => {
                        return Err(err(
                            format!("{at}.params.code"),
                            "must be a SIP status from 400 to 699",
                        ));
                    }
                },
            };
            let named = reason.as_deref().and_then(|r| {
                NAMED_HANGUPS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(r))
                    .map(|(_, c)| *c)
            });
            let code = code.or(named).unwrap_or(0);
            let reason = match (&reason, named) {
                (Some(r), None) => r.clone(),
                _ => switchboard_sip::reason_phrase(code).to_owned(),
            };
            // code 0: "normal" — end an answered call, or 480 before answer
            Ok(Action::Hangup { code, reason })
        }
        "answer" => {
            params(a, at, &[])?;
            Ok(Action::Answer)
        }
        "set" => {
            let p = params(a, at, &["name", "variable", "value"])?;
            let name = match (string(&p, "name", at)?, string(&p, "variable", at)?) {
                (Some(n), None) | (None, Some(n)) => n,
                _ => {
                    return Err(err(
                        format!("{at}.params"),
                        "set needs exactly one of \"name\" or \"variable\"",
                    ));
                }
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(
                    format!("{at}.params.name"),
                    "variable names are letters, digits and _",
                ));
            }
            if matches!(name.as_str(), "destination" | "call_id") {
                return Err(err(
                    format!("{at}.params.name"),
                    format!("{name} cannot be changed"),
                ));
            }
            let value = string(&p, "value", at)?
                .ok_or_else(|| err(format!("{at}.params.value"), "set needs a value"))?;
            check_template(&value, &format!("{at}.params.value"), vars)?;
            vars.insert(name.clone());
            Ok(Action::Set { name, value })
        }
        "play_audio" => {
            let p = params(a, at, &["file", "files", "repeat"])?;
            let files = one_or_many(&p, "file", "files", at)?;
            if files.is_empty() {
                return Err(err(format!("{at}.params"), "play_audio needs a file"));
            }
            for (here, f) in &files {
                check_template(f, here, vars)?;
                if f.is_empty() || f.starts_with('/') || f.split('/').any(|c| c == "..") {
                    return Err(err(
                        here.clone(),
                        "must be a relative name under AUDIO_PATH without '..'",
                    ));
                }
            }
            let repeat = match p.get("repeat") {
                None | Some(Value::Null) => 1,
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=100).contains(&n) => n as u32,
                    _ => {
                        return Err(err(
                            format!("{at}.params.repeat"),
                            "must be a whole number from 1 to 100",
                        ));
                    }
                },
            };
            Ok(Action::PlayAudio {
                files: files.into_iter().map(|(_, f)| f).collect(),
                repeat,
            })
        }
        "echo" => {
            let p = params(a, at, &["timeout"])?;
            let timeout = match p.get("timeout") {
                None | Some(Value::Null) => None,
                Some(_) => Some(seconds(&p, "timeout", at, 1.0, 3600.0)?),
            };
            Ok(Action::Echo { timeout })
        }
        "record" => {
            let p = params(a, at, &["file", "both_sides"])?;
            let file = string(&p, "file", at)?.unwrap_or_else(|| "${call_id}.wav".into());
            let both_sides = match p.get("both_sides") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(err(
                        format!("{at}.params.both_sides"),
                        "must be true or false",
                    ));
                }
            };
            let here = format!("{at}.params.file");
            check_template(&file, &here, vars)?;
            if file.is_empty() || file.starts_with('/') || file.split('/').any(|c| c == "..") {
                return Err(err(here, "must be a relative file name without '..'"));
            }
            Ok(Action::Record { file, both_sides })
        }
        "wait" => {
            let p = params(a, at, &["seconds"])?;
            if !p.contains_key("seconds") {
                return Err(err(format!("{at}.params.seconds"), "wait needs seconds"));
            }
            Ok(Action::Wait {
                duration: seconds(&p, "seconds", at, 0.02, 3600.0)?,
            })
        }
        "read_digits" => {
            let p = params(a, at, &["max", "timeout", "variable"])?;
            let max = match p.get("max") {
                None | Some(Value::Null) => 1,
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=64).contains(&n) => n as u32,
                    _ => {
                        return Err(err(
                            format!("{at}.params.max"),
                            "must be a whole number from 1 to 64",
                        ));
                    }
                },
            };
            let timeout = match p.get("timeout") {
                None | Some(Value::Null) => Duration::from_secs(5),
                Some(_) => seconds(&p, "timeout", at, 0.1, 600.0)?,
            };
            let variable = string(&p, "variable", at)?.unwrap_or_else(|| "digits".into());
            if variable.is_empty()
                || !variable
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(err(
                    format!("{at}.params.variable"),
                    "variable names are letters, digits and _",
                ));
            }
            if BUILTIN_VARIABLES.contains(&variable.as_str()) {
                return Err(err(
                    format!("{at}.params.variable"),
                    format!("{variable} cannot be changed"),
                ));
            }
            vars.insert(variable.clone());
            Ok(Action::ReadDigits {
                max,
                timeout,
                variable,
            })
        }
        other => Err(err(
            format!("{at}.type"),
            format!(
                "unknown action {other:?} (known: dial, hangup, answer, set, play_audio, \
                 echo, record, wait, read_digits)"
            ),
        )),
    }
}

/// A number of seconds (fractions allowed) within `min..=max`.
fn seconds(
    map: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
    min: f64,
    max: f64,
) -> Result<Duration, DialplanError> {
    match map.get(key).and_then(Value::as_f64) {
        Some(s) if (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(err(
            format!("{at}.params.{key}"),
            format!("must be a number of seconds from {min} to {max}"),
        )),
    }
}

fn dial_target(t: &str) -> Result<DialTarget, String> {
    if let Some(u) = t.strip_prefix("user/") {
        if u.is_empty() {
            return Err("user/ needs an extension or username".into());
        }
        return Ok(DialTarget::User(u.to_owned()));
    }
    if let Some(g) = t.strip_prefix("gateway/") {
        if g.is_empty() {
            return Err("gateway/ needs a trunk name".into());
        }
        return Ok(DialTarget::Gateway(g.to_owned()));
    }
    if let Some(rest) = t.strip_prefix("sip:").or_else(|| t.strip_prefix("sips:")) {
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(format!("{t:?} is not a SIP URI"));
        }
        return Ok(DialTarget::Uri(t.to_owned()));
    }
    Err(format!(
        "unknown target {t:?} (expected user/<ext>, sip:<uri> or gateway/<trunk>)"
    ))
}

/// Checks every `${name}` in `t` names a known variable.
fn check_template(t: &str, at: &str, vars: &HashSet<String>) -> Result<(), DialplanError> {
    let mut rest = t;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(err(at, "unterminated ${"));
        };
        let name = &after[..end];
        if !vars.contains(name) {
            return Err(err(at, format!("unknown variable ${{{name}}}")));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Replaces every `${name}` in `t` from `vars` (unknown names: empty).
pub fn expand(t: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(t.len() + 16);
    let mut rest = t;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end) => {
                if let Some(v) = vars.get(&after[..end]) {
                    out.push_str(v);
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Glob match: `*` any run (also empty), `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests;
