//! The harness against a tiny site served on 127.0.0.1 by the test itself: each test starts
//! its own browser (and its own chromedriver), as the dashboard's tests will.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use switchboard_browser_test::{Browser, SameSite, WINDOW_SIZE};

const WAIT: Duration = Duration::from_secs(5);

/// The bytes of the download: a CSV with a non-ASCII name and a line without its final newline.
const CSV: &[u8] = "id,name\n1,alice\n2,Zoë\n3,\"a,b\"".as_bytes();

/// What the page shows in a text node: markup that must stay text.
const HOSTILE: &str = "<script>window.pwned = 1</script><b>bold</b>";

const FORM_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Form</title></head>
<body>
<h1 id="title">Harness page</h1>
<form id="form" onsubmit="return false">
  <input id="name" name="name" type="text" value="before">
  <button id="greet" type="button"
    onclick="document.getElementById('out').textContent = 'Hello, ' + document.getElementById('name').value">Greet</button>
</form>
<p id="out">nobody greeted</p>
<p id="late"></p>
<a id="download" href="/rows.csv">Export CSV</a>
<script>
  setTimeout(function () { document.getElementById('late').textContent = 'arrived late'; }, 300);
</script>
</body></html>"#;

async fn serve() -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { Html(FORM_PAGE) }))
        .route(
            "/cookie",
            get(|| async {
                (
                    [(
                        header::SET_COOKIE,
                        "sb_session=s3cr3t; Path=/; HttpOnly; SameSite=Strict",
                    )],
                    Html("<!doctype html><p id=\"done\">cookie set</p>"),
                )
            }),
        )
        .route(
            "/rows.csv",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"rows.csv\"",
                        ),
                    ],
                    CSV,
                )
                    .into_response()
            }),
        )
        .route(
            "/hostile",
            get(|| async {
                // escaped as the dashboard's templates escape a phone's values
                let escaped = HOSTILE
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;");
                Html(format!(
                    "<!doctype html><meta charset=\"utf-8\"><p id=\"display-name\">{escaped}</p>"
                ))
            }),
        );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the test site");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("serve the test site");
    });
    addr
}

#[tokio::test]
async fn goto_and_text_and_start_time() {
    let addr = serve().await;
    let started = Instant::now();
    let browser = Browser::start().await.expect("start the browser");
    let up = started.elapsed();
    browser
        .goto(&format!("http://{addr}/"))
        .await
        .expect("goto");
    let first_page = started.elapsed();
    assert_eq!(browser.text("#title").await.expect("text"), "Harness page");
    assert_eq!(
        browser.current_url().await.expect("url"),
        format!("http://{addr}/")
    );
    let viewport = browser
        .execute("return [window.innerWidth, window.innerHeight]")
        .await
        .expect("execute");
    println!(
        "Browser::start {} ms, + first page {} ms; viewport {viewport}; chromium {:?}",
        up.as_millis(),
        first_page.as_millis(),
        browser.chromium_memory()
    );
    assert_eq!(viewport, serde_json::json!([WINDOW_SIZE.0, WINDOW_SIZE.1]));
    browser.close().await.expect("close");
}

#[tokio::test]
async fn fill_and_click_change_the_text() {
    let addr = serve().await;
    let browser = Browser::start().await.expect("start the browser");
    browser
        .goto(&format!("http://{addr}/"))
        .await
        .expect("goto");
    browser.fill("#name", "Zoë <3").await.expect("fill");
    browser.click("#greet").await.expect("click");
    assert_eq!(
        browser
            .wait_until_text("#out", "Hello", WAIT)
            .await
            .expect("greeting"),
        "Hello, Zoë <3"
    );
    // text that a script puts in later is waited for, not raced
    browser
        .wait_until_text("#late", "arrived late", WAIT)
        .await
        .expect("late text");
    // and so is an element that a script removes
    browser
        .execute("setTimeout(() => document.getElementById('greet').remove(), 200)")
        .await
        .expect("schedule the removal");
    browser.find("#greet").await.expect("still there");
    browser
        .wait_until_absent("#greet", WAIT)
        .await
        .expect("removed");
}

#[tokio::test]
async fn waiting_fails_clearly() {
    let addr = serve().await;
    let browser = Browser::start().await.expect("start the browser");
    browser
        .goto(&format!("http://{addr}/"))
        .await
        .expect("goto");
    let err = browser
        .wait_for("#never", Duration::from_millis(300))
        .await
        .expect_err("no such element")
        .to_string();
    assert!(err.contains("\"#never\""), "{err}");
    assert!(err.contains(&format!("page: http://{addr}/")), "{err}");
    assert!(err.contains("<h1 id=\"title\">Harness page</h1>"), "{err}");
    let err = browser
        .wait_until_text("#out", "never said", Duration::from_millis(300))
        .await
        .expect_err("text never there");
    let err = format!("{err:#}");
    assert!(err.contains("its text was \"nobody greeted\""), "{err}");
    let err = browser
        .wait_until_absent("#title", Duration::from_millis(300))
        .await
        .expect_err("the title stays")
        .to_string();
    assert!(err.contains("\"#title\" still matches"), "{err}");
    let err = format!(
        "{:#}",
        browser.click("#nothing").await.expect_err("no element")
    );
    assert!(err.contains("no element matches \"#nothing\""), "{err}");
}

#[tokio::test]
async fn cookie_is_seen_with_its_attributes() {
    let addr = serve().await;
    let browser = Browser::start().await.expect("start the browser");
    browser
        .goto(&format!("http://{addr}/cookie"))
        .await
        .expect("goto");
    browser.wait_for("#done", WAIT).await.expect("page");
    let cookies = browser.cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name() == "sb_session")
        .unwrap_or_else(|| panic!("no sb_session cookie in {cookies:?}"));
    assert_eq!(session.value(), "s3cr3t");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(SameSite::Strict));
    // HttpOnly: the page's scripts cannot read it
    let seen_by_js = browser
        .execute("return document.cookie")
        .await
        .expect("document.cookie");
    assert_eq!(seen_by_js, "");
}

#[tokio::test]
async fn screenshot_is_a_png() {
    let addr = serve().await;
    let browser = Browser::start().await.expect("start the browser");
    browser
        .goto(&format!("http://{addr}/"))
        .await
        .expect("goto");
    let path = browser.dir().join("shots/page.png");
    browser.screenshot(&path).await.expect("screenshot");
    let png = std::fs::read(&path).expect("read the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &png[..8.min(png.len())]
    );
    assert!(png.len() > 2_000, "only {} bytes", png.len());
    // the IHDR chunk: width and height of the viewport
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), WINDOW_SIZE);
}

#[tokio::test]
async fn download_lands_with_its_bytes() {
    let addr = serve().await;
    let browser = Browser::start().await.expect("start the browser");
    browser
        .goto(&format!("http://{addr}/"))
        .await
        .expect("goto");
    assert!(browser.downloads().expect("list").is_empty());
    browser.click("#download").await.expect("click");
    let path = browser
        .wait_for_download("rows.csv", WAIT)
        .await
        .expect("download");
    assert_eq!(path, browser.download_dir().join("rows.csv"));
    assert_eq!(std::fs::read(&path).expect("read"), CSV);
    assert_eq!(browser.downloads().expect("list"), vec!["rows.csv"]);
}

#[tokio::test]
async fn markup_in_a_text_node_is_shown_as_text() {
    let addr = serve().await;
    let browser = Browser::start().await.expect("start the browser");
    browser
        .goto(&format!("http://{addr}/hostile"))
        .await
        .expect("goto");
    assert_eq!(browser.text("#display-name").await.expect("text"), HOSTILE);
    let dom = browser
        .execute(
            "const p = document.getElementById('display-name');
             return [p.textContent, p.children.length, window.pwned === undefined]",
        )
        .await
        .expect("execute");
    assert_eq!(dom, serde_json::json!([HOSTILE, 0, true]));
}

/// Processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

#[tokio::test]
async fn drop_ends_chromium_and_removes_its_files() {
    let addr = serve().await;
    let browser = Browser::start().await.expect("start the browser");
    browser
        .goto(&format!("http://{addr}/"))
        .await
        .expect("goto");
    let dir = browser.dir().to_path_buf();
    let profile = dir.join("profile").to_string_lossy().into_owned();
    assert!(browser.chromium_memory().processes >= 2);
    assert!(!processes_naming(&profile).is_empty());
    drop(browser);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // killed at once; the kernel takes a moment to reap them (crashpad's handler, in a
    // process group of its own, goes when the browser's socket closes)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_naming(&profile);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
