//! The body of `POST /call`: sipstuff-k8s-operator's `CallRequest`, field
//! for field (names, types, defaults, ranges), validated by hand over the
//! parsed JSON so that every violation names its field.
//!
//! Coercions follow pydantic v2's lax mode, which sipstuff clients rely on:
//! an integer field takes a JSON integer, a float with no fractional part or
//! a decimal string; a float field takes any JSON number or a numeric
//! string; a boolean takes `true`/`false`, `0`/`1` or one of pydantic's
//! words (`yes`, `no`, `on`, `off`, `t`, `f`, `y`, `n`, `true`, `false`,
//! `1`, `0`). `null` for an optional field means "not given"; for a field
//! with a default it is a type error, as in pydantic. Unlike sipstuff an
//! unknown field is an error (`extra_forbidden`): a typo must not be
//! silently ignored.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// One entry of the 422 body, FastAPI's shape:
/// `{"loc": ["body", "sip_port"], "msg": "...", "type": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    fn new(field: &str, kind: &str, msg: impl Into<String>) -> FieldError {
        let mut loc = vec![Value::from("body")];
        if !field.is_empty() {
            loc.push(Value::from(field));
        }
        FieldError {
            loc,
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }

    /// The field it names (`""` for the body itself).
    pub fn field(&self) -> &str {
        self.loc.get(1).and_then(Value::as_str).unwrap_or("")
    }
}

/// A validated `POST /call` body. [`Default`] gives every field its
/// default (and an empty `dest`, which the API would refuse), for building
/// requests in code: `CallRequest { dest: "600".into(), text:
/// Some("hello".into()), ..CallRequest::default() }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRequest {
    pub dest: String,
    pub text: Option<String>,
    pub wav: Option<String>,

    pub sip_server: Option<String>,
    pub sip_port: Option<u16>,
    pub sip_user: Option<String>,
    pub sip_password: Option<String>,
    /// `udp`, `tcp` or `tls`
    pub sip_transport: Option<String>,
    /// `disabled`, `optional` or `mandatory`
    pub sip_srtp: Option<String>,
    pub sip_tls_verify: Option<bool>,

    pub stun_servers: Option<String>,
    pub ice_enabled: Option<bool>,
    pub turn_server: Option<String>,
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    /// `udp`, `tcp` or `tls`
    pub turn_transport: Option<String>,
    pub keepalive_sec: Option<u16>,
    pub public_address: Option<String>,

    /// seconds, 1–600
    pub timeout: u32,
    pub pre_delay: f64,
    pub post_delay: f64,
    pub wait_for_silence: Option<f64>,
    pub inter_delay: f64,
    /// 1–100
    pub repeat: u32,

    pub tts_model: Option<String>,
    pub tts_sample_rate: Option<u32>,
    pub tts_data_dir: Option<String>,

    pub stt_model: Option<String>,
    pub stt_language: Option<String>,
    pub stt_data_dir: Option<String>,

    pub record: Option<String>,
    pub transcribe: bool,

    pub verbose: bool,
    /// `Some({})` clears the operator's NODE_SELECTOR for this call.
    pub node_selector: Option<BTreeMap<String, String>>,
}

impl Default for CallRequest {
    fn default() -> CallRequest {
        CallRequest {
            dest: String::new(),
            text: None,
            wav: None,
            sip_server: None,
            sip_port: None,
            sip_user: None,
            sip_password: None,
            sip_transport: None,
            sip_srtp: None,
            sip_tls_verify: None,
            stun_servers: None,
            ice_enabled: None,
            turn_server: None,
            turn_username: None,
            turn_password: None,
            turn_transport: None,
            keepalive_sec: None,
            public_address: None,
            timeout: 60,
            pre_delay: 0.0,
            post_delay: 0.0,
            wait_for_silence: None,
            inter_delay: 0.0,
            repeat: 1,
            tts_model: None,
            tts_sample_rate: None,
            tts_data_dir: None,
            stt_model: None,
            stt_language: None,
            stt_data_dir: None,
            record: None,
            transcribe: false,
            verbose: false,
            node_selector: None,
        }
    }
}

/// Every field `POST /call` knows, in sipstuff's order.
pub const FIELDS: &[&str] = &[
    "dest",
    "text",
    "wav",
    "sip_server",
    "sip_port",
    "sip_user",
    "sip_password",
    "sip_transport",
    "sip_srtp",
    "sip_tls_verify",
    "stun_servers",
    "ice_enabled",
    "turn_server",
    "turn_username",
    "turn_password",
    "turn_transport",
    "keepalive_sec",
    "public_address",
    "timeout",
    "pre_delay",
    "post_delay",
    "wait_for_silence",
    "inter_delay",
    "repeat",
    "tts_model",
    "tts_sample_rate",
    "tts_data_dir",
    "stt_model",
    "stt_language",
    "stt_data_dir",
    "record",
    "transcribe",
    "verbose",
    "node_selector",
];

const TRANSPORTS: &[&str] = &["udp", "tcp", "tls"];
const SRTP_MODES: &[&str] = &["disabled", "optional", "mandatory"];

/// Reads one object's fields, collecting every error.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    /// The value of `field`; `None` when absent or `null`.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    /// A field with a default: present as `null` is a type error.
    fn null_for_default(&mut self, field: &str, kind: &str, msg: &str) -> bool {
        if matches!(self.obj.get(field), Some(Value::Null)) {
            self.errors.push(FieldError::new(field, kind, msg));
            return true;
        }
        false
    }

    fn string(&mut self, field: &str) -> Option<String> {
        match self.get(field)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.errors.push(FieldError::new(
                    field,
                    "string_type",
                    "Input should be a valid string",
                ));
                None
            }
        }
    }

    fn literal(&mut self, field: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(field)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
        let (last, rest) = quoted
            .split_last()
            .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
        self.errors.push(FieldError::new(
            field,
            "literal_error",
            format!("Input should be {} or {last}", rest.join(", ")),
        ));
        None
    }

    fn int(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.get(field)?;
        // as a float for the range check (any integer beyond the ranges
        // here fails it, however it rounds)
        let n: Option<f64> = match v {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Some(i as f64),
                (None, Some(f)) if f.fract() == 0.0 => Some(f),
                (None, Some(_)) => {
                    self.errors.push(FieldError::new(
                        field,
                        "int_from_float",
                        "Input should be a valid integer, got a number with a fractional part",
                    ));
                    return None;
                }
                (None, None) => None,
            },
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Some(i as f64),
                Err(_) => {
                    self.errors.push(FieldError::new(
                        field,
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                    ));
                    return None;
                }
            },
            _ => None,
        };
        let Some(n) = n else {
            self.errors.push(FieldError::new(
                field,
                "int_type",
                "Input should be a valid integer",
            ));
            return None;
        };
        self.range(field, n, min as f64, max as f64)
            .then_some(n as i64)
    }

    fn float(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
        let v = self.get(field)?;
        let f = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) => Some(f),
                Err(_) => {
                    self.errors.push(FieldError::new(
                        field,
                        "float_parsing",
                        "Input should be a valid number, unable to parse string as a number",
                    ));
                    return None;
                }
            },
            _ => None,
        };
        let Some(f) = f else {
            self.errors.push(FieldError::new(
                field,
                "float_type",
                "Input should be a valid number",
            ));
            return None;
        };
        self.range(field, f, min, max).then_some(f)
    }

    /// `min <= v <= max` (NaN fails both), else an error naming the bound.
    fn range(&mut self, field: &str, v: f64, min: f64, max: f64) -> bool {
        if v.is_nan() || v < min {
            self.errors.push(FieldError::new(
                field,
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            ));
            return false;
        }
        if v > max {
            self.errors.push(FieldError::new(
                field,
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
            ));
            return false;
        }
        true
    }

    fn boolean(&mut self, field: &str) -> Option<bool> {
        let v = self.get(field)?;
        let b = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Some(false),
                Some(1.0) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
                "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
                _ => None,
            },
            _ => None,
        };
        if b.is_none() {
            self.errors.push(FieldError::new(
                field,
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
            ));
        }
        b
    }

    fn string_map(&mut self, field: &str) -> Option<BTreeMap<String, String>> {
        let Value::Object(map) = self.get(field)? else {
            self.errors.push(FieldError::new(
                field,
                "dict_type",
                "Input should be a valid dictionary",
            ));
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                _ => {
                    ok = false;
                    let mut e =
                        FieldError::new(field, "string_type", "Input should be a valid string");
                    e.loc.push(Value::from(k.as_str()));
                    self.errors.push(e);
                }
            }
        }
        ok.then_some(out)
    }
}

impl CallRequest {
    /// Validates a parsed JSON body: the request, or every error found
    /// (each naming its field).
    pub fn from_json(body: &Value) -> Result<CallRequest, Vec<FieldError>> {
        let Value::Object(obj) = body else {
            return Err(vec![FieldError::new(
                "",
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            )]);
        };
        let mut r = Reader {
            obj,
            errors: Vec::new(),
        };
        for key in obj.keys() {
            if !FIELDS.contains(&key.as_str()) {
                r.errors.push(FieldError::new(
                    key,
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                ));
            }
        }
        let d = CallRequest::default();
        let dest = match obj.get("dest") {
            None => {
                r.errors
                    .push(FieldError::new("dest", "missing", "Field required"));
                None
            }
            Some(Value::Null) => {
                r.errors.push(FieldError::new(
                    "dest",
                    "string_type",
                    "Input should be a valid string",
                ));
                None
            }
            Some(_) => r.string("dest"),
        };
        let int_msg = "Input should be a valid integer";
        let float_msg = "Input should be a valid number";
        let bool_msg = "Input should be a valid boolean";
        let timeout = if r.null_for_default("timeout", "int_type", int_msg) {
            None
        } else {
            r.int("timeout", 1, 600)
        };
        let repeat = if r.null_for_default("repeat", "int_type", int_msg) {
            None
        } else {
            r.int("repeat", 1, 100)
        };
        let delay = |r: &mut Reader<'_>, field: &str| {
            if r.null_for_default(field, "float_type", float_msg) {
                None
            } else {
                r.float(field, 0.0, 30.0)
            }
        };
        let pre_delay = delay(&mut r, "pre_delay");
        let post_delay = delay(&mut r, "post_delay");
        let inter_delay = delay(&mut r, "inter_delay");
        let flag = |r: &mut Reader<'_>, field: &str| {
            if r.null_for_default(field, "bool_type", bool_msg) {
                None
            } else {
                r.boolean(field)
            }
        };
        let transcribe = flag(&mut r, "transcribe");
        let verbose = flag(&mut r, "verbose");
        let req = CallRequest {
            dest: dest.unwrap_or_default(),
            text: r.string("text"),
            wav: r.string("wav"),
            sip_server: r.string("sip_server"),
            sip_port: r.int("sip_port", 1, 65535).map(|n| n as u16),
            sip_user: r.string("sip_user"),
            sip_password: r.string("sip_password"),
            sip_transport: r.literal("sip_transport", TRANSPORTS),
            sip_srtp: r.literal("sip_srtp", SRTP_MODES),
            sip_tls_verify: r.boolean("sip_tls_verify"),
            stun_servers: r.string("stun_servers"),
            ice_enabled: r.boolean("ice_enabled"),
            turn_server: r.string("turn_server"),
            turn_username: r.string("turn_username"),
            turn_password: r.string("turn_password"),
            turn_transport: r.literal("turn_transport", TRANSPORTS),
            keepalive_sec: r.int("keepalive_sec", 0, 600).map(|n| n as u16),
            public_address: r.string("public_address"),
            timeout: timeout.map_or(d.timeout, |n| n as u32),
            pre_delay: pre_delay.unwrap_or(d.pre_delay),
            post_delay: post_delay.unwrap_or(d.post_delay),
            wait_for_silence: r.float("wait_for_silence", 0.0, 30.0),
            inter_delay: inter_delay.unwrap_or(d.inter_delay),
            repeat: repeat.map_or(d.repeat, |n| n as u32),
            tts_model: r.string("tts_model"),
            tts_sample_rate: r.int("tts_sample_rate", 0, 48000).map(|n| n as u32),
            tts_data_dir: r.string("tts_data_dir"),
            stt_model: r.string("stt_model"),
            stt_language: r.string("stt_language"),
            stt_data_dir: r.string("stt_data_dir"),
            record: r.string("record"),
            transcribe: transcribe.unwrap_or(d.transcribe),
            verbose: verbose.unwrap_or(d.verbose),
            node_selector: r.string_map("node_selector"),
        };
        if !r.errors.is_empty() {
            return Err(r.errors);
        }
        // the model's own rules, as sipstuff's model validator: only once
        // every field is valid; an empty string counts as not given
        let has = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        match (has(&req.text), has(&req.wav)) {
            (false, false) => r.errors.push(FieldError::new(
                "text",
                "value_error",
                "Value error, Exactly one of 'text' or 'wav' must be provided",
            )),
            (true, true) => r.errors.push(FieldError::new(
                "text",
                "value_error",
                "Value error, Exactly one of 'text' or 'wav' must be provided, not both",
            )),
            _ => {}
        }
        if req.transcribe && req.record.is_none() {
            r.errors.push(FieldError::new(
                "transcribe",
                "value_error",
                "Value error, 'transcribe' requires 'record' (the transcript is of the recording)",
            ));
        }
        if r.errors.is_empty() {
            Ok(req)
        } else {
            Err(r.errors)
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
