use super::*;
use serde_json::json;

fn ok(v: Value) -> CallRequest {
    CallRequest::from_json(&v).expect("valid")
}

fn err(v: Value) -> Vec<FieldError> {
    CallRequest::from_json(&v).expect_err("invalid")
}

#[test]
fn the_minimal_request_takes_sipstuffs_defaults() {
    let r = ok(json!({"dest": "+4912345", "text": "Hello world"}));
    assert_eq!(
        r,
        CallRequest {
            dest: "+4912345".into(),
            text: Some("Hello world".into()),
            ..CallRequest::default()
        }
    );
    assert_eq!((r.timeout, r.repeat), (60, 1));
    assert_eq!((r.pre_delay, r.inter_delay, r.post_delay), (0.0, 0.0, 0.0));
    assert!(!r.transcribe && !r.verbose);
}

#[test]
fn lax_coercions_are_pydantics() {
    let r = ok(json!({
        "dest": "1", "wav": "/a.wav", "timeout": 5.0, "repeat": "3", "sip_port": " 5061 ",
        "pre_delay": 2, "post_delay": "1.5", "inter_delay": 0.25, "wait_for_silence": "0",
        "verbose": "yes", "transcribe": 0, "ice_enabled": "off", "sip_tls_verify": 1,
        "keepalive_sec": "0", "tts_sample_rate": 48000,
    }));
    assert_eq!((r.timeout, r.repeat, r.sip_port), (5, 3, Some(5061)));
    assert_eq!((r.pre_delay, r.post_delay, r.inter_delay), (2.0, 1.5, 0.25));
    assert_eq!(r.wait_for_silence, Some(0.0));
    assert!(r.verbose && !r.transcribe);
    assert_eq!((r.ice_enabled, r.sip_tls_verify), (Some(false), Some(true)));
    assert_eq!((r.keepalive_sec, r.tts_sample_rate), (Some(0), Some(48000)));
}

#[test]
fn null_is_not_given_for_optional_fields_and_an_error_for_defaults() {
    let r = ok(
        json!({"dest": "1", "text": "t", "wav": null, "sip_port": null,
                      "node_selector": null, "wait_for_silence": null}),
    );
    assert_eq!((r.wav, r.sip_port, r.node_selector), (None, None, None));
    for f in [
        "timeout",
        "repeat",
        "pre_delay",
        "transcribe",
        "verbose",
        "dest",
    ] {
        let mut v = json!({"dest": "1", "text": "t"});
        v[f] = Value::Null;
        let e = err(v);
        assert_eq!(e.len(), 1, "{f}: {e:?}");
        assert_eq!(e[0].field(), f);
    }
}

#[test]
fn an_empty_text_counts_as_not_given() {
    let r = ok(json!({"dest": "1", "text": "", "wav": "/x.wav"}));
    assert_eq!(r.wav.as_deref(), Some("/x.wav"));
    let e = err(json!({"dest": "1", "text": ""}));
    assert_eq!(e[0].field(), "text");
}

#[test]
fn every_error_is_reported_at_once() {
    let e = err(json!({"text": 5, "sip_port": 0, "colour": "red"}));
    let fields: Vec<&str> = e.iter().map(FieldError::field).collect();
    assert_eq!(fields, ["colour", "dest", "text", "sip_port"]);
    assert_eq!(e[0].kind, "extra_forbidden");
    assert_eq!(e[1].kind, "missing");
}

#[test]
fn node_selector_values_must_be_strings() {
    let e = err(json!({"dest": "1", "text": "t", "node_selector": {"zone": 1}}));
    assert_eq!(
        e[0].loc,
        vec![json!("body"), json!("node_selector"), json!("zone")]
    );
    let r = ok(json!({"dest": "1", "text": "t", "node_selector": {}}));
    assert_eq!(r.node_selector, Some(BTreeMap::new()));
}

#[test]
fn huge_integers_are_out_of_range() {
    for v in [json!(u64::MAX), json!(1e300), json!(-1e300)] {
        let e = err(json!({"dest": "1", "text": "t", "sip_port": v}));
        assert!(
            ["less_than_equal", "greater_than_equal"].contains(&e[0].kind.as_str()),
            "{e:?}"
        );
    }
}
