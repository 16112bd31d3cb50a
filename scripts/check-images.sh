#!/usr/bin/env bash
# Checks the images without a container engine (make image-check; run by
# make test after cargo test, whose debug binaries it uses: no release build).
#
# For each Dockerfile.*:
#   1. the build stages are the same in every Dockerfile (so the second image
#      reuses the first one's compile), every COPY source exists in the
#      repository and is not kept out by .dockerignore, every COPY --from=builder
#      source is something the builder makes, and the runtime stage has a
#      numeric non-root USER, EXPOSE of the ports the manifests use, an
#      exec-form HEALTHCHECK and ENTRYPOINT running the copied binary, and
#      STOPSIGNAL SIGTERM;
#   2. (as root) lays out the runtime stage's files in a scratch root like the
#      image's (the binary from ${CARGO_TARGET_DIR:-target}/debug, the repo's
#      files where COPY puts them, the shared libraries the binary needs, which
#      must be among distroless/cc's), mounts the manifests' volumes on it
#      (emptyDir as tmpfs, the ConfigMap's files), makes it read-only and starts
#      the binary there as PID 1 of its own PID and network namespaces, as uid
#      and gid 1000 with the manifests' environment; then its `health`
#      subcommand must answer (and `health --ready` for the RTP manager), the
#      Prometheus annotations' port must serve /metrics without a token, and
#      SIGTERM must stop it;
#   3. prints an estimated compressed size per image.
# Dockerfile.call is a Job's image (switchboard-operator starts one per call):
# its runtime is Debian slim (it runs espeak-ng and PocketSphinx, installed by
# a RUN), it has HEALTHCHECK NONE and no port, and no manifest runs it: the
# operator's JOB_IMAGE must name it. It is not started here; the call agent's
# test job_env.rs runs the binary with exactly the env the operator's Job gives.
# The images themselves are not built here: there is no container engine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import glob
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

import yaml

TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
# images run as Jobs the operator creates, not by a manifest of deploy/k8s
JOB_IMAGES = {"call"}
findings = []
pending = []


def fail(msg):
    findings.append(msg)
    print(f"FAIL {msg}", file=sys.stderr)


# --- Dockerfile parsing ------------------------------------------------------
def instructions(path):
    """(instruction, args, raw) per logical line, comments dropped."""
    out, buf = [], ""
    for line in open(path):
        s = line.rstrip("\n")
        if not buf and (not s.strip() or s.lstrip().startswith("#")):
            continue
        if buf and s.lstrip().startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip(), buf))
        buf = ""
    return out


def stages(ins):
    st, cur = [], None
    for i in ins:
        if i[0] == "FROM":
            cur = {"from": i[1], "ins": []}
            st.append(cur)
        elif cur is not None:
            cur["ins"].append(i)
    return st


def copy_args(args):
    flags, rest = {}, []
    for a in shlex.split(args):
        if a.startswith("--") and not rest:
            k, _, v = a[2:].partition("=")
            flags[k] = v
        else:
            rest.append(a)
    return flags, rest[:-1], rest[-1]


def dockerignore_patterns():
    pats = []
    for line in open(".dockerignore"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pats.append((neg, line.lstrip("!").rstrip("/")))
    return pats


def glob_re(p):
    r, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            r += "(?:.*/)?"
            i += 3
        elif p[i] == "*":
            r += "[^/]*"
            i += 1
        elif p[i] == "?":
            r += "[^/]"
            i += 1
        else:
            r += re.escape(p[i])
            i += 1
    return re.compile(r + "(?:/.*)?$")


def ignored(path, pats):
    """Docker's rule: the last matching pattern wins; a pattern matching a
    parent directory matches what is below it."""
    res = False
    for neg, p in pats:
        if glob_re(p).match(path):
            res = not neg
    return res


def context_files(src):
    hits = sorted(glob.glob(src))
    files = []
    for h in hits:
        if os.path.isdir(h):
            for d, _, fs in os.walk(h):
                files += [os.path.join(d, f) for f in fs]
        else:
            files.append(h)
    return hits, files


# --- the manifests' view of each container -----------------------------------
def rendered():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        sys.exit("check-images: kubectl missing (scripts/ensure-deps.sh installs it)")
    out = subprocess.run([kubectl, "kustomize", "deploy/k8s"], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def container_of(docs, image):
    for d in docs:
        spec = (((d.get("spec") or {}).get("template") or {}).get("spec")) or {}
        for c in spec.get("containers", []):
            if c["image"].split(":")[0].endswith(image):
                return d, spec, c
    return None, None, None


def manifest_env(spec, c, docs):
    fake = {"metadata.name": f"{c['name']}-0", "metadata.namespace": "switchboard",
            "status.hostIP": "127.0.0.1", "spec.nodeName": "check-node"}
    env, notes = {}, []
    for e in c.get("env", []):
        name = e["name"]
        if "value" in e:
            env[name] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                               lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
        elif "fieldRef" in e.get("valueFrom", {}):
            env[name] = fake[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[name] = secrets.token_hex(24)
    # discovery through the Kubernetes API cannot run here
    for k in ("RTPMANAGER_SERVICE", "RTPMANAGER_PORTS"):
        if env.pop(k, None) is not None:
            notes.append(f"{k} left out (needs the Kubernetes API)")
    return env, notes


def mounts_of(spec, c, docs):
    """(mountPath, kind, source) for the container's volumeMounts."""
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    cms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    out = []
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"], {})
        if "emptyDir" in v:
            out.append((m["mountPath"], "tmpfs", None))
        elif "configMap" in v:
            data = cms[v["configMap"]["name"]].get("data", {})
            out.append((m["mountPath"], "files", data))
    return out


# --- what distroless/cc carries -----------------------------------------------
# gcr.io/distroless/cc-debian12 = static (base-files, netbase, tzdata,
# ca-certificates) + base (libc6, libssl3) + cc (libgcc-s1, libgomp1, libstdc++6)
DISTROLESS_CC_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
                      "libresolv.so.2", "libnss_files.so.2", "libnss_dns.so.2", "ld-linux-x86-64.so.2",
                      "libgcc_s.so.1", "libgomp.so.1", "libstdc++.so.6", "libssl.so.3", "libcrypto.so.3"}
DISTROLESS_PACKAGES = ["base-files", "netbase", "tzdata", "ca-certificates", "libc6", "libssl3",
                       "libgcc-s1", "libgomp1", "libstdc++6"]
# Published size of the base, for the estimate: see size_estimate().
DISTROLESS_CC_COMPRESSED_MB = None


def ldd(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(\S+) => (\S+)", line) or re.search(r"^\s*(/\S+)", line)
        if m and "vdso" not in line:
            path = m.group(2) if m.lastindex == 2 else m.group(1)
            libs.append((os.path.basename(m.group(1)), path))
    return libs


def gz_size(paths):
    """Bytes after gzip at level 6: the default level docker and containerd
    compress layers with (Go's compress/gzip DefaultCompression); -9 gains
    under 1 % on these files and takes three times as long."""
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)
            n = 0
            while chunk := f.read(1 << 20):
                n += len(c.compress(chunk))
            n += len(c.flush())
        total += n
    return total


def base_estimate():
    """gzip of the files of the Debian 12 packages distroless/cc is made of,
    as installed on this (Debian 12) machine: their layers are those files."""
    files = []
    for pkg in DISTROLESS_PACKAGES:
        r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
        if r.returncode != 0:
            return None
        for f in r.stdout.splitlines():
            if os.path.isfile(f) and not os.path.islink(f) and "/usr/share/doc" not in f \
                    and "/usr/share/man" not in f and "/usr/share/locale" not in f:
                files.append(f)
    return gz_size(sorted(set(files)))


# --- running the binary in an image-like root ----------------------------------
# The images run side by side (each waits on its own start-up), so each keeps
# its lines and they are printed once all are done.
import threading

said = {}


def say(name, line):
    said.setdefault(name, []).append(line)


def run_in_root(name, binary, rt, env, mounts, ports_hint):
    """Returns True when health answered (or the fallback did)."""
    root = tempfile.mkdtemp(prefix=f"img-{name}-")
    setup = []  # shell lines run inside the new namespaces, as root
    sh = shlex.quote
    setup.append(f"mount -t tmpfs -o mode=0755 tmpfs {sh(root)}")
    for d in ("etc/ssl/certs", "usr/share/zoneinfo", "lib/x86_64-linux-gnu", "lib64", "proc", "dev",
              "sys", "tmp", "usr/local/bin", "home/nonroot"):
        setup.append(f"mkdir -p {sh(root + '/' + d)}")
    setup.append(f"chmod 1777 {sh(root + '/tmp')}")
    setup.append(f"printf 'root:x:0:0:root:/root:/sbin/nologin\\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\\n' > {sh(root + '/etc/passwd')}")
    setup.append(f"printf 'root:x:0:\\nnobody:x:65534:\\nnonroot:x:65532:\\n' > {sh(root + '/etc/group')}")
    for lib, path in ldd(binary):
        dest = "lib64" if lib.startswith("ld-linux") else "lib/x86_64-linux-gnu"
        setup.append(f"cp -L {sh(path)} {sh(root + '/' + dest + '/' + lib)}")
    setup.append(f"cp -L /etc/ssl/certs/ca-certificates.crt {sh(root + '/etc/ssl/certs/')} 2>/dev/null || true")
    # the runtime stage's files
    for c in rt["copies"]:
        dest = root + c["dest"]
        if c["from"] == "builder":
            src = c["local"]
            if src is None:
                # a directory the builder made (mkdir -p under /out): what is
                # below the COPY source lands below its destination, owned as
                # --chown says; the destination itself is the base image's
                setup.append(f"mkdir -p {sh(dest)}")
                for made in c["made"]:
                    setup.append(f"mkdir -p {sh(dest + made)}")
                    if c.get("chown"):
                        parts = made.strip("/").split("/")
                        for i in range(1, len(parts) + 1):
                            setup.append(f"chown {sh(c['chown'])} {sh(dest.rstrip('/') + '/' + '/'.join(parts[:i]))}")
                continue
            setup.append(f"mkdir -p {sh(os.path.dirname(dest))} && cp {sh(src)} {sh(dest)}")
        else:
            for s in c["srcs"]:
                for f in sorted(glob.glob(s)):
                    t = dest + os.path.basename(f) if c["dest"].endswith("/") else dest
                    setup.append(f"mkdir -p {sh(os.path.dirname(t))} && cp {sh(f)} {sh(t)}")
        if c.get("chown"):
            setup.append(f"chown -R {sh(c['chown'])} {sh(dest)}")
    setup.append(f"mkdir -p {sh(root + rt['workdir'])}")
    # the manifests' volumes
    for path, kind, data in mounts:
        setup.append(f"mkdir -p {sh(root + path)}")
        if kind == "tmpfs":
            setup.append(f"mount -t tmpfs -o mode=1777 tmpfs {sh(root + path)}")
        else:
            setup.append(f"mount -t tmpfs -o mode=0755 tmpfs {sh(root + path)}")
            for fname, content in data.items():
                setup.append(f"printf %s {sh(content)} > {sh(root + path + '/' + fname)}")
            setup.append(f"mount -o remount,ro {sh(root + path)}")
    setup.append(f"mount --rbind /dev {sh(root + '/dev')}")
    setup.append(f"mount -t proc proc {sh(root + '/proc')}")
    # read-only root, as readOnlyRootFilesystem
    setup.append(f"mount -o remount,ro,bind {sh(root)}")
    setup.append("ip link set lo up")
    setup.append(f"if touch {sh(root)}/rw-probe 2>/dev/null; then echo 'root is writable' >&2; exit 97; fi")
    user = rt["user"]
    uid, _, gid = user.partition(":")
    envargs = " ".join(sh(f"{k}={v}") for k, v in {**rt["env"], **env,
                                                     "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}.items())
    entry = " ".join(sh(a) for a in rt["entrypoint"])
    setup.append(f"exec env -i {envargs} unshare --root={sh(root)} --wd={sh(rt['workdir'])} "
                 f"--setuid {uid} --setgid {gid or uid} -- {entry}")
    script = "set -e\n" + "\n".join(setup) + "\n"
    log = open(os.path.join(tempfile.gettempdir(), f"image-check-{name}.log"), "w+")
    proc = subprocess.Popen(["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private",
                             "bash", "-c", script], stdout=log, stderr=subprocess.STDOUT)
    # the forked child (PID 1 inside): bash, then exec'd into the binary
    pid = None
    for _ in range(50):
        try:
            kids = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        except OSError:
            kids = []
        if kids:
            pid = int(kids[0])
            break
        time.sleep(0.1)

    def in_ns(args, timeout=10):
        cmd = ["nsenter", "-t", str(pid), "-m", "-n", "-p", "--", "env", "-i", *[f"{k}={v}" for k, v in {**rt["env"], **env}.items()],
               "unshare", f"--root={root}", f"--wd={rt['workdir']}", "--setuid", uid, "--setgid", gid or uid, "--", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    ok = False
    try:
        if pid is None:
            fail(f"{name}: did not start")
            return False
        health = [rt["healthcheck"]]
        if name == "rtpmanager":
            health.append(rt["healthcheck"] + ["--ready"])
        deadline = time.time() + 25
        last = None
        while time.time() < deadline and proc.poll() is None:
            exe = os.readlink(f"/proc/{pid}/exe") if os.path.exists(f"/proc/{pid}/exe") else ""
            if exe.endswith(os.path.basename(rt["entrypoint"][0])):
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            log.seek(0)
            fail(f"{name}: exited at start (code {proc.returncode}):\n{log.read()[-3000:]}")
            return False
        status = open(f"/proc/{pid}/status").read()
        uids = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
        gids = re.search(r"^Gid:\s+(\d+)", status, re.M).group(1)
        groups = re.search(r"^Groups:[ \t]*(.*)$", status, re.M).group(1).strip()
        capeff = re.search(r"^CapEff:\s+(\S+)", status, re.M).group(1)
        say(name, f"  {name}: PID 1 of its namespaces, uid {uids} gid {gids} groups [{groups}] "
              f"CapEff {capeff}, read-only root, volumes {[m[0] for m in mounts]}")
        if (uids, gids) != (uid, gid or uid) or groups or int(capeff, 16) != 0:
            fail(f"{name}: runs as uid {uids} gid {gids} groups [{groups}] CapEff {capeff}")
        for cmd in health:
            while time.time() < deadline:
                last = in_ns(cmd)
                if last.returncode == 0:
                    break
                if re.search(r"unrecognized subcommand|unexpected argument", last.stderr + last.stdout):
                    break
                time.sleep(0.5)
            text = (last.stderr + last.stdout).strip()
            if last.returncode == 0:
                say(name, f"  {name}: `{' '.join(cmd)}` answered: {text.splitlines()[-1][:160] if text else 'ok'}")
                ok = True
            elif re.search(r"unrecognized subcommand|unexpected argument", text):
                pending.append(f"{name}: this build has no `{' '.join(cmd[1:])}` subcommand yet "
                               "(the Dockerfile's HEALTHCHECK and the manifests' probes use it)")
                ok = fallback(name, pid, env)
                break
            else:
                fail(f"{name}: `{' '.join(cmd)}` failed ({last.returncode}): {text[-500:]}")
                ok = False
                break
        # the Prometheus annotations' target answers without a token
        ann = rt.get("annotations") or {}
        if ann.get("prometheus.io/scrape") == "true":
            url = f"http://127.0.0.1:{ann.get('prometheus.io/port')}{ann.get('prometheus.io/path', '/metrics')}"
            code = ("import urllib.request,urllib.error\n"
                    "try:\n"
                    f"    r=urllib.request.urlopen('{url}',timeout=3); b=r.read().decode(); print(r.status, len(b.splitlines()))\n"
                    "except urllib.error.HTTPError as e: print(e.code, 0)\n"
                    "except OSError as e: print('refused', e)\n")
            r = subprocess.run(["nsenter", "-t", str(pid), "-n", "python3", "-c", code], capture_output=True, text=True)
            got = r.stdout.strip()
            if got.startswith("200 "):
                say(name, f"  {name}: {url} (prometheus.io annotations) answered 200 without a token, {got.split()[1]} lines")
            elif got.startswith("refused"):
                pending.append(f"{name}: nothing listens on {url} (this build has no METRICS_PORT yet?)")
            else:
                fail(f"{name}: {url} (prometheus.io annotations): {got or r.stderr.strip()[-200:]}")
        # SIGTERM to PID 1: the binary must handle it itself
        os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
            say(name, f"  {name}: SIGTERM: exited with code {proc.returncode}")
            if proc.returncode != 0:
                fail(f"{name}: exit code {proc.returncode} after SIGTERM")
        except subprocess.TimeoutExpired:
            fail(f"{name}: still running 15 s after SIGTERM")
        return ok
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        text = log.read()
        if findings and text:
            say(name, f"  --- {name} log (last lines) ---\n" + "\n".join(text.splitlines()[-15:]))
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def fallback(name, pid, env):
    """Until `health` exists: what it will ask, asked from outside."""
    if name == "signaling":
        port = env.get("API_PORT", "8080")
        code = ("import urllib.request,sys;"
                f"r=urllib.request.urlopen('http://127.0.0.1:{port}/api/v1/health',timeout=3);"
                "print(r.status, r.read().decode()[:200])")
    elif name == "ui":
        port = env.get("UI_PORT", "3000")
        code = ("import urllib.request,sys;"
                f"r=urllib.request.urlopen('http://127.0.0.1:{port}/health',timeout=3);"
                "print(r.status, r.read().decode()[:200])")
    else:
        port = 9090
        code = f"import socket;socket.create_connection(('127.0.0.1',{port}),timeout=3);print('gRPC port {port} accepts')"
    for _ in range(20):
        r = subprocess.run(["nsenter", "-t", str(pid), "-n", "python3", "-c", code], capture_output=True, text=True)
        if r.returncode == 0:
            say(name, f"  {name}: instead, from outside: {r.stdout.strip()[:200]}")
            return True
        time.sleep(0.5)
    fail(f"{name}: {r.stderr.strip()[-300:]}")
    return False


# --- main --------------------------------------------------------------------
docs = rendered()
pats = dockerignore_patterns()
dockerfiles = sorted(glob.glob("Dockerfile.*"))
builders = {}
root_ok = os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter", "ip", "ldd"))
if not root_ok:
    print("check-images: not root (or unshare/nsenter/ip/ldd missing): the run in a read-only root as uid 1000 is skipped")
base_gz = base_estimate()
runs = []

for df in dockerfiles:
    name = df.split(".", 1)[1]
    print(f"{df}:")
    st = stages(instructions(df))
    ins_all = instructions(df)
    last_from = max(i for i, x in enumerate(ins_all) if x[0] == "FROM")
    builders[df] = [x[2] for x in ins_all[:last_from]]
    named = {re.split(r"\s+AS\s+", s["from"], flags=re.I)[-1]: s for s in st[:-1]}
    rt_stage = st[-1]
    rt = {"copies": [], "user": None, "expose": set(), "healthcheck": None, "entrypoint": None,
          "stopsignal": None, "workdir": "/", "env": {}}
    builder_text = " ".join(i[2] for i in named.get("builder", {"ins": []})["ins"])
    # every COPY from the context, in every stage
    for s in st:
        for ins, args, raw in s["ins"]:
            if ins != "COPY":
                continue
            flags, srcs, dest = copy_args(args)
            if "from" in flags:
                continue
            for src in srcs:
                hits, files = context_files(src)
                if not hits:
                    fail(f"{df}: COPY {src}: nothing in the repository matches")
                bad = [f for f in files if ignored(os.path.normpath(f), pats)]
                if bad:
                    fail(f"{df}: COPY {src}: kept out by .dockerignore: {bad[:3]}")
    for ins, args, raw in rt_stage["ins"]:
        if ins == "COPY":
            flags, srcs, dest = copy_args(args)
            c = {"from": flags.get("from"), "srcs": srcs, "dest": dest, "chown": flags.get("chown")}
            if c["from"] == "builder":
                src = srcs[0]
                if src not in builder_text and not any(src.startswith(p) for p in re.findall(r"/out/\S*", builder_text)):
                    fail(f"{df}: COPY --from=builder {src}: the builder does not make it")
                if src.startswith("/out/bin/"):
                    binname = os.path.basename(src)
                    local = None
                    for prof in ("debug",):
                        p = os.path.join(TARGET, prof, binname)
                        if os.path.isfile(p):
                            local = p
                    if local is None:
                        fail(f"{df}: no {TARGET}/debug/{binname} (run cargo build or make test first)")
                    c["local"] = local
                else:
                    c["local"] = None
                    made = [m for m in re.findall(r"(/out/\S+)", builder_text) if m.startswith(src.rstrip("/") + "/")]
                    c["made"] = sorted({m[len(src.rstrip("/")):] for m in made})
            rt["copies"].append(c)
        elif ins == "USER":
            rt["user"] = args
        elif ins == "EXPOSE":
            rt["expose"] |= set(args.split())
        elif ins == "WORKDIR":
            rt["workdir"] = args
        elif ins == "ENV":
            k, _, v = args.partition("=")
            rt["env"][k] = v
        elif ins == "STOPSIGNAL":
            rt["stopsignal"] = args
        elif ins == "ENTRYPOINT":
            rt["entrypoint"] = json.loads(args) if args.startswith("[") else None
            if rt["entrypoint"] is None:
                fail(f"{df}: ENTRYPOINT is not in exec form")
        elif ins == "HEALTHCHECK" and name in JOB_IMAGES and args.strip().upper() == "NONE":
            rt["healthcheck"] = None
        elif ins == "HEALTHCHECK":
            m = re.search(r"CMD\s+(\[.*\])\s*$", args)
            rt["healthcheck"] = json.loads(m.group(1)) if m else None
            if not m:
                fail(f"{df}: HEALTHCHECK is not an exec-form CMD")
        elif ins in ("CMD", "RUN", "ADD"):
            if ins == "RUN" and name not in JOB_IMAGES:
                fail(f"{df}: RUN in the runtime stage (distroless has no shell)")
    if not rt["user"] or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", rt["user"]):
        fail(f"{df}: USER {rt['user']} is not a numeric non-root uid[:gid]")
    if rt["stopsignal"] != "SIGTERM":
        fail(f"{df}: STOPSIGNAL is {rt['stopsignal']}, not SIGTERM")
    copied = {c["dest"] for c in rt["copies"]}
    if rt["entrypoint"] and rt["entrypoint"][0] not in copied:
        fail(f"{df}: ENTRYPOINT {rt['entrypoint'][0]} is not a file the stage copies")
    if rt["healthcheck"] and (rt["healthcheck"][0] != (rt["entrypoint"] or [None])[0] or rt["healthcheck"][1:] != ["health"]):
        fail(f"{df}: HEALTHCHECK is not [binary, \"health\"]")
    if name in JOB_IMAGES:
        op_d, op_spec, op_c = container_of(docs, "switchboard-operator")
        job_image = next((e.get("value", "") for e in (op_c or {}).get("env", []) if e["name"] == "JOB_IMAGE"), "")
        if not job_image.split(":")[0].endswith(f"switchboard-{name}"):
            fail(f"{df}: the operator's JOB_IMAGE ({job_image or 'unset'}) is not the switchboard-{name} image")
        if rt["expose"]:
            fail(f"{df}: a Job's image exposes no port ({sorted(rt['expose'])})")
        print(f"  a Job's image (JOB_IMAGE {job_image}): USER {rt['user']}; ENTRYPOINT {rt['entrypoint']}; "
              f"STOPSIGNAL {rt['stopsignal']}; not started here (crates/call-agent/tests/job_env.rs runs it "
              "with the operator's Job env)")
        continue
    # ports the manifests use
    d, spec, c = container_of(docs, f"switchboard-{name}")
    if c is None:
        fail(f"{df}: no container of image switchboard-{name} in deploy/k8s")
        continue
    want = {f"{p['containerPort']}/{p.get('protocol', 'TCP').lower()}" for p in c.get("ports", [])}
    if name == "rtpmanager":
        want.add("9090/tcp")
    missing = want - rt["expose"]
    if missing:
        fail(f"{df}: EXPOSE lacks {sorted(missing)} (the manifests use them)")
    print(f"  stages: {' -> '.join(s['from'].split()[-1] for s in st)}; USER {rt['user']}; "
          f"EXPOSE {' '.join(sorted(rt['expose']))}; HEALTHCHECK {rt['healthcheck']}; "
          f"ENTRYPOINT {rt['entrypoint']}; STOPSIGNAL {rt['stopsignal']}")
    print(f"  copies: " + "; ".join(f"{'builder:' if x['from'] else ''}{' '.join(x['srcs'])} -> {x['dest']}" for x in rt["copies"]))
    local_bin = next((x["local"] for x in rt["copies"] if x.get("local")), None)
    if local_bin is None:
        continue
    libs = ldd(local_bin)
    extra = sorted(l for l, _ in libs if l not in DISTROLESS_CC_LIBS)
    if extra:
        fail(f"{df}: {os.path.basename(local_bin)} needs libraries distroless/cc lacks: {extra}")
    else:
        print(f"  shared libraries: {', '.join(l for l, _ in libs)} (all in distroless/cc)")
    # size estimate
    adds = []
    for x in rt["copies"]:
        if x.get("local"):
            adds.append(x["local"])
        elif not x["from"]:
            for s in x["srcs"]:
                adds += [f for f in glob.glob(s) if os.path.isfile(f)]
    rel = os.path.join(TARGET, "release", os.path.basename(local_bin))
    measured = rel if os.path.isfile(rel) else local_bin
    adds = [measured if a == local_bin else a for a in adds]
    stripped = tempfile.NamedTemporaryFile(delete=False)
    subprocess.run(["strip", "--strip-debug", "-o", stripped.name, measured], check=False)
    adds_s = [stripped.name if a == measured else a for a in adds]
    own = gz_size(adds_s)
    os.unlink(stripped.name)
    kind = "release" if measured == rel else "debug (unoptimised: an upper bound)"
    base_txt = f"{base_gz / 1e6:.1f} MB" if base_gz else "unknown"
    total = (own + (base_gz or 0)) / 1e6
    print(f"  size estimate: base distroless/cc ~{base_txt} (gzip of its Debian 12 packages' files here) "
          f"+ {own / 1e6:.1f} MB added (gzip, {kind} binary with debug info stripped as the builder does) "
          f"= ~{total:.1f} MB compressed")
    # run it
    if root_ok and rt["entrypoint"] and rt["healthcheck"]:
        env, notes = manifest_env(spec, c, docs)
        rt["annotations"] = ((d.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
        if notes:
            print("  env: the manifests' (" + "; ".join(notes) + "; Secrets random, node IP 127.0.0.1)")
        t = threading.Thread(target=run_in_root, args=(name, local_bin, rt, env, mounts_of(spec, c, docs), None))
        t.start()
        runs.append((name, t))

for name, t in runs:
    t.join()
    print(f"run of {name} in an image-like root (read-only, uid 1000, the manifests' env and volumes):")
    for line in said.get(name, []):
        print(line)
if len({json.dumps(b) for b in builders.values()}) > 1:
    fail("the build stages differ between " + ", ".join(dockerfiles) + ": keep them the same (shared cache)")
else:
    print(f"build stages identical in {', '.join(dockerfiles)}")

for p in pending:
    print(f"PENDING {p}")
print("note: the images were not built here (no container engine); sizes are estimates")
if findings:
    sys.exit(1)
print("image-check ok")
PY
