//! Figures, not assertions: Redis memory per registered contact at 100,000
//! contacts, and put / lookup / sweep throughput on loopback. Runs against a
//! private redis-server so nothing else skews `used_memory`:
//!
//! ```text
//! cargo test --release -p switchboard-cluster --test measure -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Prefix, binding, handle_with, now_ms};
use switchboard_cluster::{Options, ReplicaId, Shared};

const CONTACTS: u32 = 100_000;
const WORKERS: u32 = 64;

async fn used_memory(c: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Seconds of CPU the server has used (user + system).
async fn server_cpu(c: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(c).await.unwrap();
    info.lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// Runs `op(n)` for n in 0..CONTACTS on WORKERS tasks; returns ops per second.
async fn rate<F, Fut>(label: &str, op: F) -> f64
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let t = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = w;
                while n < CONTACTS {
                    op(n).await;
                    n += WORKERS;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let r = f64::from(CONTACTS) / secs;
    println!("{label}: {CONTACTS} in {secs:.2} s = {r:.0}/s ({WORKERS} concurrent)");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn memory_and_throughput_at_100k_contacts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let p = Prefix::new(&url);
    let mut opts = Options::new(&url, &p.prefix, ReplicaId::new("sig-0").unwrap());
    opts.op_timeout = Duration::from_secs(5);
    let mut ready = None;
    for _ in 0..50 {
        let s = Shared::connect_with(opts.clone()).unwrap();
        if s.wait_ready(Duration::from_millis(200)).await {
            ready = Some(s);
            break;
        }
    }
    let s = match ready {
        Some(s) => s,
        None => handle_with(opts).await,
    };
    let mut raw = common::raw(&url).await;
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut raw)
        .await
        .unwrap();
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();

    let before = used_memory(&mut raw).await;
    let cpu0 = server_cpu(&mut raw).await;
    let exp = now_ms() + 3_600_000;
    let put = {
        let s = s.clone();
        rate("put_bindings (new AOR)", move |n| {
            let s = s.clone();
            async move {
                let b = binding(n, "sig-0", exp);
                s.put_bindings(&b.reg.aor.clone(), &[b]).await.unwrap();
            }
        })
        .await
    };
    let cpu_put = server_cpu(&mut raw).await - cpu0;
    let after = used_memory(&mut raw).await;
    assert_eq!(
        s.count().await.unwrap(),
        (u64::from(CONTACTS), u64::from(CONTACTS))
    );
    let per = (after - before) as f64 / f64::from(CONTACTS);
    let b = binding(1, "sig-0", exp);
    let value_len = {
        let v: String = redis::cmd("HGET")
            .arg(format!("{}loc:{}", p.prefix, b.reg.aor))
            .arg(&b.reg.contact)
            .query_async(&mut raw)
            .await
            .unwrap();
        v.len()
    };
    let hash_usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("{}loc:{}", p.prefix, b.reg.aor))
        .query_async(&mut raw)
        .await
        .unwrap();
    let idx_usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("{}locidx", p.prefix))
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut raw)
        .await
        .unwrap();

    let cpu0 = server_cpu(&mut raw).await;
    let refresh = {
        let s = s.clone();
        rate("put_bindings (refresh)", move |n| {
            let s = s.clone();
            async move {
                let b = binding(n, "sig-0", exp + 1_000);
                s.put_bindings(&b.reg.aor.clone(), &[b]).await.unwrap();
            }
        })
        .await
    };
    let cpu_refresh = server_cpu(&mut raw).await - cpu0;
    let cpu0 = server_cpu(&mut raw).await;
    let guarded = {
        let s = s.clone();
        rate("guarded_change (a REGISTER's refresh)", move |n| {
            let s = s.clone();
            async move {
                let b = binding(n, "sig-0", exp + 2_000);
                let fresh = s
                    .guarded_change(&format!("nonce{n}"), 1, 300, &b.reg.aor.clone(), &[], &[b])
                    .await
                    .unwrap();
                assert!(fresh);
            }
        })
        .await
    };
    let cpu_guarded = server_cpu(&mut raw).await - cpu0;
    let now = now_ms();
    let cpu0 = server_cpu(&mut raw).await;
    let lookup = {
        let s = s.clone();
        rate("lookup", move |n| {
            let s = s.clone();
            async move {
                let aor = format!("sip:{}@example.com", 100_000 + n);
                assert_eq!(s.lookup(&aor, now).await.unwrap().len(), 1);
            }
        })
        .await
    };
    let cpu_lookup = server_cpu(&mut raw).await - cpu0;
    let t = Instant::now();
    for n in 0..2_000 {
        let aor = format!("sip:{}@example.com", 100_000 + n);
        s.lookup(&aor, now).await.unwrap();
    }
    let serial_us = t.elapsed().as_secs_f64() * 1e6 / 2_000.0;

    let t = Instant::now();
    let mut swept = 0;
    loop {
        let batch = s.claim_expired(exp + 10_000, 1_000).await.unwrap();
        if batch.is_empty() {
            break;
        }
        swept += batch.len();
    }
    let sweep = swept as f64 / t.elapsed().as_secs_f64();
    assert_eq!(swept, CONTACTS as usize);
    let end = used_memory(&mut raw).await;

    println!(
        "redis {version}, {CONTACTS} contacts: used_memory {before} → {after} bytes = {per:.0} bytes per contact \
         (one AOR hash {hash_usage} B incl. a {value_len} B binding value; expiry index {:.0} B per AOR); \
         after sweeping all: {end}",
        idx_usage as f64 / f64::from(CONTACTS)
    );
    let us = |cpu: f64| cpu * 1e6 / f64::from(CONTACTS);
    println!(
        "server CPU per op: put {:.1} µs, refresh {:.1} µs, guarded refresh {:.1} µs, lookup {:.1} µs",
        us(cpu_put),
        us(cpu_refresh),
        us(cpu_guarded),
        us(cpu_lookup)
    );
    println!(
        "put {put:.0}/s, refresh {refresh:.0}/s, guarded refresh {guarded:.0}/s, lookup {lookup:.0}/s ({WORKERS} concurrent on one connection); \
         one lookup at a time {serial_us:.0} µs; claim_expired {sweep:.0} contacts/s in batches of 1000"
    );
    server.kill().await.unwrap();
}
