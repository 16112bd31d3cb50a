//! Private Postgres, Redis and NATS servers for the fault tests: each on
//! its own free port and in its own temporary directory, stopped and
//! started again by the test, killed and deleted on drop. The shared
//! servers (5432, 6379, 4222) are never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::temp_dir;

/// Postgres server binaries (Debian layout).
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A TCP port free on loopback right now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free TCP port")
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "private {what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A Postgres server binary, as the `postgres` user when we are root
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

fn run_checked(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private Postgres (trust authentication, user `postgres`).
pub struct PrivatePg {
    pub port: u16,
    dir: PathBuf,
    as_root: bool,
}

impl PrivatePg {
    /// initdb in a fresh directory, then start.
    pub fn start() -> Self {
        let dir = temp_dir("private-pg");
        let as_root = is_root();
        if as_root {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&dir);
            run_checked(chown, "chown the private Postgres directory");
        }
        let mut initdb = pg_command("initdb", as_root);
        initdb
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(dir.join("data"));
        run_checked(initdb, "initdb");
        let pg = Self {
            port: free_tcp_port(),
            dir,
            as_root,
        };
        pg.resume();
        pg
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let mut pg_ctl = pg_command("pg_ctl", self.as_root);
        pg_ctl
            .args(["-w", "-t", "60", "-D"])
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("start");
        run_checked(pg_ctl, "pg_ctl start");
    }

    /// Stops the server at once: connections are cut, as in a crash.
    pub fn stop(&self) {
        let mut pg_ctl = pg_command("pg_ctl", self.as_root);
        pg_ctl
            .args(["-w", "-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = pg_ctl.output();
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private redis-server, memory only (it comes back empty).
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let mut r = Self {
            port: free_tcp_port(),
            child: None,
        };
        r.resume();
        r
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, empty) on the same port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the fault tests");
        self.child = Some(child);
        wait_listening(self.port, "redis-server");
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private nats-server with JetStream, its store kept across restarts.
pub struct PrivateNats {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    pub fn start() -> Self {
        let mut n = Self {
            port: free_tcp_port(),
            store: temp_dir("private-nats"),
            child: None,
        };
        n.resume();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store directory.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed for the fault tests");
        self.child = Some(child);
        wait_listening(self.port, "nats-server");
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
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
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
