//! An `https://` backend: real signaling on loopback whose REST API speaks
//! HTTPS (API_TLS_CERT/API_TLS_KEY) with a certificate of a test CA made
//! by rcgen. With the CA in UI_BACKEND_CA_FILE the overview shows the
//! backend ok, a user is created through it and listed; without the CA,
//! or under a name the certificate does not carry, the backend is down
//! with the certificate's reason, and nothing of it is shown as healthy.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Signaling, login, signaling_with, ui};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A test CA in `dir/ca.pem`, and a certificate of it for 127.0.0.1 in
/// `dir/api.pem` with its key in `dir/api.key`.
fn certificates(dir: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "switchboard UI test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
    std::fs::write(dir.join("api.pem"), cert.pem()).expect("write certificate");
    std::fs::write(dir.join("api.key"), key.serialize_pem()).expect("write key");
}

/// Signaling whose API speaks HTTPS only, and its CA file.
async fn https_signaling(name: &str) -> (Signaling, PathBuf) {
    let sig = signaling_with(name, |c, dir| {
        certificates(dir);
        c.api_tls.api_tls_cert = Some(dir.join("api.pem"));
        c.api_tls.api_tls_key = Some(dir.join("api.key"));
    })
    .await;
    let ca = sig.dir.join("ca.pem");
    (sig, ca)
}

/// The overview's row of backend `name`.
fn row(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("<tr data-backend=\"{name}\">"))
        .unwrap_or_else(|| panic!("no row {name}: {html}"));
    html[at..].split("</tr>").next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn an_https_backend_with_its_ca_is_ok_and_lists_users() {
    let (sig, ca) = https_signaling("https-backend").await;
    let url = format!("https://{}", sig.api);
    let ui = ui(&[("main", url, Some(sig.token.as_str()))], |c| {
        c.backend_ca_file = Some(ca.clone());
    })
    .await;
    let mut b = login(ui.addr).await;

    let r = b.get("/").await;
    assert_eq!(r.status, 200);
    let main = row(&r.body, "main");
    assert!(main.contains("status ok"), "{main}");
    assert!(!main.contains("down"), "{main}");

    // a user created through the dashboard (a POST over TLS), then listed
    let fields = [
        ("backend", "main"),
        ("username", "alice-over-tls"),
        ("password", "alice-secret-1"),
    ];
    let r = b.post("/users", &fields, true).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = b.get("/users").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("alice-over-tls"), "{}", r.body);
    assert!(!r.body.contains("down-banner"), "{}", r.body);
    for page in &b.seen {
        assert!(!page.contains(&sig.token), "the token in a page");
    }
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}

#[tokio::test]
async fn an_https_backend_that_fails_verification_is_down() {
    let (sig, ca) = https_signaling("https-untrusted").await;
    // no CA file: the test CA is no system CA; and with the CA, a name
    // the certificate (127.0.0.1 only) does not carry
    let ui = ui(
        &[
            ("untrusted", format!("https://{}", sig.api), Some("tok-a")),
            (
                "misnamed",
                format!("https://localhost:{}", sig.api.port()),
                Some("tok-b"),
            ),
        ],
        |_| {},
    )
    .await;
    let mut b = login(ui.addr).await;
    let r = b.get("/").await;
    assert_eq!(r.status, 200);
    let untrusted = row(&r.body, "untrusted");
    assert!(untrusted.contains("status down"), "{untrusted}");
    assert!(!untrusted.contains("status ok"), "{untrusted}");
    assert!(untrusted.contains("certificate rejected"), "{untrusted}");
    assert!(untrusted.contains("UI_BACKEND_CA_FILE"), "{untrusted}");
    let misnamed = row(&r.body, "misnamed");
    assert!(misnamed.contains("status down"), "{misnamed}");
    assert!(misnamed.contains("certificate rejected"), "{misnamed}");
    // nothing was read from it: the users page says it is down
    let r = b.get("/users").await;
    assert!(r.body.contains("Backend untrusted is"), "{}", r.body);
    ui.shutdown(Duration::from_secs(2)).await;

    // the same name with the CA file: still refused for its name
    let ui = common::ui(
        &[(
            "misnamed",
            format!("https://localhost:{}", sig.api.port()),
            Some(sig.token.as_str()),
        )],
        |c| c.backend_ca_file = Some(ca.clone()),
    )
    .await;
    let mut b = login(ui.addr).await;
    let r = b.get("/").await;
    let misnamed = row(&r.body, "misnamed");
    assert!(misnamed.contains("status down"), "{misnamed}");
    assert!(misnamed.contains("not valid for name"), "{misnamed}");
    ui.shutdown(Duration::from_secs(2)).await;
    sig.stop().await;
}

#[tokio::test]
async fn a_bad_ca_file_stops_start_up_naming_it() {
    let dir = common::temp_dir("ui-ca-file");
    std::fs::write(dir.join("junk.pem"), "not a certificate").expect("write");
    for path in [dir.join("junk.pem"), dir.join("missing.pem")] {
        let mut c = switchboard_ui::Config::for_tests(dir.clone());
        c.backends = Some("main=https://127.0.0.1:1".into());
        c.admin_password = Some(common::PASSWORD.into());
        c.backend_ca_file = Some(path.clone());
        let err = match switchboard_ui::run(c).await {
            Ok(_) => panic!("started with {}", path.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.starts_with("UI_BACKEND_CA_FILE"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
