//! Shared test helpers: handles on the shared Redis (127.0.0.1:6379) under a
//! random prefix, and cleanup of that prefix even when a test panics.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use switchboard_cluster::{Options, ReplicaId, Shared, SharedBinding};
use switchboard_store::Registration;

pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A random key prefix, deleted (every key under it) when dropped.
pub struct Prefix {
    pub prefix: String,
    url: String,
}

impl Prefix {
    pub fn new(url: &str) -> Self {
        Self {
            prefix: format!("sbtest-{:016x}:", rand::random::<u64>()),
            url: url.to_owned(),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Blocking, so it also runs while a failed test unwinds.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return;
        };
        let pattern = format!("{}*", self.prefix);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut c)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// A handle for `replica` on `url`, waiting until Redis answers; a shared
/// server that is down fails the test with a clear message.
pub async fn handle_with(opts: Options) -> Shared {
    let url = opts.url.clone();
    let s = Shared::connect_with(opts).unwrap();
    assert!(
        s.wait_ready(Duration::from_secs(5)).await,
        "Redis at {url} is unreachable (health: {:?}); the shared test server must be running",
        s.health()
    );
    s
}

pub async fn handle(p: &Prefix, replica: &str) -> Shared {
    handle_with(Options::new(
        SHARED_REDIS,
        &p.prefix,
        ReplicaId::new(replica).unwrap(),
    ))
    .await
}

pub fn now_ms() -> i64 {
    switchboard_store::now_ms()
}

/// A realistic binding: `sip:1000NN@example.com` registered from a NATed phone.
pub fn binding(n: u32, replica: &str, expires_at: i64) -> SharedBinding {
    SharedBinding {
        replica: replica.to_owned(),
        reg: Registration {
            aor: format!("sip:{}@example.com", 100_000 + n),
            contact: format!("sip:{}@192.0.2.10:5060;transport=udp;ob", 100_000 + n),
            account_id: 1,
            user_id: Some(i64::from(n)),
            received: "udp:203.0.113.5:40000".into(),
            path: None,
            instance_id: None,
            reg_id: None,
            user_agent: Some("Yealink SIP-T46S 66.86.0.15".into()),
            call_id: format!("{:016x}@192.0.2.10", u64::from(n) * 2_654_435_761),
            cseq: 2,
            q: None,
            expires_at,
            updated_at: expires_at - 3_600_000,
        },
    }
}

/// A raw async connection for checks the API does not offer.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
