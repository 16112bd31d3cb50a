//! `/cdrs`: call detail records of one backend (`?backend=`, the first by
//! default; replicas on a shared database share their CDRs), filtered by
//! time, caller, callee, disposition and account exactly as the API
//! filters them (`GET /api/v1/cdrs`), a page at a time (the API's cursor);
//! `/cdrs/{id}` shows one with its quality figures, and `/cdrs.csv` the
//! rows of the same filter and page as CSV, escaped for spreadsheets.
//!
//! Times in the form and on the page are UTC.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Layout, items, num, render, text};
use crate::SharedState;
use crate::auth::Ctx;
use crate::backend::segment;

#[path = "cdrs_csv.rs"]
mod csv;

/// Rows per page unless the form says otherwise.
pub const PAGE: u32 = 50;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Unix ms as `2026-12-06 09:54:11` (UTC); `—` for none.
pub fn utc(ms: i64) -> String {
    if ms <= 0 {
        return "—".into();
    }
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-12-06T09:54`, `2026-12-06 09:54:11`, `2026-12-06` (UTC) or unix
/// ms as unix ms; empty: none.
pub fn parse_time(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && s.len() > 10 {
        return s
            .parse()
            .map(Some)
            .map_err(|_| format!("{s:?} is not a time"));
    }
    let bad = || format!("{s:?} is not a time (YYYY-MM-DD HH:MM, UTC)");
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, t),
        None => (s, "00:00"),
    };
    let num = |p: &str| p.parse::<i64>().map_err(|_| bad());
    let dp: Vec<&str> = date.split('-').collect();
    let tp: Vec<&str> = time.trim_end_matches('Z').split(':').collect();
    let ([y, mo, d], 2..=3) = (dp.as_slice(), tp.len()) else {
        return Err(bad());
    };
    let (y, mo, d) = (num(y)?, num(mo)?, num(d)?);
    let (h, mi) = (num(tp[0])?, num(tp[1])?);
    let sec = match tp.get(2) {
        Some(x) => x.split('.').next().map(num).unwrap_or(Ok(0))?,
        None => 0,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    Ok(Some(((days * 86_400) + h * 3600 + mi * 60 + sec) * 1000))
}

/// The filter form, as the browser sends it (every field text, so an
/// empty one is "not set").
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
pub struct Filter {
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub caller: String,
    #[serde(default)]
    pub callee: String,
    #[serde(default)]
    pub disposition: String,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub cursor: String,
    #[serde(default)]
    pub limit: String,
}

impl Filter {
    /// The API's query (`/cdrs?...`), or what is wrong with the form.
    fn api_path(&self) -> Result<String, String> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(ms) = parse_time(&self.from).map_err(|e| format!("from: {e}"))? {
            q.push(("from_ms", ms.to_string()));
        }
        if let Some(ms) = parse_time(&self.to).map_err(|e| format!("to: {e}"))? {
            q.push(("to_ms", ms.to_string()));
        }
        for (k, v) in [
            ("caller", &self.caller),
            ("callee", &self.callee),
            ("disposition", &self.disposition),
        ] {
            if !v.trim().is_empty() {
                q.push((k, v.trim().to_owned()));
            }
        }
        for (k, v, name) in [
            ("account_id", &self.account, "account"),
            ("cursor", &self.cursor, "cursor"),
        ] {
            if !v.trim().is_empty() {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}: {v:?} is not a number"))?;
                q.push((k, n.to_string()));
            }
        }
        q.push(("limit", self.limit().to_string()));
        let query = serde_urlencoded::to_string(&q).map_err(|e| e.to_string())?;
        Ok(format!("/cdrs?{query}"))
    }

    fn limit(&self) -> u32 {
        self.limit
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .unwrap_or(PAGE)
    }

    /// This filter as a query string, with `cursor` replaced.
    fn query(&self, cursor: Option<&str>) -> String {
        let mut f = self.clone();
        f.cursor = cursor.unwrap_or("").to_owned();
        let pairs: Vec<(&str, &str)> = [
            ("backend", f.backend.as_str()),
            ("from", &f.from),
            ("to", &f.to),
            ("caller", &f.caller),
            ("callee", &f.callee),
            ("disposition", &f.disposition),
            ("account", &f.account),
            ("cursor", &f.cursor),
            ("limit", &f.limit),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

pub struct Row {
    pub call_id: String,
    pub at: String,
    pub caller: String,
    pub caller_name: String,
    pub callee: String,
    pub disposition: String,
    pub talk: String,
    pub code: String,
    pub account: String,
    pub mos: String,
}

fn row(c: &Value) -> Row {
    let ms = |k: &str| c.get(k).and_then(Value::as_i64);
    Row {
        call_id: text(c, "call_id"),
        at: utc(ms("invite_at").unwrap_or(0)),
        caller: text(c, "caller"),
        caller_name: text(c, "caller_name"),
        callee: text(c, "callee"),
        disposition: text(c, "disposition"),
        talk: ms("talk_ms").map_or_else(String::new, |t| super::duration(t / 1000)),
        code: text(c, "hangup_code"),
        account: text(c, "account_id"),
        mos: num(c, "mos"),
    }
}

#[derive(Template)]
#[template(path = "cdrs.html")]
struct Page {
    l: Layout,
    backends: Vec<String>,
    backend: String,
    f: Filter,
    rows: Vec<Row>,
    down: Option<String>,
    /// Query strings of this page (for the CSV), the next and the first.
    here: String,
    next: Option<String>,
    first: Option<String>,
}

/// The backend `name` names (empty: the first); `None` for a name no
/// backend has, or without backends.
fn pick(state: &SharedState, name: &str) -> Option<(usize, String)> {
    let idx = if name.is_empty() {
        0
    } else {
        state.backends.index(name)?
    };
    let name = state.backends.names().nth(idx)?.to_owned();
    Some((idx, name))
}

/// The CDRs of a filter: the rows and the next page's cursor.
async fn fetch(
    state: &SharedState,
    f: &Filter,
) -> Result<(String, Vec<Value>, Option<String>), (StatusCode, String)> {
    let Some((idx, backend)) = pick(state, &f.backend) else {
        return Err((StatusCode::BAD_REQUEST, "No such backend.".into()));
    };
    let path = f.api_path().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    match state.backends.get(idx, &path).await {
        Ok(v) => {
            let rows = items(v.get("cdrs").unwrap_or(&Value::Null)).to_vec();
            let next = v
                .get("next_cursor")
                .and_then(Value::as_i64)
                .map(|n| n.to_string());
            Ok((backend, rows, next))
        }
        Err(e) => Err((
            e.status
                .filter(|s| s.is_client_error())
                .map_or(StatusCode::BAD_GATEWAY, |_| StatusCode::BAD_REQUEST),
            format!("Backend {backend}: {e}"),
        )),
    }
}

pub async fn page(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(mut f): Query<Filter>,
) -> Response {
    let mut l = Layout::new("CDRs", "cdrs", &ctx.csrf);
    let backends: Vec<String> = state.backends.names().map(str::to_owned).collect();
    if f.backend.is_empty()
        && let Some(b) = backends.first()
    {
        f.backend = b.clone();
    }
    // the form's datetime-local inputs take `YYYY-MM-DDTHH:MM:SS` only
    for t in [&mut f.from, &mut f.to] {
        if let Ok(Some(ms)) = parse_time(t) {
            *t = utc(ms).replace(' ', "T");
        }
    }
    let (rows, down, next, status) = match fetch(&state, &f).await {
        Ok((_, rows, next)) => (rows, None, next, StatusCode::OK),
        Err((status, e)) => {
            if status == StatusCode::BAD_REQUEST {
                l.notice = Some(e);
                (Vec::new(), None, None, status)
            } else {
                (Vec::new(), Some(e), None, StatusCode::OK)
            }
        }
    };
    let page = Page {
        l,
        backend: f.backend.clone(),
        backends,
        rows: rows.iter().map(row).collect(),
        down,
        here: f.query(Some(&f.cursor)),
        next: next.map(|c| f.query(Some(&c))),
        first: (!f.cursor.is_empty()).then(|| f.query(None)),
        f,
    };
    render(&page, status)
}

/// `GET /cdrs.csv?<filter>`: the rows the same filter and page show.
pub async fn export(State(state): State<SharedState>, Query(f): Query<Filter>) -> Response {
    match fetch(&state, &f).await {
        Ok((backend, rows, _)) => {
            let name = format!(
                "cdrs-{}-{}.csv",
                csv::file_part(&backend),
                utc(super::now_ms())
                    .replace(['-', ':'], "")
                    .replace(' ', "-")
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                csv::render(&rows),
            )
                .into_response()
        }
        Err((status, e)) => (status, e).into_response(),
    }
}

pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "cdr.html")]
struct Detail {
    l: Layout,
    backend: String,
    call_id: String,
    fields: Vec<Field>,
    quality: Vec<Field>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Pick {
    #[serde(default)]
    backend: String,
}

/// `GET /cdrs/{id}?backend=`: one CDR, every field and the call quality.
pub async fn detail(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(p): Query<Pick>,
) -> Response {
    let Some((idx, backend)) = pick(&state, &p.backend) else {
        return super::not_found().await;
    };
    let c = match state
        .backends
        .get(idx, &format!("/cdrs/{}", segment(&id)))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let status = match e.status {
                Some(StatusCode::NOT_FOUND) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_GATEWAY,
            };
            return (status, format!("CDR {id} on {backend}: {e}")).into_response();
        }
    };
    let time = |k: &str| utc(c.get(k).and_then(Value::as_i64).unwrap_or(0));
    let secs = |k: &str| {
        c.get(k)
            .and_then(Value::as_i64)
            .map_or_else(String::new, |ms| format!("{:.1} s", ms as f64 / 1000.0))
    };
    let f = |key: &'static str, label: &'static str, value: String| Field { key, label, value };
    let fields = vec![
        f("call_id", "Call id", text(&c, "call_id")),
        f("sip_call_id", "SIP Call-ID", text(&c, "sip_call_id")),
        f("account_id", "Account", text(&c, "account_id")),
        f("caller", "Caller", text(&c, "caller")),
        f("caller_name", "Caller name", text(&c, "caller_name")),
        f("caller_user", "Caller user", text(&c, "caller_user")),
        f("callee", "Callee", text(&c, "callee")),
        f("callee_user", "Callee user", text(&c, "callee_user")),
        f("source", "Source", text(&c, "source")),
        f("invite_at", "Started (UTC)", time("invite_at")),
        f("ring_at", "Rang", time("ring_at")),
        f("answer_at", "Answered", time("answer_at")),
        f("end_at", "Ended", time("end_at")),
        f("ring_ms", "Ringing", secs("ring_ms")),
        f("talk_ms", "Talk", secs("talk_ms")),
        f("disposition", "Disposition", text(&c, "disposition")),
        f("hangup_code", "Hangup code", text(&c, "hangup_code")),
        f("hangup_reason", "Hangup reason", text(&c, "hangup_reason")),
        f("hangup_side", "Hung up by", text(&c, "hangup_side")),
        f("route", "Route", text(&c, "route")),
        f("node", "Node", text(&c, "node")),
    ];
    let lost = c.get("rtp_lost").and_then(Value::as_f64);
    let received = c.get("rtp_received").and_then(Value::as_f64);
    let loss = match (lost, received) {
        (Some(l), Some(r)) if l + r > 0.0 => format!("{:.2} %", 100.0 * l / (l + r)),
        _ => "—".into(),
    };
    let quality = vec![
        f("mos", "MOS", num(&c, "mos")),
        f("loss", "Packet loss", loss),
        f("rtp_lost", "Packets lost", num(&c, "rtp_lost")),
        f("jitter_ms", "Jitter (ms)", num(&c, "jitter_ms")),
        f("rtp_sent", "Packets sent", num(&c, "rtp_sent")),
        f("rtp_received", "Packets received", num(&c, "rtp_received")),
        f("rtpmanager", "RTP manager", text(&c, "rtpmanager")),
    ];
    let page = Detail {
        l: Layout::new("CDR", "cdrs", &ctx.csrf),
        backend,
        call_id: text(&c, "call_id"),
        fields,
        quality,
    };
    render(&page, StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_utc() {
        assert_eq!(utc(0), "—");
        assert_eq!(utc(1_000), "1970-01-01 00:00:01");
        assert_eq!(utc(1_796_550_851_000), "2026-12-06 09:54:11");
        assert_eq!(
            parse_time("2026-12-06 09:54:11"),
            Ok(Some(1_796_550_851_000))
        );
        assert_eq!(parse_time("2026-12-06T09:54"), Ok(Some(1_796_550_840_000)));
        assert_eq!(parse_time("2024-02-29"), Ok(Some(1_709_164_800_000)));
        assert_eq!(parse_time(" "), Ok(None));
        assert_eq!(parse_time("1796550851000"), Ok(Some(1_796_550_851_000)));
        for bad in ["yesterday", "2026-13-01", "2026-12-06T25:00", "2026-12"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_filter_goes_to_the_api() {
        let f = Filter {
            backend: "main".into(),
            from: "2026-12-06T09:00".into(),
            caller: "alice".into(),
            account: "2".into(),
            ..Filter::default()
        };
        assert_eq!(
            f.api_path().as_deref(),
            Ok("/cdrs?from_ms=1796547600000&caller=alice&account_id=2&limit=50")
        );
        assert_eq!(
            f.query(Some("17")),
            "backend=main&from=2026-12-06T09%3A00&caller=alice&account=2&cursor=17"
        );
        let bad = Filter {
            account: "x".into(),
            ..Filter::default()
        };
        assert!(bad.api_path().is_err());
    }
}
