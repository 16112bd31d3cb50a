//! A page of the location table for the API: the AORs a search keeps,
//! sorted, without copying the table. Matching runs on the bindings in
//! place; only the page's AORs become [`AorView`]s.

use super::{AorView, Location, format_received, view};

/// What a search keeps of an AOR: every contact when the AOR's name holds
/// the text, else the contacts whose URI, source address (`received`, e.g.
/// `udp:192.0.2.1:5060`) or user agent holds it. Case is ignored (Unicode
/// lower case; ASCII compared without allocating).
#[derive(Debug, Clone, Default)]
pub struct Search {
    needle: String,
}

impl Search {
    /// A search for `q` (trimmed; blank keeps everything).
    pub fn new(q: &str) -> Self {
        Self {
            needle: q.trim().to_lowercase(),
        }
    }

    /// Whether every contact of the AOR called `aor` is kept.
    pub fn keeps_all(&self, aor: &str) -> bool {
        self.holds(aor)
    }

    /// Whether a contact is kept (when not all of its AOR's are).
    pub fn keeps(&self, contact: &str, received: &str, user_agent: &str) -> bool {
        self.holds(contact) || self.holds(received) || self.holds(user_agent)
    }

    fn holds(&self, hay: &str) -> bool {
        let needle = self.needle.as_str();
        if needle.is_empty() {
            return true;
        }
        if !needle.is_ascii() {
            return hay.to_lowercase().contains(needle);
        }
        hay.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    }
}

/// One page of AORs, and the counts over all pages.
#[derive(Debug, PartialEq)]
pub struct AorPage<A> {
    pub aors: Vec<A>,
    /// AORs the search keeps.
    pub matched: usize,
    /// Their kept contacts.
    pub contacts: usize,
}

impl Location {
    /// The AORs `search` keeps with a live contact, sorted by AOR, from the
    /// `offset`th on, at most `limit` of them, with only the kept contacts.
    pub fn page(
        &self,
        now_ms: i64,
        search: &Search,
        offset: usize,
        limit: Option<usize>,
    ) -> AorPage<AorView> {
        // (AOR, kept contacts) of every kept AOR
        let mut kept: Vec<(Box<str>, usize)> = Vec::new();
        for shard in &self.shards {
            let Ok(s) = shard.lock() else { continue };
            for (aor, r) in s.iter() {
                let live = r.bindings.iter().filter(|b| b.expires_at_ms > now_ms);
                let n = if search.keeps_all(aor) {
                    live.count()
                } else {
                    live.filter(|b| {
                        search.keeps(
                            &b.contact,
                            &format_received(&b.received),
                            b.user_agent.as_deref().unwrap_or(""),
                        )
                    })
                    .count()
                };
                if n > 0 {
                    kept.push((aor.clone(), n));
                }
            }
        }
        kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let contacts = kept.iter().map(|(_, n)| n).sum();
        let aors = kept
            .iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .filter_map(|(aor, _)| {
                let shard = self.shard(aor).lock().ok()?;
                let mut v = view(aor, shard.get(aor)?, now_ms);
                if !search.keeps_all(aor) {
                    v.contacts.retain(|c| {
                        search.keeps(
                            &c.contact,
                            &c.received,
                            c.user_agent.as_deref().unwrap_or(""),
                        )
                    });
                }
                Some(v)
            })
            .collect();
        AorPage {
            aors,
            matched: kept.len(),
            contacts,
        }
    }
}
