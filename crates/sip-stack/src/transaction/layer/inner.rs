//! The transaction table's workings: lookup by shard, inserting and
//! stepping a state machine, applying its outputs (sends, events to the
//! TU, timers), retiring finished transactions, and the timer driver.
//! The public face ([`super::TransactionLayer`], the handles) is in
//! `layer.rs`; this is what it calls.

use std::sync::Arc;
use std::sync::MutexGuard;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;

impl Inner {
    pub(super) fn shard_index(&self, key: &TransactionKey) -> usize {
        self.hasher.hash_one(key) as usize % SHARDS
    }

    pub(super) fn lock(&self, key: &TransactionKey) -> MutexGuard<'_, Table> {
        lock(&self.shards[self.shard_index(key)])
    }

    /// Steps the live server transaction `key` (present in the locked
    /// `map`) for a retransmitted request or an ACK.
    pub(super) fn existing(
        self: &Arc<Self>,
        mut map: MutexGuard<'_, Table>,
        key: &TransactionKey,
        is_ack: bool,
    ) -> Incoming {
        let now = Instant::now();
        let outputs = match map.get_mut(key).map(|e| (&mut e.machine, is_ack)) {
            Some((Machine::ServerInvite(m), true)) => m.on_ack(),
            Some((Machine::ServerInvite(m), false)) => m.on_request(),
            Some((Machine::ServerNonInvite(m), false)) => m.on_request(),
            // An ACK keyed onto a non-INVITE, or a request onto a
            // client key: the caller's keys are inconsistent.
            _ => Vec::new(),
        };
        let fx = self.step(&mut map, key, outputs, None, now);
        drop(map);
        let incoming = match (is_ack, fx.ack_to_tu) {
            (false, _) => Incoming::Retransmission,
            (true, true) => Incoming::AckFor2xx,
            (true, false) => Incoming::AckForCompleted,
        };
        self.flush(fx);
        incoming
    }

    /// Moves a Completed non-INVITE server transaction over UDP out of the
    /// table into the retired cache; false when `entry` is not one.
    pub(super) fn retire(self: &Arc<Self>, map: &mut Table, key: &TransactionKey) -> bool {
        let Some(entry) = map.get(key) else {
            return false;
        };
        let Machine::ServerNonInvite(m) = &entry.machine else {
            return false;
        };
        if m.state() != ServerNonInviteState::Completed || entry.target.transport.is_reliable() {
            return false;
        }
        let Some(until) = entry
            .timers
            .iter()
            .flatten()
            .find(|(t, _)| *t == Timer::J)
            .map(|(_, at)| *at)
        else {
            return false;
        };
        let response = m.last_response().clone();
        let target = entry.target;
        map.remove(key);
        bump(&self.metrics.terminated[TransactionKind::ServerNonInvite.index()]);
        if is_challenge(&response) {
            // A digest challenge is answered the same way every time: a
            // retransmitted request is simply challenged again, so keeping
            // it for Timer J buys nothing (stateless challenges, as proxies
            // do). Half of a registrar's transactions are challenges.
            return true;
        }
        let retired = Retired {
            response,
            target,
            until,
        };
        let shard = self.shard_index(key);
        if let Ok(mut r) = self.retired[shard].lock()
            && r.insert(key.clone(), retired).is_none()
        {
            self.retired_len.fetch_add(1, Ordering::Relaxed);
        }
        let was_empty = {
            let mut order = self
                .retired_order
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let was_empty = order.is_empty();
            order.push_back((until, key.clone()));
            was_empty
        };
        self.start_driver();
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Drops retired transactions whose Timer J is due; returns when the
    /// next one is.
    pub(super) fn expire_retired(&self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let next = {
            let mut order = self
                .retired_order
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while let Some((at, _)) = order.front() {
                if *at > now {
                    break;
                }
                if let Some(item) = order.pop_front() {
                    due.push(item);
                }
            }
            if order.is_empty() && order.capacity() > 1024 {
                order.shrink_to_fit();
            }
            // expire in batches: at 20,000 answers/s the next deadline is
            // 50 µs away, and waking the driver for each one cost more
            // than the whole expiry (a context switch each); a retired
            // transaction kept up to RETIRE_BATCH longer is harmless
            order.front().map(|(at, _)| *at + RETIRE_BATCH)
        };
        for (at, key) in due {
            if let Ok(mut r) = self.retired[self.shard_index(&key)].lock()
                && r.get(&key).is_some_and(|x| x.until == at)
            {
                r.remove(&key);
                self.retired_len.fetch_sub(1, Ordering::Relaxed);
            }
        }
        next
    }

    pub(super) fn insert(
        &self,
        map: &mut Table,
        key: TransactionKey,
        machine: Machine,
        target: Target,
        listener: Listener,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        bump(&self.metrics.created[machine.kind().index()]);
        trace!(?key, kind = ?machine.kind(), "transaction created");
        map.insert(key, Entry::new(id, machine, target, listener));
        id
    }

    /// Runs one machine event for `key` (only if its entry has `id`, when
    /// given) and sends what it produced. False if no such transaction.
    pub(super) fn with_entry(
        self: &Arc<Self>,
        key: &TransactionKey,
        id: Option<u64>,
        response: Option<&Bytes>,
        event: impl FnOnce(&mut Machine) -> Vec<Output>,
    ) -> bool {
        let now = Instant::now();
        let mut map = self.lock(key);
        let Some(entry) = map.get_mut(key).filter(|e| id.is_none_or(|id| e.id == id)) else {
            return false;
        };
        let outputs = event(&mut entry.machine);
        let fx = self.step(&mut map, key, outputs, response, now);
        drop(map);
        self.flush(fx);
        true
    }

    /// Applies `outputs` to the entry for `key`, then removes it if it
    /// terminated or queues its next deadline. Call with the shard locked;
    /// send `Effects::sends` after unlocking.
    pub(super) fn step(
        self: &Arc<Self>,
        map: &mut Table,
        key: &TransactionKey,
        outputs: Vec<Output>,
        response: Option<&Bytes>,
        now: Instant,
    ) -> Effects {
        let mut fx = Effects::default();
        let Some(entry) = map.get_mut(key) else {
            return fx;
        };
        let before = entry.next_deadline();
        self.apply(entry, outputs, response, now, &mut fx);
        if fx.terminated {
            self.remove(map, key);
        } else if self.retire(map, key) {
            // answered over UDP: kept in the lean cache until Timer J
        } else if let Some(entry) = map.get_mut(key) {
            entry.update_guard(now, &self.config);
            // Absorbed duplicates leave the deadlines alone: no wake-up.
            if entry.next_deadline() != before {
                self.schedule(entry, key);
            }
        }
        fx
    }

    pub(super) fn apply(
        &self,
        entry: &mut Entry,
        outputs: Vec<Output>,
        response: Option<&Bytes>,
        now: Instant,
        fx: &mut Effects,
    ) {
        let m = &self.metrics;
        fx.target = Some(entry.target);
        for output in outputs {
            match output {
                Output::Transmit(bytes) => fx.push_send(bytes),
                Output::Retransmit(bytes) => {
                    bump(&m.retransmissions_sent);
                    fx.push_send(bytes);
                }
                Output::Deliver(code) => {
                    let bytes = response.cloned().unwrap_or_default();
                    entry.tell_client(ClientEvent::Response(code, bytes), code < 200);
                }
                Output::Absorbed => bump(&m.retransmissions_absorbed),
                Output::AckToTu => fx.ack_to_tu = true,
                Output::Start(timer, after) => entry.start(timer, now + after),
                Output::Stop(timer) => entry.stop(timer),
                Output::Timeout => {
                    bump(&m.timeouts);
                    debug!(target_addr = %entry.target, kind = ?entry.machine.kind(), "transaction timed out");
                    entry.tell_client(ClientEvent::Timeout, false);
                    entry.tell_server(ServerEvent::Timeout);
                }
                Output::TransportError => {
                    bump(&m.transport_errors);
                    entry.tell_client(ClientEvent::TransportError, false);
                    entry.tell_server(ServerEvent::TransportError);
                }
                Output::Terminated => fx.terminated = true,
            }
        }
    }

    /// Forgets a transaction; dropping the entry closes the TU's event
    /// channel. Its queue items are skipped when they come up.
    pub(super) fn remove(&self, map: &mut Table, key: &TransactionKey) {
        if let Some(entry) = map.remove(key) {
            bump(&self.metrics.terminated[entry.machine.kind().index()]);
            trace!(?key, "transaction terminated");
        }
    }

    /// Queues the entry's earliest deadline unless an earlier or equal one
    /// is queued already, and wakes the driver if it is now the first.
    pub(super) fn schedule(self: &Arc<Self>, entry: &mut Entry, key: &TransactionKey) {
        let Some(next) = entry.next_deadline() else {
            return;
        };
        if entry.queued.is_some_and(|q| q <= next) {
            return;
        }
        entry.queued = Some(next);
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let first = queue.peek().is_none_or(|Reverse(q)| next < q.at);
            queue.push(Reverse(Queued {
                at: next,
                id: entry.id,
                key: key.clone(),
            }));
            first
        };
        self.start_driver();
        if first {
            self.wake.notify_one();
        }
    }

    pub(super) fn start_driver(self: &Arc<Self>) {
        if self.driver_started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!("no tokio runtime: transaction timers will not run");
            return;
        };
        if !self.driver_started.swap(true, Ordering::AcqRel) {
            runtime.spawn(drive(Arc::downgrade(self), Arc::clone(&self.wake)));
        }
    }

    /// Gives back table and queue capacity left over from a burst: hash
    /// maps never shrink by themselves, so after a peak of 250,000 live
    /// transactions the shards would keep ~100 MB of empty buckets.
    pub(super) fn compact(&self) {
        for shard in &self.shards {
            let mut map = lock(shard);
            if map.capacity() > 64 && map.len() * 4 < map.capacity() {
                let keep = map.len() * 2;
                map.shrink_to(keep);
            }
        }
        for shard in &self.retired {
            if let Ok(mut map) = shard.lock()
                && map.capacity() > 64
                && map.len() * 4 < map.capacity()
            {
                let keep = map.len() * 2;
                map.shrink_to(keep);
            }
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.capacity() > 64 && queue.len() * 4 < queue.capacity() {
            let keep = queue.len() * 2;
            queue.shrink_to(keep);
        }
    }

    /// Pops the queue items due at `now`; returns them and the next
    /// deadline after them.
    pub(super) fn due(&self, now: Instant) -> (Vec<Queued>, Option<Instant>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due = Vec::new();
        while let Some(Reverse(q)) = queue.peek() {
            if q.at > now {
                return (due, Some(q.at));
            }
            if let Some(Reverse(q)) = queue.pop() {
                due.push(q);
            }
        }
        (due, None)
    }

    /// Fires every timer of entry `id` that is due, in deadline order, and
    /// queues its next deadline.
    pub(super) fn fire(self: &Arc<Self>, item: &Queued) {
        let now = Instant::now();
        let key = &item.key;
        let mut map = self.lock(key);
        let Some(entry) = map.get_mut(key).filter(|e| e.id == item.id) else {
            return;
        };
        if entry.queued == Some(item.at) {
            entry.queued = None;
        }
        let mut all = Effects::default();
        while let Some(timer) = map.get_mut(key).and_then(|e| e.take_due(now)) {
            let outputs = map
                .get_mut(key)
                .map(|e| e.machine.on_timer(timer))
                .unwrap_or_default();
            let fx = self.step(&mut map, key, outputs, None, now);
            all.merge(fx);
            if all.terminated {
                break;
            }
        }
        if !all.terminated
            && let Some(entry) = map.get_mut(key)
        {
            if entry.guard.is_some_and(|at| at <= now) {
                debug!(?key, "TU dropped its handle; transaction forgotten");
                self.remove(&mut map, key);
            } else {
                self.schedule(entry, key);
            }
        }
        drop(map);
        self.flush(all);
    }

    /// The TU dropped its handle for entry `id`.
    pub(super) fn release(self: &Arc<Self>, key: &TransactionKey, id: u64) {
        let now = Instant::now();
        let mut map = self.lock(key);
        let Some(entry) = map.get_mut(key).filter(|e| e.id == id) else {
            return;
        };
        entry.handle_dropped = true;
        entry.listener = Listener::Gone;
        let before = entry.next_deadline();
        entry.update_guard(now, &self.config);
        if entry.next_deadline() != before {
            self.schedule(entry, key);
        }
    }

    /// Sends what a step produced; never called with a shard locked.
    pub(super) fn flush(&self, fx: Effects) {
        if let Some(target) = fx.target {
            for bytes in fx.sends {
                self.transmit.transmit(&target, bytes);
            }
        }
    }
}

impl Effects {
    pub(super) fn push_send(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            // Only happens for a 300-699 to INVITE whose caller gave no ACK.
            warn!("transaction asked to send an empty message; skipped");
        } else {
            self.sends.push(bytes);
        }
    }

    pub(super) fn merge(&mut self, other: Effects) {
        self.sends.extend(other.sends);
        self.target = self.target.or(other.target);
        self.terminated |= other.terminated;
        self.ack_to_tu |= other.ack_to_tu;
    }
}

/// One transaction's timer task: sleep until the earliest deadline, fire,
/// repeat; woken early whenever the deadlines change.
/// The layer's one timer task: sleeps until the earliest queued deadline
/// (or a wake-up), fires what is due, and exits once the layer is gone.
async fn drive(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut compacted = Instant::now();
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let now = Instant::now();
            if now.duration_since(compacted) >= COMPACT_EVERY {
                inner.compact();
                compacted = now;
            }
            let next_retired = inner.expire_retired(now);
            let (due, next) = inner.due(now);
            let next = match (next, next_retired) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for item in &due {
                inner.fire(item);
            }
            if !due.is_empty() {
                // firing may have queued deadlines that are already due
                continue;
            }
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
