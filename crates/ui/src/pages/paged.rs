//! One page of a list every backend serves in pages (`offset`, `limit`,
//! the count in `X-Total-Count`): the backends' lists shown one after the
//! other, in configuration order, [`PAGE_ROWS`] at a time.
//!
//! Each backend is first asked for the page's offset; once their counts
//! are known, a backend whose rows start on this page although an earlier
//! backend's rows come first is asked again for its own offset. A page
//! costs one request per backend, and a second to those backends only.
//! A backend that sends no count (one from before paged lists) answered
//! with its whole list, which is paged here.

use serde_json::Value;

use super::{Down, PAGE_ROWS, items};
use crate::SharedState;
use crate::backend::{Answer, segment};

/// One backend's share of the page.
pub struct Part {
    pub backend: String,
    /// Its rows on this page.
    pub items: Vec<Value>,
}

/// The page.
pub struct Paged {
    pub parts: Vec<Part>,
    pub down: Vec<Down>,
    /// Matches over all backends and pages.
    pub matched: usize,
    /// Contacts of the matches (registrations: `X-Contact-Count`).
    pub contacts: usize,
    /// Rows on this page.
    pub shown: usize,
}

/// `{path}?q=…&` (the `q` left out when empty), ready for `offset=`.
pub fn base(path: &str, q: &str) -> String {
    let q = q.trim();
    if q.is_empty() {
        format!("{path}?")
    } else {
        format!("{path}?q={}&", segment(q))
    }
}

/// A backend's count of matches and of contacts, and whether it paged
/// (sent its count) rather than answering with everything.
fn counts(answer: &Answer) -> (usize, usize, bool) {
    match answer {
        Ok(r) => match r.total {
            Some(t) => (t, r.contacts.unwrap_or(0), true),
            None => (items(r).len(), contacts_of(items(r)), false),
        },
        Err(_) => (0, 0, true),
    }
}

fn contacts_of(list: &[Value]) -> usize {
    list.iter()
        .map(|a| a.get("contacts").map_or(0, |c| items(c).len()))
        .sum()
}

/// The page at `offset` of `base` (from [`base`]) over every backend.
pub async fn load(state: &SharedState, base: &str, offset: usize) -> Paged {
    let b = &state.backends;
    let names: Vec<String> = b.names().map(str::to_owned).collect();
    let path = format!("{base}offset={offset}&limit={PAGE_ROWS}");
    let first = futures_util::future::join_all((0..names.len()).map(|i| b.get(i, &path))).await;
    let mut page = Paged {
        parts: Vec::new(),
        down: Vec::new(),
        matched: 0,
        contacts: 0,
        shown: 0,
    };
    for (i, (name, answer)) in names.into_iter().zip(first).enumerate() {
        let (total, contacts, paged) = counts(&answer);
        // where this backend's matches start in the whole list
        let before = page.matched;
        page.matched += total;
        page.contacts += contacts;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                page.down.push(Down::new(&name, &e));
                continue;
            }
        };
        let local = offset.saturating_sub(before);
        let want = PAGE_ROWS - page.shown;
        if want == 0 || local >= total {
            continue;
        }
        let rows: Vec<Value> = if !paged {
            items(&answer)
                .iter()
                .skip(local)
                .take(want)
                .cloned()
                .collect()
        } else if local == offset {
            // what was asked first is this backend's own page
            items(&answer).iter().take(want).cloned().collect()
        } else {
            match b
                .get(i, &format!("{base}offset={local}&limit={want}"))
                .await
            {
                Ok(a) => items(&a).iter().take(want).cloned().collect(),
                Err(e) => {
                    page.down.push(Down::new(&name, &e));
                    continue;
                }
            }
        };
        page.shown += rows.len();
        page.parts.push(Part {
            backend: name,
            items: rows,
        });
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_encoded() {
        assert_eq!(base("/users", ""), "/users?");
        assert_eq!(base("/users", "  "), "/users?");
        assert_eq!(
            base("/registrations", "a b&c"),
            "/registrations?q=a%20b%26c&"
        );
    }
}
