//! The processes behind a [`crate::Browser`]: finding the binaries, a directory and a port,
//! starting chromedriver in a process group of its own and waiting for it, opening the
//! WebDriver session, and killing and cleaning up after them.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::{MISSING, START_TIMEOUT, WINDOW_SIZE};

pub(crate) fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// A new empty directory under the system's temporary directory, unique to this process and
/// call.
pub(crate) fn new_dir() -> Result<PathBuf> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "switchboard-browser-{}-{seq}-{nanos:08x}",
        std::process::id()
    ));
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn spawn_chromedriver(chromedriver: &Path, port: u16, log: &Path) -> Result<Child> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(chromedriver)
        .arg(format!("--port={port}"))
        // only loopback clients (chromedriver's default too, said for the reader)
        .arg("--allowed-ips=127.0.0.1")
        // Chromium's own stderr into the same log
        .arg("--enable-chrome-logs")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // its own process group, which Chromium joins: Drop kills the whole group
        .process_group(0)
        .spawn()
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                anyhow!("{} not found: {MISSING}", chromedriver.display())
            } else {
                anyhow!(e).context(format!("starting {}", chromedriver.display()))
            }
        })
}

/// Waits until chromedriver says it listens on `port` (it says so only once it has bound the
/// port itself, so someone else's listener on it is never taken for chromedriver) and the port
/// answers.
pub(crate) async fn wait_listening(driver: &mut Child, port: u16, log: &Path) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = format!("started successfully on port {port}");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = driver.try_wait()? {
            bail!(
                "chromedriver exited ({status}) before listening on {addr}:\n{}",
                log_tail(log)
            );
        }
        if fs::read_to_string(log).is_ok_and(|text| text.contains(&started))
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "chromedriver not listening on {addr} after {START_TIMEOUT:?}:\n{}",
                log_tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn chrome_args(profile: &Path) -> Vec<String> {
    let (width, height) = WINDOW_SIZE;
    vec![
        "--headless".into(),
        // as root (tests run as root here) Chromium refuses to start with its sandbox
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        // the network is closed: without these Chromium waits on services it cannot reach
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--window-size={width},{height}"),
        "--lang=en-US".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

pub(crate) async fn open_session(
    port: u16,
    chromium: &Path,
    profile: &Path,
    downloads: &Path,
    extra: &[&str],
) -> Result<Client> {
    let mut args = chrome_args(profile);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": args,
            "prefs": {
                "download.default_directory": downloads.to_string_lossy(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "intl.accept_languages": "en-US",
            },
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object literal");
    };
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(capabilities);
    let url = format!("http://127.0.0.1:{port}");
    match tokio::time::timeout(START_TIMEOUT, builder.connect(&url)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(anyhow!(e).context(format!(
            "opening a WebDriver session on {url} with {}",
            chromium.display()
        ))),
        Err(_) => bail!("opening a WebDriver session on {url} took more than {START_TIMEOUT:?}"),
    }
}

/// Kills chromedriver's process group (chromedriver and the Chromium it started) and reaps
/// chromedriver.
pub(crate) fn kill_group(driver: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}

pub(crate) fn remove_dir_retrying(dir: &Path) {
    for _ in 0..20 {
        match fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let _ = fs::remove_dir_all(dir);
}

pub(crate) fn process_group(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

pub(crate) fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
