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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use switchboard_sip::message::Request;
use switchboard_sip::response::response;
use tokio::time::Instant;

use crate::transaction::TransactionKey;

type Key = (String, String, u32);

pub(crate) struct MergeGuard {
    ttl: Duration,
    seen: Mutex<Seen>,
}

struct Seen {
    map: HashMap<Key, (TransactionKey, Instant)>,
    swept: Instant,
}

impl MergeGuard {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: Mutex::new(Seen {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Records `req` (an INVITE without To tag) under transaction `tx`, or
    /// returns the 482 to send when another live transaction already
    /// carries the same request.
    pub(crate) fn check(&self, req: &Request, tx: &TransactionKey) -> Option<Bytes> {
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
        if now.duration_since(seen.swept) >= self.ttl {
            let ttl = self.ttl;
            seen.map.retain(|_, (_, at)| now.duration_since(*at) < ttl);
            seen.swept = now;
        }
        match seen.map.get(&key) {
            Some((first, at)) if first != tx && now.duration_since(*at) < self.ttl => {
                Some(Bytes::from(response(req, 482, "Loop Detected").build()))
            }
            Some(_) => None,
            None => {
                seen.map.insert(key, (tx.clone(), now));
                None
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().map(|s| s.map.len()).unwrap_or(0)
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
        let guard = MergeGuard::new(Duration::from_secs(32));
        let first = invite("z9hG4bK-path1", 1);
        assert!(guard.check(&first, &key(&first)).is_none());
        // the same transaction again (a retransmission) is not a merge
        assert!(guard.check(&first, &key(&first)).is_none());
        let second = invite("z9hG4bK-path2", 1);
        let reply = guard.check(&second, &key(&second)).expect("482");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("SIP/2.0 482 Loop Detected\r\n"), "{text}");
        assert!(text.contains("branch=z9hG4bK-path2"), "{text}");
        assert!(text.contains("To: <sip:bob@127.0.0.1>;tag="), "{text}");
        // a new CSeq (e.g. the INVITE resent with credentials) is new
        let third = invite("z9hG4bK-path3", 2);
        assert!(guard.check(&third, &key(&third)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let guard = MergeGuard::new(Duration::from_secs(32));
        let first = invite("z9hG4bK-old", 1);
        assert!(guard.check(&first, &key(&first)).is_none());
        tokio::time::advance(Duration::from_secs(33)).await;
        let later = invite("z9hG4bK-new", 1);
        assert!(guard.check(&later, &key(&later)).is_none());
        assert_eq!(guard.len(), 1, "the expired entry was swept");
    }
}
