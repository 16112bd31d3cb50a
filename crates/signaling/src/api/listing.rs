//! The API's long lists, one page at a time: registrations and users take
//! `q`, `offset` and `limit` and say how many match in `X-Total-Count`
//! (the body stays the plain JSON array it always was, so a client that
//! sends no parameter sees no change); and calls per minute counted by the
//! database, so a dashboard draws the last hour without reading its CDRs.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_store::{Store, UserFilter};

use super::directory::user_json;
use super::{ApiQuery, ApiResult, cluster};
use crate::Node;
use crate::location::page::{AorPage, Search};
use crate::registrar::Now;

/// Matches over all pages.
pub(super) const TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");
/// Contacts of the matching AORs (registrations only).
pub(super) const CONTACT_COUNT: HeaderName = HeaderName::from_static("x-contact-count");

fn counts(total: usize, contacts: Option<usize>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(TOTAL_COUNT, HeaderValue::from(total));
    if let Some(c) = contacts {
        h.insert(CONTACT_COUNT, HeaderValue::from(c));
    }
    h
}

/// `?q=&offset=&limit=` of the registrations list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistrationQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

/// One page of `aors` (the cluster's AOR objects, sorted by `aor`), kept
/// as [`Location::page`](crate::location::Location::page) keeps this node's.
pub(super) fn page_aors(
    aors: Vec<Value>,
    search: &Search,
    offset: usize,
    limit: Option<usize>,
) -> AorPage<Value> {
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut out = Vec::new();
    let (mut matched, mut contacts) = (0, 0);
    let limit = limit.unwrap_or(usize::MAX);
    for mut aor in aors {
        let all = search.keeps_all(&text(&aor, "aor"));
        let Some(list) = aor.get_mut("contacts").and_then(Value::as_array_mut) else {
            continue;
        };
        if !all {
            list.retain(|c| {
                search.keeps(
                    &text(c, "contact"),
                    &text(c, "received"),
                    &text(c, "user_agent"),
                )
            });
        }
        if list.is_empty() {
            continue;
        }
        matched += 1;
        contacts += list.len();
        if matched > offset && out.len() < limit {
            out.push(aor);
        }
    }
    AorPage {
        aors: out,
        matched,
        contacts,
    }
}

pub(super) async fn list_registrations(
    State(node): State<Arc<Node>>,
    ApiQuery(rq): ApiQuery<RegistrationQuery>,
) -> Response {
    let search = Search::new(rq.q.as_deref().unwrap_or(""));
    let offset = rq.offset.unwrap_or(0);
    let (list, matched, contacts) = match cluster::registrations(&node).await {
        Some(Value::Array(all)) => {
            let p = page_aors(all, &search, offset, rq.limit);
            (p.aors, p.matched, p.contacts)
        }
        _ => {
            let p = node
                .location
                .page(Now::current().unix_ms, &search, offset, rq.limit);
            let list = p.aors.iter().map(|v| json!(v)).collect();
            (list, p.matched, p.contacts)
        }
    };
    (counts(matched, Some(contacts)), Json(Value::Array(list))).into_response()
}

pub(super) async fn list_users(
    State(node): State<Arc<Node>>,
    ApiQuery(filter): ApiQuery<UserFilter>,
) -> ApiResult<Response> {
    let (users, total) = node.store.search_users(&filter).await?;
    Ok((
        counts(usize::try_from(total).unwrap_or(usize::MAX), None),
        Json(Value::Array(users.iter().map(user_json).collect())),
    )
        .into_response())
}

/// `?from_ms=&minutes=` of the calls per minute.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MinutesQuery {
    /// Start of the first minute (unix ms; brought down to a minute
    /// boundary); by default the minutes end with the current one.
    #[serde(default)]
    from_ms: Option<i64>,
    /// How many minutes (1 to 1440; default 60).
    #[serde(default)]
    minutes: Option<u32>,
}

/// Where a window of `minutes` starts: `from_ms` on its minute boundary,
/// or so that the window ends with the minute of `now_ms`.
pub(super) fn window_start(from_ms: Option<i64>, minutes: u32, now_ms: i64) -> i64 {
    match from_ms {
        Some(f) => f.div_euclid(60_000) * 60_000,
        None => (now_ms.div_euclid(60_000) - i64::from(minutes) + 1) * 60_000,
    }
}

pub(super) async fn call_minutes(
    State(node): State<Arc<Node>>,
    ApiQuery(mq): ApiQuery<MinutesQuery>,
) -> ApiResult<Json<Value>> {
    let minutes = mq.minutes.unwrap_or(60).clamp(1, Store::MAX_CALL_MINUTES);
    let from = window_start(mq.from_ms, minutes, Now::current().unix_ms);
    let (list, store) = tokio::join!(
        node.store.call_minutes(from, minutes),
        node.store.store_id()
    );
    let list = list?;
    let attempted: i64 = list.iter().map(|m| m.attempted).sum();
    let answered: i64 = list.iter().map(|m| m.answered).sum();
    let mos_n: i64 = list.iter().map(|m| m.mos_n).sum();
    let mos_sum: f64 = list.iter().map(|m| m.mos_sum).sum();
    Ok(Json(json!({
        "store": store?,
        "from_ms": from,
        "minutes": list,
        "attempted": attempted,
        "answered": answered,
        "mos_sum": mos_sum,
        "mos_n": mos_n,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aor(name: &str, contacts: &[(&str, &str, &str)]) -> Value {
        json!({
            "aor": name,
            "contacts": contacts
                .iter()
                .map(|(c, r, ua)| json!({"contact": c, "received": r, "user_agent": ua}))
                .collect::<Vec<_>>(),
        })
    }

    fn sample() -> Vec<Value> {
        vec![
            aor(
                "sip:alice@sb",
                &[("sip:alice@10.0.0.1", "udp:10.0.0.1:5060", "baresip")],
            ),
            aor(
                "sip:bob@sb",
                &[
                    ("sip:bob@10.0.0.2", "udp:10.0.0.2:5060", "Linphone"),
                    ("sip:bob@10.0.0.3", "tcp:10.0.0.3:40000", "Yealink"),
                ],
            ),
            aor(
                "sip:carol@sb",
                &[("sip:carol@10.0.0.4", "udp:10.0.0.4:5060", "BARESIP 3")],
            ),
            aor("sip:empty@sb", &[]),
        ]
    }

    fn names(p: &AorPage<Value>) -> Vec<(String, usize)> {
        p.aors
            .iter()
            .map(|a| {
                (
                    a["aor"].as_str().unwrap_or_default().to_owned(),
                    a["contacts"].as_array().map_or(0, Vec::len),
                )
            })
            .collect()
    }

    #[test]
    fn aors_are_searched_and_paged() {
        // (q, offset, limit) → (AORs shown with their contacts, matched, contacts)
        type Case = (
            &'static str,
            usize,
            Option<usize>,
            Vec<(&'static str, usize)>,
            usize,
            usize,
        );
        let table: Vec<Case> = vec![
            (
                "",
                0,
                None,
                vec![("sip:alice@sb", 1), ("sip:bob@sb", 2), ("sip:carol@sb", 1)],
                3,
                4,
            ),
            ("", 1, Some(1), vec![("sip:bob@sb", 2)], 3, 4),
            ("", 3, Some(10), vec![], 3, 4),
            ("", 0, Some(0), vec![], 3, 4),
            // the AOR's name: all its contacts
            ("BOB", 0, None, vec![("sip:bob@sb", 2)], 1, 2),
            // a contact's source address: that contact only
            ("10.0.0.3", 0, None, vec![("sip:bob@sb", 1)], 1, 1),
            ("tcp:", 0, None, vec![("sip:bob@sb", 1)], 1, 1),
            // user agent, case-insensitively, over AORs
            (
                "baresip",
                0,
                None,
                vec![("sip:alice@sb", 1), ("sip:carol@sb", 1)],
                2,
                2,
            ),
            ("baresip", 1, Some(5), vec![("sip:carol@sb", 1)], 2, 2),
            ("  yealink ", 0, None, vec![("sip:bob@sb", 1)], 1, 1),
            ("nobody", 0, None, vec![], 0, 0),
        ];
        for (q, offset, limit, shown, matched, contacts) in table {
            let p = page_aors(sample(), &Search::new(q), offset, limit);
            let want: Vec<(String, usize)> =
                shown.iter().map(|(a, n)| ((*a).to_owned(), *n)).collect();
            assert_eq!(names(&p), want, "{q:?} {offset} {limit:?}");
            assert_eq!((p.matched, p.contacts), (matched, contacts), "{q:?}");
        }
    }

    #[test]
    fn case_is_ignored() {
        let s = |q: &str, hay: &str| Search::new(q).keeps_all(hay);
        assert!(s("LINPHONE", "Linphone/5.2"));
        assert!(s(":5060", "udp:10.0.0.1:5060"));
        assert!(s("  ", "anything"));
        assert!(!s("linphone", "lin"));
        assert!(s("ZOË", "Zoë's phone"));
        assert!(!s("zoë", "Zoe"));
        assert!(Search::new("yealink").keeps("sip:a@b", "udp:1.2.3.4:5", "Yealink T46"));
        assert!(!Search::new("yealink").keeps("sip:a@b", "udp:1.2.3.4:5", ""));
    }

    #[test]
    fn windows_end_with_the_current_minute() {
        let now = 1_800_000_000_000 + 59 * 60_000 + 1_234;
        assert_eq!(window_start(None, 60, now), 1_800_000_000_000);
        assert_eq!(window_start(None, 1, now), 1_800_000_000_000 + 59 * 60_000);
        assert_eq!(
            window_start(Some(1_800_000_030_000), 60, now),
            1_800_000_000_000
        );
        assert_eq!(window_start(Some(-1), 60, now), -60_000);
    }
}
