//! Live calls beyond this node: each change of a call (see
//! [`crate::calls::CallNote`]) becomes its entry in Redis, where every
//! replica's `GET /api/v1/calls` reads it, and the call events
//! (`received`, `ringing`, `answered`, `ended`), published once, by the
//! replica that handles the call.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_cluster::{CallState, LegInfo, LegSide, LiveCall, Shared};
use switchboard_events::{CallEvent, CallVerb, Event, EventBus, Leg, Side};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::calls::{CallNote, CallView, Calls, NOTE_QUEUE};

/// How far a call got, as its events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Received,
    Ringing,
    Answered,
}

/// Starts the watcher of this node's calls.
pub fn spawn(
    calls: &Arc<Calls>,
    shared: Option<Shared>,
    events: EventBus,
    replica: String,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (tx, rx) = mpsc::channel(NOTE_QUEUE);
    calls.watch(tx);
    tokio::spawn(watch(rx, shared, events, replica, shutdown))
}

async fn watch(
    mut rx: mpsc::Receiver<CallNote>,
    shared: Option<Shared>,
    events: EventBus,
    replica: String,
    shutdown: CancellationToken,
) {
    let mut stages: HashMap<String, Stage> = HashMap::new();
    loop {
        let note = tokio::select! {
            n = rx.recv() => match n { Some(n) => n, None => return },
            _ = shutdown.cancelled() => return,
        };
        match note {
            CallNote::Changed(view) => {
                let now = stage_of(&view);
                let before = stages.get(&view.id).copied();
                if before.is_none_or(|b| now > b) {
                    // each stage once, in order (a call answered without
                    // a 180 still says it rang: ring_at is set then too)
                    for (stage, verb) in [
                        (Stage::Received, CallVerb::Received),
                        (Stage::Ringing, CallVerb::Ringing),
                        (Stage::Answered, CallVerb::Answered),
                    ] {
                        if stage <= now && before.is_none_or(|b| stage > b) {
                            events.publish(Event::call(verb, call_event(&view)));
                        }
                    }
                    if stages.len() < MAX_TRACKED {
                        stages.insert(view.id.clone(), now);
                    }
                }
                if let Some(s) = &shared
                    && let Err(e) = s.put_call(&live_call(&view, &replica)).await
                {
                    debug!(call = %view.id, cause = %e, "live call not shared");
                }
            }
            CallNote::Ended(view) => {
                stages.remove(&view.id);
                events.publish(Event::call(CallVerb::Ended, call_event(&view)));
                if let Some(s) = &shared
                    && let Err(e) = s.remove_call(&view.id).await
                {
                    debug!(call = %view.id, cause = %e, "ended call not removed from Redis");
                }
            }
        }
    }
}

/// Calls whose stage is remembered at most (MAX_CALLS is 10,000 by
/// default; past this, a call's later events are published without memory
/// of the earlier ones, never the map growing).
const MAX_TRACKED: usize = 100_000;

fn stage_of(v: &CallView) -> Stage {
    if v.answer_at.is_some() {
        Stage::Answered
    } else if v.ring_at.is_some() {
        Stage::Ringing
    } else {
        Stage::Received
    }
}

fn call_event(v: &CallView) -> CallEvent {
    CallEvent {
        call_uuid: v.id.clone(),
        legs: v
            .legs
            .iter()
            .map(|l| Leg {
                sip_call_id: l.call_id.clone(),
                side: if l.leg == "A" { Side::A } else { Side::B },
            })
            .collect(),
        caller: Some(v.caller.clone()),
        callee: Some(v.callee.clone()),
        account_id: Some(v.account_id),
        ..CallEvent::default()
    }
}

/// A call as Redis holds it; `view` is the whole API view, so every
/// replica answers `GET /api/v1/calls` with the same objects.
pub fn live_call(v: &CallView, replica: &str) -> LiveCall {
    LiveCall {
        id: v.id.clone(),
        owner: replica.to_owned(),
        account_id: v.account_id,
        state: match v.state.as_str() {
            "routing" => CallState::Routing,
            "ringing" => CallState::Ringing,
            "ending" => CallState::Ending,
            _ if v.answer_at.is_some() => CallState::Answered,
            _ => CallState::Routing,
        },
        caller: v.caller.clone(),
        callee: v.callee.clone(),
        legs: v
            .legs
            .iter()
            .map(|l| LegInfo {
                sip_call_id: l.call_id.clone(),
                side: if l.leg == "A" { LegSide::A } else { LegSide::B },
            })
            .collect(),
        started_ms: v.invite_at,
        answered_ms: v.answer_at,
        view: serde_json::to_value(v).ok(),
    }
}

/// The API view of a shared call: the owner's own view when it sent one.
pub fn view_of(c: &LiveCall) -> Option<CallView> {
    let mut v: CallView = serde_json::from_value(c.view.clone()?).ok()?;
    v.node = Some(c.owner.clone());
    Some(v)
}
