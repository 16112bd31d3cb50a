//! RTP/RTCP port pairs: an even RTP port and the odd RTCP port above it
//! (RFC 3550 §11), handed out from `RTP_PORT_MIN ..= RTP_PORT_MAX`.
//!
//! The pool is plain bookkeeping; binding is the engine's job. A pair the
//! engine cannot bind (another process holds it) is given back with
//! [`PortPool::release`] like any other and tried again later. Pairs are
//! picked at random among the free ones, so the port of the next call
//! cannot be guessed from the last one (a scanner looking for live
//! sessions has the whole range to search), and a pair just freed is
//! rarely handed out again while late packets of its call may arrive.

/// Free even ports of the range, in no particular order.
#[derive(Debug)]
pub struct PortPool {
    free: Vec<u16>,
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
        let free: Vec<u16> = (first..max).step_by(2).filter(|p| *p < max).collect();
        PortPool {
            total: free.len(),
            is_free: vec![true; free.len()],
            first,
            free,
            max,
        }
    }

    /// A free RTP port picked at random (its RTCP port is one above), or
    /// `None` when every pair is in use.
    pub fn allocate(&mut self) -> Option<u16> {
        if self.free.is_empty() {
            return None;
        }
        let port = self
            .free
            .swap_remove(rand::random_range(0..self.free.len()));
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
        self.free.push(port);
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
            let mut got: Vec<u16> = std::iter::from_fn(|| pool.allocate()).collect();
            got.sort_unstable();
            assert_eq!(&got, want, "{min}..{max}");
            assert_eq!(pool.free_pairs(), 0);
        }
    }

    #[test]
    fn released_pairs_come_back_only_once() {
        let mut pool = PortPool::new(20000, 20007);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        pool.release(a);
        pool.release(a);
        pool.release(20001); // odd: not a pair start
        pool.release(30000); // outside
        assert_eq!(pool.free_pairs(), 3);
        let mut rest: Vec<u16> = std::iter::from_fn(|| pool.allocate()).collect();
        rest.sort_unstable();
        let mut want: Vec<u16> = [20000, 20002, 20004, 20006]
            .into_iter()
            .filter(|p| *p != b)
            .collect();
        want.sort_unstable();
        assert_eq!(rest, want);
        assert_eq!(pool.allocate(), None);
        pool.release(b);
        assert_eq!(pool.allocate(), Some(b));
    }

    #[test]
    fn pairs_are_picked_at_random() {
        // the first pair of a fresh 50-pair pool, 200 times: a rotating or
        // lowest-first pool would give one port every time
        let firsts: std::collections::HashSet<u16> = (0..200)
            .map(|_| PortPool::new(10000, 10099).allocate().unwrap())
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
        // and a pair just released is not simply handed out next
        let mut pool = PortPool::new(10000, 10099);
        let mut again = 0;
        for _ in 0..200 {
            let p = pool.allocate().unwrap();
            pool.release(p);
            if pool.allocate() == Some(p) {
                again += 1;
            }
            pool = PortPool::new(10000, 10099);
        }
        assert!(again < 50, "{again} of 200 reused at once");
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
