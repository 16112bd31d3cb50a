use super::*;

fn env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut args = vec!["switchboard-call".to_owned()];
    for (k, v) in pairs {
        args.push(format!("--{k}={v}"));
    }
    Config::try_parse_from(args)
        .expect("flags parse")
        .settings()
}

#[test]
fn a_minimal_call() {
    let s = env(&[
        ("dest", "1002"),
        ("text", "hello"),
        ("sip-server", "192.0.2.10"),
    ])
    .unwrap();
    assert_eq!(s.dest, "1002");
    assert_eq!(s.audio, Audio::Text("hello".into()));
    assert_eq!(
        (s.server_host.as_str(), s.server_port),
        ("192.0.2.10", 5060)
    );
    assert_eq!(s.timeout, Duration::from_secs(60));
    assert_eq!(
        (s.repeat, s.srtp, s.transport),
        (1, SrtpMode::Disabled, TransportKind::Udp)
    );
    assert!(s.tls_verify && !s.transcribe && s.wait_for_silence.is_none());
}

#[test]
fn every_setting() {
    let s = env(&[
        ("dest", "+4912345678"),
        ("wav", "/data/x.wav"),
        ("timeout", "30"),
        ("pre-delay", "1.5"),
        ("inter-delay", "2"),
        ("post-delay", "0.5"),
        ("wait-for-silence", "3"),
        ("repeat", "3"),
        ("sip-server", "pbx.example.com:5071"),
        ("sip-transport", "TLS"),
        ("sip-srtp", "mandatory"),
        ("sip-tls-verify-server", "false"),
        ("record", "call.wav"),
        ("recording-dir", "/data/recordings"),
        ("transcribe", "true"),
        ("keepalive-sec", "30"),
        ("public-address", "203.0.113.5"),
        (
            "stun-servers",
            "stun1.example.com:3478, stun2.example.com:3478",
        ),
    ])
    .unwrap();
    assert_eq!(s.audio, Audio::Wav("/data/x.wav".into()));
    assert_eq!(
        (s.server_host.as_str(), s.server_port),
        ("pbx.example.com", 5071)
    );
    assert_eq!(
        (s.transport, s.srtp, s.tls_verify),
        (TransportKind::Tls, SrtpMode::Mandatory, false)
    );
    assert_eq!(s.pre_delay, Duration::from_millis(1500));
    assert_eq!(s.wait_for_silence, Some(Duration::from_secs(3)));
    assert_eq!(s.record, Some(PathBuf::from("/data/recordings/call.wav")));
    assert_eq!(s.keepalive, Some(Duration::from_secs(30)));
    assert_eq!(s.stun_servers.len(), 2);
    // TLS defaults to 5061; a URI destination names the server
    let s = env(&[
        ("dest", "sip:1002@10.0.0.1"),
        ("text", "x"),
        ("sip-transport", "tls"),
    ])
    .unwrap();
    assert_eq!((s.server_host.as_str(), s.server_port), ("10.0.0.1", 5061));
    // empty values (a blank Secret key) count as unset
    let s = env(&[
        ("dest", "1"),
        ("text", "x"),
        ("sip-server", "h"),
        ("sip-port", ""),
        ("timeout", ""),
    ])
    .unwrap();
    assert_eq!((s.server_port, s.timeout), (5060, Duration::from_secs(60)));
}

#[test]
fn refusals_name_the_variable() {
    let base = [("dest", "1002"), ("text", "x"), ("sip-server", "192.0.2.1")];
    for (extra, var) in [
        (("timeout", "0"), "CALL_TIMEOUT"),
        (("timeout", "601"), "CALL_TIMEOUT"),
        (("pre-delay", "31"), "CALL_PRE_DELAY"),
        (("inter-delay", "-1"), "CALL_INTER_DELAY"),
        (("post-delay", "NaN"), "CALL_POST_DELAY"),
        (("wait-for-silence", "x"), "CALL_WAIT_FOR_SILENCE"),
        (("repeat", "101"), "CALL_REPEAT"),
        (("tts-sample-rate", "48001"), "TTS_SAMPLE_RATE"),
        (("sip-port", "0"), "SIP_PORT"),
        (("sip-port", "65536"), "SIP_PORT"),
        (("sip-transport", "sctp"), "SIP_TRANSPORT"),
        (("sip-srtp", "always"), "SIP_SRTP"),
        (("sip-tls-verify-server", "maybe"), "SIP_TLS_VERIFY_SERVER"),
        (("keepalive-sec", "601"), "SIP_KEEPALIVE_SEC"),
        (("public-address", "pbx"), "SIP_PUBLIC_ADDRESS"),
        (("transcribe", "true"), "CALL_TRANSCRIBE"),
        (("wav", "/x.wav"), "CALL_TEXT/CALL_WAV"),
    ] {
        let mut pairs = base.to_vec();
        pairs.push(extra);
        let e = env(&pairs).unwrap_err();
        assert!(e.0.starts_with(var), "{extra:?}: {e}");
    }
    assert!(
        env(&[("text", "x"), ("sip-server", "h")])
            .unwrap_err()
            .0
            .starts_with("CALL_DEST")
    );
    assert!(
        env(&[("dest", "1"), ("sip-server", "h")])
            .unwrap_err()
            .0
            .starts_with("CALL_TEXT/CALL_WAV")
    );
    assert!(
        env(&[("dest", "1"), ("text", "x")])
            .unwrap_err()
            .0
            .starts_with("SIP_SERVER")
    );
    assert!(
        env(&[("dest", "1"), ("text", "x"), ("sip-server", "bad host")])
            .unwrap_err()
            .0
            .starts_with("SIP_SERVER")
    );
}
