//! Records and error helpers the suite tests share.

use switchboard_store::{Cdr, DEFAULT_ACCOUNT_ID, Error, NewAccount, NewUser, Registration};

pub(crate) const MD5_A: &str = "0123456789abcdef0123456789abcdef";
pub(crate) const SHA_A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub(crate) const MD5_B: &str = "fedcba9876543210fedcba9876543210";
pub(crate) const SHA_B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

pub(crate) fn new_account(name: &str, domain: Option<&str>) -> NewAccount {
    NewAccount {
        name: name.to_owned(),
        domain: domain.map(str::to_owned),
        max_concurrent_calls: 0,
        srtp: None,
    }
}

pub(crate) fn new_user(account_id: i64, username: &str, extension: Option<&str>) -> NewUser {
    NewUser {
        account_id,
        username: username.to_owned(),
        extension: extension.map(str::to_owned),
        display_name: None,
        ha1_md5: MD5_A.to_owned(),
        ha1_sha256: SHA_A.to_owned(),
        enabled: true,
    }
}

pub(crate) fn registration(aor: &str, contact: &str, expires_at: i64) -> Registration {
    Registration {
        aor: aor.to_owned(),
        contact: contact.to_owned(),
        account_id: DEFAULT_ACCOUNT_ID,
        user_id: None,
        received: "udp:192.0.2.10:5060".to_owned(),
        path: None,
        instance_id: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".to_owned()),
        reg_id: Some(1),
        user_agent: Some("test-phone/1.0".to_owned()),
        call_id: format!("reg-{aor}-{contact}"),
        cseq: 1,
        q: Some(0.5),
        expires_at,
        updated_at: 1_000,
    }
}

pub(crate) fn cdr(call_id: &str, n: i64) -> Cdr {
    Cdr {
        id: 0,
        call_id: call_id.to_owned(),
        sip_call_id: Some(format!("sip-{call_id}")),
        account_id: Some(DEFAULT_ACCOUNT_ID),
        caller: if n % 2 == 0 { "alice" } else { "bob" }.to_owned(),
        callee: if n % 3 == 0 { "1001" } else { "1002" }.to_owned(),
        caller_name: Some("Alice".to_owned()),
        source: "udp:192.0.2.10:5060".to_owned(),
        invite_at: 1_000_000 + n * 1_000,
        ring_at: Some(1_000_100 + n * 1_000),
        answer_at: (n % 5 != 0).then_some(1_000_200 + n * 1_000),
        end_at: Some(1_000_900 + n * 1_000),
        ring_ms: Some(100),
        talk_ms: (n % 5 != 0).then_some(700),
        disposition: if n % 5 == 0 { "no_answer" } else { "answered" }.to_owned(),
        hangup_code: (n % 5 == 0).then_some(480),
        hangup_reason: Some("BYE".to_owned()),
        hangup_side: Some("caller".to_owned()),
        route_id: Some(7),
        route: Some("extensions".into()),
        caller_user: Some("alice".into()),
        callee_user: Some("bob".into()),
        node: Some("node-a".to_owned()),
        rtp_sent: Some(100),
        rtp_received: Some(99),
        rtp_lost: Some(1),
        jitter_ms: Some(2.5),
        mos: Some(4.3),
        rtpmanager: Some("rtpengine-1".to_owned()),
        created_at: 0,
    }
}

pub(crate) fn conflict(err: Error) -> String {
    match err {
        Error::Conflict(m) => m,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

pub(crate) fn invalid(err: Error) -> String {
    match err {
        Error::Invalid(m) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}
