//! Batch write timings of both backends, printed, never asserted:
//! `cargo test -p switchboard-store --test postgres -- --ignored --nocapture bench`.

use std::time::{Duration, Instant};

use switchboard_store::{Cdr, Registration, Store, now_ms};

use crate::common::{self, TestDb, cdr, registration};

const CDR_BATCH: usize = 512;
const CDR_ROUNDS: usize = 40;
const REG_BATCH: usize = 64;
const REG_ROUNDS: usize = 200;

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap();
    format!(
        "median {:.2} ms, p90 {:.2} ms, mean {:.2} ms ({} batches)",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 9 / 10]),
        ms(mean),
        samples.len()
    )
}

async fn measure(kind: &str, store: &Store) {
    let mut cdr_times = Vec::new();
    for round in 0..CDR_ROUNDS {
        let batch: Vec<Cdr> = (0..CDR_BATCH as i64)
            .map(|n| cdr(&format!("bench-{round}-{n}"), n))
            .collect();
        let started = Instant::now();
        assert_eq!(store.insert_cdrs(&batch).await.unwrap(), CDR_BATCH as u64);
        cdr_times.push(started.elapsed());
    }
    let far = now_ms() + 3_600_000;
    let mut reg_times = Vec::new();
    for round in 0..REG_ROUNDS {
        // half new bindings, half refreshes of the previous round's
        let batch: Vec<Registration> = (0..REG_BATCH)
            .map(|i| {
                let n = round * REG_BATCH / 2 + i;
                Registration {
                    cseq: i64::try_from(round).unwrap(),
                    ..registration(
                        &format!("sip:u{n}@example"),
                        &format!("sip:{n}@192.0.2.1"),
                        far,
                    )
                }
            })
            .collect();
        let started = Instant::now();
        store.upsert_registrations(&batch).await.unwrap();
        reg_times.push(started.elapsed());
    }
    eprintln!(
        "{kind:>8}: insert_cdrs x{CDR_BATCH}: {}",
        summary(cdr_times)
    );
    eprintln!(
        "{kind:>8}: upsert_registrations x{REG_BATCH}: {}",
        summary(reg_times)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timings for the report; run with --ignored --nocapture"]
async fn bench_batches_sqlite_vs_postgres() {
    common::run(TestDb::sqlite(), |db| async move {
        measure("sqlite", &db.open().await).await;
    })
    .await;
    common::run(TestDb::postgres(), |db| async move {
        measure("postgres", &db.open().await).await;
    })
    .await;
}
