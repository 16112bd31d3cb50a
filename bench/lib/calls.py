#!/usr/bin/env python3
"""Call load: Switchboard's B2BUA against Kamailio 5.6 as a stateful proxy.

For each server, on 127.0.0.1 only, with sipp's built-in scenarios:
  caller  bench/sipp/call_uac.xml  INVITE, 100/180, 200, ACK, BYE, 200 (no media)
  callee  bench/sipp/call_uas.xml  180, 20 ms, 200, ACK, BYE, 200
Kamailio relays with tm + record-route (bench/kamailio/proxy.cfg).
Switchboard takes the caller as a trunk (known by its address, so no
digest round trip, as Kamailio does not challenge either) and its dialplan
dials sip:<number>@<callee>, a full B2BUA call with both legs.

Measured per server:
  1. rate search   highest fixed calls/s with 0 failed calls (sipp -l bounds
                   the calls in flight; a step must finish on schedule)
  2. CPU per call  server utime+stime over the best passing step / calls
  3. call setup latency end to end, from sipp's own response times at the
                   same fixed rate for both (--latency-rate): INVITE sent →
                   180 back (through the server to the callee and back) and
                   INVITE sent → 200 back (includes the callee's 20 ms ring),
                   p50 and p99
  4. (Switchboard) memory and leaks: 10,000 calls to warm up, baseline,
                   10,000 more, then RSS against the baseline, and
                   GET /api/v1/calls must be empty

Prints a table and writes bench/out/calls.json. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402  (the register benchmark's /proc helpers)

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
OUT = BENCH / "out"


def log(msg: str) -> None:
    print(f"[calls] {msg}", file=sys.stderr, flush=True)


def sipp_uac(target: str, port: int, rate: int, calls: int, workdir: Path, tag: str,
             server_pid: int, rtt: bool = False, counters=None,
             extra_args: list[str] | None = None) -> dict:
    stf = workdir / f"{tag}-stat.csv"
    errf = workdir / f"{tag}-errors.log"
    stf.unlink(missing_ok=True)
    errf.unlink(missing_ok=True)
    timeout = int(calls / rate * 1.5 + 10)
    # bench/sipp/call_uac.xml: the built-in uac with 50 ms between ACK and
    # BYE; a 180 overtaken by its 200 (a proxy's two workers) is counted as
    # unexpected, not as a failed call
    cmd = ["sipp", target, "-sf", str(BENCH / "sipp" / "call_uac.xml"), "-s", "1002",
           "-i", "127.0.0.1", "-p", str(port),
           "-r", str(rate), "-rp", "1000", "-m", str(calls),
           "-l", str(max(1000, rate * 2)),
           "-buff_size", str(4 * 1024 * 1024), "-nostdin",
           "-trace_stat", "-stf", str(stf), "-fd", "1",
           "-trace_err", "-error_file", str(errf), "-max_log_size", "1000000",
           "-default_behaviors", "all,-abortunexp",
           "-watchdog_major_maxtriggers", "1000000",
           "-watchdog_minor_maxtriggers", "1000000",
           "-timeout", f"{timeout}s", "-timeout_error", *(extra_args or [])]
    rtt_dir = workdir / f"{tag}-rtt"
    if rtt:
        # every call's response times (INVITE → 180 as "ring", INVITE → 200
        # as "1"), written by sipp into its working directory
        shutil.rmtree(rtt_dir, ignore_errors=True)
        rtt_dir.mkdir()
        cmd += ["-trace_rtt", "-rtt_freq", "1"]
    c0 = counters() if counters else {}  # see B.sipp_run
    busy0, tot0 = B.machine_cpu()
    srv0 = B.cpu_ticks(server_pid)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, cwd=rtt_dir if rtt else None)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    srv1 = B.cpu_ticks(server_pid)
    busy1, tot1 = B.machine_cpu()
    c1 = counters() if counters else {}
    st = B.parse_stat(stf) if stf.exists() else {}
    ok = B._int(st, "SuccessfulCall(C)")
    failed = B._int(st, "FailedCall(C)")
    srv_s = (srv1 - srv0) / B.CLK_TCK
    sipp_cpu = ru.ru_utime + ru.ru_stime
    res = {
        "rate": rate, "calls": calls, "successful": ok, "failed": failed,
        "retransmissions": B._int(st, "Retransmissions(C)"),
        "unexpected": B._int(st, "FailedUnexpectedMessage(C)") + B._int(st, "OutOfCallMsgs(C)"),
        "sipp_rc": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 2),
        "server_cpu_s": round(srv_s, 2),
        "server_cpu_us_per_call": round(srv_s * 1e6 / ok, 1) if ok else None,
        "sipp_cpu_frac": round(sipp_cpu / wall, 3) if wall else 0,
        "machine_busy_frac": round((busy1 - busy0) / max(1, tot1 - tot0), 3),
    }
    if counters:
        res["counters"] = {k: c1[k] - c0[k] for k in c1 if k in c0}
    reasons = []
    if ok != calls:
        reasons.append(f"{ok}/{calls} calls completed")
    if failed:
        reasons.append(f"{failed} failed")
    if wall > calls / rate * 1.10 + 2.0:
        reasons.append(f"rate not sustained ({wall:.1f} s for {calls / rate:.1f} s)")
    res["passed"] = not reasons
    res["reasons"] = reasons
    if rtt:
        res["latency_ms"] = response_times(rtt_dir)
    if reasons and errf.exists():
        res["first_error"] = errf.read_text(errors="replace")[:600]
        shutil.copy(errf, OUT / f"calls-{tag}-errors.log")
    return res


def search(name: str, target: str, port: int, pid: int, work: Path, start: int,
           duration: int, budget: float) -> dict:
    t0 = time.monotonic()
    steps, best, fail = [], None, None
    rate = start
    while time.monotonic() - t0 < budget:
        r = sipp_uac(target, port, rate, rate * duration, work, f"{name}-{rate}", pid)
        steps.append(r)
        verdict = "PASS" if r["passed"] else "FAIL: " + "; ".join(r["reasons"])
        log(f"  {rate:6d}/s  {verdict}  (server {r['server_cpu_us_per_call']} µs/call, "
            f"sipp cpu {r['sipp_cpu_frac']:.0%}, machine {r['machine_busy_frac']:.0%})")
        if r["passed"]:
            best = r if best is None or r["rate"] > best["rate"] else best
        else:
            fail = rate if fail is None else min(fail, rate)
        lo = best["rate"] if best else 0
        if fail is None:
            rate = int(rate * 1.25)
        else:
            nxt = (lo + fail) // 2
            if fail - lo <= max(50, lo // 20) or nxt in (lo, fail):
                break
            rate = nxt
        time.sleep(2)  # let the previous step's transactions drain
    return {"steps": steps, "best": best, "first_fail": fail}


def api_get(api: int, token: str, path: str):
    req = urllib.request.Request(f"http://127.0.0.1:{api}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read().decode())


def response_times(rtt_dir: Path) -> dict:
    """p50/p99/max per sipp response-time name from its -trace_rtt files
    (`Date_ms;response_time_ms;rtd_no`, one line per call and name)."""
    samples: dict[str, list[float]] = {}
    for f in rtt_dir.glob("*_rtt.csv"):
        for line in f.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3:
                try:
                    samples.setdefault(parts[2].strip(), []).append(float(parts[1]))
                except ValueError:
                    pass
    out = {}
    for name, v in samples.items():
        v.sort()
        pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]  # noqa: E731
        key = {"ring": "invite_to_180", "1": "invite_to_200"}.get(name, name)
        out[key] = {"calls": len(v), "p50": pick(0.50), "p99": pick(0.99), "max": v[-1]}
    return out


def latency(target: str, port: int, pid: int, work: Path, rate: int, duration: int,
            tag: str) -> dict:
    r = sipp_uac(target, port, rate, rate * duration, work, tag, pid, rtt=True)
    lat = r.get("latency_ms", {})
    log(f"  end-to-end at {rate}/s: " + ", ".join(
        f"{k} p50 {v['p50']:.0f} ms p99 {v['p99']:.0f} ms" for k, v in lat.items()))
    return {"rate": rate, "passed": r["passed"], **lat}


def wait_port(port: int, seconds: float = 20) -> bool:
    want = f":{port:04X}"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for f in ("/proc/net/udp", "/proc/net/udp6"):
            for line in (B._read(f) or "").splitlines()[1:]:
                if line.split()[1].endswith(want):
                    return True
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_kamailio(a, work: Path) -> dict:
    if not shutil.which("kamailio"):
        return {"status": "not installed"}
    port, uas = B.free_port("", 15062), B.free_port("", 15064)
    uac_port = B.free_port("", 15066)
    uas_p = subprocess.Popen(["sipp", "-sf", str(BENCH / "sipp" / "call_uas.xml"), "-i", "127.0.0.1", "-p", str(uas),
                              "-nostdin", "-buff_size", str(4 << 20)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    (work / "kam").mkdir(exist_ok=True)
    # 2 GB of shared memory: tm keeps each finished transaction for its
    # wait timer, and with 256 MB Kamailio ran out (t_newtran "out of mem",
    # "500 No error") near 2,000 calls/s, long before its CPU did
    kam = subprocess.Popen(
        ["kamailio", "-f", str(BENCH / "kamailio" / "proxy.cfg"), "-DD", "-E", "-m", "2048",
         "-M", "8", "-P", str(work / "kam.pid"), "-Y", str(work / "kam"),
         "-A", f"BENCH_LISTEN=udp:127.0.0.1:{port}",
         "-A", f'BENCH_UAS="sip:127.0.0.1:{uas}"'],
        stdout=open(OUT / "kamailio-proxy.log", "w"), stderr=subprocess.STDOUT)
    try:
        if not wait_port(port) or kam.poll() is not None:
            return {"status": "failed to start (bench/out/kamailio-proxy.log)"}
        version = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout
        version = version.split("\n")[0].replace("version: ", "")
        log(f"kamailio proxy on udp:127.0.0.1:{port} → sipp uas :{uas}")
        s = search("kamailio", f"127.0.0.1:{port}", uac_port, kam.pid, work, a.start,
                   a.duration, a.max_seconds)
        lat = latency(f"127.0.0.1:{port}", uac_port, kam.pid, work, a.latency_rate,
                      a.duration, "kam-latency")
        return {"status": "ok", "version": version, **s, "latency": lat}
    finally:
        stop(kam)
        stop(uas_p)


def run_switchboard(a, work: Path) -> dict:
    binary = Path(a.switchboard_bin)
    if not binary.exists():
        return {"status": "not built"}
    port, api, uas = (B.free_port("", 15072), B.free_port("", 18082),
                      B.free_port("", 15074))
    uac_port = B.free_port("", 15076)
    data = work / "sb-data"
    data.mkdir(exist_ok=True)
    # direct_media: Kamailio as a proxy passes SDP through untouched, so the
    # like-for-like B2BUA comparison leaves media out too (anchored media
    # is measured against rtpengine by bench/rtp.sh)
    (work / "dialplan.json").write_text(json.dumps({"version": "1.0", "routes": [
        {"id": "bench", "from": "trunk", "pattern": "*", "priority": 1, "direct_media": True, "actions": [
            {"type": "dial", "params": {"target": f"sip:${{destination}}@127.0.0.1:{uas}",
                                        "timeout": 30}}]}]}))
    (work / "trunks.json").write_text(json.dumps({"trunks": [
        {"name": "bench-caller", "host": f"127.0.0.1:{uac_port}"}]}))
    env = dict(os.environ, PORT=str(port), BIND="127.0.0.1", API_PORT=str(api),
               API_BIND="127.0.0.1", DATA_DIR=str(data), API_TOKEN="bench",
               LOGLEVEL="warn", DIALPLAN_PATH=str(work / "dialplan.json"),
               TRUNKS_PATH=str(work / "trunks.json"), SHUTDOWN_GRACE="2",
               # sipp's caller and callee both send from 127.0.0.1 at
               # thousands of calls/s: the per-source rate limit and the
               # transaction cap are lifted (not what is measured)
               SIP_RATE_PER_IP="0", MAX_TRANSACTIONS="0")
    uas_p = subprocess.Popen(["sipp", "-sf", str(BENCH / "sipp" / "call_uas.xml"), "-i", "127.0.0.1", "-p", str(uas),
                              "-nostdin", "-buff_size", str(4 << 20)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    sb = subprocess.Popen([str(binary)], env=env, stdout=open(OUT / "switchboard-calls.log", "w"),
                          stderr=subprocess.STDOUT)
    try:
        if not wait_port(port) or sb.poll() is not None:
            return {"status": "failed to start (bench/out/switchboard-calls.log)"}
        log(f"switchboard on udp:127.0.0.1:{port} → sipp uas :{uas}")
        target = f"127.0.0.1:{port}"
        res: dict = {"status": "ok"}
        # memory and leaks first, on the fresh process: a first batch of
        # calls fills caches, pools and the SQLite page cache; the baseline
        # is taken after it, then a second batch of the same size must not
        # grow the process
        if a.memory_calls:
            sipp_uac(target, uac_port, a.memory_rate, a.memory_calls, work, "sb-warmup", sb.pid)
            time.sleep(a.quiet)
            before = B.memory_kb(sb.pid)
            r = sipp_uac(target, uac_port, a.memory_rate, a.memory_calls, work, "sb-memory", sb.pid)
            log(f"  {r['successful']}/{a.memory_calls} calls for the memory check; "
                f"waiting {a.quiet} s")
            time.sleep(a.quiet)
            after = B.memory_kb(sb.pid)
            live = api_get(api, "bench", "/api/v1/calls")
            res["memory"] = {"calls": r["successful"], "failed": r["failed"],
                             "rss_before_kb": before["rss_kb"], "rss_after_kb": after["rss_kb"],
                             "rss_delta_kb": after["rss_kb"] - before["rss_kb"],
                             "live_calls_after": len(live)}
            log(f"  RSS {before['rss_kb']} kB → {after['rss_kb']} kB, live calls after: {len(live)}")
        s = search("switchboard", target, uac_port, sb.pid, work, a.start, a.duration,
                   a.max_seconds)
        res.update(s)
        res["latency"] = latency(target, uac_port, sb.pid, work, a.latency_rate, a.duration,
                                 "sb-latency")
        return res
    finally:
        stop(sb)
        stop(uas_p)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--targets", default="kamailio switchboard")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=180)
    p.add_argument("--start", type=int, default=1000)
    p.add_argument("--memory-calls", type=int, default=10000)
    p.add_argument("--memory-rate", type=int, default=500)
    p.add_argument("--latency-rate", type=int, default=500)
    p.add_argument("--quiet", type=float, default=40)
    p.add_argument("--switchboard-bin", default=str(ROOT / "target/release/switchboard-signaling"))
    a = p.parse_args()
    OUT.mkdir(exist_ok=True)
    if not shutil.which("sipp"):
        raise SystemExit("sipp not installed (scripts/ensure-deps.sh)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="switchboard-calls-") as tmp:
        work = Path(tmp)
        for t in a.targets.split():
            log(f"== {t}")
            results[t] = (run_kamailio if t == "kamailio" else run_switchboard)(a, work)
    (OUT / "calls.json").write_text(json.dumps(results, indent=1))
    k, s = results.get("kamailio", {}), results.get("switchboard", {})
    kb, sb = k.get("best") or {}, s.get("best") or {}

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    print()
    print(f"{'calls (INVITE-180-200-ACK-BYE, 2 cores shared)':<48}{'kamailio':>14}{'switchboard':>14}{'ratio':>8}")
    print(f"{'highest rate, 0 failed calls (calls/s)':<48}{kb.get('rate', '-'):>14}{sb.get('rate', '-'):>14}"
          f"{ratio(sb.get('rate'), kb.get('rate')):>8}")
    print(f"{'server CPU per call at best (µs)':<48}{kb.get('server_cpu_us_per_call', '-'):>14}"
          f"{sb.get('server_cpu_us_per_call', '-'):>14}"
          f"{ratio(sb.get('server_cpu_us_per_call'), kb.get('server_cpu_us_per_call')):>8}")
    kl, sl = k.get("latency") or {}, s.get("latency") or {}
    for key, label in (("invite_to_180", "INVITE → 180"), ("invite_to_200", "INVITE → 200")):
        for q in ("p50", "p99"):
            kv, sv = (kl.get(key) or {}).get(q), (sl.get(key) or {}).get(q)
            if kv is None and sv is None:
                continue
            print(f"{f'{label} {q} at {a.latency_rate}/s, sipp (ms)':<48}{kv if kv is not None else '-':>14}"
                  f"{sv if sv is not None else '-':>14}{ratio(sv, kv):>8}")
    mem = s.get("memory") or {}
    if mem:
        print(f"  switchboard after {mem['calls']} calls: RSS {mem['rss_before_kb']} kB → "
              f"{mem['rss_after_kb']} kB ({mem['rss_delta_kb']:+d} kB), live calls {mem['live_calls_after']}")
    for n, r in (("kamailio", k), ("switchboard", s)):
        if r.get("status") != "ok":
            print(f"  {n}: {r.get('status')}")
    print(f"  JSON: {OUT / 'calls.json'}")


if __name__ == "__main__":
    main()
