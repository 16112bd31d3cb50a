//! Unit tests of the trunk table.

use super::*;

fn trunk(host: &str) -> TrunkConfig {
    serde_json::from_value(serde_json::json!({
        "name": "provider", "host": host, "username": "u", "password": "p",
        "strip": 1, "prefix": "+49"
    }))
    .unwrap()
}

#[test]
fn numbers_are_rewritten() {
    let t = trunk("127.0.0.1:5090");
    assert_eq!(t.rewrite("0301234"), "+49301234");
    assert_eq!(t.rewrite(""), "+49");
}

#[test]
fn tls_trunks() {
    let tls = |extra: serde_json::Value| -> Result<TrunkConfig, String> {
        let mut v = serde_json::json!({"name": "p", "host": "192.0.2.9", "transport": "tls"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let c: TrunkConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    };
    let t = tls(serde_json::json!({})).unwrap();
    assert_eq!(t.transport_kind(), Ok(TransportKind::Tls));
    assert_eq!(
        t.host_port().unwrap(),
        HostPort {
            host: Host::Ip("192.0.2.9".parse().unwrap()),
            port: 5061,
            port_given: false
        }
    );
    assert!(t.tls_verify, "verification is on by default");
    assert_eq!(t.tls_name(), None, "the IP address is checked");
    // the name: tls_server_name, else a domain that is a host name
    let cases = [
        (
            serde_json::json!({"domain": "sip.example.com"}),
            Some("sip.example.com"),
        ),
        (serde_json::json!({"domain": "192.0.2.9"}), None),
        (serde_json::json!({"domain": "sip.example.com:5061"}), None),
        // a host name is checked before the domain
        (
            serde_json::json!({"host": "edge.provider.example:5071", "domain": "example.com"}),
            Some("edge.provider.example"),
        ),
        (
            serde_json::json!({"host": "edge.provider.example", "tls_server_name": "x.example"}),
            Some("x.example"),
        ),
        (
            serde_json::json!({"domain": "example.com", "tls_server_name": "edge.example.net"}),
            Some("edge.example.net"),
        ),
    ];
    for (extra, want) in cases {
        let t = tls(extra.clone()).unwrap();
        assert_eq!(t.tls_name().as_deref(), want, "{extra}");
    }
    let off = tls(serde_json::json!({"tls_verify": false, "host": "192.0.2.9:5071"})).unwrap();
    assert!(!off.tls_verify);
    assert_eq!(off.host_port().unwrap().port, 5071);
    // stored without the default, with tls_verify when it is off
    let stored = Trunks::stored(&off);
    assert_eq!(stored["tls_verify"], serde_json::json!(false));
    assert!(Trunks::stored(&t).get("tls_verify").is_none());
    for (extra, field) in [
        (
            serde_json::json!({"tls_server_name": "not a name"}),
            "tls_server_name:",
        ),
        (
            serde_json::json!({"transport": "udp", "tls_verify": false}),
            "tls_verify",
        ),
        (
            serde_json::json!({"transport": "tcp", "tls_server_name": "a.example"}),
            "tls_verify",
        ),
        (
            serde_json::json!({"transport": "udp", "tls_ca_file": "/etc/ca.pem"}),
            "tls_verify/tls_server_name/tls_ca_file:",
        ),
        (
            serde_json::json!({"tls_verify": false, "tls_ca_file": "/etc/ca.pem"}),
            "tls_ca_file:",
        ),
    ] {
        let err = tls(extra.clone()).unwrap_err();
        assert!(err.starts_with(field), "{extra}: {err}");
    }
    // the TLS trunk is found by its address for outbound connections
    let trunks = Trunks::default();
    trunks.put(off.clone()).unwrap();
    assert!(
        trunks
            .by_tls_addr(&"192.0.2.9:5071".parse().unwrap())
            .is_some()
    );
    assert!(
        trunks
            .by_tls_addr(&"192.0.2.9:5061".parse().unwrap())
            .is_none()
    );
    // a tls_ca_file is read when the trunk is set
    let dir = std::env::temp_dir().join(format!("trunk-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (missing, junk) = (dir.join("missing.pem"), dir.join("junk.pem"));
    std::fs::write(&junk, "not a certificate").unwrap();
    for (file, says) in [(&missing, "No such file"), (&junk, "no certificate")] {
        let c = tls(serde_json::json!({"tls_ca_file": file})).unwrap();
        let Err(err) = trunks.put(c) else {
            panic!("{} accepted", file.display())
        };
        let want = format!("tls_ca_file: {}: ", file.display());
        assert!(err.starts_with(&want) && err.contains(says), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validation_names_the_field() {
    for bad in [
        "not a host",
        "sip.example.com:99999",
        "sip.example.com:0",
        "sip..example.com",
        "-sip.example.com",
        "300.1.2.3",
        "a:b:c",
        "",
    ] {
        let err = trunk(bad).validate().unwrap_err();
        assert!(err.starts_with("host:"), "{bad:?}: {err}");
    }
    let mut t = trunk("127.0.0.1");
    assert_eq!(
        t.host_port().unwrap(),
        HostPort {
            host: Host::Ip("127.0.0.1".parse().unwrap()),
            port: 5060,
            port_given: false
        }
    );
    t.transport = "sctp".into();
    assert!(t.validate().unwrap_err().starts_with("transport:"));
    t = trunk("127.0.0.1");
    t.register = true;
    t.password = None;
    assert!(t.validate().unwrap_err().starts_with("register:"));
    t = trunk("127.0.0.1");
    t.name = "a b".into();
    assert!(t.validate().unwrap_err().starts_with("name:"));
}

#[test]
fn source_matching_uses_the_port_when_given_and_the_inbound_transport() {
    use TransportKind::{Tcp, Udp};
    let trunks = Trunks::default();
    trunks.put(trunk("127.0.0.1:5090")).unwrap();
    let mut any_port = trunk("127.0.0.2");
    any_port.name = "other".into();
    trunks.put(any_port).unwrap();
    let mut tcp_only = trunk("127.0.0.3:5060");
    tcp_only.name = "tcp-only".into();
    tcp_only.inbound_transport = InboundTransport::Tcp;
    trunks.put(tcp_only).unwrap();
    // (source, transport, trunk)
    for (source, transport, want) in [
        ("127.0.0.1:5090", Udp, Some("provider")),
        ("127.0.0.1:5091", Udp, None),
        // a connection comes from an ephemeral port
        ("127.0.0.1:40000", Tcp, Some("provider")),
        ("127.0.0.2:40000", Udp, Some("other")),
        ("127.0.0.2:40000", Tcp, Some("other")),
        // inbound_transport tcp: UDP from the address is not the trunk
        ("127.0.0.3:5060", Udp, None),
        ("127.0.0.3:5060", Tcp, Some("tcp-only")),
        ("127.0.0.3:41000", Tcp, Some("tcp-only")),
        ("127.0.0.4:5060", Udp, None),
    ] {
        assert_eq!(
            trunks
                .by_source(&source.parse().unwrap(), transport)
                .map(|t| t.config.name.clone())
                .as_deref(),
            want,
            "{source} over {transport}"
        );
    }
}

#[test]
fn inbound_digest_stores_ha1s_only() {
    let mut c: TrunkConfig = serde_json::from_value(serde_json::json!({
        "name": "p", "host": "127.0.0.1", "inbound_auth": "digest",
        "inbound_username": "in", "inbound_password": "in-secret"
    }))
    .unwrap();
    assert!(c.validate().unwrap_err().starts_with("inbound_password:"));
    c.seal("switchboard");
    c.validate().unwrap();
    assert_eq!(c.inbound_password, None);
    let h = c.inbound_ha1.clone().unwrap();
    assert_eq!(h.md5, ha1(Algorithm::Md5, "in", "switchboard", "in-secret"));
    // the API shows neither password nor HA1s...
    let shown = serde_json::to_value(&c).unwrap();
    assert!(shown.get("inbound_password").is_none(), "{shown}");
    assert!(shown.get("inbound_ha1").is_none(), "{shown}");
    assert_eq!(shown["inbound_auth"], "digest");
    // ...the file keeps the HA1s, not the password
    let dir = std::env::temp_dir().join(format!("sb-trunks-{}", rand::random::<u32>()));
    let path = dir.join("trunks.json");
    let trunks = Trunks::default();
    trunks.put(c).unwrap();
    trunks.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&h.sha256) && !text.contains("in-secret"),
        "{text}"
    );
    let back = Trunks::load(&path, |_| None).unwrap();
    let t = back.get("p").unwrap();
    assert_eq!(t.inbound_secret("in", "switchboard"), Some(h));
    assert_eq!(t.inbound_secret("other", "switchboard"), None);
    assert_eq!(t.inbound_secret("in", "example.com"), None, "other realm");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inbound_fields_are_validated() {
    let base = serde_json::json!({"name": "p", "host": "127.0.0.1"});
    // (extra fields, error prefix)
    for (extra, err) in [
        (
            serde_json::json!({"inbound_auth": "digest"}),
            "inbound_username:",
        ),
        (
            serde_json::json!({"inbound_auth": "digest", "inbound_username": "u"}),
            "inbound_password:",
        ),
        (
            serde_json::json!({"inbound_username": "u"}),
            "inbound_username:",
        ),
        (
            serde_json::json!({"inbound_auth": "digest", "inbound_username": "u",
                "inbound_ha1": {"realm": "r", "md5": "xyz", "sha256": "00"}}),
            "inbound_ha1:",
        ),
    ] {
        let mut v = base.clone();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        let c: TrunkConfig = serde_json::from_value(v).unwrap();
        assert!(c.validate().unwrap_err().starts_with(err), "{extra}");
    }
    let bad: Result<TrunkConfig, _> = serde_json::from_value(
        serde_json::json!({"name": "p", "host": "127.0.0.1", "inbound_transport": "udp"}),
    );
    assert!(bad.is_err(), "inbound_transport is any or tcp");
}

#[test]
fn passwords_are_not_serialized_for_the_api() {
    let t = trunk("127.0.0.1");
    let v = serde_json::to_value(&t).unwrap();
    assert!(v.get("password").is_none(), "{v}");
}

#[test]
fn backoff_doubles_to_five_minutes() {
    assert_eq!(backoff(0), Duration::from_secs(5));
    assert_eq!(backoff(1), Duration::from_secs(10));
    assert_eq!(backoff(10), Duration::from_secs(300));
}

#[test]
fn a_host_may_be_a_name_with_or_without_a_port() {
    let name = |n: &str, port, port_given| HostPort {
        host: Host::Name(n.to_owned()),
        port,
        port_given,
    };
    for (host, want) in [
        (
            "sip.provider.example",
            name("sip.provider.example", 5060, false),
        ),
        (
            "SIP.Provider.example:5070",
            name("sip.provider.example", 5070, true),
        ),
        ("localhost", name("localhost", 5060, false)),
        (
            "[::1]:5080",
            HostPort {
                host: Host::Ip("::1".parse().unwrap()),
                port: 5080,
                port_given: true,
            },
        ),
    ] {
        assert_eq!(trunk(host).host_port(), Ok(want), "{host}");
    }
    // URIs carry the name (with the port when written); no address until
    // it resolves, which the status says
    assert_eq!(
        trunk("sip.provider.example").domain(),
        "sip.provider.example"
    );
    assert_eq!(
        trunk("sip.provider.example:5070").domain(),
        "sip.provider.example:5070"
    );
    assert_eq!(trunk("127.0.0.1").domain(), "127.0.0.1:5060");
    let trunks = Trunks::default();
    let (t, _) = trunks.put(trunk("sip.provider.example:5070")).unwrap();
    assert!(t.is_name() && t.addrs().is_empty());
    let st = t.status();
    assert!(
        st.resolve_error
            .unwrap()
            .starts_with("host: sip.provider.example")
    );
}

#[test]
fn calls_come_from_any_address_a_name_resolved_to() {
    use TransportKind::{Tcp, Udp};
    let trunks = Trunks::default();
    let (t, _) = trunks.put(trunk("sip.provider.example:5070")).unwrap();
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    *t.addrs.write().unwrap() = vec![a("192.0.2.1:5070"), a("192.0.2.2:5070")];
    let (any_port, _) = trunks
        .put(TrunkConfig {
            name: "other".into(),
            ..trunk("other.provider.example")
        })
        .unwrap();
    *any_port.addrs.write().unwrap() = vec![a("192.0.2.3:5060")];
    for (source, transport, want) in [
        ("192.0.2.1:5070", Udp, Some("provider")),
        ("192.0.2.2:5070", Udp, Some("provider")),
        // the port is the host's
        ("192.0.2.2:5071", Udp, None),
        ("192.0.2.2:41000", Tcp, Some("provider")),
        // no port written: any port of its address
        ("192.0.2.3:5999", Udp, Some("other")),
        ("192.0.2.4:5070", Udp, None),
    ] {
        assert_eq!(
            trunks
                .by_source(&a(source), transport)
                .map(|t| t.config.name.clone())
                .as_deref(),
            want,
            "{source} over {transport}"
        );
    }
    // requests go to the first address a local socket fits
    let picked = t.pick(|r| r.ip().to_string().ends_with(".2").then_some(()));
    assert_eq!(picked.map(|p| p.0), Some(a("192.0.2.2:5070")));
}

#[tokio::test]
async fn localhost_resolves_through_the_system_resolver() {
    let trunks = Trunks::default();
    let (t, _) = trunks.put(trunk("localhost:5999")).unwrap();
    t.resolve().await;
    let st = t.status();
    assert_eq!(st.resolve_error, None);
    assert!(
        st.addresses
            .iter()
            .any(|a| a.ip().is_loopback() && a.port() == 5999),
        "{st:?}"
    );
    // in the background too (a call that found no address)
    let (later, _) = trunks
        .put(TrunkConfig {
            name: "later".into(),
            ..trunk("localhost")
        })
        .unwrap();
    later.resolve_soon();
    for _ in 0..100 {
        if !later.addrs().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(later.has_addr(|a| a.port() == 5060), "{:?}", later.status());
}
