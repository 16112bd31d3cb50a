//! The operator's settings, from the environment with sipstuff-k8s-operator's
//! names and defaults (README, "Operator"). Every error names its variable.

use std::collections::BTreeMap;

/// Where a pod finds its own namespace (the service account's mount).
pub const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// How the Jobs are built and where the API listens.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// JOB_NAMESPACE: the Jobs' (and per-Job Secrets') namespace.
    pub namespace: String,
    /// JOB_IMAGE: the call agent's image (ENTRYPOINT `switchboard-call`).
    pub job_image: String,
    /// JOB_IMAGE_PULL_POLICY (not in sipstuff, which always says Always:
    /// Switchboard's images are local to k3s, so IfNotPresent).
    pub image_pull_policy: String,
    /// SIP_SECRET_NAME: the Secret the SIP settings fall back to.
    pub sip_secret_name: String,
    /// JOB_TTL_SECONDS: ttlSecondsAfterFinished.
    pub job_ttl_seconds: i32,
    /// JOB_BACKOFF_LIMIT: backoffLimit.
    pub job_backoff_limit: i32,
    /// JOB_HOST_NETWORK: hostNetwork (SIP and RTP on the node's address).
    pub host_network: bool,
    /// PORT: the HTTP API's port.
    pub port: u16,
    /// PIPER_DATA_DIR, WHISPER_DATA_DIR, RECORDING_DIR: host paths mounted
    /// at /data/piper, /data/whisper, /data/recordings.
    pub piper_data_dir: Option<String>,
    pub whisper_data_dir: Option<String>,
    pub recording_dir: Option<String>,
    /// RUN_AS_USER, RUN_AS_GROUP, FS_GROUP: the Job pod's security context.
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub fs_group: Option<i64>,
    /// NODE_SELECTOR (`k=v,k2=v2`): the Jobs' default node selector.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// OPERATOR_TOKEN: the API's bearer token (`None`: one is generated at
    /// start and logged once).
    pub token: Option<String>,
    /// MAX_CONCURRENT_CREATES: `POST /call`s talking to the Kubernetes API
    /// at once; more are answered 429 (default 8).
    pub max_concurrent_creates: usize,
}

impl Default for OperatorConfig {
    /// The defaults, as with an empty environment outside a pod.
    fn default() -> OperatorConfig {
        OperatorConfig {
            namespace: "switchboard".into(),
            job_image: "switchboard-call:latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            sip_secret_name: "sip-credentials".into(),
            job_ttl_seconds: 3600,
            job_backoff_limit: 0,
            host_network: true,
            port: 8080,
            piper_data_dir: None,
            whisper_data_dir: None,
            recording_dir: None,
            run_as_user: None,
            run_as_group: None,
            fs_group: None,
            node_selector: None,
            token: None,
            max_concurrent_creates: 8,
        }
    }
}

/// Parses `k=v,k2=v2` (blanks around keys and values trimmed; empty input
/// is an empty map), as sipstuff's `parse_node_selector`.
pub fn parse_node_selector(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("invalid entry (missing '='): {pair:?}"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("invalid entry (empty key): {pair:?}"));
        }
        out.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "{name}: {value:?} is not a boolean (true/false, 1/0, yes/no)"
        )),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a valid number here"))
}

impl OperatorConfig {
    /// From the process environment (JOB_NAMESPACE falls back to the pod's
    /// namespace file, then `switchboard`).
    pub fn from_env() -> Result<OperatorConfig, String> {
        let pod_namespace = std::fs::read_to_string(NAMESPACE_FILE).ok();
        OperatorConfig::from_lookup(|k| std::env::var(k).ok(), pod_namespace.as_deref())
    }

    /// From `lookup` (a variable's value), with `pod_namespace` as read
    /// from [`NAMESPACE_FILE`]. Empty values count as unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        pod_namespace: Option<&str>,
    ) -> Result<OperatorConfig, String> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let d = OperatorConfig::default();
        let namespace = get("JOB_NAMESPACE")
            .map(|v| v.trim().to_owned())
            .or_else(|| {
                pod_namespace
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or(d.namespace);
        let opt_num = |k: &str| -> Result<Option<i64>, String> {
            get(k).map(|v| parse_num(k, &v)).transpose()
        };
        let pull = get("JOB_IMAGE_PULL_POLICY").map_or(d.image_pull_policy, |v| v.trim().into());
        if !matches!(pull.as_str(), "Always" | "IfNotPresent" | "Never") {
            return Err(format!(
                "JOB_IMAGE_PULL_POLICY: {pull:?} is not Always, IfNotPresent or Never"
            ));
        }
        let port: u16 = get("PORT").map_or(Ok(d.port), |v| parse_num("PORT", &v))?;
        if port == 0 {
            return Err("PORT: 0 is not a port".into());
        }
        let max_creates: usize = get("MAX_CONCURRENT_CREATES")
            .map_or(Ok(8), |v| parse_num("MAX_CONCURRENT_CREATES", &v))?;
        if max_creates == 0 {
            return Err("MAX_CONCURRENT_CREATES: must be at least 1".into());
        }
        let token = get("OPERATOR_TOKEN").map(|t| t.trim().to_owned());
        if let Some(t) = &token
            && t.len() < 16
        {
            return Err("OPERATOR_TOKEN: shorter than 16 characters".into());
        }
        Ok(OperatorConfig {
            namespace,
            job_image: get("JOB_IMAGE").map_or(d.job_image, |v| v.trim().into()),
            image_pull_policy: pull,
            sip_secret_name: get("SIP_SECRET_NAME").map_or(d.sip_secret_name, |v| v.trim().into()),
            job_ttl_seconds: get("JOB_TTL_SECONDS")
                .map_or(Ok(d.job_ttl_seconds), |v| parse_num("JOB_TTL_SECONDS", &v))?,
            job_backoff_limit: get("JOB_BACKOFF_LIMIT").map_or(Ok(d.job_backoff_limit), |v| {
                parse_num("JOB_BACKOFF_LIMIT", &v)
            })?,
            host_network: get("JOB_HOST_NETWORK")
                .map_or(Ok(true), |v| parse_bool("JOB_HOST_NETWORK", &v))?,
            port,
            piper_data_dir: get("PIPER_DATA_DIR"),
            whisper_data_dir: get("WHISPER_DATA_DIR"),
            recording_dir: get("RECORDING_DIR"),
            run_as_user: opt_num("RUN_AS_USER")?,
            run_as_group: opt_num("RUN_AS_GROUP")?,
            fs_group: opt_num("FS_GROUP")?,
            node_selector: get("NODE_SELECTOR")
                .map(|v| parse_node_selector(&v).map_err(|e| format!("NODE_SELECTOR: {e}")))
                .transpose()?,
            token,
            max_concurrent_creates: max_creates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_sipstuffs_with_the_projects_namespace_and_image() {
        let c = OperatorConfig::from_lookup(env(&[]), None).expect("defaults");
        assert_eq!(c, OperatorConfig::default());
        assert_eq!(c.namespace, "switchboard");
        assert_eq!(c.sip_secret_name, "sip-credentials");
        assert_eq!((c.job_ttl_seconds, c.job_backoff_limit), (3600, 0));
        assert!(c.host_network);
        assert_eq!(c.port, 8080);
        assert_eq!(c.node_selector, None);
        let c = OperatorConfig::from_lookup(env(&[]), Some("calls\n")).expect("pod namespace");
        assert_eq!(c.namespace, "calls");
    }

    #[test]
    fn every_variable_is_read() {
        let c = OperatorConfig::from_lookup(
            env(&[
                ("JOB_NAMESPACE", "custom-ns"),
                ("JOB_IMAGE", "reg/call:v2"),
                ("SIP_SECRET_NAME", "my-sip"),
                ("JOB_TTL_SECONDS", "7200"),
                ("JOB_BACKOFF_LIMIT", "3"),
                ("JOB_HOST_NETWORK", "false"),
                ("PORT", "9090"),
                ("PIPER_DATA_DIR", "/mnt/piper"),
                ("WHISPER_DATA_DIR", "/mnt/whisper"),
                ("RECORDING_DIR", "/mnt/rec"),
                ("RUN_AS_USER", "1200"),
                ("RUN_AS_GROUP", "1201"),
                ("FS_GROUP", "1202"),
                ("NODE_SELECTOR", "mayplacecalls=true, zone = eu-west"),
                ("OPERATOR_TOKEN", "0123456789abcdef0123"),
            ]),
            Some("ignored"),
        )
        .expect("config");
        assert_eq!(c.namespace, "custom-ns");
        assert_eq!(c.job_image, "reg/call:v2");
        assert_eq!(c.sip_secret_name, "my-sip");
        assert_eq!((c.job_ttl_seconds, c.job_backoff_limit), (7200, 3));
        assert!(!c.host_network);
        assert_eq!(c.port, 9090);
        assert_eq!(c.recording_dir.as_deref(), Some("/mnt/rec"));
        assert_eq!(
            (c.run_as_user, c.run_as_group, c.fs_group),
            (Some(1200), Some(1201), Some(1202))
        );
        let ns = c.node_selector.expect("node selector");
        assert_eq!(ns.get("zone").map(String::as_str), Some("eu-west"));
        assert_eq!(ns.len(), 2);
    }

    #[test]
    fn errors_name_the_variable() {
        for (k, v) in [
            ("JOB_TTL_SECONDS", "soon"),
            ("JOB_BACKOFF_LIMIT", "-x"),
            ("JOB_HOST_NETWORK", "maybe"),
            ("PORT", "70000"),
            ("RUN_AS_USER", "nobody"),
            ("NODE_SELECTOR", "noequals"),
            ("OPERATOR_TOKEN", "short"),
            ("JOB_IMAGE_PULL_POLICY", "Sometimes"),
            ("MAX_CONCURRENT_CREATES", "0"),
        ] {
            let e = OperatorConfig::from_lookup(env(&[(k, v)]), None).expect_err(k);
            assert!(e.starts_with(k), "{k}: {e}");
        }
    }

    #[test]
    fn node_selectors_parse_as_sipstuffs() {
        let p = |s| parse_node_selector(s).expect("parses");
        assert_eq!(p("k=v").len(), 1);
        assert_eq!(p("a=1,b=2").get("b").map(String::as_str), Some("2"));
        assert_eq!(
            p("  k = v , k2 = v2  ").get("k2").map(String::as_str),
            Some("v2")
        );
        assert!(p("").is_empty());
        assert!(p("   ").is_empty());
        assert!(parse_node_selector("noequals").is_err());
    }
}
