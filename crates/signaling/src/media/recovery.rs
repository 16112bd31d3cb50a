//! Recovery when parts fail: destroys retried with back-off, event
//! streams subscribed again after an error.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_rtpmanager_api::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tracing::debug;

use super::{BoxStream, Manager, MediaCounters};

/// Waits between re-subscriptions of an event stream.
pub const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether a failed destroy may succeed later (the manager was
/// unreachable or overloaded), as opposed to one that never will.
pub(super) fn worth_retrying(e: &Status) -> bool {
    matches!(
        e.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

/// Calls `attempt` until `done` says its result is final or `limit` has
/// passed, waiting `min`, then twice as long each time (at most `max`)
/// before each attempt. The final result, or `None` when time ran out.
pub(super) async fn retry_until<T, F, Fut>(
    limit: Duration,
    min: Duration,
    max: Duration,
    mut attempt: F,
    done: impl Fn(&T) -> bool,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut wait = min;
    loop {
        if tokio::time::Instant::now() + wait > deadline {
            return None;
        }
        tokio::time::sleep(wait).await;
        let r = attempt().await;
        if done(&r) {
            return Some(r);
        }
        wait = wait.saturating_mul(2).min(max);
    }
}

/// Delivers the events of `session` on `mgr` into `tx` until the session
/// is gone (the manager answers NOT_FOUND) or `tx`'s receiver is dropped.
/// A stream that breaks (the manager restarted its connection, a proxy
/// cut it) is subscribed again after a back-off ([`WATCH_BACKOFF_MIN`]
/// doubling up to [`WATCH_BACKOFF_MAX`]), counted in /metrics. Events
/// that occur between the break and the new subscription are lost. `tx` is
/// bounded: while it is full, the manager's own per-session queue fills
/// and drops (counted there), so a slow call never grows memory here.
pub async fn watch_session_events(
    mgr: Arc<Manager>,
    session: String,
    tx: mpsc::Sender<pb::SessionEvent>,
) {
    let counters = Arc::clone(&mgr.counters);
    let subscribe = || {
        let mgr = Arc::clone(&mgr);
        let session = session.clone();
        async move { mgr.watch_events(&session).await }
    };
    watch_loop(subscribe, &tx, &counters).await;
    debug!(manager = %mgr.name, %session, "event watch ended");
}

async fn watch_loop<F, Fut>(
    mut subscribe: F,
    tx: &mpsc::Sender<pb::SessionEvent>,
    counters: &MediaCounters,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<BoxStream<pb::SessionEvent>, Status>>,
{
    let mut wait = WATCH_BACKOFF_MIN;
    loop {
        let subscribed = tokio::select! {
            s = subscribe() => s,
            _ = tx.closed() => return,
        };
        match subscribed {
            Err(e) if e.code() == Code::NotFound => return,
            Err(e) => debug!(cause = %e, "event stream could not be opened"),
            Ok(mut stream) => loop {
                let next = tokio::select! {
                    n = stream.next() => n,
                    _ = tx.closed() => return,
                };
                match next {
                    Some(Ok(ev)) => {
                        wait = WATCH_BACKOFF_MIN;
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        debug!(cause = %e, "event stream broke");
                        break;
                    }
                    // the session ended, or the connection did: asking
                    // again tells which
                    None => break,
                }
            },
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tx.closed() => return,
        }
        wait = wait.saturating_mul(2).min(WATCH_BACKOFF_MAX);
        counters.watch_resubscribes.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::session_event::Event as Ev;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    fn digit(d: &str) -> pb::SessionEvent {
        pb::SessionEvent {
            session_id: "s".into(),
            event: Some(Ev::Dtmf(pb::Dtmf {
                digit: d.into(),
                duration_ms: 100,
            })),
        }
    }

    fn stream(items: Vec<Result<pb::SessionEvent, Status>>) -> BoxStream<pb::SessionEvent> {
        Box::pin(tokio_stream::iter(items))
    }

    #[tokio::test]
    async fn a_broken_stream_is_subscribed_again_until_the_session_is_gone() {
        // what each subscription gives, in order
        let script: Mutex<VecDeque<Result<BoxStream<pb::SessionEvent>, Status>>> =
            Mutex::new(VecDeque::from([
                Ok(stream(vec![
                    Ok(digit("1")),
                    Err(Status::unavailable("cut")),
                ])),
                Err(Status::unavailable("connection refused")),
                Ok(stream(vec![Ok(digit("2")), Ok(digit("3"))])),
                Err(Status::not_found("session s not found")),
                Ok(stream(vec![Ok(digit("never"))])),
            ]));
        let subscribe = || {
            let next = script.lock().unwrap().pop_front();
            async move { next.unwrap_or_else(|| Err(Status::not_found("s"))) }
        };
        let (tx, mut rx) = mpsc::channel(8);
        let counters = MediaCounters::default();
        watch_loop(subscribe, &tx, &counters).await;
        drop(tx);
        let mut got = Vec::new();
        while let Some(ev) = rx.recv().await {
            if let Some(Ev::Dtmf(d)) = ev.event {
                got.push(d.digit);
            }
        }
        assert_eq!(got, ["1", "2", "3"]);
        assert_eq!(counters.watch_resubscribes.load(Ordering::Relaxed), 3);
        assert_eq!(script.lock().unwrap().len(), 1, "stopped at NOT_FOUND");
    }

    #[tokio::test]
    async fn the_watch_ends_when_its_receiver_is_dropped() {
        // a subscription that never answers, and one that never ends
        for pending_subscribe in [true, false] {
            let subscribe = || async move {
                if pending_subscribe {
                    std::future::pending::<()>().await;
                }
                let s: BoxStream<pb::SessionEvent> = Box::pin(tokio_stream::pending());
                Ok(s)
            };
            let (tx, rx) = mpsc::channel(1);
            let counters = MediaCounters::default();
            let watch = watch_loop(subscribe, &tx, &counters);
            drop(rx);
            tokio::time::timeout(Duration::from_secs(2), watch)
                .await
                .expect("ended");
        }
    }

    #[tokio::test]
    async fn retries_back_off_and_stop_in_time() {
        let attempts = Mutex::new(0u32);
        let attempt = || {
            let n = {
                let mut a = attempts.lock().unwrap();
                *a += 1;
                *a
            };
            async move { n }
        };
        let ms = Duration::from_millis;
        let r = retry_until(ms(2000), ms(10), ms(40), attempt, |n| *n == 3).await;
        assert_eq!(r, Some(3));
        *attempts.lock().unwrap() = 0;
        // 10 + 20 + 40 + 40 = 110 ms fit in 150 (fewer on a slow
        // machine); the next would not
        let r = retry_until(ms(150), ms(10), ms(40), attempt, |_| false).await;
        assert_eq!(r, None);
        let n = *attempts.lock().unwrap();
        assert!((1..=4).contains(&n), "{n} attempts");
    }
}
