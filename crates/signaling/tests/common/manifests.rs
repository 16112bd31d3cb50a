//! The Kubernetes manifests as a node would run them, on loopback.
//!
//! `kubectl kustomize` renders `deploy/k8s` (or an overlay); a container of
//! a rendered pod template becomes a command line and an environment built
//! the way the kubelet builds them: `$(VAR)` expansion over the variables
//! defined before, Downward API fields (`status.hostIP` is 127.0.0.1, the
//! pod name is the StatefulSet's `<name>-<ordinal>`), `secretKeyRef` filled
//! with test values, `configMapKeyRef` and ConfigMap volumes from the
//! rendered ConfigMaps. Every volume becomes a fresh directory and the
//! paths under its mount path are rewritten to it; Service host names
//! (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`) followed by a
//! port of that Service become `127.0.0.1` and the port a test server
//! listens on. Nothing else is changed, so a renamed variable, a wrong
//! port or a missing volume in a manifest shows in the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::temp_dir;

/// The repository's top directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every object `kubectl kustomize <dir>` renders (`dir` relative to the
/// repository).
pub fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(dir))
        .output()
        .expect("kubectl runs (make test installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the manifests have no {kind} {name}"))
}

/// The pod template's spec of a workload (StatefulSet, Deployment,
/// DaemonSet).
pub fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

/// The container called `name` of a pod spec.
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The string at `v`, or a panic naming `what`.
pub fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v}"))
}

/// What the test gives a pod that the cluster would.
pub struct Cluster {
    pub namespace: String,
    pub node_name: String,
    /// `(secret name, key)` → value.
    pub secrets: HashMap<(String, String), String>,
    /// `(service name, service port)` → the loopback port serving it.
    pub services: HashMap<(String, u16), u16>,
    /// Every rendered object (ConfigMaps and Services are read from it).
    pub objects: Vec<Value>,
}

/// A container ready to be started: the program, its arguments, its
/// environment, and its working directory.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// mount path → directory standing for it.
    pub mounts: Vec<(String, PathBuf)>,
}

impl Launch {
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A command for `argv` (a probe's exec command, or the container's
    /// own) with exactly this container's environment.
    pub fn command(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new(binary(&argv[0]));
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd);
        cmd
    }

    /// The container's own command line.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.program.display().to_string()];
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// Our binaries are found in the build output; anything else on PATH.
pub fn binary(name: &str) -> PathBuf {
    let base = Path::new(name)
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| name.to_owned());
    if base.starts_with("switchboard-") {
        // target/<profile>/switchboard-signaling: the binaries of the
        // workspace sit beside each other
        let signaling = PathBuf::from(env!("CARGO_BIN_EXE_switchboard-signaling"));
        let path = signaling.with_file_name(&base);
        assert!(
            path.exists(),
            "{} is not built: `cargo test --workspace --all-targets` builds every binary",
            path.display()
        );
        path
    } else {
        PathBuf::from(name)
    }
}

/// The image's entrypoint and working directory, from the Dockerfile the
/// Makefile builds that image from (`Dockerfile.<component>` for an image
/// named `…/<component>` or `…-<component>`).
fn image_entrypoint(image: &str) -> (Vec<String>, Option<String>) {
    let name = image.split(':').next().unwrap_or(image);
    let component = name.rsplit(['/', '-']).next().unwrap_or(name).to_owned();
    let file = repo().join(format!("Dockerfile.{component}"));
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("image {image}: {}: {e}", file.display()));
    // the runtime stage is the last one
    let last = text.rsplit_once("\nFROM ").map(|(_, s)| s).unwrap_or(&text);
    let mut entry = Vec::new();
    let mut cmd = Vec::new();
    let mut workdir = None;
    // instructions start a line; an indented `CMD` continues a HEALTHCHECK
    for line in last.lines().map(str::trim_end) {
        let exec_form = |rest: &str| -> Vec<String> {
            serde_json::from_str(rest.trim())
                .unwrap_or_else(|e| panic!("{}: {line}: not exec form: {e}", file.display()))
        };
        if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            entry = exec_form(rest);
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            cmd = exec_form(rest);
        } else if let Some(rest) = line.strip_prefix("WORKDIR ") {
            workdir = Some(rest.trim().to_owned());
        }
    }
    entry.extend(cmd);
    assert!(!entry.is_empty(), "{}: no ENTRYPOINT", file.display());
    (entry, workdir)
}

/// Expands `$(VAR)` as the kubelet does: a variable defined before in the
/// same list, `$$` for a literal `$`, anything else left as written.
pub fn expand(s: &str, defined: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match defined.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

impl Cluster {
    fn config_map(&self, name: &str) -> &Value {
        &find(&self.objects, "ConfigMap", name)["data"]
    }

    /// A Secret's value: the test's own, else the rendered Secret's, else
    /// a test value made up for it (the base ships no Secret: users create
    /// theirs, see deploy/k8s/create-secret.sh).
    pub fn secret(&self, name: &str, key: &str) -> String {
        if let Some(v) = self.secrets.get(&(name.to_owned(), key.to_owned())) {
            return v.clone();
        }
        let Some(secret) = self
            .objects
            .iter()
            .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
        else {
            // long enough for CLUSTER_SECRET's 32 bytes, header-safe
            return format!("test-{name}-{key}-0123456789abcdef0123456789").to_lowercase();
        };
        if let Some(v) = secret["stringData"][key].as_str() {
            return v.to_owned();
        }
        let b64 = text(&secret["data"][key], &format!("Secret {name} key {key}"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("Secret data is base64");
        String::from_utf8(raw).expect("Secret value is text")
    }

    fn field(&self, path: &str, pod_name: &str) -> String {
        match path {
            "metadata.name" => pod_name.to_owned(),
            "metadata.namespace" => self.namespace.clone(),
            "spec.nodeName" => self.node_name.clone(),
            "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => {
                "127.0.0.1".to_owned()
            }
            "spec.serviceAccountName" => "default".to_owned(),
            other => panic!("Downward API field {other} is not filled by the test"),
        }
    }

    /// `host:port` of every Service spelling → `127.0.0.1:<test port>`.
    fn host_rewrites(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for svc in self.objects.iter().filter(|o| o["kind"] == "Service") {
            let name = text(&svc["metadata"]["name"], "Service name");
            let ns = svc["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&self.namespace);
            for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let Some(p) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                let local = self
                    .services
                    .get(&(name.to_owned(), p))
                    .copied()
                    .unwrap_or(p);
                for host in [
                    format!("{name}.{ns}.svc.cluster.local"),
                    format!("{name}.{ns}.svc"),
                    format!("{name}.{ns}"),
                    name.to_owned(),
                ] {
                    out.push((format!("{host}:{p}"), format!("127.0.0.1:{local}")));
                }
            }
        }
        out
    }

    /// The container `name` of `pod` as the kubelet would start it in a
    /// pod called `pod_name`.
    pub fn launch(&self, pod: &Value, name: &str, pod_name: &str) -> Launch {
        let c = container(pod, name);
        let image = text(&c["image"], "image");
        // our images' entrypoints come from their Dockerfiles; another
        // image's entrypoint is the test's to choose (`program` is then the
        // image's name, `args` the container's)
        let (entry, workdir) = if image.contains("switchboard") {
            image_entrypoint(image)
        } else {
            (Vec::new(), None)
        };
        let root = temp_dir(&format!("pod-{pod_name}-{name}"));
        let cwd = root.join("workdir");
        std::fs::create_dir_all(&cwd).expect("workdir");
        // the image holds the repository's audio/ and config/ in its
        // working directory (see the Dockerfiles)
        for d in ["audio", "config"] {
            let _ = std::os::unix::fs::symlink(repo().join(d), cwd.join(d));
        }
        let mut mounts = self.volumes(pod, c, &root);
        if let Some(w) = workdir {
            mounts.push((w, cwd.clone()));
        }
        // longest mount path first, so /a/b wins over /a
        mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        let hosts = self.host_rewrites();
        let rewrite = |v: &str| -> String {
            let mut v = v.to_owned();
            for (mount, dir) in &mounts {
                let mount = mount.trim_end_matches('/');
                if v == mount || v.starts_with(&format!("{mount}/")) {
                    v = format!("{}{}", dir.display(), &v[mount.len()..]);
                    break;
                }
            }
            for (from, to) in &hosts {
                v = replace_host(&v, from, to);
            }
            v
        };
        let mut env: Vec<(String, String)> = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let var = text(&e["name"], "env name").to_owned();
            let value = if let Some(v) = e["value"].as_str() {
                expand(v, &env)
            } else if e["value"].is_null() && e["valueFrom"].is_null() {
                String::new()
            } else {
                let from = &e["valueFrom"];
                if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                    self.field(path, pod_name)
                } else if from["secretKeyRef"].is_object() {
                    let r = &from["secretKeyRef"];
                    self.secret(text(&r["name"], "secret"), text(&r["key"], "key"))
                } else if from["configMapKeyRef"].is_object() {
                    let r = &from["configMapKeyRef"];
                    let data = self.config_map(text(&r["name"], "configMap"));
                    text(&data[text(&r["key"], "key")], "configMap value").to_owned()
                } else {
                    panic!("{var}: valueFrom {from} is not filled by the test")
                }
            };
            env.push((var, rewrite(&value)));
        }
        for from in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(cm) = from["configMapRef"]["name"].as_str() {
                for (k, v) in self.config_map(cm).as_object().into_iter().flatten() {
                    env.push((k.clone(), rewrite(text(v, k))));
                }
            } else {
                panic!("envFrom {from} is not filled by the test");
            }
        }
        let (program, mut args) = match c["command"].as_array() {
            Some(cmd) => {
                let argv: Vec<String> = cmd.iter().map(|a| text(a, "command").into()).collect();
                (argv[0].clone(), argv[1..].to_vec())
            }
            None if entry.is_empty() => (image.to_owned(), Vec::new()),
            None => (entry[0].clone(), entry[1..].to_vec()),
        };
        for a in c["args"].as_array().into_iter().flatten() {
            args.push(rewrite(&expand(text(a, "args"), &env)));
        }
        Launch {
            program: binary(&program),
            args,
            env,
            cwd,
            mounts,
        }
    }

    /// A directory per volume mount: ConfigMap and Secret volumes hold
    /// their keys as files, every other kind starts empty.
    fn volumes(&self, pod: &Value, c: &Value, root: &Path) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for (i, m) in c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let vol_name = text(&m["name"], "volumeMount name");
            let mount = text(&m["mountPath"], "mountPath").to_owned();
            let dir = root.join(format!("volume-{i}-{vol_name}"));
            std::fs::create_dir_all(&dir).expect("volume dir");
            let volume = pod["volumes"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == vol_name));
            let files: Vec<(String, String)> = match volume {
                Some(v) if v["configMap"].is_object() => {
                    let data = self.config_map(text(&v["configMap"]["name"], "configMap"));
                    let keys = data.as_object().cloned().unwrap_or_default();
                    match v["configMap"]["items"].as_array() {
                        Some(items) => items
                            .iter()
                            .map(|it| {
                                let key = text(&it["key"], "key");
                                (
                                    text(&it["path"], "path").to_owned(),
                                    text(&keys[key], key).to_owned(),
                                )
                            })
                            .collect(),
                        None => keys
                            .iter()
                            .map(|(k, v)| (k.clone(), text(v, k).to_owned()))
                            .collect(),
                    }
                }
                Some(v) if v["secret"].is_object() => {
                    let name = text(&v["secret"]["secretName"], "secretName");
                    // the volume's items, else every key of the rendered
                    // Secret, else of the test's (a Secret users make
                    // themselves, like switchboard-sip-tls)
                    let mut keys: Vec<(String, String)> = Vec::new();
                    if let Some(items) = v["secret"]["items"].as_array() {
                        for i in items {
                            let key = text(&i["key"], "item key").to_owned();
                            keys.push((key, text(&i["path"], "item path").to_owned()));
                        }
                    } else if let Some(secret) = self
                        .objects
                        .iter()
                        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
                    {
                        for field in ["stringData", "data"] {
                            keys.extend(
                                secret[field]
                                    .as_object()
                                    .into_iter()
                                    .flatten()
                                    .map(|(k, _)| (k.clone(), k.clone())),
                            );
                        }
                    } else {
                        keys.extend(
                            self.secrets
                                .keys()
                                .filter(|(n, _)| n == name)
                                .map(|(_, k)| (k.clone(), k.clone())),
                        );
                    }
                    keys.into_iter()
                        .map(|(k, path)| (path, self.secret(name, &k)))
                        .collect()
                }
                // emptyDir, a PVC of the claim templates, hostPath: empty
                _ => Vec::new(),
            };
            for (path, content) in files {
                std::fs::write(dir.join(&path), content).expect("volume file");
            }
            match m["subPath"].as_str() {
                // a single file of the volume at the mount path
                Some(sub) => out.push((mount, dir.join(sub))),
                None => out.push((mount, dir)),
            }
        }
        out
    }
}

/// Replaces `host:port` where it stands as a host (after `//`, `@`, `,`,
/// `=`, whitespace or at the start), not inside a longer name or port.
pub fn replace_host(v: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(i) = v[at..].find(from).map(|i| at + i) {
        let end = i + from.len();
        let before_ok = i == 0 || matches!(v.as_bytes()[i - 1], b'/' | b'@' | b',' | b' ' | b'=');
        let after_ok = !v.as_bytes().get(end).is_some_and(u8::is_ascii_digit);
        out.push_str(&v[at..i]);
        out.push_str(if before_ok && after_ok { to } else { from });
        at = end;
    }
    out.push_str(&v[at..]);
    out
}
