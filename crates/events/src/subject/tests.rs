use super::*;

/// Bytes that must never appear in an escaped token.
fn is_metachar(c: char) -> bool {
    matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control() || !c.is_ascii()
}

#[test]
fn escape_table() {
    let cases: &[(&str, &str)] = &[
        (
            "5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f",
            "5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f",
        ),
        ("sip:alice@example.com", "sip:alice@example%2Ecom"),
        ("rtpmanager-0", "rtpmanager-0"),
        ("", "%"),
        ("a.b.c", "a%2Eb%2Ec"),
        ("*", "%2A"),
        (">", "%3E"),
        ("100%", "100%25"),
        ("%2E", "%252E"),
        ("a b", "a%20b"),
        ("tab\there", "tab%09here"),
        ("line\r\n", "line%0D%0A"),
        ("nul\0", "nul%00"),
        ("del\x7f", "del%7F"),
        ("müller", "m%C3%BCller"),
        ("☎", "%E2%98%8E"),
        (
            "sip:+4930123@trunk;user=phone",
            "sip:+4930123@trunk;user=phone",
        ),
    ];
    for (id, token) in cases {
        assert_eq!(escape_token(id), *token, "escape {id:?}");
        assert_eq!(
            unescape_token(token).as_deref(),
            Ok(*id),
            "unescape {token:?}"
        );
    }
}

#[test]
fn escaped_tokens_never_hold_a_metacharacter_and_round_trip() {
    // every single char of interest, and mixes of them
    let mut ids: Vec<String> = (0u32..0x250)
        .filter_map(char::from_u32)
        .map(|c| c.to_string())
        .collect();
    ids.extend(
        [
            "sip:bob@10.0.0.1:5060;transport=tcp",
            "a..b",
            ".",
            "..",
            "%",
            "%%",
            "%zz",
            " leading",
            "trailing ",
            "日本語.テスト",
            "emoji 😀.x",
            "\u{2028}",
            "\u{a0}nbsp",
        ]
        .map(String::from),
    );
    for id in &ids {
        let token = escape_token(id);
        assert!(!token.is_empty(), "{id:?}");
        assert!(
            !token.chars().any(is_metachar),
            "escaped {id:?} as {token:?}"
        );
        assert_eq!(unescape_token(&token).as_ref(), Ok(id), "round trip {id:?}");
    }
}

#[test]
fn unescape_accepts_only_canonical_tokens() {
    for bad in [
        "",       // empty token
        "a.b",    // separator
        "a*",     // wildcard
        "a>",     // wildcard
        "a b",    // space
        "ü",      // raw non-ASCII
        "%2",     // truncated
        "a%",     // truncated
        "%2e",    // lowercase hex
        "%zz",    // not hex
        "%41",    // needless escape of 'A'
        "%C3",    // decodes to invalid UTF-8
        "%FF%FE", // invalid UTF-8
    ] {
        assert!(unescape_token(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn subjects_are_built_and_parsed_back() {
    let cases: &[(Verb, &str, &str)] = &[
        (
            Verb::Call(CallVerb::Answered),
            "5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f",
            "switchboard.calls.5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f.answered",
        ),
        (
            Verb::Call(CallVerb::Received),
            "u1",
            "switchboard.calls.u1.received",
        ),
        (
            Verb::Call(CallVerb::Ringing),
            "u1",
            "switchboard.calls.u1.ringing",
        ),
        (
            Verb::Call(CallVerb::Ended),
            "u1",
            "switchboard.calls.u1.ended",
        ),
        (
            Verb::Registration(RegistrationVerb::Registered),
            "sip:alice@example.com",
            "switchboard.registrations.sip:alice@example%2Ecom.registered",
        ),
        (
            Verb::Registration(RegistrationVerb::Refreshed),
            "sip:a@b",
            "switchboard.registrations.sip:a@b.refreshed",
        ),
        (
            Verb::Registration(RegistrationVerb::Unregistered),
            "sip:a@b",
            "switchboard.registrations.sip:a@b.unregistered",
        ),
        (
            Verb::Registration(RegistrationVerb::Expired),
            "sip:a@b",
            "switchboard.registrations.sip:a@b.expired",
        ),
        (
            Verb::Session(SessionVerb::Created),
            "s-9",
            "switchboard.sessions.s-9.created",
        ),
        (
            Verb::Session(SessionVerb::Dtmf),
            "s-9",
            "switchboard.sessions.s-9.dtmf",
        ),
        (
            Verb::Session(SessionVerb::Timeout),
            "s-9",
            "switchboard.sessions.s-9.timeout",
        ),
        (
            Verb::Session(SessionVerb::Destroyed),
            "s-9",
            "switchboard.sessions.s-9.destroyed",
        ),
        (
            Verb::RtpManager(RtpManagerVerb::Up),
            "rtpmanager-0",
            "switchboard.rtpmanagers.rtpmanager-0.up",
        ),
        (
            Verb::RtpManager(RtpManagerVerb::Down),
            "rtpmanager-1",
            "switchboard.rtpmanagers.rtpmanager-1.down",
        ),
        (
            Verb::RtpManager(RtpManagerVerb::Draining),
            "rtp.mgr",
            "switchboard.rtpmanagers.rtp%2Emgr.draining",
        ),
    ];
    for (verb, id, want) in cases {
        let got = subject(DEFAULT_ROOT, *verb, id);
        assert_eq!(&got, want);
        assert_eq!(
            parse_subject(DEFAULT_ROOT, &got),
            Ok(SubjectParts {
                id: (*id).to_owned(),
                verb: *verb
            })
        );
    }
    assert_eq!(
        subject("t42.switchboard", Verb::Call(CallVerb::Ended), "x"),
        "t42.switchboard.calls.x.ended"
    );
}

#[test]
fn every_verb_round_trips_through_tokens_and_type_names() {
    let mut all: Vec<Verb> = Vec::new();
    all.extend(CallVerb::ALL.iter().map(|v| Verb::Call(*v)));
    all.extend(RegistrationVerb::ALL.iter().map(|v| Verb::Registration(*v)));
    all.extend(SessionVerb::ALL.iter().map(|v| Verb::Session(*v)));
    all.extend(RtpManagerVerb::ALL.iter().map(|v| Verb::RtpManager(*v)));
    assert_eq!(all.len(), 4 + 4 + 4 + 3);
    for verb in all {
        assert_eq!(Verb::from_token(verb.family(), verb.token()), Some(verb));
        assert_eq!(Verb::from_type_name(&verb.type_name()), Some(verb));
        assert_eq!(verb.to_string(), verb.type_name());
    }
    assert_eq!(Verb::Call(CallVerb::Answered).type_name(), "call.answered");
    assert_eq!(
        Verb::RtpManager(RtpManagerVerb::Draining).type_name(),
        "rtpmanager.draining"
    );
    assert_eq!(Verb::from_type_name("call.expired"), None);
    assert_eq!(Verb::from_type_name("calls.ended"), None);
    assert_eq!(Verb::from_type_name("call"), None);
}

#[test]
fn bad_subjects_are_refused() {
    for bad in [
        "other.calls.u.ended",
        "switchboard",
        "switchboard.calls.u",
        "switchboard.calls.u.ended.more",
        "switchboard.call.u.ended",
        "switchboard.calls.u.expired",
        "switchboard.calls.a%2e.ended",
        "switchboardx.calls.u.ended",
    ] {
        assert!(parse_subject(DEFAULT_ROOT, bad).is_err(), "{bad}");
    }
}

#[test]
fn family_wildcards_and_roots() {
    let subjects: Vec<String> = Family::ALL
        .iter()
        .map(|f| f.wildcard("switchboard"))
        .collect();
    assert_eq!(
        subjects,
        [
            "switchboard.calls.>",
            "switchboard.registrations.>",
            "switchboard.sessions.>",
            "switchboard.rtpmanagers.>"
        ]
    );
    for ok in ["switchboard", "t1a2b.switchboard", "a-b_c"] {
        assert!(valid_root(ok), "{ok}");
    }
    for bad in ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "a\n"] {
        assert!(!valid_root(bad), "{bad:?}");
    }
}
