//! Postgres for tests: a database of its own per test on the shared server
//! (`TEST_DATABASE_URL`), and private servers for tests that stop one.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::TempDir;

/// The shared server's URL when `TEST_DATABASE_URL` is not set.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Postgres server binaries (Debian layout).
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// `TEST_DATABASE_URL`, or the shared server on 127.0.0.1:5432.
pub(crate) fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database (path) replaced by `database`, query kept.
pub(crate) fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A fresh random name, `switchboard_test_<16 hex digits>`.
pub(crate) fn random_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = RandomState::new().hash_one((std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    format!("switchboard_test_{n:016x}")
}

/// Connects to `url`, failing the test with a message naming the server.
pub(crate) async fn connect(url: &str) -> PgConnection {
    let options: PgConnectOptions = url.parse().unwrap();
    match options.connect().await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "Postgres at {}:{} is unreachable ({e}); these tests need it \
             (set TEST_DATABASE_URL to another server)",
            options.get_host(),
            options.get_port()
        ),
    }
}

/// A database of one test on the shared server, dropped by
/// [`PgDb::drop_database`].
pub(crate) struct PgDb {
    admin_url: String,
    pub(crate) name: String,
    /// URL of this database, for `Store::open_postgres`.
    pub(crate) url: String,
}

impl PgDb {
    /// Creates an empty database with a random name.
    pub(crate) async fn create() -> PgDb {
        let admin_url = admin_url();
        let mut admin = connect(&admin_url).await;
        let name = random_database_name();
        // CREATE DATABASE copies template1 and fails if another session
        // is connected to it at that moment: retry a few times.
        let mut attempt = 0;
        loop {
            match sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    eprintln!("CREATE DATABASE {name}: {e}; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("CREATE DATABASE {name}: {e}"),
            }
        }
        let _ = admin.close().await;
        let url = url_with_database(&admin_url, &name);
        PgDb {
            admin_url,
            name,
            url,
        }
    }

    /// A plain connection to this database (search_path not set).
    pub(crate) async fn connect(&self) -> PgConnection {
        connect(&self.url).await
    }

    /// Drops the database, disconnecting whatever still uses it. Best
    /// effort: a failure is printed, not raised.
    pub(crate) async fn drop_database(&self) {
        let options: PgConnectOptions = match self.admin_url.parse() {
            Ok(options) => options,
            Err(_) => return,
        };
        match options.connect().await {
            Ok(mut admin) => {
                let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
                if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await {
                    eprintln!("dropping test database {}: {e}", self.name);
                }
                let _ = admin.close().await;
            }
            Err(e) => eprintln!("dropping test database {}: {e}", self.name),
        }
    }
}

/// Runs a Postgres server binary, as the `postgres` user when we are root
/// (initdb and postgres refuse to run as root).
fn pg_command(binary: &str, as_root: bool) -> Command {
    let path = Path::new(PG_BIN).join(binary);
    if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run_checked(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private Postgres server in a temporary directory, listening on
/// 127.0.0.1:`port` once [`PrivatePg::start`]ed; stopped and deleted on
/// drop. Trust authentication, user `postgres`.
pub(crate) struct PrivatePg {
    dir: TempDir,
    port: u16,
    as_root: bool,
}

impl PrivatePg {
    /// Runs initdb (the server is not started).
    pub(crate) fn init(port: u16) -> PrivatePg {
        let dir = TempDir::new("private-pg");
        std::fs::create_dir_all(&dir.0).unwrap();
        let as_root = is_root();
        if as_root {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&dir.0);
            run_checked(chown, "chown the private Postgres directory");
        }
        let mut initdb = pg_command("initdb", as_root);
        initdb
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(dir.0.join("data"));
        run_checked(initdb, "initdb");
        PrivatePg { dir, port, as_root }
    }

    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// The URL of its `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub(crate) fn start(&self) {
        let mut pg_ctl = pg_command("pg_ctl", self.as_root);
        pg_ctl
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.0.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.0.display()
            ))
            .arg("start");
        run_checked(pg_ctl, "pg_ctl start");
    }

    /// Stops the server at once (connections are cut).
    pub(crate) fn stop(&self) {
        let mut pg_ctl = pg_command("pg_ctl", self.as_root);
        pg_ctl
            .args(["-w", "-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"]);
        let _ = pg_ctl.output();
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
    }
}
