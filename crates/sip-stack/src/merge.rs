//! Merged-request detection (RFC 3261 §8.2.2.2).
//!
//! A forking proxy upstream can deliver the same INVITE to us twice along
//! different paths: same Call-ID, From tag and CSeq, no To tag, but a
//! different top Via branch, so the transaction layer sees two new
//! transactions. The second copy must get 482 (Loop Detected) or the core
//! would set up the call twice.
//!
//! The guard remembers, for 64·T1 (the longest an INVITE server transaction
//! waits for its final response before the client gives up), which
//! transaction first carried each (Call-ID, From tag, CSeq). Only INVITEs
//! are tracked: they are the requests a duplicate would turn into a second
//! call, and tracking every REGISTER would cost the registrar an entry per
//! request for no benefit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_sip::message::Request;
use tokio::time::Instant;

use crate::transaction::TransactionKey;

type Key = (String, String, u32);

/// Most INVITEs remembered. Every INVITE without a To tag that passes the
/// limits adds one for 64·T1, so a flood of INVITEs with fresh Call-IDs
/// would otherwise grow the guard without end; at the cap the oldest entry
/// is forgotten first (merged copies arrive within milliseconds of each
/// other, so the oldest entries are the least useful). About 150 bytes each.
pub(crate) const MERGE_CAPACITY: usize = 65_536;

pub(crate) struct MergeGuard {
    ttl: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
    /// Entries forgotten at the cap before their time.
    pub(crate) evictions: AtomicU64,
}

/// The entries, and their keys in the order they were recorded (which is
/// their expiry order: the TTL is the same for all).
struct Seen {
    map: HashMap<Key, (TransactionKey, Instant)>,
    order: VecDeque<(Instant, Key)>,
}

impl MergeGuard {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            seen: Mutex::new(Seen {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            evictions: AtomicU64::new(0),
        }
    }

    /// Records `req` (an INVITE without To tag) under transaction `tx`;
    /// true when another live transaction already carries the same request
    /// (answer 482).
    pub(crate) fn is_merged(&self, req: &Request, tx: &TransactionKey) -> bool {
        let key = (
            req.call_id.clone(),
            req.from.tag().unwrap_or_default().to_owned(),
            req.cseq,
        );
        let now = Instant::now();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.expire(now, self.ttl);
        match seen.map.get(&key) {
            Some((first, _)) => first != tx,
            None => {
                if seen.map.len() >= self.capacity {
                    seen.evict_oldest();
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                seen.order.push_back((now, key.clone()));
                seen.map.insert(key, (tx.clone(), now));
                false
            }
        }
    }

    /// INVITEs remembered now.
    pub(crate) fn len(&self) -> usize {
        self.seen.lock().map(|s| s.map.len()).unwrap_or(0)
    }
}

impl Seen {
    /// Forgets the entries older than `ttl`, oldest first.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < ttl {
                break;
            }
            self.evict_oldest();
        }
        if self.order.is_empty() && self.order.capacity() > 1024 {
            self.order.shrink_to_fit();
            self.map.shrink_to_fit();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front()
            && self.map.get(&key).is_some_and(|(_, t)| *t == at)
        {
            self.map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::TransportKind;
    use switchboard_sip::message::{Message, parse};

    fn invite(branch: &str, cseq: u32) -> Request {
        let raw = format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.1>;tag=a1\r\n\
             To: <sip:bob@127.0.0.1>\r\n\
             Call-ID: merged-1\r\n\
             CSeq: {cseq} INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match parse(raw.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn key(req: &Request) -> TransactionKey {
        crate::endpoint::server_key(req, TransportKind::Udp)
    }

    #[tokio::test(start_paused = true)]
    async fn second_path_of_the_same_invite_gets_482() {
        let guard = MergeGuard::new(Duration::from_secs(32), MERGE_CAPACITY);
        let first = invite("z9hG4bK-path1", 1);
        assert!(!guard.is_merged(&first, &key(&first)));
        // the same transaction again (a retransmission) is not a merge
        assert!(!guard.is_merged(&first, &key(&first)));
        let second = invite("z9hG4bK-path2", 1);
        assert!(guard.is_merged(&second, &key(&second)));
        // a new CSeq (e.g. the INVITE resent with credentials) is new
        let third = invite("z9hG4bK-path3", 2);
        assert!(!guard.is_merged(&third, &key(&third)));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let guard = MergeGuard::new(Duration::from_secs(32), MERGE_CAPACITY);
        let first = invite("z9hG4bK-old", 1);
        assert!(!guard.is_merged(&first, &key(&first)));
        tokio::time::advance(Duration::from_secs(33)).await;
        let later = invite("z9hG4bK-new", 1);
        assert!(!guard.is_merged(&later, &key(&later)));
        assert_eq!(guard.len(), 1, "the expired entry was swept");
        // and the new transaction is the one remembered now
        let again = invite("z9hG4bK-third", 1);
        assert!(guard.is_merged(&again, &key(&again)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_fresh_call_ids_stays_within_the_capacity() {
        let guard = MergeGuard::new(Duration::from_secs(32), 100);
        for i in 0..1000 {
            let mut req = invite(&format!("z9hG4bK-flood{i}"), 1);
            req.call_id = format!("flood-{i}");
            assert!(!guard.is_merged(&req, &key(&req)));
        }
        assert_eq!(guard.len(), 100);
        assert_eq!(guard.evictions.load(Ordering::Relaxed), 900);
        // the newest entries are the ones kept
        let mut copy = invite("z9hG4bK-other-path", 1);
        copy.call_id = "flood-999".into();
        assert!(guard.is_merged(&copy, &key(&copy)));
        let mut old = invite("z9hG4bK-other-path", 1);
        old.call_id = "flood-0".into();
        assert!(!guard.is_merged(&old, &key(&old)));
    }
}
