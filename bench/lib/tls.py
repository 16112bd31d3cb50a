#!/usr/bin/env python3
"""SIP over TLS against UDP: authenticated REGISTERs per second, one core.

On 127.0.0.1 only: one switchboard-signaling (pinned to CPU 1) serving UDP
on PORT and TLS on TLS_PORT with a certificate from a test CA, USERS users
created over the REST API, and target/release/register-bench (pinned to
CPU 0) registering them as fast as the server answers: REGISTER → 401 →
REGISTER with digest → 200, CONNECTIONS UDP sockets or TLS connections
(kept open and reused, as phones and proxies keep theirs) with WINDOW
registrations in flight on each. The same generator drives both
transports; rounds alternate UDP and TLS and the best round of each
counts. Printed: registrations/s, the server's CPU per registration and
the ratio TLS/UDP (issue target ≥ 0.5×). Writes bench/out/tls.json.
Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
OUT = BENCH / "out"
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def log(msg: str) -> None:
    print(f"[tls] {msg}", file=sys.stderr, flush=True)


def run(transport: str, a, port: int, tls_port: int, certs: Path, server_pid: int) -> dict:
    hz = os.sysconf("SC_CLK_TCK")
    target = port if transport == "udp" else tls_port
    gen = subprocess.Popen(
        ["taskset", "-c", "0", str(RELEASE / "register-bench"), "run",
         "--server", f"127.0.0.1:{target}", "--transport", transport,
         "--ca", str(certs / "ca.pem"), "--users", str(a.users),
         "--connections", str(a.connections), "--window", str(a.window),
         "--seconds", str(a.seconds), "--warmup", str(a.warmup)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the server's and the generator's CPU over the measured window only
    time.sleep(a.warmup + 0.3)
    s0, g0, t0 = B.cpu_ticks(server_pid), B.cpu_ticks(gen.pid), time.time()
    time.sleep(max(a.seconds - 0.6, 1.0))
    s1, g1, t1 = B.cpu_ticks(server_pid), B.cpu_ticks(gen.pid), time.time()
    out, err = gen.communicate(timeout=a.seconds + a.warmup + 60)
    if gen.returncode != 0:
        raise SystemExit(f"register-bench failed: {err.strip()[:800]}")
    res = json.loads(out.strip().splitlines()[-1])
    span = t1 - t0
    res["server_cpu"] = round((s1 - s0) / hz / span, 3)
    res["generator_cpu"] = round((g1 - g0) / hz / span, 3)
    rate = res["per_second"] or 0
    res["server_cpu_us_per_registration"] = (
        round(res["server_cpu"] / rate * 1e6, 1) if rate else None)
    log(f"{transport:>3}: {rate:>7.0f} registrations/s  failed {res['failed']}  "
        f"timeouts {res['timeouts']}  server cpu {res['server_cpu'] * 100:.0f} %  "
        f"generator cpu {res['generator_cpu'] * 100:.0f} %")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for b in ("switchboard-signaling", "register-bench"):
        if not (RELEASE / b).exists():
            sys.exit(f"{RELEASE / b} not built: cargo build --release -p switchboard-signaling "
                     "-p switchboard-bench")
    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: server and generator share one; figures are not comparable")
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="switchboard-tls-bench-"))
    certs = work / "certs"
    subprocess.run([str(RELEASE / "register-bench"), "cert", "--dir", str(certs)], check=True)
    port = B.free_port("", 15270)
    tls_port = B.free_port("", 15271)
    api = B.free_port("", 18280)
    env = dict(os.environ, PORT=str(port), BIND="127.0.0.1", TLS_PORT=str(tls_port),
               TLS_CERT=str(certs / "server.pem"), TLS_KEY=str(certs / "server.key"),
               API_PORT=str(api), API_BIND="127.0.0.1", DATA_DIR=str(work),
               API_TOKEN="bench", AUTH_ALGORITHMS="MD5", LOGLEVEL="warn",
               # one generator address at thousands of REGISTERs/s: the
               # per-source rate limit and the transaction cap are not what
               # is measured (as in bench/run.sh)
               SIP_RATE_PER_IP="0", MAX_TRANSACTIONS="0")
    slog = OUT / "tls-signaling.log"
    server = subprocess.Popen(["taskset", "-c", "1", str(RELEASE / "switchboard-signaling")],
                              env=env, stdout=open(slog, "w"), stderr=subprocess.STDOUT)
    results: dict = {"users": a.users, "connections": a.connections, "window": a.window,
                     "rounds": {"udp": [], "tls": []}}
    try:
        if subprocess.run([sys.executable, str(HERE / "bench.py"), "wait-tcp", "--port",
                           str(api), "--seconds", "30"]).returncode != 0:
            raise SystemExit(f"signaling did not start: {slog}")
        log(f"creating {a.users} users over the REST API")
        subprocess.run([sys.executable, str(HERE / "bench.py"), "create-users",
                        "--api", f"127.0.0.1:{api}", "--token", "bench",
                        "--count", str(a.users)], check=True, stdout=subprocess.DEVNULL)
        for i in range(a.rounds):
            for t in ("udp", "tls"):
                results["rounds"][t].append(run(t, a, port, tls_port, certs, server.pid))
                time.sleep(1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    best = {t: max(rs, key=lambda r: r["per_second"] or 0)
            for t, rs in results["rounds"].items()}
    results["best"] = best
    udp, tls = best["udp"]["per_second"] or 0, best["tls"]["per_second"] or 0
    ratio = tls / udp if udp else None
    results["ratio_tls_udp"] = round(ratio, 3) if ratio is not None else None
    (OUT / "tls.json").write_text(json.dumps(results, indent=2))
    print()
    print("Authenticated REGISTER (401 + digest + 200), switchboard-signaling on one core,")
    print(f"{a.connections} sockets/connections x {a.window} in flight, best of {a.rounds} rounds")
    print(f"{'transport':<10}{'reg/s':>9}{'failed':>8}{'timeouts':>9}{'server cpu':>12}"
          f"{'µs/reg':>9}{'gen cpu':>9}")
    for t, r in best.items():
        print(f"{t:<10}{r['per_second']:>9.0f}{r['failed']:>8}{r['timeouts']:>9}"
              f"{r['server_cpu'] * 100:>11.0f}%{r['server_cpu_us_per_registration'] or 0:>9.0f}"
              f"{r['generator_cpu'] * 100:>8.0f}%")
    if ratio is not None:
        print(f"ratio TLS / UDP: {ratio:.2f}x (target >= 0.5x: {'PASS' if ratio >= 0.5 else 'FAIL'})")
    if any(r["generator_cpu"] > 0.9 for r in best.values()):
        print("note: the generator neared a full core: that figure is a lower bound")
    failed = any(r["failed"] or r["errors"] for r in best.values())
    if failed:
        print("registrations failed: see bench/out/tls.json and", slog)
        sys.exit(1)


if __name__ == "__main__":
    main()
