//! Replicas of one platform for the cluster tests: each test gets its own
//! database, Redis key prefix and NATS subject root (hence streams), on the
//! shared servers or on private ones a fault test can stop.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{TestServer, start};

pub const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
pub const SECRET: &str = "cluster-test-secret-0123456789abcdef";

/// The shared servers' addresses.
pub const SHARED_PG_PORT: u16 = 5432;
pub const SHARED_REDIS: &str = "127.0.0.1:6379";
pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// Bytes each test stream may hold (the server reserves it).
pub const TEST_STREAM_BYTES: i64 = 8 << 20;

/// Where a platform's three servers are.
#[derive(Debug, Clone)]
pub struct Servers {
    pub pg_port: u16,
    pub redis_addr: String,
    pub nats_url: String,
}

impl Default for Servers {
    fn default() -> Self {
        Self {
            pg_port: SHARED_PG_PORT,
            redis_addr: SHARED_REDIS.into(),
            nats_url: SHARED_NATS.into(),
        }
    }
}

/// The servers of one test: its own database, prefix and streams.
pub struct Platform {
    pub db: String,
    pub redis_prefix: String,
    pub nats_prefix: String,
    pub servers: Servers,
}

/// Runs `sql` with psql on the server at `port`, database `db`; returns
/// its output, or why it failed.
pub fn try_psql(port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", db, "-qAtc", sql])
        .output()
        .map_err(|e| format!("psql does not run (make test installs it): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn psql(port: u16, sql: &str) {
    if let Err(e) = try_psql(port, "postgres", sql) {
        panic!("Postgres on 127.0.0.1:{port}: {e}");
    }
}

impl Platform {
    /// A platform on the shared servers.
    pub fn new() -> Self {
        Self::on(Servers::default())
    }

    /// A platform on `servers` (private ones must be running).
    pub fn on(servers: Servers) -> Self {
        forget_old_test_streams(&servers.nats_url);
        let id = format!("{:08x}", rand::random::<u32>());
        let db = format!("switchboard_cluster_{id}");
        psql(servers.pg_port, &format!("CREATE DATABASE {db}"));
        Self {
            db,
            redis_prefix: format!("t{id}:"),
            nats_prefix: format!("t{id}.switchboard"),
            servers,
        }
    }

    pub fn database_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.servers.pg_port, self.db
        )
    }

    /// Runs `sql` in this platform's database.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        try_psql(self.servers.pg_port, &self.db, sql)
    }

    pub fn configure(&self, c: &mut switchboard_signaling::Config, node: &str) {
        c.node_name = Some(node.into());
        c.cluster.database_url = Some(self.database_url());
        c.cluster.redis_addr = Some(self.servers.redis_addr.clone());
        c.cluster.nats_url = Some(self.servers.nats_url.clone());
        c.cluster.cluster_secret = Some(SECRET.into());
        c.cluster.redis_prefix = self.redis_prefix.clone();
        c.cluster.nats_prefix = self.nats_prefix.clone();
        c.cluster.nats_stream_max_bytes = TEST_STREAM_BYTES;
    }

    pub async fn replica(
        &self,
        node: &str,
        tweak: impl FnOnce(&mut switchboard_signaling::Config),
    ) -> TestServer {
        start(&format!("cluster-{node}"), |c| {
            self.configure(c, node);
            tweak(c);
        })
        .await
    }

    pub async fn cleanup(self) {
        // Drop does it, also when a test fails
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // best effort: a private server may already be gone
        let _ = try_psql(
            self.servers.pg_port,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
        );
        let (host, port) = self
            .servers
            .redis_addr
            .rsplit_once(':')
            .unwrap_or(("127.0.0.1", "6379"));
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli -h {host} -p {port} --scan --pattern '{}*' | xargs -r redis-cli -h {host} -p {port} del >/dev/null",
                self.redis_prefix
            ))
            .status();
        let base = self.nats_prefix.replace('.', "_").to_ascii_uppercase();
        on_nats(&self.servers.nats_url, move |js| async move {
            for s in ["EVENTS", "CDR"] {
                let _ = js.delete_stream(format!("{base}_{s}")).await;
            }
        });
    }
}

/// Runs `f` against the NATS at `url` on a thread of its own (from Drop,
/// and inside or outside a runtime); nothing if it does not answer.
pub fn on_nats<F, Fut>(url: &str, f: F)
where
    F: FnOnce(async_nats::jetstream::Context) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let url = url.to_owned();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let connect = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(url.as_str());
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
                f(async_nats::jetstream::new(client)).await;
            }
        });
    })
    .join();
}

/// Streams of earlier runs of these tests that died before cleaning up
/// (a killed `cargo test`), older than ten minutes: deleted, so the
/// server's storage does not fill up.
fn forget_old_test_streams(url: &str) {
    use futures_util::StreamExt;
    on_nats(url, |js| async move {
        let mut streams = js.streams();
        let mut old = Vec::new();
        while let Some(Ok(info)) = streams.next().await {
            let name = &info.config.name;
            let ours = name.len() > 10
                && name.starts_with('T')
                && name[1..9].bytes().all(|b| b.is_ascii_hexdigit())
                && name[9..].starts_with("_SWITCHBOARD_");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if ours && now - info.created.unix_timestamp() > 600 {
                old.push(name.clone());
            }
        }
        for name in old {
            let _ = js.delete_stream(&name).await;
        }
    });
}

/// Polls `f` until it is true, for at most `max`.
pub async fn eventually<F, Fut>(max: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + max;
    while Instant::now() < until {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {max:?}");
}

/// Waits until `s` sees every replica in `ids` alive.
pub async fn sees_alive(s: &TestServer, ids: &[&str]) {
    eventually(Duration::from_secs(8), "replicas alive", || async {
        let (_, body) = s.http("GET", "/api/v1/cluster", None).await;
        ids.iter().all(|id| {
            body["replicas"]
                .as_array()
                .is_some_and(|l| l.iter().any(|r| r["id"] == *id && r["alive"] == true))
        })
    })
    .await;
}

/// Waits until `s` no longer routes through replica `id`.
pub async fn sees_dead(s: &TestServer, id: &str) {
    eventually(Duration::from_secs(14), "replica dead", || async {
        let (_, body) = s.http("GET", "/api/v1/cluster", None).await;
        body["peers"].get(id).is_none()
            && body["replicas"]
                .as_array()
                .is_some_and(|l| !l.iter().any(|r| r["id"] == id && r["alive"] == true))
    })
    .await;
}

pub fn users_plan() -> Value {
    json!({"version": "1.0", "routes": [
        {"id": "users", "pattern": "*", "priority": 50,
         "actions": [{"type": "dial", "params": {"target": "user/${destination}", "timeout": 10}}]}]})
}

/// Both replicas up, users alice and carol, the users dialplan on both.
pub async fn two_replicas(
    p: &Platform,
    tweak: fn(&mut switchboard_signaling::Config),
) -> (TestServer, TestServer) {
    let a = p.replica("a", tweak).await;
    let b = p.replica("b", tweak).await;
    a.create_user("alice", "alice-secret").await;
    a.create_user("carol", "carol-secret").await;
    let (status, body) = a.http("PUT", "/api/v1/dialplan", Some(&users_plan())).await;
    assert_eq!(status, 200, "{body}");
    // B's directory (what its SIP side authenticates with) has them
    eventually(Duration::from_secs(3), "users reach B", || async {
        let (_, stats) = b.http("GET", "/api/v1/stats", None).await;
        stats["users"] == 2
    })
    .await;
    for (s, other) in [(&a, "b"), (&b, "a")] {
        eventually(Duration::from_secs(8), "peers known", || async {
            s.http("GET", "/api/v1/cluster", None).await.1["peers"][other].is_string()
        })
        .await;
    }
    (a, b)
}

/// Events seen on NATS: (subject, payload).
pub struct Events(std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>);

impl Events {
    /// Everything seen once `subject` has been (at most 10 s).
    pub async fn wait_for(&self, subject: &str) -> Vec<(String, Value)> {
        let list = &self.0;
        eventually(Duration::from_secs(10), subject, || async {
            list.lock()
                .expect("events")
                .iter()
                .any(|(s, _)| s == subject)
        })
        .await;
        // a moment for anything published after it (nothing should be)
        tokio::time::sleep(Duration::from_millis(300)).await;
        list.lock().expect("events").clone()
    }
}

/// Every event published under this test's subject root from now on.
pub async fn watch_events(p: &Platform) -> Events {
    use futures_util::StreamExt;
    let client = async_nats::connect(p.servers.nats_url.as_str())
        .await
        .expect("NATS on 4222 (make test starts it)");
    let mut sub = client
        .subscribe(format!("{}.>", p.nats_prefix))
        .await
        .expect("subscribe");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        let _client = client;
        while let Some(m) = sub.next().await {
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            sink.lock()
                .expect("events")
                .push((m.subject.to_string(), v));
        }
    });
    Events(seen)
}
