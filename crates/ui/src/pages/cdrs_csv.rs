//! CDRs as CSV (RFC 4180, CRLF rows, a header row) for spreadsheets.
//! Caller numbers and names come from phones, so a cell a spreadsheet
//! would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
//! carriage return) gets a leading `'`; a cell holding a quote, comma or
//! line break is quoted, its quotes doubled.

use serde_json::Value;

use super::utc;
use crate::pages::text;

/// The columns: (header, CDR field); `*_at` fields are written as UTC.
const COLUMNS: &[(&str, &str)] = &[
    ("call_id", "call_id"),
    ("started_utc", "invite_at"),
    ("answered_utc", "answer_at"),
    ("ended_utc", "end_at"),
    ("account_id", "account_id"),
    ("caller", "caller"),
    ("caller_name", "caller_name"),
    ("callee", "callee"),
    ("disposition", "disposition"),
    ("talk_ms", "talk_ms"),
    ("ring_ms", "ring_ms"),
    ("hangup_code", "hangup_code"),
    ("hangup_reason", "hangup_reason"),
    ("hangup_side", "hangup_side"),
    ("route", "route"),
    ("mos", "mos"),
    ("rtp_lost", "rtp_lost"),
    ("jitter_ms", "jitter_ms"),
    ("node", "node"),
];

/// One cell, neutralised and escaped.
pub(super) fn cell(out: &mut String, v: &str) {
    let formula = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || v.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for ch in v.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    if quote {
        out.push('"');
    }
}

/// The CSV of `cdrs` (the API's CDR objects).
pub(super) fn render(cdrs: &[Value]) -> String {
    let mut out = COLUMNS
        .iter()
        .map(|(h, _)| *h)
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for c in cdrs {
        for (i, (_, field)) in COLUMNS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = if field.ends_with("_at") {
                c.get(*field)
                    .and_then(Value::as_i64)
                    .map(utc)
                    .unwrap_or_default()
            } else {
                text(c, field)
            };
            cell(&mut out, &v);
        }
        out.push_str("\r\n");
    }
    out
}

/// A backend name made safe for a file name (`[A-Za-z0-9_-]`).
pub(super) fn file_part(s: &str) -> String {
    let p: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if p.is_empty() { "backend".into() } else { p }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> String {
        let mut s = String::new();
        cell(&mut s, v);
        s
    }

    #[test]
    fn cells_are_escaped_and_formulas_neutralised() {
        assert_eq!(one("alice"), "alice");
        assert_eq!(one("1002"), "1002");
        assert_eq!(one("Smith, John"), "\"Smith, John\"");
        assert_eq!(one("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(one("two\nlines"), "\"two\nlines\"");
        assert_eq!(one("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for f in ["+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(one(f).starts_with("\"'"), "{f:?}: {}", one(f));
        }
        assert_eq!(one(""), "");
        assert_eq!(file_part("main/../x y"), "main____x_y");
        assert_eq!(file_part(""), "backend");
    }

    #[test]
    fn rows_follow_the_header() {
        let rows = [
            serde_json::json!({"call_id": "c1", "invite_at": 1000, "caller": "=1+1",
                                       "callee": "1002", "disposition": "answered", "mos": 4.2}),
        ];
        let csv = render(&rows);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 3, "{csv}");
        assert!(lines[0].starts_with("call_id,started_utc,"));
        assert!(
            lines[1].starts_with("c1,1970-01-01 00:00:01,,,,\"'=1+1\",,1002,answered,"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "");
    }
}
