//! `cdr-seed --data-dir DIR --count N`: fills the SQLite store under DIR
//! with N call detail records through the store's own API
//! (`Store::insert_cdrs`), for the dashboard benchmark (bench/ui.sh). Run it
//! before switchboard-signaling opens the same DATA_DIR.
//!
//! The records vary like a day of a small PBX: 2,000 callers and callees
//! (`user0..`, some external numbers), dispositions weighted towards
//! answered, quality figures on answered calls, invite times spread over
//! the last 24 hours with a tenth of them in the last hour. Deterministic:
//! the same count gives the same rows (call ids `bench-<n>`).

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use switchboard_store::{Cdr, Store};

#[derive(Parser)]
struct Args {
    /// DATA_DIR of the signaling server (switchboard.db is created there).
    #[arg(long)]
    data_dir: PathBuf,
    /// How many CDRs to insert.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// CDRs per transaction.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
}

/// xorshift64*: enough variety for test rows, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const DISPOSITIONS: [(&str, u64, Option<i64>, &str); 5] = [
    ("answered", 70, None, "Normal Clearing"),
    ("busy", 10, Some(486), "Busy Here"),
    ("no_answer", 10, Some(480), "Temporarily Unavailable"),
    ("cancelled", 5, Some(487), "Request Terminated"),
    ("failed", 5, Some(503), "Service Unavailable"),
];

fn party(rng: &mut Rng) -> (String, Option<String>) {
    if rng.below(10) == 0 {
        (format!("+4930{:07}", rng.below(10_000_000)), None)
    } else {
        let u = format!("user{}", rng.below(2_000));
        (u.clone(), Some(u))
    }
}

fn cdr(n: u64, now_ms: i64, rng: &mut Rng) -> Cdr {
    let day = 86_400_000i64;
    let hour = 3_600_000i64;
    let invite_at = if rng.below(10) == 0 {
        now_ms - rng.below(hour as u64) as i64
    } else {
        now_ms - rng.below(day as u64) as i64
    };
    let (caller, caller_user) = party(rng);
    let (callee, callee_user) = party(rng);
    let mut pick = rng.below(100);
    let mut d = DISPOSITIONS[0];
    for cand in DISPOSITIONS {
        if pick < cand.1 {
            d = cand;
            break;
        }
        pick -= cand.1;
    }
    let (disposition, _, code, reason) = d;
    let ring_ms = 200 + rng.below(15_000) as i64;
    let answered = disposition == "answered";
    let talk_ms = answered.then(|| 1_000 + rng.below(600_000) as i64);
    let ring_at = (disposition != "failed").then_some(invite_at + 80);
    let answer_at = talk_ms.map(|_| invite_at + 80 + ring_ms);
    let end_at = invite_at + 80 + ring_ms + talk_ms.unwrap_or(0);
    let sent = talk_ms.map(|t| t / 20);
    let lost = sent.map(|s| (s as f64 * rng.unit() * rng.unit() * 0.05) as i64);
    Cdr {
        id: 0,
        call_id: format!("bench-{n:08}"),
        sip_call_id: Some(format!("{:016x}@192.0.2.{}", rng.next(), 1 + n % 250)),
        account_id: Some(1),
        caller_name: caller_user.as_ref().map(|u| format!("Bench {u}")),
        caller,
        callee,
        source: format!("udp:192.0.2.{}:5060", 1 + n % 250),
        invite_at,
        ring_at,
        answer_at,
        end_at: Some(end_at),
        ring_ms: ring_at.map(|_| ring_ms),
        talk_ms,
        disposition: disposition.to_owned(),
        hangup_code: code,
        hangup_reason: Some(reason.to_owned()),
        hangup_side: Some(
            match (answered, rng.below(2)) {
                (false, _) => "system",
                (true, 0) => "caller",
                (true, _) => "callee",
            }
            .to_owned(),
        ),
        route_id: None,
        route: Some(
            if callee_user.is_some() {
                "local"
            } else {
                "pstn"
            }
            .to_owned(),
        ),
        caller_user,
        callee_user,
        node: Some("bench".to_owned()),
        rtp_sent: sent,
        rtp_received: sent.zip(lost).map(|(s, l)| s - l),
        rtp_lost: lost,
        jitter_ms: answered.then(|| (rng.unit() * 30.0 * 10.0).round() / 10.0),
        mos: answered.then(|| ((3.0 + rng.unit() * 1.4) * 100.0).round() / 100.0),
        rtpmanager: answered.then(|| "embedded".to_owned()),
        created_at: 0,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.data_dir)?;
    let store = Store::open_sqlite(&a.data_dir)
        .await
        .with_context(|| format!("opening the store under {}", a.data_dir.display()))?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t0 = Instant::now();
    let mut inserted = 0;
    let mut n = 0;
    while n < a.count {
        let end = (n + a.batch as u64).min(a.count);
        let batch: Vec<Cdr> = (n..end).map(|i| cdr(i, now_ms, &mut rng)).collect();
        inserted += store.insert_cdrs(&batch).await?;
        n = end;
    }
    store.close().await;
    println!(
        "{{\"cdrs\": {}, \"inserted\": {inserted}, \"seconds\": {:.1}}}",
        a.count,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
