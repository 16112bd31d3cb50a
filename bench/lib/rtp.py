#!/usr/bin/env python3
"""RTP relay: switchboard-rtpmanager against rtpengine (userspace), one core each.

For each relay, on 127.0.0.1 only:
  the relay runs pinned to CPU 1 with one worker thread
    switchboard-rtpmanager  TOKIO_WORKER_THREADS=1
    rtpengine               --num-threads=1 --table=-1 (no kernel module:
                            every packet through its userspace loop)
  the load generator (target/release/relay-bench) runs pinned to CPU 0:
    N bridged calls, two legs of 50 packets/s each (20 ms PCMU, 172-byte
    packets), sessions set up over gRPC (switchboard) or the ng protocol
    (rtpengine), measured for --seconds after a warm-up.
  switchboard-srtp is switchboard-rtpmanager again with leg A of every call
  in SRTP (RTP/SAVP, AES_CM_128_HMAC_SHA1_80 by SDES) and leg B plain: the
  relay decrypts every packet from A and encrypts every packet to A (the
  generator seals and opens A's packets on its own core); its highest N
  against plain switchboard's is the SRTP relay capacity ratio.

A trial passes with < 0.1 % loss and p99 one-way latency through the relay
< 5 ms; a step is --trials trials at the same N and passes when most of
them pass (on a shared virtual machine a single scheduling hiccup of tens
of milliseconds, in the relay or the generator, fails a lone trial's p99;
the step reports the median p99 and the worst loss). The search grows N by
1.5x while steps pass, then bisects, within a time budget. Reported per relay: the highest passing N, the relay's CPU
(utime+stime from /proc, as a share of its one core) at that N, the
generator's CPU (if it nears 100 %, the generator, not the relay, is the
limit and the figure is a lower bound), and the ratio of the two relays.

Prints a table and writes bench/out/rtp.json. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402  (/proc helpers)

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
OUT = BENCH / "out"
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
RELEASE = TARGET_DIR / "release"

LOSS_LIMIT = 0.001
P99_LIMIT_US = 5000


def log(msg: str) -> None:
    print(f"[rtp] {msg}", file=sys.stderr, flush=True)


def tick_hz() -> int:
    return os.sysconf("SC_CLK_TCK")


def wait_tcp(port: int, seconds: float = 10) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_ng(port: int, seconds: float = 10) -> bool:
    end = time.time() + seconds
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    while time.time() < end:
        try:
            s.sendto(b"1 d7:command4:pinge", ("127.0.0.1", port))
            data, _ = s.recvfrom(1000)
            if b"pong" in data:
                return True
        except OSError:
            time.sleep(0.05)
    return False


def relay_of(target: str) -> str:
    """The relay a target measures: switchboard-srtp is switchboard-rtpmanager
    with leg A of every call in SRTP."""
    return "switchboard" if target.startswith("switchboard") else target


def start_relay(target: str, control: int, ports: tuple[int, int]) -> subprocess.Popen:
    if relay_of(target) == "switchboard":
        env = dict(os.environ, TOKIO_WORKER_THREADS="1", LOGLEVEL="warn")
        cmd = ["taskset", "-c", "1", str(RELEASE / "switchboard-rtpmanager"),
               "--grpc-bind", "127.0.0.1", "--grpc-port", str(control),
               "--rtp-bind", "127.0.0.1", "--rtp-port-min", str(ports[0]),
               "--rtp-port-max", str(ports[1]), "--rtp-timeout", "3600"]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = wait_tcp(control)
    else:
        cmd = ["taskset", "-c", "1", "rtpengine", "--interface=127.0.0.1",
               f"--listen-ng=127.0.0.1:{control}", "--foreground", "--log-stderr",
               "--table=-1", "--num-threads=1", f"--port-min={ports[0]}",
               f"--port-max={ports[1]}", "--log-level=3", "--timeout=3600",
               "--delete-delay=0"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = wait_ng(control)
    if not ok:
        p.kill()
        raise RuntimeError(f"{target} did not start ({' '.join(cmd)})")
    return p


def step(target: str, control: int, relay: subprocess.Popen, calls: int, seconds: int,
         warmup: int, trials: int) -> dict:
    runs = [trial(target, control, relay, calls, seconds, warmup) for _ in range(trials)]
    passed = sum(1 for r in runs if r["passed"])
    p99s = sorted(r["p99_us"] for r in runs)
    return {
        "calls": calls,
        "trials": runs,
        "passed": passed * 2 > len(runs),
        "loss": max(r["loss"] for r in runs),
        "p50_us": sorted(r["p50_us"] for r in runs)[len(runs) // 2],
        "p99_us": p99s[len(p99s) // 2],
        "relay_cpu": round(sum(r["relay_cpu"] for r in runs) / len(runs), 3),
        "generator_cpu": round(sum(r["generator_cpu"] for r in runs) / len(runs), 3),
    }


def trial(target: str, control: int, relay: subprocess.Popen, calls: int, seconds: int,
          warmup: int) -> dict:
    hz = tick_hz()
    gen = subprocess.Popen(
        ["taskset", "-c", "0", str(RELEASE / "relay-bench"), "--target", relay_of(target),
         "--control", f"127.0.0.1:{control}", "--calls", str(calls),
         "--seconds", str(seconds), "--warmup", str(warmup)]
        + (["--srtp"] if target == "switchboard-srtp" else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # sample both processes' CPU over the measured window only (after
    # set-up and warm-up, before the end of sending)
    setup_guess = 0.5 + calls / 2000
    time.sleep(setup_guess + warmup + 0.2)
    r0, g0, t0 = B.cpu_ticks(relay.pid), B.cpu_ticks(gen.pid), time.time()
    time.sleep(max(seconds - 1.0, 1.0))
    r1, g1, t1 = B.cpu_ticks(relay.pid), B.cpu_ticks(gen.pid), time.time()
    out, err = gen.communicate(timeout=seconds + warmup + 120)
    if gen.returncode != 0:
        raise RuntimeError(f"relay-bench failed: {err.strip()[:800]}")
    res = json.loads(out.strip().splitlines()[-1])
    span = t1 - t0
    res["relay_cpu"] = round((r1 - r0) / hz / span, 3)
    res["generator_cpu"] = round((g1 - g0) / hz / span, 3)
    res["passed"] = res["loss"] < LOSS_LIMIT and res["p99_us"] < P99_LIMIT_US
    time.sleep(0.5)
    return res


def search(target: str, start: int, seconds: int, warmup: int, trials: int, budget: int,
           control: int, ports: tuple[int, int]) -> dict:
    relay = start_relay(target, control, ports)
    steps = []
    best = None
    lo, hi = 0, None
    n = start
    t_end = time.time() + budget
    try:
        while time.time() < t_end:
            r = step(target, control, relay, n, seconds, warmup, trials)
            steps.append(r)
            votes = "".join("+" if t["passed"] else "-" for t in r["trials"])
            log(f"{target:>16} {n:>6} calls  {'PASS' if r['passed'] else 'FAIL'} {votes}  "
                f"loss {r['loss'] * 100:.3f} %  p50 {r['p50_us']} µs  p99 {r['p99_us']} µs  "
                f"relay cpu {r['relay_cpu'] * 100:.0f} %  generator cpu {r['generator_cpu'] * 100:.0f} %")
            if relay.poll() is not None:
                log(f"{target} exited during the step")
                break
            if r["passed"]:
                best = r
                lo = n
            else:
                hi = n
            if hi is None:
                n = int(n * 1.5)
            else:
                if hi - lo <= max(25, lo // 20):
                    break
                n = (lo + hi) // 2
            time.sleep(1.0)
    finally:
        relay.terminate()
        try:
            relay.wait(timeout=10)
        except subprocess.TimeoutExpired:
            relay.kill()
    return {"target": target, "best": best, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default="switchboard switchboard-srtp rtpengine")
    ap.add_argument("--start", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-seconds", type=int, default=300,
                    help="time budget of one relay's search")
    a = ap.parse_args()
    if not (RELEASE / "relay-bench").exists() or not (RELEASE / "switchboard-rtpmanager").exists():
        sys.exit("build first: cargo build --release -p switchboard-rtpmanager -p switchboard-bench")
    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: relay and generator share one; figures are not comparable")
    OUT.mkdir(exist_ok=True)
    results = {}
    control = {"switchboard": 19190, "switchboard-srtp": 19191, "rtpengine": 22222}
    ports = {"switchboard": (20000, 29999), "switchboard-srtp": (40000, 49999),
             "rtpengine": (30000, 39999)}
    for t in a.targets.split():
        if t == "rtpengine" and not shutil.which("rtpengine"):
            log("rtpengine missing (Debian package rtpengine-daemon): not measured")
            results[t] = {"target": t, "best": None, "steps": [], "missing": True}
            continue
        log(f"== {t}: search from {a.start} calls, {a.trials} x {a.seconds} s per step, "
            f"budget {a.max_seconds} s")
        results[t] = search(t, a.start, a.seconds, a.warmup, a.trials, a.max_seconds,
                            control[t], ports[t])
    (OUT / "rtp.json").write_text(json.dumps(results, indent=2))
    print()
    print("RTP relay, one core each: highest concurrent bridged calls (2 legs x 50 pps)")
    print("with < 0.1 % loss and p99 one-way latency < 5 ms")
    print(f"{'relay':<18}{'calls':>8}{'pps in':>10}{'loss %':>9}{'p99 µs':>9}{'relay cpu':>11}{'gen cpu':>9}")
    for t, r in results.items():
        b = r.get("best")
        if not b:
            print(f"{t:<18}{'-':>8}")
            continue
        print(f"{t:<18}{b['calls']:>8}{b['calls'] * 100:>10}{b['loss'] * 100:>9.3f}"
              f"{b['p99_us']:>9}{b['relay_cpu'] * 100:>10.0f}%{b['generator_cpu'] * 100:>8.0f}%")
    sb, re_ = results.get("switchboard", {}).get("best"), results.get("rtpengine", {}).get("best")
    srtp = results.get("switchboard-srtp", {}).get("best")
    if sb and srtp:
        ratio = srtp["calls"] / sb["calls"]
        print(f"ratio switchboard SRTP<->plain / plain: {ratio:.2f}x calls "
              f"(target >= 0.6x: {'PASS' if ratio >= 0.6 else 'FAIL'})")
        cpu_plain = sb["relay_cpu"] / sb["calls"] * 1e6
        cpu_srtp = srtp["relay_cpu"] / srtp["calls"] * 1e6
        print(f"relay CPU per call: plain {cpu_plain:.0f} µs/s, SRTP<->plain {cpu_srtp:.0f} µs/s "
              f"(SRTP leaves {cpu_plain / cpu_srtp:.2f}x the calls per core)")
    if sb and re_:
        print(f"ratio switchboard / rtpengine: {sb['calls'] / re_['calls']:.2f}x calls")
        per_sb = sb["relay_cpu"] / sb["calls"] * 1e6
        per_re = re_["relay_cpu"] / re_["calls"] * 1e6
        print(f"relay CPU per call: switchboard {per_sb:.0f} µs/s, rtpengine {per_re:.0f} µs/s "
              f"(ratio {per_sb / per_re:.2f})")
        first = [results[t]["steps"][0] for t in ("switchboard", "rtpengine")
                 if results[t]["steps"]]
        if len(first) == 2 and first[0]["calls"] == first[1]["calls"]:
            n = first[0]["calls"]
            print(f"relay CPU at the same load ({n} calls): switchboard "
                  f"{first[0]['relay_cpu'] * 100:.0f} %, rtpengine {first[1]['relay_cpu'] * 100:.0f} % "
                  f"(ratio {first[0]['relay_cpu'] / max(first[1]['relay_cpu'], 1e-9):.2f})")
        gen_bound = [t for t, b in (("switchboard", sb), ("rtpengine", re_))
                     if b["generator_cpu"] > 0.9]
        if gen_bound:
            print(f"note: the generator neared a full core for {', '.join(gen_bound)}: "
                  "that figure is a lower bound")


if __name__ == "__main__":
    main()
