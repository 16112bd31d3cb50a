//! A headless Chromium for tests, one per test.
//!
//! [`Browser::start`] spawns a `chromedriver` of its own on a free loopback port, in a process
//! group of its own, and opens a WebDriver session on it with a fresh profile directory and a
//! fresh download directory. Tests running in parallel (in one test binary or several) each get
//! their own chromedriver, Chromium and directories, so none sees another's cookies, storage or
//! downloads. Dropping the
//! [`Browser`] kills chromedriver and the Chromium it started, and removes the directories —
//! unless the test is panicking, then they are kept and their path is printed so that
//! `chromedriver.log` (which also has Chromium's own output) can be read.
//!
//! Chromium and chromedriver come from Debian's packages `chromium` and `chromium-driver`,
//! which `scripts/ensure-deps.sh` (run by `make test`) installs. `CHROMIUM` and `CHROMEDRIVER`
//! name other binaries.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use switchboard_browser_test::Browser;
//!
//! let browser = Browser::start().await?;
//! browser.goto("http://127.0.0.1:3000/login").await?;
//! browser.fill("input[name=password]", "secret").await?;
//! browser.click("button[type=submit]").await?;
//! browser.wait_until_text("h1", "Overview", Duration::from_secs(5)).await?;
//! browser.screenshot("docs/screenshots/overview.png").await?;
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde_json::Value;

pub use cookie::SameSite;
pub use fantoccini;
pub use fantoccini::cookies::Cookie;

mod process;
use process::{
    binary, free_port, kib_field, kill_group, log_tail, new_dir, open_session, process_group,
    remove_dir_retrying, spawn_chromedriver, wait_listening,
};

/// Debian's Chromium (a launcher script that adds Debian's default flags, then runs
/// `/usr/lib/chromium/chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`), of the same version as [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The page's size (CSS pixels) in every browser: a laptop's window, also the size of the
/// screenshots.
pub const WINDOW_SIZE: (u32, u32) = (1280, 900);

const MISSING: &str = "make test installs them: scripts/ensure-deps.sh (Debian packages chromium and chromium-driver)";

/// How long chromedriver may take to listen, and Chromium to open a session, on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Page loads and scripts: a dashboard page takes milliseconds, so a minute means it hangs.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the `wait_*` helpers.
const POLL: Duration = Duration::from_millis(50);
/// How much of a page's HTML a failure message shows.
const SNIPPET_CHARS: usize = 1500;

/// One headless Chromium under its own chromedriver. See the crate documentation.
pub struct Browser {
    client: Client,
    driver: Child,
    port: u16,
    dir: PathBuf,
    downloads: PathBuf,
}

/// Memory of the Chromium processes of one [`Browser`] (chromedriver not counted), in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChromiumMemory {
    /// Chromium processes (browser, zygotes, GPU, utility, renderers; not the crash handler,
    /// which puts itself in a process group of its own and exits with the browser).
    pub processes: usize,
    /// Sum of their resident set sizes now; pages shared between them count once per process.
    pub rss_kib: u64,
    /// Sum of their peak resident set sizes (VmHWM): an upper bound of the peak of the whole.
    pub peak_rss_kib: u64,
    /// Sum of their proportional set sizes now (shared pages split between the sharers): what
    /// the browser as a whole occupies.
    pub pss_kib: u64,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session in a new headless
    /// Chromium with a fresh profile and download directory.
    pub async fn start() -> Result<Browser> {
        Browser::start_with_args(&[]).await
    }

    /// [`Browser::start`] with extra Chromium flags (e.g. the RTP manager's WebRTC test needs
    /// `--allow-loopback-in-peer-connection`).
    pub async fn start_with_args(extra: &[&str]) -> Result<Browser> {
        Browser::start_with(
            &binary("CHROMIUM", CHROMIUM),
            &binary("CHROMEDRIVER", CHROMEDRIVER),
            extra,
        )
        .await
    }

    async fn start_with(chromium: &Path, chromedriver: &Path, extra: &[&str]) -> Result<Browser> {
        for (what, path) in [("chromium", chromium), ("chromedriver", chromedriver)] {
            if !path.is_file() {
                bail!("{what} not found at {}: {MISSING}", path.display());
            }
        }

        let dir = new_dir()?;
        let profile = dir.join("profile");
        let downloads = dir.join("downloads");
        for d in [&profile, &downloads] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let log = dir.join("chromedriver.log");

        // A port picked by binding port 0 can be taken by someone else before chromedriver binds
        // it; chromedriver then says so and exits, and another port is tried.
        let mut attempt = 0;
        let (driver, port) = loop {
            attempt += 1;
            let port = free_port()?;
            let mut driver = spawn_chromedriver(chromedriver, port, &log)?;
            match wait_listening(&mut driver, port, &log).await {
                Ok(()) => break (driver, port),
                Err(e) => {
                    kill_group(&mut driver);
                    if attempt >= 3 {
                        let _ = fs::remove_dir_all(&dir);
                        return Err(e);
                    }
                }
            }
        };

        let client = match open_session(port, chromium, &profile, &downloads, extra).await {
            Ok(client) => client,
            Err(e) => {
                let mut driver = driver;
                kill_group(&mut driver);
                let tail = log_tail(&log);
                let _ = fs::remove_dir_all(&dir);
                return Err(e.context(format!("chromedriver log:\n{tail}")));
            }
        };
        // from here on, an error drops the Browser, which kills and removes everything
        let browser = Browser {
            client,
            driver,
            port,
            dir,
            downloads,
        };
        browser
            .client
            .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(COMMAND_TIMEOUT),
                Some(COMMAND_TIMEOUT),
                Some(Duration::ZERO),
            ))
            .await
            .context("setting the session's timeouts")?;
        browser.size_viewport().await?;
        Ok(browser)
    }

    /// The fantoccini client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// chromedriver's process id, also the id of the process group of the Chromium it started.
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// chromedriver's port on 127.0.0.1.
    pub fn driver_port(&self) -> u16 {
        self.port
    }

    /// Where this browser's files are: `profile/`, `downloads/` and `chromedriver.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Chrome's download directory (`download.default_directory`), empty at start.
    pub fn download_dir(&self) -> &Path {
        &self.downloads
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("loading {url}"))
    }

    /// The page's current URL.
    pub async fn current_url(&self) -> Result<String> {
        Ok(self
            .client
            .current_url()
            .await
            .context("reading the current URL")?
            .to_string())
    }

    /// The first element matching the CSS selector, now (no waiting: see [`Browser::wait_for`]).
    pub async fn find(&self, css: &str) -> Result<Element> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => Ok(element),
            Err(e) => Err(anyhow!(e).context(format!(
                "no element matches {css:?}\n{}",
                self.page_state().await
            ))),
        }
    }

    /// Every element matching the CSS selector, now (possibly none).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css:?}"))
    }

    /// The rendered text of the first element matching `css` (as a user sees it: what CSS hides
    /// is left out).
    pub async fn text(&self, css: &str) -> Result<String> {
        let element = self.find(css).await?;
        element
            .text()
            .await
            .with_context(|| format!("reading the text of {css:?}"))
    }

    /// Clears the input matching `css` and types `value` into it.
    pub async fn fill(&self, css: &str, value: &str) -> Result<()> {
        let element = self.find(css).await?;
        element
            .clear()
            .await
            .with_context(|| format!("clearing {css:?}"))?;
        element
            .send_keys(value)
            .await
            .with_context(|| format!("typing into {css:?}"))
    }

    /// Clicks the first element matching `css`, as a user would (it must be visible and not
    /// covered by another element).
    pub async fn click(&self, css: &str) -> Result<()> {
        let element = self.find(css).await?;
        match element.click().await {
            Ok(()) => Ok(()),
            Err(e) => {
                Err(anyhow!(e).context(format!("clicking {css:?}\n{}", self.page_state().await)))
            }
        }
    }

    /// Waits until an element matching `css` is in the page, and returns it. Fails after
    /// `timeout` with the page's URL and the start of its HTML.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return Ok(element),
                Err(e) if e.is_no_such_element() || replaced(&e) => {}
                Err(e) => return Err(anyhow!(e).context(format!("waiting for {css:?}"))),
            }
            if Instant::now() >= deadline {
                bail!(
                    "no element matches {css:?} after {timeout:?}\n{}",
                    self.page_state().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until no element matches `css` (a row removed by a script, a page left). Fails
    /// after `timeout` with the page's URL and the start of its HTML.
    pub async fn wait_until_absent(&self, css: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(_) => {}
                Err(e) if e.is_no_such_element() => return Ok(()),
                Err(e) if replaced(&e) => {}
                Err(e) => return Err(anyhow!(e).context(format!("waiting for {css:?} to go"))),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{css:?} still matches after {timeout:?}\n{}",
                    self.page_state().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the rendered text of the first element matching `css` contains `needle`, and
    /// returns that text. Fails after `timeout` with the text last seen, the page's URL and the
    /// start of its HTML.
    pub async fn wait_until_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<String> = None;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => match element.text().await {
                    Ok(text) if text.contains(needle) => return Ok(text),
                    Ok(text) => last = Some(text),
                    // replaced by a script between find and text: look again
                    Err(e) if replaced(&e) => {}
                    Err(e) => return Err(anyhow!(e).context(format!("reading {css:?}"))),
                },
                Err(e) if e.is_no_such_element() || replaced(&e) => {}
                Err(e) => return Err(anyhow!(e).context(format!("waiting for {css:?}"))),
            }
            if Instant::now() >= deadline {
                let seen = match last {
                    Some(text) => format!("its text was {text:?}"),
                    None => "no element matched".to_string(),
                };
                bail!(
                    "{css:?} did not contain {needle:?} after {timeout:?}: {seen}\n{}",
                    self.page_state().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Takes a screenshot of the viewport ([`WINDOW_SIZE`]) and writes it to `path` as PNG,
    /// creating its directory.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Every cookie the browser holds for the current page, `HttpOnly` ones included, with their
    /// attributes (`http_only()`, `secure()`, `same_site()`).
    pub async fn cookies(&self) -> Result<Vec<Cookie<'static>>> {
        self.client
            .get_all_cookies()
            .await
            .context("reading the cookies")
    }

    /// Runs `js` as the body of a function in the page and returns what it `return`s.
    pub async fn execute(&self, js: &str) -> Result<Value> {
        self.client
            .execute(js, Vec::new())
            .await
            .with_context(|| format!("running {js:?}"))
    }

    /// Waits until `file_name` is completely downloaded into [`Browser::download_dir`] (Chrome
    /// writes a `.crdownload` file first and renames it when done), and returns its path.
    pub async fn wait_for_download(&self, file_name: &str, timeout: Duration) -> Result<PathBuf> {
        let path = self.downloads.join(file_name);
        let deadline = Instant::now() + timeout;
        loop {
            if path.is_file() {
                return Ok(path);
            }
            if Instant::now() >= deadline {
                let files = self.download_listing();
                bail!(
                    "{file_name} not downloaded into {} after {timeout:?} (it holds: {files})\n{}",
                    self.downloads.display(),
                    self.page_state().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The finished downloads (names, sorted): files in [`Browser::download_dir`] other than
    /// Chrome's partial `.crdownload` files.
    pub fn downloads(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.downloads)
            .with_context(|| format!("listing {}", self.downloads.display()))?
        {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".crdownload") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Memory of this browser's Chromium processes now (and their peaks), read from `/proc`.
    pub fn chromium_memory(&self) -> ChromiumMemory {
        let mut memory = ChromiumMemory {
            processes: 0,
            rss_kib: 0,
            peak_rss_kib: 0,
            pss_kib: 0,
        };
        let group = self.driver.id();
        let Ok(entries) = fs::read_dir("/proc") else {
            return memory;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == group || process_group(pid) != Some(group) {
                continue;
            }
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            memory.processes += 1;
            memory.rss_kib += kib_field(&status, "VmRSS:");
            memory.peak_rss_kib += kib_field(&status, "VmHWM:");
            let rollup =
                fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            memory.pss_kib += kib_field(&rollup, "Pss:");
        }
        memory
    }

    /// Ends the WebDriver session (Chromium quits), then stops chromedriver and removes the
    /// browser's directories. Dropping a [`Browser`] does the same without waiting for
    /// Chromium to quit by itself.
    pub async fn close(self) -> Result<()> {
        let client = self.client.clone();
        let closed = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        drop(self);
        match closed {
            Ok(result) => result.context("ending the WebDriver session"),
            Err(_) => bail!("ending the WebDriver session took more than 10 s"),
        }
    }

    /// `--window-size` sizes the window, and headless Chromium gives the page less than that
    /// (it leaves room for a window frame it does not draw): the window is grown by the
    /// difference so that the page, and so every screenshot, is [`WINDOW_SIZE`].
    async fn size_viewport(&self) -> Result<()> {
        let (width, height) = WINDOW_SIZE;
        self.set_viewport(width, height).await
    }

    /// Resizes the window so that the page gets `width` × `height` CSS pixels (e.g. a phone's
    /// 390 × 844), and checks that it did; screenshots taken after it have that size.
    pub async fn set_viewport(&self, width: u32, height: u32) -> Result<()> {
        let inner = async || -> Result<(u32, u32, u32, u32)> {
            let v = self
                .execute(
                    "return [window.innerWidth, window.innerHeight, \
                             window.outerWidth - window.innerWidth, \
                             window.outerHeight - window.innerHeight]",
                )
                .await?;
            let at = |i: usize| {
                v[i].as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0)
            };
            Ok((at(0), at(1), at(2), at(3)))
        };
        let (w, h, extra_width, extra_height) = inner().await?;
        if (w, h) == (width, height) {
            return Ok(());
        }
        self.client
            .set_window_size(width + extra_width, height + extra_height)
            .await
            .context("sizing the window")?;
        let (w, h, _, _) = inner().await?;
        if (w, h) != (width, height) {
            bail!("asked for a {width}×{height} page, Chromium gave {w}×{h}");
        }
        Ok(())
    }

    /// The page's URL and the start of its HTML, for failure messages.
    async fn page_state(&self) -> String {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let html = match self
            .client
            .execute(
                "return document.body ? document.body.outerHTML : document.documentElement.outerHTML",
                Vec::new(),
            )
            .await
        {
            Ok(Value::String(html)) => snippet(&html, SNIPPET_CHARS),
            Ok(other) => other.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        format!("page: {url}\nhtml: {html}")
    }

    fn download_listing(&self) -> String {
        match fs::read_dir(&self.downloads) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            }
            Err(e) => format!("unreadable: {e}"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        if std::thread::panicking() {
            eprintln!(
                "browser files kept for the failing test: {} (chromedriver.log has Chromium's output)",
                self.dir.display()
            );
            return;
        }
        // Chromium's processes were killed but may still be exiting while their files go
        remove_dir_retrying(&self.dir);
    }
}

/// Whether `e` says the element was swapped out of the page between finding and reading it:
/// WebDriver's "stale element reference", or the "unknown error" Chromium's inspector gives
/// for a node that has just left the document.
fn replaced(e: &fantoccini::error::CmdError) -> bool {
    e.is_stale_element_reference() || {
        let text = e.to_string();
        text.contains("does not belong to the document") || text.contains("No node with given id")
    }
}

fn snippet(html: &str, max: usize) -> String {
    match html.char_indices().nth(max) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &html[..cut], html.len()),
        None => html.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};
    use std::process::Command;

    use super::*;

    #[tokio::test]
    async fn missing_binaries_say_how_to_install_them() {
        let nowhere = Path::new("/nonexistent/chromedriver");
        let err = Browser::start_with(Path::new(CHROMIUM), nowhere, &[])
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/chromedriver"), "{err}");
        assert!(err.contains("scripts/ensure-deps.sh"), "{err}");
        let err = Browser::start_with(Path::new("/nonexistent/chromium"), nowhere, &[])
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("chromium not found at /nonexistent/chromium: make test installs them: scripts/ensure-deps.sh"), "{err}");
    }

    #[tokio::test]
    async fn a_taken_port_is_not_mistaken_for_chromedriver() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let dir = new_dir().expect("dir");
        let log = dir.join("chromedriver.log");
        let mut driver = spawn_chromedriver(Path::new(CHROMEDRIVER), port, &log).expect("spawn");
        let err = wait_listening(&mut driver, port, &log)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        kill_group(&mut driver);
        let _ = fs::remove_dir_all(&dir);
        assert!(err.contains("chromedriver exited"), "{err}");
        assert!(err.contains("not available"), "{err}");
    }

    #[test]
    fn snippets_cut_on_characters() {
        assert_eq!(snippet("<p>ok</p>", 20), "<p>ok</p>");
        assert_eq!(snippet("ëëëë", 2), "ëë… (8 bytes in all)");
    }

    #[test]
    fn proc_fields_parse() {
        assert_eq!(kib_field("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"), 1234);
        assert_eq!(kib_field("Name:\tx\n", "VmRSS:"), 0);
        let ps = Command::new("ps")
            .args(["-o", "pgid=", "-p", &std::process::id().to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        assert_eq!(
            process_group(std::process::id()).map(|g| g.to_string()),
            Some(ps)
        );
    }
}
