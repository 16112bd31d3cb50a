//! The Job of one call, built without talking to Kubernetes.
//!
//! The container runs the call agent's image with no command override (its
//! ENTRYPOINT is `switchboard-call`) and gets every request field as an
//! environment variable (the contract table in the README's "Operator"
//! section). A SIP setting not in the request
//! falls back to the key of the same name in the SIP_SECRET_NAME Secret
//! through an optional `secretKeyRef`. Passwords in the request go into a
//! per-Job Secret (named as the Job), read through a `secretKeyRef`, never
//! into the Job's own spec.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HostPathVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, Secret, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::config::OperatorConfig;
use crate::request::CallRequest;

/// The call container's name (sipstuff's).
pub const CONTAINER_NAME: &str = "sip-caller";
/// The init container that hands the hostPath directories to RUN_AS_USER.
pub const INIT_CONTAINER_NAME: &str = "fix-permissions";
/// Its image (sipstuff's).
pub const INIT_IMAGE: &str = "busybox:latest";
/// Where the Job's directories are mounted in the container.
pub const PIPER_MOUNT_PATH: &str = "/data/piper";
pub const WHISPER_MOUNT_PATH: &str = "/data/whisper";
pub const RECORDING_MOUNT_PATH: &str = "/data/recordings";

/// Labels of every Job (and pod, and per-Job Secret) the operator makes;
/// [`SELECTOR`] picks its own Jobs out of the namespace.
pub const NAME_LABEL: (&str, &str) = ("app.kubernetes.io/name", "switchboard-call");
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "switchboard-operator");
pub const PART_OF_LABEL: (&str, &str) = ("app.kubernetes.io/part-of", "switchboard");
pub const COMPONENT_LABEL: (&str, &str) = ("app.kubernetes.io/component", "sip-caller");
/// The label selector of `GET /jobs`.
pub const SELECTOR: &str =
    "app.kubernetes.io/name=switchboard-call,app.kubernetes.io/managed-by=switchboard-operator";

/// The keys of the per-Job Secret.
pub const SIP_PASSWORD_KEY: &str = "SIP_PASSWORD";
pub const TURN_PASSWORD_KEY: &str = "SIP_TURN_PASSWORD";

/// A Job name, `sbcall-YYYYMMDD-HHMM-xxxx` (UTC; four random lowercase
/// letters and digits): a valid DNS-1123 label of 25 characters.
pub fn job_name(now: jiff::Timestamp) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = rand::random::<[u8; 4]>()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("sbcall-{}-{suffix}", now.strftime("%Y%m%d-%H%M"))
}

/// Whether `name` could be one of our Job names (a DNS-1123 label): checked
/// before it goes into an API path.
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn labels() -> BTreeMap<String, String> {
    [NAME_LABEL, MANAGED_BY_LABEL, PART_OF_LABEL, COMPONENT_LABEL]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn boolean(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// The container's environment for `req`: request values as literals,
/// passwords from the per-Job Secret `job_name`, SIP settings not given
/// from the SIP_SECRET_NAME Secret (optional keys), then the mount paths.
pub fn container_env(req: &CallRequest, cfg: &OperatorConfig, job_name: &str) -> Vec<EnvVar> {
    let mut env = vec![value("CALL_DEST", req.dest.as_str())];
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    // the call (sipstuff passes these as arguments, in this order, under
    // the same conditions: empty strings and defaults are left out)
    if let Some(t) = non_empty(&req.text) {
        env.push(value("CALL_TEXT", t));
    }
    if let Some(w) = non_empty(&req.wav) {
        env.push(value("CALL_WAV", w));
    }
    env.push(value("CALL_TIMEOUT", req.timeout.to_string()));
    for (name, v) in [
        ("CALL_PRE_DELAY", req.pre_delay),
        ("CALL_INTER_DELAY", req.inter_delay),
        ("CALL_POST_DELAY", req.post_delay),
    ] {
        if v > 0.0 {
            env.push(value(name, v.to_string()));
        }
    }
    if let Some(w) = req.wait_for_silence {
        env.push(value("CALL_WAIT_FOR_SILENCE", w.to_string()));
    }
    if req.repeat > 1 {
        env.push(value("CALL_REPEAT", req.repeat.to_string()));
    }
    if let Some(m) = non_empty(&req.tts_model) {
        env.push(value("TTS_MODEL", m));
    }
    if let Some(r) = req.tts_sample_rate {
        env.push(value("TTS_SAMPLE_RATE", r.to_string()));
    }
    for (name, v) in [
        ("TTS_DATA_DIR", &req.tts_data_dir),
        ("STT_MODEL", &req.stt_model),
        ("STT_LANGUAGE", &req.stt_language),
        ("STT_DATA_DIR", &req.stt_data_dir),
    ] {
        if let Some(v) = non_empty(v) {
            env.push(value(name, v));
        }
    }
    if let Some(r) = &req.record {
        env.push(value("CALL_RECORD", r.as_str()));
    }
    if req.transcribe {
        env.push(value("CALL_TRANSCRIBE", "true"));
    }
    if req.verbose {
        env.push(value("CALL_VERBOSE", "true"));
    }
    // SIP and NAT traversal: the request's value, else the Secret's key
    let secret = cfg.sip_secret_name.as_str();
    let settings: [(&str, Option<String>); 15] = [
        ("SIP_SERVER", req.sip_server.clone()),
        ("SIP_PORT", req.sip_port.map(|p| p.to_string())),
        ("SIP_USER", req.sip_user.clone()),
        ("SIP_PASSWORD", None),
        ("SIP_TRANSPORT", req.sip_transport.clone()),
        ("SIP_SRTP", req.sip_srtp.clone()),
        (
            "SIP_TLS_VERIFY_SERVER",
            req.sip_tls_verify.map(|b| boolean(b).to_owned()),
        ),
        ("SIP_STUN_SERVERS", req.stun_servers.clone()),
        (
            "SIP_ICE_ENABLED",
            req.ice_enabled.map(|b| boolean(b).to_owned()),
        ),
        ("SIP_TURN_SERVER", req.turn_server.clone()),
        ("SIP_TURN_USERNAME", req.turn_username.clone()),
        ("SIP_TURN_PASSWORD", None),
        ("SIP_TURN_TRANSPORT", req.turn_transport.clone()),
        (
            "SIP_KEEPALIVE_SEC",
            req.keepalive_sec.map(|k| k.to_string()),
        ),
        ("SIP_PUBLIC_ADDRESS", req.public_address.clone()),
    ];
    for (name, given) in settings {
        let password = match name {
            "SIP_PASSWORD" => Some((&req.sip_password, SIP_PASSWORD_KEY)),
            "SIP_TURN_PASSWORD" => Some((&req.turn_password, TURN_PASSWORD_KEY)),
            _ => None,
        };
        env.push(match (given, password) {
            (Some(v), _) => value(name, v),
            (None, Some((Some(_), key))) => from_secret(name, job_name, key, false),
            (None, _) => from_secret(name, secret, name, true),
        });
    }
    if req.turn_server.is_some() {
        env.push(value("SIP_TURN_ENABLED", "true"));
    }
    for (_, _, mount, var) in mounts(cfg) {
        env.push(value(var, mount));
    }
    env
}

/// (volume name, host path, mount path, variable) of the directories set.
fn mounts(cfg: &OperatorConfig) -> Vec<(&'static str, String, &'static str, &'static str)> {
    [
        (
            "piper-data",
            &cfg.piper_data_dir,
            PIPER_MOUNT_PATH,
            "PIPER_DATA_DIR",
        ),
        (
            "whisper-data",
            &cfg.whisper_data_dir,
            WHISPER_MOUNT_PATH,
            "WHISPER_DATA_DIR",
        ),
        (
            "recording-data",
            &cfg.recording_dir,
            RECORDING_MOUNT_PATH,
            "RECORDING_DIR",
        ),
    ]
    .into_iter()
    .filter_map(|(vol, host, mount, var)| host.clone().map(|h| (vol, h, mount, var)))
    .collect()
}

/// The per-Job Secret for `req`'s passwords, when it has any: named as the
/// Job, with its labels. The caller adds the owner reference once the Job
/// exists (see [`owned_by`]).
pub fn job_secret(req: &CallRequest, cfg: &OperatorConfig, job_name: &str) -> Option<Secret> {
    let mut data = BTreeMap::new();
    if let Some(p) = &req.sip_password {
        data.insert(SIP_PASSWORD_KEY.to_owned(), p.clone());
    }
    if let Some(p) = &req.turn_password {
        data.insert(TURN_PASSWORD_KEY.to_owned(), p.clone());
    }
    if data.is_empty() {
        return None;
    }
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(job_name.to_owned()),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// `secret` owned by `job` (as created, with its uid): Kubernetes' garbage
/// collector deletes the Secret with the Job (after JOB_TTL_SECONDS).
pub fn owned_by(mut secret: Secret, job_name: &str, job_uid: &str) -> Secret {
    secret.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job_name.to_owned(),
        uid: job_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    secret
}

/// The Job for `req` named `job_name` (see [`job_name`]), and the per-Job
/// Secret its container reads the request's passwords from (`None` when the
/// request has no password). Pure: nothing is sent anywhere.
pub fn build_job(req: &CallRequest, cfg: &OperatorConfig, job_name: &str) -> (Job, Option<Secret>) {
    let volumes_set = mounts(cfg);
    let volume_mounts: Vec<VolumeMount> = volumes_set
        .iter()
        .map(|(vol, _, mount, _)| VolumeMount {
            name: (*vol).into(),
            mount_path: (*mount).into(),
            ..VolumeMount::default()
        })
        .collect();
    let volumes: Vec<Volume> = volumes_set
        .iter()
        .map(|(vol, host, _, _)| Volume {
            name: (*vol).into(),
            host_path: Some(HostPathVolumeSource {
                path: host.clone(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Volume::default()
        })
        .collect();
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(cfg.job_image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        env: Some(container_env(req, cfg, job_name)),
        volume_mounts: (!volume_mounts.is_empty()).then(|| volume_mounts.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    // hostPath volumes ignore fsGroup: a root init container hands them over
    let init_containers = match cfg.run_as_user {
        Some(uid) if !volume_mounts.is_empty() => {
            let owner = match cfg.fs_group.or(cfg.run_as_group) {
                Some(gid) => format!("{uid}:{gid}"),
                None => uid.to_string(),
            };
            let dirs: Vec<&str> = volumes_set.iter().map(|(_, _, m, _)| *m).collect();
            Some(vec![Container {
                name: INIT_CONTAINER_NAME.into(),
                image: Some(INIT_IMAGE.into()),
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    format!("chown -R {owner} {}", dirs.join(" ")),
                ]),
                volume_mounts: Some(volume_mounts),
                security_context: Some(SecurityContext {
                    run_as_user: Some(0),
                    ..SecurityContext::default()
                }),
                ..Container::default()
            }])
        }
        _ => None,
    };
    let security_context = (cfg.run_as_user.is_some()
        || cfg.run_as_group.is_some()
        || cfg.fs_group.is_some())
    .then(|| PodSecurityContext {
        run_as_user: cfg.run_as_user,
        run_as_group: cfg.run_as_group,
        fs_group: cfg.fs_group,
        ..PodSecurityContext::default()
    });
    // the request's selector, even `{}`, replaces the operator's; empty is none
    let node_selector = req
        .node_selector
        .clone()
        .or_else(|| cfg.node_selector.clone())
        .filter(|s| !s.is_empty());
    let pod = PodSpec {
        containers: vec![container],
        init_containers,
        restart_policy: Some("Never".into()),
        host_network: Some(cfg.host_network),
        // with the node's network, cluster names still resolve
        dns_policy: cfg
            .host_network
            .then(|| "ClusterFirstWithHostNet".to_owned()),
        // the call agent never talks to the Kubernetes API
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        volumes: (!volumes.is_empty()).then_some(volumes),
        security_context,
        node_selector,
        ..PodSpec::default()
    };
    let job = Job {
        metadata: ObjectMeta {
            name: Some(job_name.to_owned()),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            backoff_limit: Some(cfg.job_backoff_limit),
            ttl_seconds_after_finished: Some(cfg.job_ttl_seconds),
            ..JobSpec::default()
        }),
        status: None,
    };
    (job, job_secret(req, cfg, job_name))
}

/// The environment the call container would see, as the kubelet resolves
/// it: literals as they are, `secretKeyRef`s from `secrets` (by name; an
/// optional key that is missing leaves the variable out). For running
/// `switchboard-call` with exactly the Job's environment outside a cluster.
///
/// # Errors
/// A required key that no Secret in `secrets` has (the kubelet would not
/// start the container), or a source other than a literal or a Secret.
pub fn resolve_env(job: &Job, secrets: &[Secret]) -> Result<Vec<(String, String)>, String> {
    let container = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == CONTAINER_NAME))
        .ok_or_else(|| format!("no container {CONTAINER_NAME} in the Job"))?;
    let mut out = Vec::new();
    for e in container.env.iter().flatten() {
        if let Some(v) = &e.value {
            out.push((e.name.clone(), v.clone()));
            continue;
        }
        let Some(r) = e
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
        else {
            return Err(format!("{}: neither a value nor a secretKeyRef", e.name));
        };
        let found = secrets
            .iter()
            .filter(|s| s.metadata.name.as_deref() == Some(r.name.as_str()))
            .find_map(|s| {
                let from_string = s.string_data.as_ref().and_then(|d| d.get(&r.key)).cloned();
                from_string.or_else(|| {
                    s.data
                        .as_ref()
                        .and_then(|d| d.get(&r.key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                })
            });
        match found {
            Some(v) => out.push((e.name.clone(), v)),
            None if r.optional == Some(true) => {}
            None => {
                return Err(format!(
                    "{}: Secret {} has no key {}",
                    e.name, r.name, r.key
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
