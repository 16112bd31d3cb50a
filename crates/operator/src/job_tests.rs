use super::*;

#[test]
fn job_names_are_dns_labels_with_the_minute() {
    let t: jiff::Timestamp = "2026-02-08T14:30:59Z".parse().expect("time");
    let n = job_name(t);
    assert!(n.starts_with("sbcall-20260208-1430-"), "{n}");
    assert_eq!(n.len(), 25);
    assert!(valid_job_name(&n));
    assert_ne!(job_name(t), job_name(t), "four random characters");
    for bad in ["", "-a", "a-", "A", "a/b", "a.b", &"a".repeat(64)] {
        assert!(!valid_job_name(bad), "{bad:?}");
    }
}

#[test]
fn resolve_env_reads_secrets_as_the_kubelet() {
    let cfg = OperatorConfig::default();
    let req = CallRequest {
        dest: "600".into(),
        text: Some("hello".into()),
        sip_server: Some("127.0.0.1".into()),
        sip_password: Some("pw".into()),
        ..CallRequest::default()
    };
    let (job, secret) = build_job(&req, &cfg, "sbcall-x");
    let secret = secret.expect("a per-Job Secret");
    let shared = Secret {
        metadata: ObjectMeta {
            name: Some("sip-credentials".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "SIP_USER".to_owned(),
            k8s_openapi::ByteString(b"alice".to_vec()),
        )])),
        ..Secret::default()
    };
    let env = resolve_env(&job, &[secret.clone(), shared]).expect("resolves");
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("CALL_DEST"), Some("600"));
    assert_eq!(get("SIP_SERVER"), Some("127.0.0.1"));
    assert_eq!(get("SIP_PASSWORD"), Some("pw"));
    assert_eq!(get("SIP_USER"), Some("alice"));
    assert_eq!(get("SIP_PORT"), None, "optional and missing: left out");
    // without the per-Job Secret the container could not start
    let e = resolve_env(&job, &[]).expect_err("SIP_PASSWORD is required");
    assert!(e.contains("SIP_PASSWORD"), "{e}");
}
