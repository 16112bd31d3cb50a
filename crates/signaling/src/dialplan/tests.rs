use super::*;

#[test]
fn glob_table() {
    for (p, t, want) in [
        ("500", "500", true),
        ("500", "5000", false),
        ("1*", "1", true),
        ("1*", "1234", true),
        ("1*", "2134", false),
        ("*500", "9500", true),
        ("*500", "5001", false),
        ("*", "", true),
        ("*", "anything", true),
        ("1?3", "123", true),
        ("1?3", "13", false),
        ("+1*", "+15551234", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
    ] {
        assert_eq!(glob(p, t), want, "{p} vs {t}");
    }
}

const GOOD: &str = r#"{ "version": "1.0",
      "routes": [
        { "id": "internal", "name": "Extensions", "pattern": "1*", "priority": 50,
          "actions": [ { "type": "dial", "params": { "target": "user/${destination}", "timeout": 20 } } ] },
        { "id": "busy", "pattern": "1999", "priority": 10,
          "actions": [ { "type": "hangup", "params": { "reason": "busy" } } ] },
        { "id": "off", "pattern": "*", "priority": 1, "enabled": false,
          "actions": [ { "type": "hangup" } ] },
        { "id": "acct", "pattern": "2*", "priority": 5, "account_id": 7,
          "actions": [ { "type": "set", "params": { "name": "caller_name", "value": "VIP ${caller_name}" } },
                       { "type": "dial", "params": { "targets": ["user/${destination}", "sip:backup@127.0.0.1:5080"] } } ] } ] }"#;

#[test]
fn routes_match_by_priority_account_and_enabled() {
    let d = Dialplan::parse(GOOD).unwrap();
    assert_eq!(d.len(), 3, "the disabled route is not used");
    assert_eq!(d.route("1999", 1).unwrap().id, "busy");
    assert_eq!(d.route("1000", 1).unwrap().id, "internal");
    assert_eq!(d.route("2000", 7).unwrap().id, "acct");
    assert!(d.route("2000", 1).is_none(), "route scoped to account 7");
    assert!(d.route("300", 1).is_none());
    match &d.route("1000", 1).unwrap().actions[0] {
        Action::Dial { targets, timeout } => {
            assert_eq!(targets, &[DialTarget::User("${destination}".into())]);
            assert_eq!(*timeout, Duration::from_secs(20));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.route("1999", 1).unwrap().actions[0],
        Action::Hangup {
            code: 486,
            reason: "Busy Here".into()
        }
    );
    match &d.route("2000", 7).unwrap().actions[1] {
        Action::Dial { targets, timeout } => {
            assert_eq!(targets.len(), 2);
            assert_eq!(
                targets[1],
                DialTarget::Uri("sip:backup@127.0.0.1:5080".into())
            );
            assert_eq!(*timeout, DEFAULT_DIAL_TIMEOUT);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_dialplans_name_the_route_and_reason() {
    let route = |actions: &str| {
        format!(r#"{{"routes":[{{"id":"r1","pattern":"1*","actions":[{actions}]}}]}}"#)
    };
    let cases: Vec<(String, &str, &str)> = vec![
        ("not json".into(), "dialplan", "expected"),
        (
            route(r#"{"type":"fly"}"#),
            "routes[0] (id \"r1\").actions[0].type",
            "unknown action \"fly\"",
        ),
        (
            route(r#"{"type":"dial","params":{"target":"phone/1"}}"#),
            "routes[0] (id \"r1\").actions[0].params.target",
            "unknown target",
        ),
        (
            route(r#"{"type":"dial","params":{}}"#),
            "routes[0] (id \"r1\").actions[0].params",
            "dial needs a target",
        ),
        (
            route(r#"{"type":"dial","params":{"target":"user/${nope}"}}"#),
            "routes[0] (id \"r1\").actions[0].params.target",
            "unknown variable ${nope}",
        ),
        (
            route(r#"{"type":"dial","params":{"target":"user/1","timeout":0}}"#),
            "routes[0] (id \"r1\").actions[0].params.timeout",
            "whole seconds",
        ),
        (
            route(r#"{"type":"dial","params":{"target":"user/1","ring":3}}"#),
            "routes[0] (id \"r1\").actions[0].params.ring",
            "unknown parameter",
        ),
        (
            route(r#"{"type":"hangup","params":{"code":200}}"#),
            "routes[0] (id \"r1\").actions[0].params.code",
            "400 to 699",
        ),
        (
            route(r#"{"type":"set","params":{"name":"destination","value":"x"}}"#),
            "routes[0] (id \"r1\").actions[0].params.name",
            "cannot be changed",
        ),
        (
            r#"{"routes":[{"id":"a","pattern":"1","actions":[{"type":"answer"}]},{"id":"a","pattern":"2","actions":[{"type":"answer"}]}]}"#.into(),
            "routes[1] (id \"a\")",
            "duplicate route id",
        ),
        (
            r#"{"routes":[{"id":"a","pattern":"1","actions":[]}]}"#.into(),
            "routes[0] (id \"a\").actions",
            "at least one action",
        ),
        (
            r#"{"version":"2.0","routes":[]}"#.into(),
            "version",
            "unsupported version",
        ),
        (
            r#"{"routes":[{"id":"a","pattern":"1","actions":[{"type":"answer"}],"colour":"red"}]}"#.into(),
            "dialplan",
            "unknown field `colour`",
        ),
    ];
    for (text, path, reason) in cases {
        let e = Dialplan::parse(&text).expect_err(&text);
        assert_eq!(e.path, path, "{text}: {e}");
        assert!(e.reason.contains(reason), "{text}: {e}");
    }
}

#[test]
fn variables_set_earlier_may_be_used_later() {
    let text = r#"{"routes":[{"id":"a","pattern":"*","actions":[
            {"type":"set","params":{"variable":"prefix","value":"9"}},
            {"type":"dial","params":{"target":"sip:${prefix}${destination}@127.0.0.1"}}]}]}"#;
    assert!(Dialplan::parse(text).is_ok());
    let mut vars = HashMap::new();
    vars.insert("prefix".to_owned(), "9".to_owned());
    vars.insert("destination".to_owned(), "555".to_owned());
    assert_eq!(
        expand("sip:${prefix}${destination}@127.0.0.1", &vars),
        "sip:9555@127.0.0.1"
    );
    assert_eq!(expand("x${unknown}y${", &vars), "xy${");
}

#[test]
fn media_actions_parse_with_defaults_and_limits() {
    let text = r#"{"routes":[{"id":"ivr","pattern":"7*","direct_media":false,"actions":[
            {"type":"record"},
            {"type":"play_audio","params":{"files":["welcome","menu/${destination}.wav"],"repeat":2}},
            {"type":"read_digits","params":{"max":4,"timeout":2.5,"variable":"choice"}},
            {"type":"wait","params":{"seconds":0.5}},
            {"type":"dial","params":{"target":"user/${choice}"}},
            {"type":"echo"}]},
            {"id":"direct","pattern":"8*","direct_media":true,"actions":[{"type":"play_audio","params":{"file":"x"}}]}]}"#;
    let d = Dialplan::parse(text).unwrap();
    let r = d.route("7001", 1).unwrap();
    assert!(!r.direct_media);
    assert!(d.route("8001", 1).unwrap().direct_media);
    assert_eq!(
        r.actions,
        vec![
            Action::Record {
                file: "${call_id}.wav".into(),
                both_sides: false
            },
            Action::PlayAudio {
                files: vec!["welcome".into(), "menu/${destination}.wav".into()],
                repeat: 2
            },
            Action::ReadDigits {
                max: 4,
                timeout: Duration::from_millis(2500),
                variable: "choice".into()
            },
            Action::Wait {
                duration: Duration::from_millis(500)
            },
            Action::Dial {
                targets: vec![DialTarget::User("${choice}".into())],
                timeout: DEFAULT_DIAL_TIMEOUT
            },
            Action::Echo { timeout: None },
        ]
    );
    let route = |actions: &str| {
        format!(r#"{{"routes":[{{"id":"r1","pattern":"1*","actions":[{actions}]}}]}}"#)
    };
    let at = "routes[0] (id \"r1\").actions[0]";
    for (action, path, reason) in [
        (r#"{"type":"play_audio"}"#, "params", "needs a file"),
        (
            r#"{"type":"play_audio","params":{"file":"../etc/passwd"}}"#,
            "params.file",
            "without '..'",
        ),
        (
            r#"{"type":"play_audio","params":{"files":["a",3]}}"#,
            "params.files[1]",
            "must be a string",
        ),
        (
            r#"{"type":"play_audio","params":{"file":"a","repeat":0}}"#,
            "params.repeat",
            "1 to 100",
        ),
        (
            r#"{"type":"play_audio","params":{"file":"${nope}"}}"#,
            "params.file",
            "unknown variable",
        ),
        (r#"{"type":"wait"}"#, "params.seconds", "needs seconds"),
        (
            r#"{"type":"wait","params":{"seconds":"2"}}"#,
            "params.seconds",
            "number of seconds",
        ),
        (
            r#"{"type":"read_digits","params":{"max":0}}"#,
            "params.max",
            "1 to 64",
        ),
        (
            r#"{"type":"read_digits","params":{"variable":"a-b"}}"#,
            "params.variable",
            "letters",
        ),
        (
            r#"{"type":"read_digits","params":{"variable":"destination"}}"#,
            "params.variable",
            "cannot be changed",
        ),
        (
            r#"{"type":"record","params":{"file":"/tmp/x.wav"}}"#,
            "params.file",
            "relative",
        ),
        (
            r#"{"type":"echo","params":{"timeout":0}}"#,
            "params.timeout",
            "number of seconds",
        ),
    ] {
        let e = Dialplan::parse(&route(action)).expect_err(action);
        assert_eq!(e.path, format!("{at}.{path}"), "{action}: {e}");
        assert!(e.reason.contains(reason), "{action}: {e}");
    }
}

#[test]
fn builtin_dials_users() {
    let d = Dialplan::builtin();
    assert_eq!(d.route("1001", 1).unwrap().id, "extensions");
}

#[test]
fn the_shipped_dialplan_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dialplan.json");
    let d = Dialplan::load(&path).unwrap();
    assert!(!d.is_empty());
    // users reach the demo and the extensions; trunk calls only their route
    assert_eq!(d.route("500", 1).unwrap().id, "demo");
    assert_eq!(d.route("1001", 1).unwrap().id, "extensions");
    let from_trunk = |dest| d.route_for(dest, 1, Origin::Trunk("provider")).unwrap();
    assert_eq!(from_trunk("500").id, "from-trunks");
    assert_eq!(from_trunk("1001").id, "from-trunks");
}
