//! The overview's figures of the last hour: calls per minute (an SVG bar
//! chart drawn here, on the server), the answer-seizure ratio, the average
//! MOS (the hour's CDRs, and the live media sessions) and the RTP
//! managers' load.
//!
//! The counts come from `GET /api/v1/stats/calls?from_ms=<start of the
//! window>&minutes=60`, which the backend's database counts from its CDRs;
//! the window starts on a minute boundary so the path, and the backend
//! client's one-second cache with it, stays the same for a minute. A
//! cluster's replicas share one database and say so (the answer's `store`,
//! the database's own identity): each database is counted once, whichever
//! backends report it.

use std::collections::HashSet;

use serde_json::Value;

use super::items;
use crate::SharedState;

/// Minutes in the chart (the last hour, the current minute last).
pub const MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;
/// Unix ms where the window of `now_ms` starts: the start of the minute
/// 59 minutes before the current one.
pub fn window_start(now_ms: i64) -> i64 {
    (now_ms.div_euclid(MINUTE_MS) - (MINUTES as i64 - 1)) * MINUTE_MS
}

/// The hour's totals as a backend's `/stats/calls` answer gives them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    pub attempted: u64,
    pub answered: u64,
    pub mos_sum: f64,
    pub mos_n: u64,
}

/// Adds one `/stats/calls` answer's `minutes` (`[{at_ms, attempted,
/// answered, mos_sum, mos_n}]`) to `counts`, the [`MINUTES`] buckets of the
/// window starting at `start`, and to `totals`; minutes outside the window
/// are not counted.
pub fn add_minutes(
    counts: &mut [u32; MINUTES],
    totals: &mut Totals,
    start: i64,
    minutes: &[Value],
) {
    let int = |m: &Value, k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
    for m in minutes {
        let Some(at) = m.get("at_ms").and_then(Value::as_i64) else {
            continue;
        };
        if at < start {
            continue;
        }
        let i = usize::try_from((at - start) / MINUTE_MS).unwrap_or(usize::MAX);
        let Some(b) = counts.get_mut(i) else {
            continue;
        };
        let attempted = int(m, "attempted");
        *b = b.saturating_add(u32::try_from(attempted).unwrap_or(u32::MAX));
        totals.attempted += attempted;
        totals.answered += int(m, "answered");
        totals.mos_sum += m.get("mos_sum").and_then(Value::as_f64).unwrap_or(0.0);
        totals.mos_n += int(m, "mos_n");
    }
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
pub fn asr(answered: u64, attempted: u64) -> String {
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
    pub attempted: u64,
    pub answered: u64,
    pub asr: String,
    pub mos_calls: String,
    pub mos_calls_n: u64,
    pub mos_live: String,
    pub mos_live_n: usize,
    /// Sessions / capacity over every manager of every backend.
    pub rtp_load: String,
    /// Backends whose counts could not be read.
    pub errors: Vec<String>,
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

/// Reads the hour's counts and the live sessions; the RTP load is left to
/// the caller ([`pool_load`] of the managers it read anyway).
pub async fn gather(state: &SharedState, now_ms: i64) -> Quality {
    let start = window_start(now_ms);
    let path = format!("/stats/calls?from_ms={start}&minutes={MINUTES}");
    let (answers, sessions) = tokio::join!(
        state.backends.get_all(&path),
        state.backends.get_all("/sessions"),
    );
    let mut stores = HashSet::new();
    let mut counts = [0u32; MINUTES];
    let mut totals = Totals::default();
    let mut errors = Vec::new();
    for (name, answer) in &answers {
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let store = v.get("store").and_then(Value::as_str).unwrap_or_default();
        if !store.is_empty() && !stores.insert(store.to_owned()) {
            continue; // a replica of a database already counted
        }
        let minutes = v.get("minutes").map(items).unwrap_or(&[]);
        add_minutes(&mut counts, &mut totals, start, minutes);
    }
    let live: Vec<f64> = sessions
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .flat_map(|v| items(v).iter())
        .filter_map(|s| s.get("mos").and_then(Value::as_f64))
        .filter(|m| *m > 0.0)
        .collect();
    Quality {
        chart: chart(now_ms, &counts),
        attempted: totals.attempted,
        answered: totals.answered,
        asr: asr(totals.answered, totals.attempted),
        mos_calls: if totals.mos_n == 0 {
            "—".into()
        } else {
            format!("{:.2}", totals.mos_sum / totals.mos_n as f64)
        },
        mos_calls_n: totals.mos_n,
        mos_live: mean(&live),
        mos_live_n: live.len(),
        rtp_load: String::new(),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-06-15 10:59:30 UTC: the window is 10:00:00 .. 10:59:59.999.
    const NOW: i64 = 1_749_981_600_000 + 59 * 60_000 + 30_000;

    #[test]
    fn minutes_fall_into_their_bucket() {
        let start = window_start(NOW);
        assert_eq!(start % MINUTE_MS, 0);
        assert_eq!(NOW - start, 59 * MINUTE_MS + 30_000);
        let m = |at: i64, attempted: u64, answered: u64, mos_sum: f64, mos_n: u64| {
            serde_json::json!({"at_ms": at, "attempted": attempted, "answered": answered,
                               "mos_sum": mos_sum, "mos_n": mos_n})
        };
        // (minutes answered, the non-empty buckets expected, totals)
        type Case = (Vec<Value>, Vec<(usize, u32)>, (u64, u64, f64, u64));
        let table: Vec<Case> = vec![
            // an empty hour: empty buckets, not an error
            (vec![], vec![], (0, 0, 0.0, 0)),
            (vec![m(start, 0, 0, 0.0, 0)], vec![], (0, 0, 0.0, 0)),
            // the first and the last minute of the window
            (
                vec![
                    m(start, 2, 1, 4.0, 1),
                    m(start + 59 * MINUTE_MS, 3, 3, 12.0, 3),
                ],
                vec![(0, 2), (59, 3)],
                (5, 4, 16.0, 4),
            ),
            // before the window, after it, and a minute without a time
            (
                vec![
                    m(start - MINUTE_MS, 7, 7, 0.0, 0),
                    m(start + 60 * MINUTE_MS, 7, 7, 0.0, 0),
                    serde_json::json!({"attempted": 7}),
                ],
                vec![],
                (0, 0, 0.0, 0),
            ),
            // a time inside a minute counts in that minute
            (
                vec![m(start + 5 * MINUTE_MS + 1, 1, 0, 0.0, 0)],
                vec![(5, 1)],
                (1, 0, 0.0, 0),
            ),
        ];
        for (minutes, expected, (attempted, answered, mos_sum, mos_n)) in table {
            let mut counts = [0u32; MINUTES];
            let mut totals = Totals::default();
            add_minutes(&mut counts, &mut totals, start, &minutes);
            let got: Vec<(usize, u32)> = counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i, *c))
                .collect();
            assert_eq!(got, expected, "{minutes:?}");
            assert_eq!(
                totals,
                Totals {
                    attempted,
                    answered,
                    mos_sum,
                    mos_n
                },
                "{minutes:?}"
            );
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
