#!/usr/bin/env python3
"""Soak: Switchboard under steady call load for SOAK_SECONDS (600 by default).

On 127.0.0.1 only: two switchboard-rtpmanagers (external, so they outlive
the signaling restart), switchboard-signaling anchoring every call on them, a
sipp callee that echoes RTP, and three sipp callers known as trunks:
  plain   bench/sipp/soak_uac.xml        2 s calls, no media
  media   bench/sipp/soak_uac_media.xml  2 s calls streaming µ-law RTP
  vanish  bench/sipp/soak_uac_vanish.xml answered, then never a BYE (a BYE
                                         lost for good): the server must end
                                         the call itself (RTP timeout)

1. rate search: the highest rate the soak's own mix (88 % plain, 10 %
   media, 2 % vanish) sustains with 0 failed calls, unless SOAK_RATE is set;
   the soak runs at 80 % of it. Steps last SOAK_STEP_SECONDS (40): longer
   than Timer J (32 s) would be better still, but long enough that a backlog
   (RTP manager requests queueing and timing out, media sessions freed late)
   shows as failed calls. 15 s steps of the plain caller alone passed 2,382
   calls/s; ten minutes of the mix at 1,906/s saturated both cores
2. the soak; in the middle signaling gets SIGTERM (SHUTDOWN_GRACE=2: calls
   still up then get BYE and a CDR) and starts again on the same data
3. after a quiet period, the checks:
   - 0 live calls (GET /api/v1/calls) and 0 sessions on the managers
     (GET /api/v1/sessions)
   - resident memory of signaling (the restarted process) and of the
     managers late in the load within 10 % of their level after warm-up
     under the same load, and no higher once the load is over
   - every call a caller saw answered has exactly one CDR, and no SIP
     Call-ID has two
   - at most 2 % of the callers' calls failed (those in flight at the
     restart do: they get a BYE or a 503 they do not expect)

Prints the figures, writes bench/out/soak.json, exits 1 when a check fails.
Stdlib only.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402
import calls as C  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
OUT = BENCH / "out"
RTP_TIMEOUT = 5
HOLD_MS = 2000


def log(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


def ulaw_file(path: Path, seconds: int = 4) -> None:
    """A 440 Hz tone in G.711 µ-law, 8 kHz: what the media caller streams."""
    out = bytearray()
    for i in range(8000 * seconds):
        s = int(8000 * math.sin(2 * math.pi * 440 * i / 8000))
        sign = 0x80 if s < 0 else 0
        s = min(abs(s), 32635) + 132
        exp = 7
        while exp > 0 and not s & (0x4000 >> (7 - exp)):
            exp -= 1
        mant = (s >> (exp + 3)) & 0x0F
        out.append(~(sign | (exp << 4) | mant) & 0xFF)
    path.write_bytes(bytes(out))


def open_files_for_ports() -> None:
    """Runs in a manager's process before exec: 10,000 port pairs are
    20,000 sockets, at this machine's limit of 20,000 open files. Raising
    the hard limit needs CAP_SYS_RESOURCE (not given here); without it the
    manager raises its soft limit to the hard one itself and warns at start
    when that is short of the range."""
    want = 2 * 10_000 + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        pass


def managers_rss(mgrs) -> int:
    """The two managers' resident memory together, kB."""
    return sum(B.memory_kb(m.pid)["rss_kb"] for m in mgrs)


def api(port: int, path: str):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": "Bearer soak"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read().decode())


def mixed_step(scen: dict, shares: dict, target: str, ports: dict, work: Path, rate: int,
               seconds: int, n: int) -> dict:
    """The soak's three callers together at `rate` for `seconds`: passes when
    no call failed and the callers finished in time (a rate the machine
    cannot keep stretches them)."""
    procs = {k: sipp_caller(scen[k], target, ports[k], 17000 + 10 * i, rate * v, seconds,
                            work, f"search{n}-{k}")
             for i, (k, v) in enumerate(shares.items())}
    t0 = time.monotonic()
    for p in procs.values():
        try:
            p.wait(timeout=seconds + 150)
        except subprocess.TimeoutExpired:
            p.kill()
    took = time.monotonic() - t0
    created = failed = 0
    for k in procs:
        f = work / f"search{n}-{k}-stat.csv"
        st = B.parse_stat(f) if f.exists() else {}
        created += B._int(st, "TotalCallCreated")
        failed += B._int(st, "FailedCall(C)")
    # vanishing callers end by the server's RTP timeout, after the hold
    passed = failed == 0 and created > 0 and took < seconds * 1.1 + HOLD_MS / 1000 + 3 * RTP_TIMEOUT
    log(f"  {rate:6d}/s  {'PASS' if passed else 'FAIL'}  {created} calls, {failed} failed, "
        f"{took:.0f} s for {seconds} s")
    return {"rate": rate, "passed": passed, "created": created, "failed": failed,
            "seconds": round(took, 1)}


def mixed_search(scen: dict, shares: dict, target: str, ports: dict, work: Path, start: int,
                 seconds: int, budget: float) -> dict:
    """Highest rate of the mix with 0 failed calls: ×1.25 while passing, then
    bisection, within `budget` seconds."""
    t0 = time.monotonic()
    steps, best, fail = [], None, None
    rate = start
    while time.monotonic() - t0 < budget:
        r = mixed_step(scen, shares, target, ports, work, rate, seconds, len(steps))
        steps.append(r)
        if r["passed"]:
            best = rate if best is None else max(best, rate)
        else:
            fail = rate if fail is None else min(fail, rate)
        lo = best or 0
        if fail is None:
            rate = int(rate * 1.25)
        else:
            nxt = (lo + fail) // 2
            if fail - lo <= max(50, lo // 20) or nxt in (lo, fail):
                break
            rate = nxt
        time.sleep(10)  # the last step's calls and transactions drain
    return {"best": best, "first_fail": fail, "steps": steps}


def start_signaling(binary: Path, env: dict, logf: Path) -> subprocess.Popen:
    return subprocess.Popen([str(binary)], env=env, stdout=open(logf, "a"),
                            stderr=subprocess.STDOUT)


def sipp_caller(scenario: Path, target: str, port: int, media_port: int, rate: float,
                seconds: int, work: Path, tag: str) -> subprocess.Popen:
    """A caller at `rate` calls/s for `seconds` (`-m` bounds it), logging
    the Call-ID of every answered call."""
    calls = max(1, int(rate * seconds))
    rp = 1000
    # sipp takes an integer rate per period: scale the period for low rates
    r = rate
    while r < 10 and rp < 100_000:
        r *= 10
        rp *= 10
    cmd = ["sipp", target, "-sf", str(scenario), "-s", "1002", "-i", "127.0.0.1",
           "-p", str(port), "-mp", str(media_port),
           "-r", str(max(1, int(r))), "-rp", str(rp), "-m", str(calls),
           "-l", "100000", "-d", str(HOLD_MS), "-buff_size", str(4 << 20), "-nostdin",
           "-trace_stat", "-stf", str(work / f"{tag}-stat.csv"), "-fd", "5",
           "-trace_logs", "-log_file", str(work / f"{tag}-answered.log"),
           # a call the restart cut (a 503, a 481 to its BYE, no answer)
           # is aborted and counted failed, never left waiting
           "-default_behaviors", "all", "-recv_timeout", "20000",
           "-watchdog_major_maxtriggers", "1000000",
           "-watchdog_minor_maxtriggers", "1000000",
           "-timeout", f"{seconds + 120}s"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=open(work / f"{tag}-stderr.log", "w"),
                            stdin=subprocess.DEVNULL, cwd=work)


def answered_ids(work: Path, tags: list[str]) -> list[str]:
    ids = []
    for t in tags:
        f = work / f"{t}-answered.log"
        if f.exists():
            ids += [l.split()[-1] for l in f.read_text(errors="replace").splitlines()
                    if l.startswith("answered ")]
    return ids


def wait_until(pred, seconds: float, step: float = 0.5) -> bool:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if pred():
            return True
        time.sleep(step)
    return pred()


def main() -> None:
    seconds = int(os.environ.get("SOAK_SECONDS", "600"))
    OUT.mkdir(exist_ok=True)
    sig_bin = ROOT / "target/release/switchboard-signaling"
    mgr_bin = ROOT / "target/release/switchboard-rtpmanager"
    for b in (sig_bin, mgr_bin):
        if not b.exists():
            raise SystemExit(f"{b} not built: make release")
    if not shutil.which("sipp"):
        raise SystemExit("sipp not installed (scripts/ensure-deps.sh)")
    work = Path(tempfile.mkdtemp(prefix="switchboard-soak-"))
    data = work / "data"
    data.mkdir()
    ports = {k: B.free_port("", p) for k, p in
             (("sip", 15172), ("api", 18182), ("uas", 15174), ("grpc0", 19190), ("grpc1", 19192),
              ("plain", 15176), ("media", 15178), ("vanish", 15180), ("search", 15182))}
    ulaw_file(work / "tone.ulaw")
    media_xml = work / "soak_uac_media.xml"
    media_xml.write_text((BENCH / "sipp" / "soak_uac_media.xml").read_text()
                         .replace("[audio]", str(work / "tone.ulaw")))
    (work / "dialplan.json").write_text(json.dumps({"version": "1.0", "routes": [
        {"id": "soak", "from": "trunk", "pattern": "*", "priority": 1, "actions": [
            {"type": "dial", "params": {"target": f"sip:${{destination}}@127.0.0.1:{ports['uas']}",
                                        "timeout": 10}}]}]}))
    (work / "trunks.json").write_text(json.dumps({"trunks": [
        {"name": f"soak-{k}", "host": f"127.0.0.1:{ports[k]}"}
        for k in ("plain", "media", "vanish", "search")]}))
    # two managers, 10,000 port pairs each: one manager's sessions are
    # capped by its open-files limit (two sockets a session), 9,872 under
    # this machine's 20,000, and the soak's rate needs about 9,000 sessions
    # live; a second manager is what an operator adds (README: capacity)
    mgrs = [subprocess.Popen([str(mgr_bin)], env=dict(
        os.environ, GRPC_PORT=str(ports[f"grpc{i}"]), GRPC_BIND="127.0.0.1",
        RTP_BIND="127.0.0.1", RTP_PORT_MIN=str(20000 + 20000 * i),
        RTP_PORT_MAX=str(39999 + 20000 * i),
        RTP_TIMEOUT=str(RTP_TIMEOUT), RTPMANAGER_TOKEN="soak-manager-token-0123",
        LOGLEVEL="warn", AUDIO_PATH=str(ROOT / "audio"), RECORD_PATH=str(work)),
        stdout=open(OUT / f"soak-rtpmanager{i}.log", "w"), stderr=subprocess.STDOUT,
        preexec_fn=open_files_for_ports) for i in (0, 1)]
    env = dict(os.environ, PORT=str(ports["sip"]), BIND="127.0.0.1", API_PORT=str(ports["api"]),
               API_BIND="127.0.0.1", DATA_DIR=str(data), API_TOKEN="soak", LOGLEVEL="warn",
               DIALPLAN_PATH=str(work / "dialplan.json"), TRUNKS_PATH=str(work / "trunks.json"),
               SHUTDOWN_GRACE="2", RTPMANAGER_ADDRS=f"m0=127.0.0.1:{ports['grpc0']},m1=127.0.0.1:{ports['grpc1']}",
               RTPMANAGER_TOKEN="soak-manager-token-0123",
               # the load comes from one address at the rates measured here, and
               # keeps more answered transactions than the default cap (at
               # 1,500 calls/s about 4 transactions a call live 32 s each: the
               # 15 s search steps never reach MAX_TRANSACTIONS, ten minutes
               # do, and the 503s it answers would hide what the soak looks
               # for); neither limit is what the soak measures
               SIP_RATE_PER_IP="0", MAX_TRANSACTIONS="0")
    slog = OUT / "soak-signaling.log"
    slog.write_text("")
    uas = subprocess.Popen(["sipp", "-sf", str(BENCH / "sipp" / "call_uas.xml"), "-i", "127.0.0.1",
                            "-p", str(ports["uas"]), "-mp", str(B.free_port("", 16000)),
                            "-rtp_echo", "-nostdin", "-buff_size", str(4 << 20),
                            "-default_behaviors", "all,-abortunexp"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
    sig = start_signaling(sig_bin, env, slog)
    target = f"127.0.0.1:{ports['sip']}"
    result: dict = {"seconds": seconds, "checks": {}}
    failures: list[str] = []
    try:
        if not C.wait_port(ports["sip"]) or sig.poll() is not None:
            raise SystemExit(f"signaling did not start ({slog})")
        shares = {"plain": 0.88, "media": 0.10, "vanish": 0.02}
        scen = {"plain": BENCH / "sipp" / "soak_uac.xml", "media": media_xml,
                "vanish": BENCH / "sipp" / "soak_uac_vanish.xml"}
        # 1. the rate
        if os.environ.get("SOAK_RATE"):
            best = int(os.environ["SOAK_RATE"]) * 5 // 4
            log(f"SOAK_RATE given: {best * 4 // 5}/s")
        else:
            # the soak's own mix, in steps long enough that a rate held is
            # one the machine sustains with sipp, signaling and the managers
            # on the same cores
            step = int(os.environ.get("SOAK_STEP_SECONDS", "40"))
            log(f"searching the highest rate of the soak's mix ({step} s steps)")
            s = mixed_search(scen, shares, target, ports, work, 1000, step, 9 * (step + 15))
            best = s["best"] or 100
            result["search"] = s
        rate = best * 0.8
        result["rate"] = round(rate, 1)
        log(f"soak at {rate:.0f} calls/s for {seconds} s "
            f"({', '.join(f'{k} {v:.0%}' for k, v in shares.items())})")
        time.sleep(5)
        # 2. the soak, the restart in the middle
        # sipp takes RTP port, +1 and +2 from -mp: 10 apart per caller
        callers = {k: sipp_caller(scen[k], target, ports[k], 17000 + 10 * i, rate * v, seconds,
                                  work, k)
                   for i, (k, v) in enumerate(shares.items())}
        t0 = time.monotonic()
        warm = min(60, seconds // 5)
        time.sleep(warm)
        mgr_base = managers_rss(mgrs)
        log(f"after {warm} s: managers' RSS {mgr_base} kB")
        time.sleep(max(0, seconds / 2 - (time.monotonic() - t0)))
        log("restarting signaling (SIGTERM, SHUTDOWN_GRACE=2)")
        sig.send_signal(signal.SIGTERM)
        rc = sig.wait(timeout=60)
        result["restart_exit_code"] = rc
        if rc != 0:
            failures.append(f"signaling exited {rc} on SIGTERM")
        sig = start_signaling(sig_bin, env, slog)
        if not C.wait_port(ports["sip"]):
            raise SystemExit("signaling did not come back")
        time.sleep(warm)
        sig_base = B.memory_kb(sig.pid)["rss_kb"]
        log(f"after the restart and {warm} s: signaling RSS {sig_base} kB")
        # late in the load, as loaded as at the warm-up samples
        time.sleep(max(0, seconds * 0.9 - (time.monotonic() - t0)))
        sig_late = B.memory_kb(sig.pid)["rss_kb"]
        mgr_late = managers_rss(mgrs)
        log(f"at {time.monotonic() - t0:.0f} s: signaling RSS {sig_late} kB, managers {mgr_late} kB")
        for k, p in callers.items():
            try:
                p.wait(timeout=max(30, seconds + 150 - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                failures.append(f"the {k} caller did not finish")
                p.kill()
        log(f"load over after {time.monotonic() - t0:.0f} s; quiet for {4 * RTP_TIMEOUT} s")
        time.sleep(4 * RTP_TIMEOUT)
        # 3. the checks
        live = api(ports["api"], "/api/v1/calls")
        sessions = api(ports["api"], "/api/v1/sessions")
        sig_end = B.memory_kb(sig.pid)["rss_kb"]
        mgr_end = managers_rss(mgrs)
        stats = {}
        for k in callers:
            st = B.parse_stat(work / f"{k}-stat.csv") if (work / f"{k}-stat.csv").exists() else {}
            stats[k] = {"created": B._int(st, "TotalCallCreated"),
                        "successful": B._int(st, "SuccessfulCall(C)"),
                        "failed": B._int(st, "FailedCall(C)"),
                        "recv_timeouts": B._int(st, "FailedTimeoutOnRecv(C)"),
                        "unexpected": B._int(st, "FailedUnexpectedMessage(C)"),
                        "max_retrans": B._int(st, "FailedMaxUDPRetrans(C)")}
        result["callers"] = stats
        sig.send_signal(signal.SIGTERM)
        sig.wait(timeout=60)
        db = sqlite3.connect(str(data / "switchboard.db"))
        rows = db.execute("SELECT sip_call_id, hangup_reason FROM cdrs").fetchall()
        with_media = db.execute(
            "SELECT COUNT(*) FROM cdrs WHERE rtp_received > 0").fetchone()[0]
        db.close()
        per_id: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for sid, why in rows:
            per_id[sid] = per_id.get(sid, 0) + 1
            reasons[why or "-"] = reasons.get(why or "-", 0) + 1
        answered = answered_ids(work, list(callers))
        missing = [i for i in answered if per_id.get(i, 0) == 0]
        doubled = [i for i, n in per_id.items() if n > 1]
        result["cdrs"] = {"rows": len(rows), "answered_calls": len(answered),
                          "answered_without_cdr": len(missing), "call_ids_with_two": len(doubled),
                          "with_rtp_received": with_media, "by_reason": reasons}
        # [after warm-up, late in the load, after the quiet period]
        result["memory"] = {"signaling_rss_kb": [sig_base, sig_late, sig_end],
                            "rtpmanager_rss_kb": [mgr_base, mgr_late, mgr_end]}
        result["checks"] = {
            "live_calls": len(live), "manager_sessions": len(sessions),
            "signaling_rss_change": round(sig_late / sig_base - 1, 3),
            "rtpmanager_rss_change": round(mgr_late / mgr_base - 1, 3)}
        if live:
            failures.append(f"{len(live)} calls still live")
        if sessions:
            failures.append(f"{len(sessions)} sessions left on the manager")
        for name, (a, b, c) in (("signaling", (sig_base, sig_late, sig_end)),
                                ("rtpmanager", (mgr_base, mgr_late, mgr_end))):
            if b > a * 1.10:
                failures.append(f"{name} RSS grew {a} → {b} kB under the same load (> 10 %)")
            if c > a * 1.10:
                failures.append(f"{name} RSS after the load {c} kB, above {a} kB after warm-up")
        if missing:
            failures.append(f"{len(missing)} answered calls without a CDR (e.g. {missing[:3]})")
        if doubled:
            failures.append(f"{len(doubled)} Call-IDs with two CDRs (e.g. {doubled[:3]})")
        if not answered:
            failures.append("no call was answered")
        created = sum(st["created"] for st in stats.values())
        failed = sum(st["failed"] for st in stats.values())
        result["checks"]["failed_calls"] = failed
        if created and failed > created * 0.02:
            failures.append(f"{failed} of {created} calls failed (> 2 %)")
    finally:
        for p in (sig, uas, *mgrs):
            C.stop(p)
    result["failures"] = failures
    (OUT / "soak.json").write_text(json.dumps(result, indent=1))
    c, m = result.get("checks", {}), result.get("memory", {})
    print()
    print(f"soak: {seconds} s at {result.get('rate', '-')} calls/s (80 % of "
          f"{(result.get('search') or {}).get('best', best)}/s), signaling restarted in the middle")
    for k, st in (result.get("callers") or {}).items():
        print(f"  {k:<7} {st['created']:>8} calls, {st['successful']:>8} completed, {st['failed']:>6} failed "
              f"({st['recv_timeouts']} timed out, {st['unexpected']} unexpected answers, "
              f"{st['max_retrans']} unanswered)")
    cd = result.get("cdrs") or {}
    print(f"  CDRs {cd.get('rows', '-')} for {cd.get('answered_calls', '-')} answered calls: "
          f"{cd.get('answered_without_cdr', '-')} missing, {cd.get('call_ids_with_two', '-')} doubled, "
          f"{cd.get('with_rtp_received', '-')} with RTP received; by reason {cd.get('by_reason', {})}")
    print(f"  after: {c.get('live_calls', '-')} live calls, {c.get('manager_sessions', '-')} manager sessions")
    if m:
        for n in ("signaling", "rtpmanager"):
            a, b, e = m[f"{n}_rss_kb"]
            print(f"  RSS {n}: {a} kB after warm-up, {b} kB late in the load "
                  f"({c[f'{n}_rss_change']:+.1%}), {e} kB after it")
    print(f"  {'PASS' if not failures else 'FAIL: ' + '; '.join(failures)}")
    print(f"  JSON: {OUT / 'soak.json'}; logs: {slog}")
    for k in ("plain", "media", "vanish"):
        f = work / f"{k}-stderr.log"
        if f.exists() and f.stat().st_size and not (work / f"{k}-stat.csv").exists():
            print(f"  {k} caller: {f.read_text(errors='replace')[:400]}")
    if os.environ.get("SOAK_KEEP"):
        print(f"  work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
