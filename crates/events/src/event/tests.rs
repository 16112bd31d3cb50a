use serde_json::json;

use super::*;

fn sample_events() -> Vec<Event> {
    let mut answered = Event::call(
        CallVerb::Answered,
        CallEvent {
            call_uuid: "5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f".into(),
            legs: vec![
                Leg {
                    sip_call_id: "a84b4c76e66710@pc33".into(),
                    side: Side::A,
                },
                Leg {
                    sip_call_id: "sb-b-1".into(),
                    side: Side::B,
                },
            ],
            caller: Some("1001".into()),
            callee: Some("1002".into()),
            status: Some(200),
            ..Default::default()
        },
    );
    answered.node = "sig-0".into();
    answered.ts = 1_718_000_000_000;
    vec![
        answered,
        Event::registration(
            RegistrationVerb::Registered,
            RegistrationEvent {
                aor: "sip:alice@example.com".into(),
                contact: "<sip:alice@192.0.2.4:5062>".into(),
                expires: 3600,
                source: Some("udp:192.0.2.4:5062".into()),
                user_agent: None,
            },
        ),
        Event::session(
            SessionVerb::Dtmf,
            SessionEvent {
                session_id: "s-17".into(),
                call_uuid: Some("u-1".into()),
                rtpmanager: Some("rtpmanager-0".into()),
                digit: Some("#".into()),
                duration_ms: Some(120),
            },
        ),
        Event::rtpmanager(
            RtpManagerVerb::Draining,
            RtpManagerEvent {
                name: "rtpmanager-1".into(),
                address: "10.0.0.7:9091".into(),
            },
        ),
    ]
}

#[test]
fn payloads_have_the_documented_shape() {
    let events = sample_events();
    let answered: Value = serde_json::from_slice(&events[0].to_json()).unwrap();
    assert_eq!(
        answered,
        json!({
            "version": 1,
            "type": "call.answered",
            "node": "sig-0",
            "ts": 1_718_000_000_000i64,
            "call_uuid": "5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f",
            "legs": [
                {"sip_call_id": "a84b4c76e66710@pc33", "side": "a"},
                {"sip_call_id": "sb-b-1", "side": "b"}
            ],
            "caller": "1001",
            "callee": "1002",
            "status": 200
        })
    );
    let reg: Value = serde_json::from_slice(&events[1].to_json()).unwrap();
    assert_eq!(reg["type"], "registration.registered");
    assert_eq!(reg["aor"], "sip:alice@example.com");
    assert_eq!(reg["contact"], "<sip:alice@192.0.2.4:5062>");
    assert_eq!(reg["expires"], 3600);
    assert!(
        reg.get("user_agent").is_none(),
        "unset options are left out"
    );
    let dtmf: Value = serde_json::from_slice(&events[2].to_json()).unwrap();
    assert_eq!(dtmf["type"], "session.dtmf");
    assert_eq!(dtmf["session_id"], "s-17");
    assert_eq!(dtmf["digit"], "#");
    let rtpm: Value = serde_json::from_slice(&events[3].to_json()).unwrap();
    assert_eq!(rtpm["type"], "rtpmanager.draining");
    assert_eq!(rtpm["name"], "rtpmanager-1");
    assert_eq!(rtpm["address"], "10.0.0.7:9091");
    // "version" comes first, as documented
    let text = String::from_utf8(events[3].to_json()).unwrap();
    assert!(
        text.starts_with(r#"{"version":1,"type":"rtpmanager.draining","#),
        "{text}"
    );
}

#[test]
fn payloads_round_trip() {
    for event in sample_events() {
        let back = Event::from_json(&event.to_json()).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.subject("switchboard"), event.subject("switchboard"));
    }
}

#[test]
fn ids_and_subjects_follow_the_family() {
    let subjects: Vec<String> = sample_events()
        .iter()
        .map(|e| e.subject("switchboard"))
        .collect();
    assert_eq!(
        subjects,
        [
            "switchboard.calls.5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f.answered",
            "switchboard.registrations.sip:alice@example%2Ecom.registered",
            "switchboard.sessions.s-17.dtmf",
            "switchboard.rtpmanagers.rtpmanager-1.draining",
        ]
    );
}

#[test]
fn decoding_ignores_unknown_fields() {
    let payload = json!({
        "version": 1, "type": "rtpmanager.up", "node": "n", "ts": 5,
        "name": "rtpmanager-0", "address": "127.0.0.1:9090",
        "added_in_a_later_release": {"nested": [1, 2]}
    });
    let event = Event::from_json(payload.to_string().as_bytes()).unwrap();
    assert_eq!(event.verb(), Verb::RtpManager(RtpManagerVerb::Up));
    assert_eq!(event.id(), "rtpmanager-0");
    assert_eq!(event.ts, 5);
}

#[test]
fn malformed_payloads_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "EOF"),
        (b"not json", "expected"),
        (b"[1,2,3]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"{}", "missing field"),
        (
            br#"{"version":2,"type":"call.ended","node":"n","ts":1,"call_uuid":"u"}"#,
            "version 2",
        ),
        (
            br#"{"version":1,"type":"call.exploded","node":"n","ts":1,"call_uuid":"u"}"#,
            "unknown event type",
        ),
        (
            br#"{"version":1,"type":"call.ended","node":"n","ts":1}"#,
            "missing field `call_uuid`",
        ),
        (
            br#"{"version":1,"type":"call.ended","node":"n","ts":"soon","call_uuid":"u"}"#,
            "invalid type",
        ),
        (
            br#"{"version":1,"type":"registration.expired","node":"n","ts":1,"aor":"a","contact":"c","expires":-1}"#,
            "registration.expired",
        ),
        (
            br#"{"version":1,"type":"call.ended","node":"n","ts":1,"call_uuid":"u","legs":[{"sip_call_id":"x","side":"c"}]}"#,
            "unknown variant",
        ),
        (
            br#"{"version":1,"type":"call.ended","node":"n","ts":1,"call_uuid":"u""#,
            "EOF",
        ),
    ];
    for (payload, want) in cases {
        let err = Event::from_json(payload).unwrap_err();
        assert!(
            err.contains(want),
            "{}: {err:?} should mention {want:?}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(Event::from_json(deep.as_bytes()).is_err());
    let mut obj = String::from(
        r#"{"version":1,"type":"rtpmanager.up","node":"n","ts":1,"name":"x","address":"y","z":"#,
    );
    obj.push_str(&"[".repeat(10_000));
    assert!(Event::from_json(obj.as_bytes()).is_err());
}

#[test]
fn events_embed_in_other_json() {
    // the spool stores {"id":…,"event":{…}}: Event is a serde value too
    let event = sample_events().remove(1);
    let wrapped = json!({ "id": "x-1", "event": event });
    let back: Event = serde_json::from_value(wrapped["event"].clone()).unwrap();
    assert_eq!(back, event);
    let bad = json!({"version": 1, "type": "nope"});
    assert!(serde_json::from_value::<Event>(bad).is_err());
}
