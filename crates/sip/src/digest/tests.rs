use super::*;

#[test]
fn rfc2617_example() {
    let creds = Credentials::parse(
        "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n response=\"6629fae49393a05397450978507c4ef1\",\r\n opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    let h = ha1(
        Algorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    assert_eq!(
        expected_response(&creds, "GET", &h),
        "6629fae49393a05397450978507c4ef1"
    );
    assert!(verify(&creds, "GET", &h));
}

#[test]
fn rfc7616_examples() {
    // RFC 7616 §3.9.1: (algorithm, expected response)
    for (alg, want) in [
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let challenge = Challenge {
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            algorithm: alg,
            qop_auth: true,
            stale: false,
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS".into()),
        };
        let creds = respond(
            &challenge,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert_eq!(creds.response, want, "{alg:?}");
        // Through the wire format and back.
        let parsed = Credentials::parse(&creds.to_header_value()).unwrap();
        assert_eq!(parsed, creds);
        let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        assert!(verify(&parsed, "GET", &h));
    }
}

#[test]
fn round_trips_and_failures() {
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        for qop_auth in [true, false] {
            let ch = Challenge {
                realm: "example.com".into(),
                nonce: "abc".into(),
                algorithm: alg,
                qop_auth,
                stale: true,
                opaque: None,
            };
            let ch2 = Challenge::parse(&ch.to_header_value()).unwrap();
            assert_eq!(ch2, ch);
            let creds = respond(
                &ch2,
                "REGISTER",
                "sip:example.com",
                "alice",
                "s3cret",
                "c0ffee",
                7,
            );
            let h = ha1(alg, "alice", "example.com", "s3cret");
            assert!(verify(&creds, "REGISTER", &h));
            let wrong = ha1(alg, "alice", "example.com", "guess");
            assert!(!verify(&creds, "REGISTER", &wrong));
            assert!(!verify(&creds, "INVITE", &h));
            let mut tampered = creds.clone();
            tampered.uri = "sip:evil.example.com".into();
            assert!(!verify(&tampered, "REGISTER", &h));
            let mut upper = creds.clone();
            upper.response = upper.response.to_ascii_uppercase();
            assert!(verify(&upper, "REGISTER", &h));
            if qop_auth {
                let mut nc = creds.clone();
                nc.nc = Some(8);
                assert!(!verify(&nc, "REGISTER", &h));
                let mut int = creds.clone();
                int.qop = Some("auth-int".into());
                assert!(!verify(&int, "REGISTER", &h));
            }
        }
    }
}

#[test]
fn algorithm_names() {
    for (s, want) in [
        ("MD5", Ok(Algorithm::Md5)),
        ("md5", Ok(Algorithm::Md5)),
        ("SHA-256", Ok(Algorithm::Sha256)),
        ("SHA256", Ok(Algorithm::Sha256)),
        ("sha-256", Ok(Algorithm::Sha256)),
        ("MD5-sess", Err(DigestError::UnsupportedAlgorithm)),
        ("SHA-512-256", Err(DigestError::UnsupportedAlgorithm)),
    ] {
        assert_eq!(Algorithm::parse(s), want, "{s}");
    }
    assert_eq!(Algorithm::Sha256.name(), "SHA-256");
    assert_eq!("sha-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
    assert_eq!(
        Algorithm::Md5.hash_hex(b""),
        "d41d8cd98f00b204e9800998ecf8427e"
    );
}

#[test]
fn parsing_is_robust() {
    let c = Credentials::parse("digest   response=ABCDEF ,username=bob,realm=\"r\",nonce=n,  uri=\"sip:a\\\"b\"  ,, algorithm=sha-256,qop=auth,nc=0000000a,cnonce=x").unwrap();
    assert_eq!(c.username, "bob");
    assert_eq!(c.uri, "sip:a\"b");
    assert_eq!(c.nc, Some(10));
    assert_eq!(c.algorithm, Algorithm::Sha256);
    let bad: &[(&str, DigestError)] = &[
        (
            "NoOneKnowsThisScheme opaque-data=here",
            DigestError::NotDigest,
        ),
        ("Basic dXNlcjpwYXNz", DigestError::NotDigest),
        ("Digestusername=\"a\"", DigestError::NotDigest),
        (
            "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"",
            DigestError::Missing("response"),
        ),
        (
            "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth",
            DigestError::Missing("nc/cnonce with qop"),
        ),
        (
            "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", nc=1, qop=auth, cnonce=c",
            DigestError::Malformed("nc is not 8 hex digits"),
        ),
        (
            "Digest username=\"a\", username=\"b\"",
            DigestError::Malformed("duplicate parameter"),
        ),
        (
            "Digest username=\"a",
            DigestError::Malformed("unterminated quoted value"),
        ),
        (
            "Digest username",
            DigestError::Malformed("parameter without '='"),
        ),
        (
            "Digest username=a b=c",
            DigestError::Malformed("expected ','"),
        ),
    ];
    for (input, want) in bad {
        assert_eq!(Credentials::parse(input).unwrap_err(), *want, "{input}");
    }
    let ch = Challenge::parse("Digest realm=\"atlanta.com\", domain=\"sip:ss1.carrier.com\", qop=\"auth,auth-int\", nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=MD5").unwrap();
    assert!(ch.qop_auth);
    assert!(!ch.stale);
    assert_eq!(ch.opaque.as_deref(), Some(""));
    assert_eq!(
        Challenge {
            realm: "r".into(),
            nonce: "n".into(),
            algorithm: Algorithm::Sha256,
            qop_auth: true,
            stale: true,
            opaque: Some("o".into())
        }
        .to_header_value(),
        "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\", stale=true, opaque=\"o\""
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn nonces() {
    let issuer = NonceIssuer::new([7u8; 32], 300);
    let me = ip("192.0.2.10");
    let n = issuer.issue(1_000_000, me);
    assert_eq!(n.len(), 64);
    assert_ne!(n, issuer.issue(1_000_000, me));
    let mut flipped = n.clone().into_bytes();
    flipped[40] = if flipped[40] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other = NonceIssuer::new([8u8; 32], 300).issue(1_000_000, me);
    // (nonce, now, presented from, expected)
    let cases: Vec<(&str, u64, &str, NonceStatus)> = vec![
        (&n, 1_000_000, "192.0.2.10", NonceStatus::Valid),
        (&n, 1_000_300, "192.0.2.10", NonceStatus::Valid),
        (&n, 1_000_301, "192.0.2.10", NonceStatus::Stale),
        (&n, 999_000, "192.0.2.10", NonceStatus::Valid),
        (&n, 1_000_000, "::ffff:192.0.2.10", NonceStatus::Valid),
        // issued to another address: useless from here, even when stale
        (&n, 1_000_000, "192.0.2.11", NonceStatus::Invalid),
        (&n, 1_000_301, "192.0.2.11", NonceStatus::Invalid),
        (&n, 1_000_000, "2001:db8::1", NonceStatus::Invalid),
        (&flipped, 1_000_000, "192.0.2.10", NonceStatus::Invalid),
        (&other, 1_000_000, "192.0.2.10", NonceStatus::Invalid),
        ("", 1_000_000, "192.0.2.10", NonceStatus::Invalid),
        ("zz", 1_000_000, "192.0.2.10", NonceStatus::Invalid),
        (&n[..63], 1_000_000, "192.0.2.10", NonceStatus::Invalid),
    ];
    for (nonce, now, from, want) in cases {
        assert_eq!(
            issuer.check(nonce, now, ip(from)),
            want,
            "{nonce} at {now} from {from}"
        );
    }
    let non_ascii = "é".repeat(32);
    assert_eq!(
        issuer.check(&non_ascii, 1_000_000, me),
        NonceStatus::Invalid
    );
    assert!(!format!("{issuer:?}").contains('7'));
}

#[test]
fn ipv6_nonces_are_bound_to_the_64() {
    let issuer = NonceIssuer::new([7u8; 32], 300);
    let n = issuer.issue(1_000_000, ip("2001:db8:1:2:aaaa::1"));
    // (presented from, expected)
    for (from, want) in [
        ("2001:db8:1:2:aaaa::1", NonceStatus::Valid),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", NonceStatus::Valid),
        ("2001:db8:1:2::", NonceStatus::Valid),
        ("2001:db8:1:3::1", NonceStatus::Invalid),
        ("2001:db8:1::1", NonceStatus::Invalid),
        ("192.0.2.10", NonceStatus::Invalid),
    ] {
        assert_eq!(issuer.check(&n, 1_000_000, ip(from)), want, "{from}");
    }
}

#[test]
fn source_prefixes() {
    for (addr, prefix) in [
        ("192.0.2.10", "192.0.2.10"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("::1", "::"),
        ("fe80::1:2", "fe80::"),
    ] {
        assert_eq!(source_prefix(ip(addr)), ip(prefix), "{addr}");
    }
}

#[test]
fn digest_uri_must_name_the_request_uri() {
    // (digest uri, Request-URI, matches)
    let table: &[(&str, &str, bool)] = &[
        ("sip:example.com", "sip:example.com", true),
        ("sip:EXAMPLE.com", "sip:example.com", true),
        // tolerated: a port or a transport in one of them only
        ("sip:192.0.2.1", "sip:192.0.2.1:5060", true),
        ("sip:192.0.2.1:5060", "sip:192.0.2.1", true),
        ("sip:192.0.2.1:5070", "sip:192.0.2.1", true),
        ("sip:example.com", "sip:example.com;transport=tcp", true),
        (
            "sip:example.com;transport=TCP",
            "sip:example.com;transport=tcp",
            true,
        ),
        (
            "sip:1002@example.com",
            "sip:1002@example.com:5060;transport=udp",
            true,
        ),
        // parameters in one only that §19.1.4 ignores
        ("sip:example.com;lr", "sip:example.com", true),
        // mismatches: another target
        ("sip:evil.example.com", "sip:example.com", false),
        ("sip:1003@example.com", "sip:1002@example.com", false),
        ("sip:example.com", "sip:1002@example.com", false),
        ("sips:example.com", "sip:example.com", false),
        ("sip:192.0.2.1:5070", "sip:192.0.2.1:5060", false),
        (
            "sip:example.com;transport=udp",
            "sip:example.com;transport=tcp",
            false,
        ),
        ("sip:example.com;maddr=192.0.2.9", "sip:example.com", false),
        ("sip:example.com;user=phone", "sip:example.com", false),
        ("sip:h?Route=%3Csip:x%3E", "sip:h", false),
        ("/dir/index.html", "sip:example.com", false),
        ("", "sip:example.com", false),
        ("*", "sip:example.com", false),
        ("tel:+15551234", "sip:+15551234@example.com", false),
    ];
    for (digest, request, want) in table {
        let request_uri = Uri::parse(request).unwrap();
        assert_eq!(
            uri_matches(digest, &request_uri),
            *want,
            "{digest} vs {request}"
        );
    }
}

#[test]
fn replay_guard() {
    use Replay::{Forgotten, Fresh, Replayed};
    let mut g = ReplayGuard::new(100, 3);
    // (nonce, nc, issued, now, expected)
    let steps: &[(&str, Option<u32>, u64, u64, Replay)] = &[
        ("a", Some(1), 0, 0, Fresh),
        ("a", Some(1), 0, 1, Replayed),
        ("a", Some(3), 0, 2, Fresh),
        ("a", Some(2), 0, 3, Replayed),
        ("a", None, 0, 3, Replayed),
        ("b", None, 3, 4, Fresh),
        ("b", None, 3, 5, Replayed),
        ("b", Some(1), 3, 5, Replayed),
        ("c", Some(0), 5, 5, Replayed),
        ("c", Some(1), 5, 6, Fresh),
        // full (a, b, c): a, first seen at 0, is evicted for d
        ("d", Some(1), 7, 7, Fresh),
        // a was issued before the horizon: it may be a replay
        ("a", Some(4), 0, 8, Forgotten),
        // b, c, d are still known
        ("b", None, 3, 8, Replayed),
        ("d", Some(2), 7, 8, Fresh),
        // a fresh nonce still works when full (b is evicted)
        ("e", Some(1), 8, 9, Fresh),
        ("b", None, 3, 9, Forgotten),
        ("e", Some(1), 8, 10, Replayed),
    ];
    for (i, (nonce, nc, issued, now, want)) in steps.iter().enumerate() {
        assert_eq!(
            g.check_and_record(nonce, *nc, *issued, *now),
            *want,
            "step {i}"
        );
    }
    assert_eq!(g.len(), 3);
    // everything expires a lifetime after it was first seen
    assert_eq!(g.check_and_record("f", Some(1), 200, 200), Fresh);
    assert_eq!(g.len(), 1);
}

#[test]
fn issued_at_reads_the_timestamp() {
    let issuer = NonceIssuer::new([7; 32], 300);
    let nonce = issuer.issue(1_700_000_123, ip("192.0.2.10"));
    assert_eq!(NonceIssuer::issued_at(&nonce), Some(1_700_000_123));
    assert_eq!(NonceIssuer::issued_at("xyz"), None);
}
