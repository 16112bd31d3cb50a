//! Helpers of the events integration tests: unique names on the shared
//! NATS server, a private nats-server for fault tests, CDR fixtures and a
//! store whose CDR writes can be made to fail.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test files; tests may unwrap

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard_events::Nats;
use switchboard_store::{
    Account, AccountPatch, Backend, BoxFuture, Cdr, CdrFilter, Error, NewAccount, NewUser,
    Registration, Result as StoreResult, Store, User, UserPatch,
};

/// The shared NATS server (JetStream on) the tests use.
pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A name unique to this test run and call, e.g. `t1f3a9c2b7`.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t{tag}{:x}{:x}{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system temp dir; removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passed.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain client of the shared server; fails the test clearly if the
/// server is not there.
pub async fn shared_client() -> async_nats::Client {
    match tokio::time::timeout(Duration::from_secs(5), async_nats::connect(SHARED_NATS)).await {
        Ok(Ok(c)) => c,
        other => panic!(
            "the shared NATS server at {SHARED_NATS} (with JetStream) is needed by this test and is unreachable: {other:?}"
        ),
    }
}

/// A [`Nats`] connection to `url`, waited for until connected.
pub async fn connected(url: &str, name: &str) -> Nats {
    let nats = Nats::connect(url, name).await.unwrap();
    let n = nats.clone();
    wait_for(
        &format!("a NATS connection to {url}"),
        Duration::from_secs(5),
        move || n.is_connected(),
    )
    .await;
    nats
}

/// Deletes streams of the shared server when dropped, also when the test
/// failed half way: plain NATS protocol over a blocking socket, since a
/// `Drop` cannot await.
pub struct DeleteStreams(pub Vec<String>);

impl Drop for DeleteStreams {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Ok(mut sock) = std::net::TcpStream::connect(("127.0.0.1", 4222)) else {
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        let mut cmd = String::from("CONNECT {\"verbose\":false}\r\n");
        for name in &self.0 {
            cmd.push_str(&format!("PUB $JS.API.STREAM.DELETE.{name} 0\r\n\r\n"));
        }
        cmd.push_str("PING\r\n");
        let _ = sock.write_all(cmd.as_bytes());
        // wait for the PONG: the deletes were processed before it
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while let Ok(n) = sock.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(4).any(|w| w == b"PONG") {
                break;
            }
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server of the test's own, on its own port and store directory.
pub struct PrivateNats {
    pub port: u16,
    store: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl PrivateNats {
    pub fn start() -> PrivateNats {
        PrivateNats::start_with(&[])
    }

    /// A server started with `extra` arguments too (e.g. `--user`).
    pub fn start_with(extra: &[&str]) -> PrivateNats {
        let mut nats = PrivateNats {
            port: free_port(),
            store: TempDir::new("natsstore"),
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        nats.restart();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store directory, and
    /// waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed for the fault tests");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: its connections
    /// stay open but nothing answers, as with a hung server.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Stops the server as an operator would (SIGTERM: it closes its
    /// connections and writes its store out) and waits until it is gone.
    pub fn terminate(&mut self) {
        if self.child.is_some() {
            self.signal("-TERM");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Kills the server and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CDR of call `call_id`.
pub fn cdr(call_id: &str) -> Cdr {
    Cdr {
        id: 0,
        call_id: call_id.to_owned(),
        sip_call_id: Some(format!("{call_id}@192.0.2.1")),
        account_id: None,
        caller: "1001".into(),
        callee: "1002".into(),
        caller_name: Some("Alice".into()),
        source: "udp:192.0.2.1:5062".into(),
        invite_at: 1_718_000_000_000,
        ring_at: Some(1_718_000_000_100),
        answer_at: Some(1_718_000_001_000),
        end_at: Some(1_718_000_061_000),
        ring_ms: Some(900),
        talk_ms: Some(60_000),
        disposition: "answered".into(),
        hangup_code: None,
        hangup_reason: Some("BYE".into()),
        hangup_side: Some("caller".into()),
        route_id: None,
        route: Some("internal".into()),
        caller_user: Some("alice".into()),
        callee_user: Some("bob".into()),
        node: Some("sig-0".into()),
        rtp_sent: Some(3000),
        rtp_received: Some(2990),
        rtp_lost: Some(10),
        jitter_ms: Some(1.5),
        mos: Some(4.3),
        rtpmanager: Some("rtpmanager-0".into()),
        created_at: 0,
    }
}

/// All CDRs in `store` (up to 1000 per page, every page).
pub async fn all_cdrs(store: &Store) -> Vec<Cdr> {
    let mut out = Vec::new();
    let mut filter = CdrFilter {
        limit: Some(CdrFilter::MAX_LIMIT),
        ..Default::default()
    };
    loop {
        let page = store.list_cdrs(&filter).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        filter.cursor = Some(last.id);
        out.extend(page);
    }
}

/// A store whose CDR inserts fail while `failing` is set; everything else
/// goes to an in-memory SQLite store.
pub struct FlakyStore {
    inner: Store,
    pub failing: AtomicBool,
    pub failed_writes: AtomicU64,
}

impl FlakyStore {
    pub async fn new(failing: bool) -> (Store, Arc<FlakyStore>) {
        let flaky = Arc::new(FlakyStore {
            inner: Store::open_sqlite_memory().await.unwrap(),
            failing: AtomicBool::new(failing),
            failed_writes: AtomicU64::new(0),
        });
        (
            Store::from_backend(Arc::clone(&flaky) as Arc<dyn Backend>),
            flaky,
        )
    }

    fn refuse(&self) -> Option<Error> {
        if self.failing.load(Ordering::SeqCst) {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            Some(Error::Io(std::io::Error::other("database is down (test)")))
        } else {
            None
        }
    }
}

impl Backend for FlakyStore {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn health(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.inner.health())
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.close())
    }
    fn list_accounts(&self) -> BoxFuture<'_, StoreResult<Vec<Account>>> {
        Box::pin(self.inner.list_accounts())
    }
    fn get_account(&self, id: i64) -> BoxFuture<'_, StoreResult<Account>> {
        Box::pin(self.inner.get_account(id))
    }
    fn create_account(&self, new: NewAccount) -> BoxFuture<'_, StoreResult<Account>> {
        Box::pin(self.inner.create_account(new))
    }
    fn update_account(&self, id: i64, patch: AccountPatch) -> BoxFuture<'_, StoreResult<Account>> {
        Box::pin(self.inner.update_account(id, patch))
    }
    fn delete_account(&self, id: i64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.inner.delete_account(id))
    }
    fn account_for_domain<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, StoreResult<Account>> {
        Box::pin(self.inner.account_for_domain(domain))
    }
    fn list_users(&self, account_id: Option<i64>) -> BoxFuture<'_, StoreResult<Vec<User>>> {
        Box::pin(self.inner.list_users(account_id))
    }
    fn search_users<'a>(
        &'a self,
        filter: &'a switchboard_store::UserFilter,
    ) -> BoxFuture<'a, StoreResult<(Vec<User>, i64)>> {
        Box::pin(async move {
            let (users, total) = self.inner.search_users(filter).await?;
            Ok((users, i64::try_from(total).unwrap_or(i64::MAX)))
        })
    }
    fn get_user(&self, id: i64) -> BoxFuture<'_, StoreResult<User>> {
        Box::pin(self.inner.get_user(id))
    }
    fn find_user<'a>(
        &'a self,
        account_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.inner.find_user(account_id, username))
    }
    fn find_user_by_extension<'a>(
        &'a self,
        account_id: i64,
        extension: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.inner.find_user_by_extension(account_id, extension))
    }
    fn create_user(&self, new: NewUser) -> BoxFuture<'_, StoreResult<User>> {
        Box::pin(self.inner.create_user(new))
    }
    fn update_user(&self, id: i64, patch: UserPatch) -> BoxFuture<'_, StoreResult<User>> {
        Box::pin(self.inner.update_user(id, patch))
    }
    fn delete_user(&self, id: i64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.inner.delete_user(id))
    }
    fn upsert_registrations<'a>(
        &'a self,
        regs: &'a [Registration],
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.inner.upsert_registrations(regs))
    }
    fn delete_registrations<'a>(
        &'a self,
        keys: &'a [(String, String)],
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.inner.delete_registrations(keys))
    }
    fn delete_aor<'a>(&'a self, aor: &'a str) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.inner.delete_aor(aor))
    }
    fn load_registrations(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<Vec<Registration>>> {
        Box::pin(self.inner.load_registrations(now_ms))
    }
    fn insert_cdr<'a>(&'a self, cdr: &'a Cdr) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            match self.refuse() {
                Some(e) => Err(e),
                None => self.inner.insert_cdr(cdr).await,
            }
        })
    }
    fn insert_cdrs<'a>(&'a self, cdrs: &'a [Cdr]) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            match self.refuse() {
                Some(e) => Err(e),
                None => self.inner.insert_cdrs(cdrs).await,
            }
        })
    }
    fn get_cdr<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, StoreResult<Cdr>> {
        Box::pin(self.inner.get_cdr(call_id))
    }
    fn list_cdrs<'a>(&'a self, filter: &'a CdrFilter) -> BoxFuture<'a, StoreResult<Vec<Cdr>>> {
        Box::pin(self.inner.list_cdrs(filter))
    }
    fn call_minutes(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<switchboard_store::CallMinute>>> {
        Box::pin(async move {
            let minutes = u32::try_from((to_ms - from_ms) / 60_000).unwrap_or(1);
            let all = self.inner.call_minutes(from_ms, minutes).await?;
            Ok(all
                .into_iter()
                .filter(|m| m.attempted > 0)
                .map(|m| switchboard_store::CallMinute {
                    at_ms: m.at_ms - from_ms,
                    ..m
                })
                .collect())
        })
    }
    fn store_id(&self) -> BoxFuture<'_, StoreResult<String>> {
        Box::pin(self.inner.store_id())
    }
    fn list_trunks(&self) -> BoxFuture<'_, StoreResult<Vec<(String, String)>>> {
        Box::pin(self.inner.list_trunks())
    }
    fn put_trunk<'a>(&'a self, name: &'a str, config: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.inner.put_trunk(name, config))
    }
    fn delete_trunk<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(self.inner.delete_trunk(name))
    }
    fn save_dialplan<'a>(&'a self, config: &'a str) -> BoxFuture<'a, StoreResult<i64>> {
        Box::pin(self.inner.save_dialplan(config))
    }
    fn latest_dialplan(&self) -> BoxFuture<'_, StoreResult<Option<(i64, String)>>> {
        Box::pin(self.inner.latest_dialplan())
    }
    fn dialplan_versions(&self) -> BoxFuture<'_, StoreResult<Vec<(i64, i64, i64)>>> {
        Box::pin(self.inner.dialplan_versions())
    }
    fn dialplan_version(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<(i64, String)>>> {
        Box::pin(self.inner.dialplan_version(id))
    }
    fn config_version(&self) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(self.inner.config_version())
    }
}
