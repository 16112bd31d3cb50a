//! Layer tests on tokio's paused clock.
//!
//! Time moves with `sleep_until` (auto-advance walks through every earlier
//! timer at its exact instant, so recorded send times are exact) or with
//! `tokio::time::advance` where only "later than" matters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::target::{Target, TransportKind};

/// A fake transport that records what was sent, where and when.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<(Target, Bytes, Instant)>>,
}

impl Transmit for Recorder {
    fn transmit(&self, target: &Target, bytes: Bytes) {
        self.log
            .lock()
            .expect("recorder lock")
            .push((*target, bytes, Instant::now()));
    }
}

impl Recorder {
    /// (payload, seconds since `t0`) of every send so far.
    fn sent(&self, t0: Instant) -> Vec<(Bytes, f64)> {
        self.log
            .lock()
            .expect("recorder lock")
            .iter()
            .map(|(_, b, at)| (b.clone(), (*at - t0).as_secs_f64()))
            .collect()
    }

    fn times_of(&self, t0: Instant, payload: &[u8]) -> Vec<f64> {
        self.sent(t0)
            .into_iter()
            .filter(|(b, _)| b.as_ref() == payload)
            .map(|(_, t)| t)
            .collect()
    }

    fn count(&self) -> usize {
        self.log.lock().expect("recorder lock").len()
    }
}

fn target(transport: TransportKind) -> Target {
    Target {
        transport,
        local: "192.0.2.1:5060".parse().expect("addr"),
        remote: "198.51.100.7:5060".parse().expect("addr"),
        conn: None,
    }
}

fn setup() -> (TransactionLayer, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let layer = TransactionLayer::new(TimerConfig::default(), rec.clone());
    (layer, rec)
}

fn server_key(method: &str) -> TransactionKey {
    TransactionKey::server(
        "z9hG4bKserver1",
        "198.51.100.7",
        None,
        TransportKind::Udp,
        method,
    )
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

async fn at(t0: Instant, secs: f64) {
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(secs)).await;
}

/// Lets spawned tasks run after a clock jump.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn new_tx(incoming: Incoming) -> ServerTx {
    match incoming {
        Incoming::New(tx) => tx,
        other => panic!("expected a new transaction, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn client_invite_udp_retransmits_on_timer_a_then_times_out() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = TransactionKey::client("z9hG4bKc1", "INVITE");
    let mut tx = layer.send_request(key, true, target(TransportKind::Udp), b("INVITE"));
    assert_eq!(tx.next_event().await, Some(ClientEvent::Timeout));
    assert_eq!(Instant::now() - t0, Duration::from_secs(32));
    assert_eq!(
        rec.times_of(t0, b"INVITE"),
        [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    );
    assert_eq!(tx.next_event().await, None);
    assert_eq!(layer.live(), 0);
    let m = layer.metrics();
    assert_eq!(m.created.client_invite, 1);
    assert_eq!(m.terminated.get(TransactionKind::ClientInvite), 1);
    assert_eq!(m.retransmissions_sent, 6);
    assert_eq!(m.timeouts, 1);
    let (sent_to, _, _) = rec.log.lock().expect("lock")[0];
    assert_eq!(sent_to, target(TransportKind::Udp));
}

#[tokio::test(start_paused = true)]
async fn client_invite_tcp_never_retransmits() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = TransactionKey::client("z9hG4bKc2", "INVITE");
    let mut tx = layer.send_request(key, true, target(TransportKind::Tcp), b("INVITE"));
    assert_eq!(tx.next_event().await, Some(ClientEvent::Timeout));
    assert_eq!(Instant::now() - t0, Duration::from_secs(32));
    assert_eq!(rec.times_of(t0, b"INVITE"), [0.0]);
    assert_eq!(layer.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn client_invite_failure_is_acked_and_retransmissions_reacked() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = TransactionKey::client("z9hG4bKc3", "INVITE");
    let mut tx = layer.send_request(key.clone(), true, target(TransportKind::Udp), b("INVITE"));
    at(t0, 0.7).await;
    assert!(layer.on_response(&key, 180, b("180"), |_| Bytes::new()));
    assert_eq!(
        tx.next_event().await,
        Some(ClientEvent::Response(180, b("180")))
    );
    at(t0, 5.0).await;
    assert!(layer.on_response(&key, 486, b("486"), |_| b("ACK")));
    assert_eq!(
        tx.next_event().await,
        Some(ClientEvent::Response(486, b("486")))
    );
    at(t0, 6.0).await;
    assert!(layer.on_response(&key, 486, b("486"), |_| b("ACK")));
    // Retransmission stopped at the 180; the ACK went out twice.
    assert_eq!(rec.times_of(t0, b"INVITE"), [0.0, 0.5]);
    assert_eq!(rec.times_of(t0, b"ACK"), [5.0, 6.0]);
    // Timer D (32 s) then the transaction is gone; no second 486 event.
    assert_eq!(layer.live(), 1);
    assert_eq!(tx.next_event().await, None);
    assert_eq!(Instant::now() - t0, Duration::from_secs(37));
    assert_eq!(layer.live(), 0);
    assert!(!layer.on_response(&key, 486, b("486"), |_| b("ACK")));
    assert_eq!(layer.metrics().stray_responses, 1);
}

#[tokio::test(start_paused = true)]
async fn client_invite_2xx_terminates_at_once() {
    let (layer, _rec) = setup();
    let key = TransactionKey::client("z9hG4bKc4", "INVITE");
    let mut tx = layer.send_request(key.clone(), true, target(TransportKind::Udp), b("INVITE"));
    assert!(layer.on_response(&key, 200, b("200"), |_| Bytes::new()));
    assert_eq!(layer.live(), 0);
    assert_eq!(
        tx.next_event().await,
        Some(ClientEvent::Response(200, b("200")))
    );
    assert_eq!(tx.next_event().await, None);
    // A retransmitted 2xx is stray: the dialog layer's business.
    assert!(!layer.on_response(&key, 200, b("200"), |_| Bytes::new()));
}

#[tokio::test(start_paused = true)]
async fn client_non_invite_gets_200_once_even_if_retransmitted() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = TransactionKey::client("z9hG4bKc5", "OPTIONS");
    let mut tx = layer.send_request(key.clone(), false, target(TransportKind::Udp), b("OPTIONS"));
    at(t0, 1.7).await;
    assert!(layer.on_response(&key, 200, b("200"), |_| Bytes::new()));
    at(t0, 2.0).await;
    assert!(layer.on_response(&key, 200, b("200"), |_| Bytes::new()));
    assert_eq!(
        tx.next_event().await,
        Some(ClientEvent::Response(200, b("200")))
    );
    // Only Timer K's end closes the channel: no second delivery.
    assert_eq!(tx.next_event().await, None);
    assert_eq!(Instant::now() - t0, Duration::from_secs_f64(6.7));
    assert_eq!(rec.times_of(t0, b"OPTIONS"), [0.0, 0.5, 1.5]);
    assert_eq!(layer.live(), 0);
    assert_eq!(layer.metrics().retransmissions_absorbed, 1);
}

#[tokio::test(start_paused = true)]
async fn client_non_invite_timer_e_caps_at_t2() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = TransactionKey::client("z9hG4bKc6", "REGISTER");
    let mut tx = layer.send_request(key, false, target(TransportKind::Udp), b("REGISTER"));
    assert_eq!(tx.next_event().await, Some(ClientEvent::Timeout));
    assert_eq!(Instant::now() - t0, Duration::from_secs(32));
    assert_eq!(
        rec.times_of(t0, b"REGISTER"),
        [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
}

#[tokio::test(start_paused = true)]
async fn client_transport_error_reaches_the_tu() {
    let (layer, _rec) = setup();
    let key = TransactionKey::client("z9hG4bKc7", "BYE");
    let mut tx = layer.send_request(key.clone(), false, target(TransportKind::Tcp), b("BYE"));
    assert!(layer.on_transport_error(&key));
    assert_eq!(tx.next_event().await, Some(ClientEvent::TransportError));
    assert_eq!(tx.next_event().await, None);
    assert!(!layer.on_transport_error(&key));
    assert_eq!(layer.metrics().transport_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn duplicate_client_key_is_refused() {
    let (layer, rec) = setup();
    let key = TransactionKey::client("z9hG4bKc8", "INVITE");
    let _first = layer.send_request(key.clone(), true, target(TransportKind::Tcp), b("ONE"));
    let mut second = layer.send_request(key.clone(), true, target(TransportKind::Tcp), b("TWO"));
    assert_eq!(second.next_event().await, Some(ClientEvent::TransportError));
    drop(second);
    assert_eq!(rec.count(), 1);
    // Dropping the refused handle did not touch the live transaction.
    assert!(layer.contains(&key));
    assert_eq!(layer.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn server_non_invite_udp_absorbs_and_resends_final_until_j() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = server_key("OPTIONS");
    let udp = target(TransportKind::Udp);
    let tx = new_tx(layer.on_request(key.clone(), false, false, udp, || None));
    // Before the TU answers, a retransmission is absorbed silently.
    at(t0, 0.4).await;
    assert!(matches!(
        layer.on_request(key.clone(), false, false, udp, || None),
        Incoming::Retransmission
    ));
    assert_eq!(rec.count(), 0);
    assert!(tx.respond(200, b("200")));
    at(t0, 1.0).await;
    assert!(matches!(
        layer.on_request(key.clone(), false, false, udp, || None),
        Incoming::Retransmission
    ));
    assert_eq!(rec.times_of(t0, b"200"), [0.4, 1.0]);
    // A second final is refused: after its final over UDP the transaction
    // only answers retransmissions (it is retired from the table).
    assert!(!tx.respond(500, b("500")));
    assert!(rec.times_of(t0, b"500").is_empty());
    drop(tx);
    assert_eq!(layer.live(), 1);
    // Timer J = 64·T1 = 32 s after the final (sent at 0.4 s), expired in
    // batches of up to 250 ms.
    at(t0, 32.3).await;
    assert_eq!(layer.live(), 1);
    at(t0, 32.7).await;
    assert_eq!(layer.live(), 0);
    let m = layer.metrics();
    assert_eq!(m.retransmissions_absorbed, 2);
    assert_eq!(m.retransmissions_sent, 1);
    assert_eq!(m.created.server_non_invite, 1);
    assert_eq!(m.terminated.server_non_invite, 1);
    // A late copy now starts a new transaction.
    assert!(matches!(
        layer.on_request(key, false, false, udp, || None),
        Incoming::New(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn server_non_invite_tcp_ends_at_final_and_stale_handle_is_inert() {
    let (layer, rec) = setup();
    let key = server_key("REGISTER");
    let tcp = target(TransportKind::Tcp);
    let first = new_tx(layer.on_request(key.clone(), false, false, tcp, || None));
    assert!(first.respond(200, b("200")));
    assert_eq!(layer.live(), 0);
    // Same key again: a new transaction that the old handle cannot touch.
    let second = new_tx(layer.on_request(key.clone(), false, false, tcp, || None));
    assert!(!first.respond(500, b("500")));
    drop(first);
    assert!(second.respond(401, b("401")));
    assert_eq!(layer.live(), 0);
    let sent: Vec<_> = rec
        .sent(Instant::now())
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(sent, [b("200"), b("401")]);
}

#[tokio::test(start_paused = true)]
async fn server_invite_trying_486_retransmitted_by_g_until_ack_then_i() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = server_key("INVITE");
    let udp = target(TransportKind::Udp);
    let tx = new_tx(layer.on_request(key.clone(), true, false, udp, || Some(b("100"))));
    assert_eq!(rec.times_of(t0, b"100"), [0.0]);
    at(t0, 0.2).await;
    assert!(matches!(
        layer.on_request(key.clone(), true, false, udp, || None),
        Incoming::Retransmission
    ));
    assert_eq!(rec.times_of(t0, b"100"), [0.0, 0.2]);
    at(t0, 1.0).await;
    assert!(tx.respond(486, b("486")));
    drop(tx);
    at(t0, 10.0).await;
    let ack_key = server_key("ACK");
    assert!(matches!(
        layer.on_request(ack_key.clone(), false, true, udp, || None),
        Incoming::AckForCompleted
    ));
    // G: 0.5, 1, 2, 4 (capped at T2), 4 after the 486 at 1 s.
    assert_eq!(rec.times_of(t0, b"486"), [1.0, 1.5, 2.5, 4.5, 8.5]);
    at(t0, 14.0).await;
    assert_eq!(rec.times_of(t0, b"486").len(), 5, "ACK stopped Timer G");
    assert!(matches!(
        layer.on_request(ack_key, false, true, udp, || None),
        Incoming::AckForCompleted
    ));
    assert_eq!(layer.live(), 1);
    // Timer I = T4 = 5 s after the ACK.
    at(t0, 15.1).await;
    assert_eq!(layer.live(), 0);
    let m = layer.metrics();
    assert_eq!(m.created.server_invite, 1);
    assert_eq!(m.terminated.server_invite, 1);
    assert_eq!(m.timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn server_invite_timer_h_reports_timeout() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = server_key("INVITE");
    let udp = target(TransportKind::Udp);
    let mut tx = new_tx(layer.on_request(key, true, false, udp, || Some(b("100"))));
    assert!(tx.respond(603, b("603")));
    assert_eq!(tx.next_event().await, Some(ServerEvent::Timeout));
    assert_eq!(Instant::now() - t0, Duration::from_secs(32));
    assert_eq!(
        rec.times_of(t0, b"603"),
        [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(tx.next_event().await, None);
    assert_eq!(layer.live(), 0);
    assert_eq!(layer.metrics().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn server_invite_over_tcp_ends_at_ack() {
    let (layer, rec) = setup();
    let key = TransactionKey::server("z9hG4bKt", "h.example", None, TransportKind::Tcp, "INVITE");
    let tcp = target(TransportKind::Tcp);
    let mut tx = new_tx(layer.on_request(key.clone(), true, false, tcp, || Some(b("100"))));
    assert!(tx.respond(480, b("480")));
    tokio::time::advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(rec.count(), 2, "no Timer G over TCP");
    assert!(matches!(
        layer.on_request(key, false, true, tcp, || None),
        Incoming::AckForCompleted
    ));
    assert_eq!(layer.live(), 0);
    assert_eq!(tx.next_event().await, None);
}

#[tokio::test(start_paused = true)]
async fn server_invite_2xx_accepted_absorbs_invites_and_passes_acks() {
    let (layer, rec) = setup();
    let key = server_key("INVITE");
    let udp = target(TransportKind::Udp);
    let tx = new_tx(layer.on_request(key.clone(), true, false, udp, || Some(b("100"))));
    assert!(tx.respond(200, b("200")));
    drop(tx);
    assert!(matches!(
        layer.on_request(key.clone(), true, false, udp, || None),
        Incoming::Retransmission
    ));
    assert_eq!(rec.count(), 2, "INVITE absorbed without resending");
    assert!(matches!(
        layer.on_request(server_key("ACK"), false, true, udp, || None),
        Incoming::AckFor2xx
    ));
    // An ACK with its own branch (the usual 2xx ACK) matches nothing.
    let other = TransactionKey::server(
        "z9hG4bKack",
        "198.51.100.7",
        None,
        TransportKind::Udp,
        "ACK",
    );
    assert!(matches!(
        layer.on_request(other, false, true, udp, || None),
        Incoming::AckFor2xx
    ));
    assert_eq!(layer.live(), 1);
    tokio::time::advance(Duration::from_millis(32_001)).await;
    settle().await;
    assert_eq!(layer.live(), 0, "Timer L ended the Accepted state");
}

#[tokio::test(start_paused = true)]
async fn dropped_handles_without_timers_are_forgotten_after_64_t1() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let udp = target(TransportKind::Udp);
    let tx = new_tx(layer.on_request(server_key("INVITE"), true, false, udp, || Some(b("100"))));
    let ckey = TransactionKey::client("z9hG4bKc9", "INVITE");
    let client = layer.send_request(ckey.clone(), true, udp, b("INVITE"));
    assert!(layer.on_response(&ckey, 180, b("180"), |_| Bytes::new()));
    drop(client);
    drop(tx);
    at(t0, 31.9).await;
    assert_eq!(layer.live(), 2);
    // Retransmissions are still absorbed meanwhile.
    assert!(matches!(
        layer.on_request(server_key("INVITE"), true, false, udp, || None),
        Incoming::Retransmission
    ));
    assert_eq!(rec.times_of(t0, b"100"), [0.0, 31.9]);
    at(t0, 32.1).await;
    assert_eq!(layer.live(), 0);
    assert_eq!(rec.times_of(t0, b"INVITE"), [0.0]);
}

#[tokio::test(start_paused = true)]
async fn dropped_client_in_calling_runs_to_timer_b() {
    let (layer, rec) = setup();
    let t0 = Instant::now();
    let key = TransactionKey::client("z9hG4bKc10", "INVITE");
    drop(layer.send_request(key.clone(), true, target(TransportKind::Udp), b("INVITE")));
    at(t0, 4.0).await;
    // The 486 still gets its ACK although nobody listens.
    assert!(layer.on_response(&key, 486, b("486"), |_| b("ACK")));
    assert_eq!(rec.times_of(t0, b"ACK"), [4.0]);
    assert_eq!(rec.times_of(t0, b"INVITE"), [0.0, 0.5, 1.5, 3.5]);
    at(t0, 36.1).await;
    assert_eq!(layer.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn many_transactions_share_the_table() {
    let (layer, _rec) = setup();
    let tcp = target(TransportKind::Tcp);
    let mut handles = Vec::new();
    for i in 0..200 {
        let branch = format!("z9hG4bK{i}");
        let key = TransactionKey::server(&branch, "h", None, TransportKind::Tcp, "OPTIONS");
        handles.push(new_tx(layer.on_request(key, false, false, tcp, || None)));
    }
    assert_eq!(layer.live(), 200);
    for tx in &handles {
        assert!(tx.respond(200, b("200")));
    }
    assert_eq!(layer.live(), 0);
    assert_eq!(layer.metrics().terminated.server_non_invite, 200);
}

/// Real time, two workers: responses race the timer tasks; every
/// transaction must end exactly once with the right outcome and the table
/// must drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_drain_on_a_real_clock() {
    let rec = Arc::new(Recorder::default());
    let config = TimerConfig {
        t1: Duration::from_millis(5),
        t2: Duration::from_millis(40),
        t4: Duration::from_millis(20),
    };
    let layer = TransactionLayer::new(config, rec.clone());
    let udp = target(TransportKind::Udp);
    let mut clients = Vec::new();
    for i in 0..300u32 {
        let key = TransactionKey::client(&format!("z9hG4bKmt{i}"), "OPTIONS");
        let tx = layer.send_request(key.clone(), false, udp, b("OPTIONS"));
        let layer = layer.clone();
        clients.push(tokio::spawn(async move {
            let mut tx = tx;
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(i % 17))).await;
                assert!(layer.on_response(&key, 200, b("200"), |_| Bytes::new()));
                assert!(layer.on_response(&key, 200, b("200"), |_| Bytes::new()));
            }
            let mut events = Vec::new();
            while let Some(ev) = tx.next_event().await {
                events.push(ev);
            }
            (i, events)
        }));
    }
    for task in clients {
        let (i, events) = task.await.expect("client task");
        let want = if i % 2 == 0 {
            vec![ClientEvent::Response(200, b("200"))]
        } else {
            vec![ClientEvent::Timeout]
        };
        assert_eq!(events, want, "transaction {i}");
    }
    // Timer K (20 ms) still runs for the answered ones; allow a loaded CI.
    let give_up = Instant::now() + Duration::from_secs(5);
    while layer.live() > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(layer.live(), 0);
    let m = layer.metrics();
    assert_eq!(m.created.client_non_invite, 300);
    assert_eq!(m.terminated.client_non_invite, 300);
    assert_eq!(m.timeouts, 150);
}

#[tokio::test(start_paused = true)]
async fn challenges_over_udp_keep_no_state() {
    let (layer, rec) = setup();
    let key = server_key("REGISTER");
    let udp = target(TransportKind::Udp);
    let tx = new_tx(layer.on_request(key.clone(), false, false, udp, || None));
    let challenge = Bytes::from_static(b"SIP/2.0 401 Unauthorized\r\n\r\n");
    assert!(tx.respond(401, challenge));
    assert_eq!(rec.count(), 1);
    assert_eq!(layer.live(), 0, "a challenge is not kept for Timer J");
    // a retransmission is simply a new request, challenged again
    assert!(matches!(
        layer.on_request(key, false, false, udp, || None),
        Incoming::New(_)
    ));
}
