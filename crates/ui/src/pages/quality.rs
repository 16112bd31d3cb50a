//! The overview's figures of the last hour: calls per minute (an SVG bar
//! chart drawn here, on the server), the answer-seizure ratio, the average
//! MOS (the hour's CDRs, and the live media sessions) and the RTP
//! managers' load.
//!
//! The CDRs come from `GET /api/v1/cdrs?from_ms=<start of the window>`, the
//! window starting on a minute boundary so the path, and the backend
//! client's one-second cache with it, stays the same for a minute. A
//! cluster's replicas share one store: CDRs are counted once per call id
//! whichever backends return them.

use std::collections::HashSet;

use serde_json::Value;

use super::items;
use crate::SharedState;

/// Minutes in the chart (the last hour, the current minute last).
pub const MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;
/// CDR pages read per backend at most (`limit=1000` each): beyond
/// 5,000 calls an hour the figures say "at least".
const MAX_PAGES: usize = 5;
const PAGE: usize = 1000;

/// Unix ms where the window of `now_ms` starts: the start of the minute
/// 59 minutes before the current one.
pub fn window_start(now_ms: i64) -> i64 {
    (now_ms.div_euclid(MINUTE_MS) - (MINUTES as i64 - 1)) * MINUTE_MS
}

/// Calls per minute: `invites` (INVITE times, unix ms) counted into the
/// [`MINUTES`] one-minute buckets of the window ending with the minute of
/// `now_ms`; times outside the window are not counted.
pub fn buckets(now_ms: i64, invites: impl IntoIterator<Item = i64>) -> [u32; MINUTES] {
    let start = window_start(now_ms);
    let mut out = [0u32; MINUTES];
    for t in invites {
        if t < start {
            continue;
        }
        let i = usize::try_from((t - start) / MINUTE_MS).unwrap_or(usize::MAX);
        if let Some(b) = out.get_mut(i) {
            *b = b.saturating_add(1);
        }
    }
    out
}

/// One bar of the chart, in SVG user units.
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub count: u32,
    /// `HH:MM` (UTC) of the minute.
    pub label: String,
}

/// The chart as the template draws it.
pub struct Chart {
    pub width: u32,
    pub height: u32,
    /// The plot's bottom (the x axis) and left edge.
    pub base: u32,
    pub left: u32,
    pub max: u32,
    pub total: u32,
    pub bars: Vec<Bar>,
    /// x positions and labels of the time axis.
    pub ticks: Vec<(u32, String)>,
}

const WIDTH: u32 = 600;
const HEIGHT: u32 = 160;
const LEFT: u32 = 34;
const BOTTOM: u32 = 20;
const TOP: u32 = 8;

fn hhmm(ms: i64) -> String {
    let m = ms.div_euclid(MINUTE_MS);
    format!(
        "{:02}:{:02}",
        m.div_euclid(60).rem_euclid(24),
        m.rem_euclid(60)
    )
}

/// Lays out `counts` (the buckets of [`buckets`] for `now_ms`).
pub fn chart(now_ms: i64, counts: &[u32; MINUTES]) -> Chart {
    let start = window_start(now_ms);
    let max = counts.iter().copied().max().unwrap_or(0);
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / MINUTES as u32;
    let base = HEIGHT - BOTTOM;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, &count)| {
            let h = if max == 0 {
                0
            } else {
                // at least a pixel for a minute with calls
                (u64::from(count) * u64::from(plot_h) / u64::from(max)).max(u64::from(count > 0))
                    as u32
            };
            Bar {
                x: LEFT + i as u32 * slot,
                y: base - h,
                w: slot.saturating_sub(1).max(1),
                h,
                count,
                label: hhmm(start + i as i64 * MINUTE_MS),
            }
        })
        .collect();
    let ticks = (0..MINUTES)
        .step_by(15)
        .chain(std::iter::once(MINUTES - 1))
        .map(|i| (LEFT + i as u32 * slot, hhmm(start + i as i64 * MINUTE_MS)))
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        base,
        left: LEFT,
        max,
        total: counts.iter().sum(),
        bars,
        ticks,
    }
}

/// Answered calls over attempts, as a percentage with one decimal.
pub fn asr(answered: usize, attempted: usize) -> String {
    if attempted == 0 {
        return "—".into();
    }
    format!("{:.1} %", answered as f64 * 100.0 / attempted as f64)
}

/// The mean of `values`, two decimals (`—` when none).
pub fn mean(values: &[f64]) -> String {
    if values.is_empty() {
        return "—".into();
    }
    format!("{:.2}", values.iter().sum::<f64>() / values.len() as f64)
}

/// An RTP manager's load: sessions over capacity (its sessions plus its
/// free port pairs; one pair a session).
pub fn load(sessions: Option<f64>, free: Option<f64>) -> String {
    match (sessions, free) {
        (Some(s), Some(f)) if s + f > 0.0 => format!("{:.0} %", s * 100.0 / (s + f)),
        _ => "—".into(),
    }
}

/// Everything the overview shows of the last hour.
pub struct Quality {
    pub chart: Chart,
    pub attempted: usize,
    pub answered: usize,
    pub asr: String,
    pub mos_calls: String,
    pub mos_calls_n: usize,
    pub mos_live: String,
    pub mos_live_n: usize,
    /// Sessions / capacity over every manager of every backend.
    pub rtp_load: String,
    /// More CDRs than were read: the figures are lower bounds.
    pub truncated: bool,
    /// Backends whose CDRs could not be read.
    pub errors: Vec<String>,
}

/// One backend's CDRs of the window (newest first, paged by cursor).
async fn cdrs(state: &SharedState, idx: usize, start: i64) -> Result<(Vec<Value>, bool), String> {
    let mut out = Vec::new();
    let mut cursor: Option<i64> = None;
    for _ in 0..MAX_PAGES {
        let mut path = format!("/cdrs?from_ms={start}&limit={PAGE}");
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let v = state
            .backends
            .get(idx, &path)
            .await
            .map_err(|e| e.to_string())?;
        let page = v.get("cdrs").map(items).unwrap_or(&[]);
        out.extend(page.iter().cloned());
        cursor = v.get("next_cursor").and_then(Value::as_i64);
        if cursor.is_none() {
            return Ok((out, false));
        }
    }
    Ok((out, true))
}

/// The pool's load over every manager of `managers` (the overview's
/// `/rtpmanagers` answers): all sessions over all capacity.
pub fn pool_load(managers: &[Value]) -> String {
    let (mut used, mut free) = (None::<f64>, None::<f64>);
    for m in managers {
        if let (Some(s), Some(f)) = (
            m.get("sessions").and_then(Value::as_f64),
            m.get("free_port_pairs").and_then(Value::as_f64),
        ) {
            used = Some(used.unwrap_or(0.0) + s);
            free = Some(free.unwrap_or(0.0) + f);
        }
    }
    load(used, free)
}

/// Reads the hour's CDRs and the live sessions; the RTP load is left to
/// the caller ([`pool_load`] of the managers it read anyway).
pub async fn gather(state: &SharedState, now_ms: i64) -> Quality {
    let start = window_start(now_ms);
    let names: Vec<String> = state.backends.names().map(str::to_owned).collect();
    let reads = (0..names.len()).map(|i| cdrs(state, i, start));
    let (answers, sessions) = tokio::join!(
        futures_util::future::join_all(reads),
        state.backends.get_all("/sessions"),
    );
    let mut seen = HashSet::new();
    let mut invites = Vec::new();
    let (mut answered, mut mos, mut truncated, mut errors) = (0, Vec::new(), false, Vec::new());
    for (name, answer) in names.iter().zip(answers) {
        let (list, more) = match answer {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        truncated |= more;
        for c in &list {
            let id = c.get("call_id").and_then(Value::as_str).unwrap_or_default();
            if !id.is_empty() && !seen.insert(id.to_owned()) {
                continue;
            }
            let Some(at) = c.get("invite_at").and_then(Value::as_i64) else {
                continue;
            };
            if at < start {
                continue;
            }
            invites.push(at);
            let was_answered = c.get("answer_at").is_some_and(|a| !a.is_null())
                || c.get("disposition").and_then(Value::as_str) == Some("answered");
            answered += usize::from(was_answered);
            if let Some(m) = c.get("mos").and_then(Value::as_f64).filter(|m| *m > 0.0) {
                mos.push(m);
            }
        }
    }
    let live: Vec<f64> = sessions
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .flat_map(|v| items(v).iter())
        .filter_map(|s| s.get("mos").and_then(Value::as_f64))
        .filter(|m| *m > 0.0)
        .collect();
    let counts = buckets(now_ms, invites.iter().copied());
    Quality {
        chart: chart(now_ms, &counts),
        attempted: invites.len(),
        answered,
        asr: asr(answered, invites.len()),
        mos_calls: mean(&mos),
        mos_calls_n: mos.len(),
        mos_live: mean(&live),
        mos_live_n: live.len(),
        rtp_load: String::new(),
        truncated,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-06-15 10:59:30 UTC: the window is 10:00:00 .. 10:59:59.999.
    const NOW: i64 = 1_749_981_600_000 + 59 * 60_000 + 30_000;

    #[test]
    fn calls_fall_into_their_minute() {
        let start = window_start(NOW);
        assert_eq!(start % MINUTE_MS, 0);
        assert_eq!(NOW - start, 59 * MINUTE_MS + 30_000);
        // (INVITE times, the non-empty buckets expected)
        type Case = (Vec<i64>, Vec<(usize, u32)>);
        let table: Vec<Case> = vec![
            // an empty hour: empty buckets, not an error
            (vec![], vec![]),
            // the first and the last instant of the window
            (vec![start, NOW], vec![(0, 1), (59, 1)]),
            // just before the window, and in the future: not counted
            (vec![start - 1, start + 60 * MINUTE_MS], vec![]),
            // a minute's edges: 59.999 s is the same minute, 60 s the next
            (
                vec![
                    start + 5 * MINUTE_MS,
                    start + 6 * MINUTE_MS - 1,
                    start + 6 * MINUTE_MS,
                ],
                vec![(5, 2), (6, 1)],
            ),
            // several in one minute
            (vec![NOW - 1, NOW - 2, NOW - 3], vec![(59, 3)]),
        ];
        for (invites, expected) in table {
            let b = buckets(NOW, invites.iter().copied());
            let got: Vec<(usize, u32)> = b
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i, *c))
                .collect();
            assert_eq!(got, expected, "{invites:?}");
        }
    }

    #[test]
    fn the_chart_scales_to_its_largest_minute() {
        let mut counts = [0u32; MINUTES];
        let empty = chart(NOW, &counts);
        assert_eq!((empty.max, empty.total, empty.bars.len()), (0, 0, MINUTES));
        assert!(empty.bars.iter().all(|b| b.h == 0 && b.y == empty.base));
        counts[0] = 1;
        counts[59] = 100;
        let c = chart(NOW, &counts);
        assert_eq!((c.max, c.total), (100, 101));
        assert_eq!(c.bars[59].h, HEIGHT - BOTTOM - TOP);
        assert_eq!(c.bars[0].h, 1, "a minute with a call shows");
        assert_eq!(c.bars[0].label, "10:00");
        assert_eq!(c.bars[59].label, "10:59");
        assert!(c.bars.iter().all(|b| b.x + b.w <= WIDTH));
        assert_eq!(c.ticks.first().map(|t| t.1.as_str()), Some("10:00"));
        assert_eq!(c.ticks.last().map(|t| t.1.as_str()), Some("10:59"));
    }

    #[test]
    fn ratios() {
        assert_eq!(asr(0, 0), "—");
        assert_eq!(asr(1, 3), "33.3 %");
        assert_eq!(mean(&[]), "—");
        assert_eq!(mean(&[4.0, 4.5]), "4.25");
        assert_eq!(load(Some(1.0), Some(3.0)), "25 %");
        assert_eq!(load(Some(0.0), Some(0.0)), "—");
        assert_eq!(load(None, Some(3.0)), "—");
        let pool = [
            serde_json::json!({"sessions": 3, "free_port_pairs": 1}),
            serde_json::json!({"sessions": 1, "free_port_pairs": 3}),
            serde_json::json!({"name": "unreachable", "error": "refused"}),
        ];
        assert_eq!(pool_load(&pool), "50 %");
        assert_eq!(pool_load(&pool[2..]), "—");
    }
}
