#!/usr/bin/env python3
"""A/B: server CPU per call of two switchboard-signaling binaries at one
fixed call rate, on the same machine in one run, in alternating rounds
(A B A B A B) so drift of the machine hits both alike. The ceiling search
of bench/calls.sh moves by 10-15 % between runs here; CPU per call at a
fixed load is the steadier figure for "did this change cost anything".

  python3 bench/lib/ab.py OLD_BINARY NEW_BINARY [--rate 2000] [--seconds 15]
      [--rounds 3] [--old-dialplan]

--old-dialplan writes the dialplan without `"from": "trunk"` (binaries from
before trunk-scoped routes, which refuse the field). Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402
import calls as C  # noqa: E402


def one(binary: str, rate: int, seconds: int, work: Path, tag: str, origin: bool) -> dict:
    port, api, uas = B.free_port("", 15272), B.free_port("", 18282), B.free_port("", 15274)
    uac = B.free_port("", 15276)
    data = work / f"{tag}-data"
    data.mkdir(exist_ok=True)
    route = {"id": "bench", "pattern": "*", "priority": 1, "direct_media": True, "actions": [
        {"type": "dial", "params": {"target": f"sip:${{destination}}@127.0.0.1:{uas}", "timeout": 30}}]}
    if origin:
        route["from"] = "trunk"
    (work / "dialplan.json").write_text(json.dumps({"version": "1.0", "routes": [route]}))
    (work / "trunks.json").write_text(json.dumps({"trunks": [
        {"name": "bench-caller", "host": f"127.0.0.1:{uac}"}]}))
    env = dict(os.environ, PORT=str(port), BIND="127.0.0.1", API_PORT=str(api),
               API_BIND="127.0.0.1", DATA_DIR=str(data), API_TOKEN="bench", LOGLEVEL="warn",
               DIALPLAN_PATH=str(work / "dialplan.json"), TRUNKS_PATH=str(work / "trunks.json"),
               SHUTDOWN_GRACE="2", SIP_RATE_PER_IP="0", MAX_TRANSACTIONS="0")
    uas_p = subprocess.Popen(["sipp", "-sf", str(C.BENCH / "sipp" / "call_uas.xml"), "-i", "127.0.0.1",
                              "-p", str(uas), "-nostdin", "-buff_size", str(4 << 20)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    sb = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not C.wait_port(port):
            raise SystemExit(f"{binary} did not start")
        # a short warm-up, then the measured step
        C.sipp_uac(f"127.0.0.1:{port}", uac, rate, rate * 3, work, f"{tag}-warm", sb.pid)
        time.sleep(2)
        return C.sipp_uac(f"127.0.0.1:{port}", uac, rate, rate * seconds, work, tag, sb.pid)
    finally:
        C.stop(sb)
        C.stop(uas_p)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--old-dialplan", action="store_true")
    a = p.parse_args()
    C.OUT.mkdir(exist_ok=True)
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="switchboard-ab-") as tmp:
        work = Path(tmp)
        for r in range(a.rounds):
            for name, binary, origin in (("old", a.old, not a.old_dialplan), ("new", a.new, True)):
                res = one(binary, a.rate, a.seconds, work, f"{name}-{r}", origin)
                us = res["server_cpu_us_per_call"]
                print(f"[ab] round {r + 1} {name}: {us} µs/call "
                      f"({'pass' if res['passed'] else 'FAIL: ' + '; '.join(res['reasons'])})",
                      file=sys.stderr, flush=True)
                if us and res["passed"]:
                    cpu[name].append(us)
    o, n = (statistics.median(cpu[k]) if cpu[k] else None for k in ("old", "new"))
    print(f"\nserver CPU per call at {a.rate}/s, median of {a.rounds} rounds: "
          f"old {o} µs, new {n} µs" + (f", new/old {n / o:.3f}" if o and n else ""))


if __name__ == "__main__":
    main()
