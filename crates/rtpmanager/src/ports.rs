//! RTP/RTCP port pairs: an even RTP port and the odd RTCP port above it
//! (RFC 3550 §11), handed out from `RTP_PORT_MIN ..= RTP_PORT_MAX`.
//!
//! The pool is plain bookkeeping; binding is the engine's job. A pair the
//! engine cannot bind (another process holds it) is given back with
//! [`PortPool::release`] like any other and tried again later. Allocation
//! rotates through the range instead of reusing the lowest free pair, so a
//! port just freed is not handed to the next call while late packets of the
//! previous one may still arrive.

use std::collections::VecDeque;

/// Free even ports of the range, oldest-freed first.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    /// `is_free[(p - first) / 2]`: O(1) double-release check.
    is_free: Vec<bool>,
    first: u16,
    total: usize,
    max: u16,
}

impl PortPool {
    /// Pairs `(p, p+1)` with `p` even, `min <= p` and `p+1 <= max`.
    pub fn new(min: u16, max: u16) -> PortPool {
        let first = min.saturating_add(min % 2);
        let free: VecDeque<u16> = (first..max).step_by(2).filter(|p| *p < max).collect();
        PortPool {
            total: free.len(),
            is_free: vec![true; free.len()],
            first,
            free,
            max,
        }
    }

    /// The next free RTP port (its RTCP port is one above), or `None` when
    /// every pair is in use.
    pub fn allocate(&mut self) -> Option<u16> {
        let port = self.free.pop_front()?;
        self.is_free[usize::from((port - self.first) / 2)] = false;
        Some(port)
    }

    /// Gives a pair back. Ports outside the range or already free are
    /// ignored, so a double release cannot hand one pair to two sessions.
    pub fn release(&mut self, port: u16) {
        if !port.is_multiple_of(2) || port < self.first || port >= self.max {
            return;
        }
        let Some(slot) = self.is_free.get_mut(usize::from((port - self.first) / 2)) else {
            return;
        };
        if *slot {
            return;
        }
        *slot = true;
        self.free.push_back(port);
    }

    pub fn free_pairs(&self) -> usize {
        self.free.len()
    }

    pub fn total_pairs(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_cover_the_range_with_even_rtp_ports() {
        let cases: &[(u16, u16, &[u16])] = &[
            (10000, 10009, &[10000, 10002, 10004, 10006, 10008]),
            (10001, 10009, &[10002, 10004, 10006, 10008]),
            (10000, 10008, &[10000, 10002, 10004, 10006]),
            (10000, 10001, &[10000]),
            (10000, 10000, &[]),
            (65534, 65535, &[65534]),
        ];
        for (min, max, want) in cases {
            let mut pool = PortPool::new(*min, *max);
            assert_eq!(pool.total_pairs(), want.len(), "{min}..{max}");
            let got: Vec<u16> = std::iter::from_fn(|| pool.allocate()).collect();
            assert_eq!(&got, want, "{min}..{max}");
            assert_eq!(pool.free_pairs(), 0);
        }
    }

    #[test]
    fn released_pairs_come_back_last_and_only_once() {
        let mut pool = PortPool::new(20000, 20007);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        pool.release(a);
        pool.release(a);
        pool.release(20001); // odd: not a pair start
        pool.release(30000); // outside
        assert_eq!(pool.free_pairs(), 3);
        assert_eq!(pool.allocate(), Some(20004));
        assert_eq!(pool.allocate(), Some(20006));
        assert_eq!(pool.allocate(), Some(a));
        assert_eq!(pool.allocate(), None);
        pool.release(b);
        assert_eq!(pool.allocate(), Some(b));
    }

    #[test]
    fn a_thousand_cycles_leak_nothing() {
        let mut pool = PortPool::new(10000, 10099);
        for _ in 0..1000 {
            let taken: Vec<u16> = std::iter::from_fn(|| pool.allocate()).collect();
            assert_eq!(taken.len(), 50);
            for p in taken {
                pool.release(p);
            }
        }
        assert_eq!(pool.free_pairs(), 50);
    }
}
