#!/usr/bin/env python3
"""Measurement helpers for bench/run.sh (python3 stdlib only).

run.sh starts and stops the servers; everything that measures lives here:

  users-csv     write a sipp injection file (userN;[authentication ...])
  create-users  create users through Switchboard's REST API (keep-alive, threads)
  run           one fixed-rate sipp run, with sipp's and the server's CPU
  search        the rate search: highest rate with 0 failures / 0 retransmissions
  memory        memory per contact: warm up, sample, register N contacts, wait, sample
  report        print the comparison table and write register.json

Every sub-command prints JSON on stdout (report prints the table) and
progress on stderr.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "sipp" / "register_auth.xml"

# A run is "load generator bound" when sipp used this much of one core:
# sipp is single-threaded, so past this it cannot send any faster.
SIPP_BOUND = 0.90
# ... and "machine bound" when the two shared cores were this busy overall:
# the server could not have had more CPU, whoever used it.
MACHINE_BOUND = 0.90


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc readers
# --------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    s = _read(f"/proc/{pid}/stat")
    if s is None:
        return None
    # comm (field 2) may contain spaces: split after the closing parenthesis.
    return s[s.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """root and all its descendants (Kamailio: main process + forked workers,
    timers, ctl handler; Switchboard: the one process)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        f = _stat_fields(int(d))
        if f:
            children.setdefault(int(f[1]), []).append(int(d))  # f[1] = ppid
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if _read(f"/proc/{p}/stat") is None:
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(root: int) -> int:
    """utime + stime (clock ticks) summed over the process tree.

    Reading the workers individually (not the parent's cutime) because the
    workers are alive: their CPU is not yet folded into any parent."""
    total = 0
    for p in process_tree(root):
        f = _stat_fields(p)
        if f:
            total += int(f[11]) + int(f[12])  # fields 14, 15 of /proc/PID/stat
    return total


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    parts = _read("/proc/stat").splitlines()[0].split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    total = sum(v[:8])                          # guest time is inside user
    return total - idle, total


def memory_kb(root: int) -> dict:
    """VmRSS and Pss summed over the process tree, in kB.

    Pss (proportional set size) splits every shared page between the
    processes mapping it, so the sum over Kamailio's processes counts its
    shared-memory pool once; the sum of VmRSS would count it once per
    process. For a single process (Switchboard) Pss and RSS move together."""
    rss = pss = 0
    pids = process_tree(root)
    for p in pids:
        s = _read(f"/proc/{p}/status") or ""
        m = re.search(r"^VmRSS:\s+(\d+)", s, re.M)
        rss += int(m.group(1)) if m else 0
        r = _read(f"/proc/{p}/smaps_rollup") or ""
        m = re.search(r"^Pss:\s+(\d+)", r, re.M)
        pss += int(m.group(1)) if m else 0
    return {"rss_kb": rss, "pss_kb": pss, "processes": len(pids)}


def kamcmd(ctl: str, *args: str) -> str:
    return subprocess.run(["kamcmd", "-s", ctl, *args], capture_output=True,
                          text=True, timeout=20, check=True).stdout


def kamailio_shm(ctl: str) -> dict:
    """Kamailio's own accounting: shared-memory pool bytes in use
    (core.shmmem real_used = payload + allocator overhead) and usrloc's
    contact count."""
    out = {}
    m = re.search(r"real_used:\s*(\d+)", kamcmd(ctl, "core.shmmem"))
    out["shm_real_used"] = int(m.group(1)) if m else None
    m = re.search(r"location_contacts\s*=\s*(\d+)",
                  kamcmd(ctl, "stats.get_statistics", "location_contacts"))
    out["contacts"] = int(m.group(1)) if m else None
    return out


# --------------------------------------------------------------------------
# users
# --------------------------------------------------------------------------

def cmd_users_csv(a) -> None:
    with open(a.out, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(a.first, a.first + a.count):
            f.write(f"user{i};[authentication username=user{i} password=password-{i}]\n")
    print(json.dumps({"file": a.out, "first": a.first, "count": a.count}))


def cmd_create_users(a) -> None:
    """POST /api/v1/users for userN/passN, N in [first, first+count).

    Several keep-alive connections in threads: each request is a small SQLite
    write on the server, so a handful in flight keeps it busy without
    opening a TCP connection per user (which curl in a loop would do)."""
    host, port = a.api.split(":")
    next_i = [a.first]
    lock = threading.Lock()
    errors: list[str] = []
    done = [0]
    deadline = time.monotonic() + a.max_seconds

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        hdrs = {"Authorization": f"Bearer {a.token}",
                "Content-Type": "application/json"}
        while True:
            with lock:
                if errors or next_i[0] >= a.first + a.count:
                    return
                if time.monotonic() > deadline:
                    errors.append(f"gave up after {a.max_seconds} s")
                    return
                i = next_i[0]
                next_i[0] += 1
            body = json.dumps({"username": f"user{i}", "password": f"password-{i}"})
            for attempt in range(3):
                try:
                    conn.request("POST", "/api/v1/users", body, hdrs)
                    r = conn.getresponse()
                    text = r.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=30)
                    if attempt == 2:
                        raise
            # 201 Created / 200 OK; 409 = already there from an earlier try.
            if r.status not in (200, 201, 409):
                with lock:
                    errors.append(f"user{i}: HTTP {r.status} {text[:200]!r}")
                return
            with lock:
                done[0] += 1
                if done[0] % 20000 == 0:
                    log(f"  {done[0]} users created")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.monotonic() - t0
    res = {"created": done[0], "seconds": round(dt, 1),
           "per_second": round(done[0] / dt, 1) if dt else None,
           "errors": errors[:5]}
    print(json.dumps(res))
    if errors or done[0] != a.count:
        sys.exit(1)


# --------------------------------------------------------------------------
# one sipp run
# --------------------------------------------------------------------------

def parse_stat(path: Path) -> dict:
    """Last line of sipp's -stf CSV = cumulative counters of the run."""
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    if len(lines) < 2:
        return {}
    head = lines[0].rstrip(";").split(";")
    vals = lines[-1].rstrip(";").split(";")
    return dict(zip(head, vals))


def _int(st: dict, key: str) -> int:
    try:
        return int(float(st.get(key, "0") or 0))
    except ValueError:
        return 0


def sipp_run(target: str, rate: int, calls: int, csv: str, workdir: Path,
             server_pid: int, expires: int, local_port: int,
             duration_hint: float, tag: str, strict: bool = True,
             counters=None) -> dict:
    """Run sipp once at `rate` calls/s for `calls` calls; return counters,
    the pass verdict and CPU figures.

    Server CPU: utime+stime of the server's whole process tree read right
    before sipp starts and right after it exits (all responses are in by
    then), so the delta is the CPU the server spent on exactly these calls
    (plus its idle timers, which are negligible over ~10 s).
    sipp CPU: its rusage from wait4(); CPU/wall near 1.0 = sipp saturated.
    `counters`, when given, is called before and after the run and returns
    named numbers (other servers' CPU ticks, their request counters); the
    deltas land in res["counters"]."""
    workdir.mkdir(parents=True, exist_ok=True)
    stf = workdir / f"{tag}-stat.csv"
    errf = workdir / f"{tag}-errors.log"
    for f in (stf, errf):
        f.unlink(missing_ok=True)
    # a run that collapses (queues overflow, retransmission storms) is cut
    # short: it has failed anyway
    timeout = int(duration_hint * 1.5 + 5)
    cmd = [
        "sipp", target,
        "-sf", str(SCENARIO),
        "-inf", csv,
        "-key", "expires", str(expires),
        "-i", "127.0.0.1", "-p", str(local_port),
        "-r", str(rate), "-rp", "1000", "-m", str(calls),
        # a full second of calls may be outstanding; a server slower than
        # that is failing anyway (retransmissions start at 500 ms)
        "-l", str(max(1000, rate)),
        "-buff_size", str(4 * 1024 * 1024),
        "-nostdin",
        "-trace_stat", "-stf", str(stf), "-fd", "1",
        "-trace_err", "-error_file", str(errf), "-max_log_size", "1000000",
        # sipp aborts after 10 stalls of its own loop by default; on shared
        # cores that is noise, so count stalls (reported) instead of aborting
        "-watchdog_major_maxtriggers", "1000000",
        "-watchdog_minor_maxtriggers", "1000000",
        "-timeout", f"{timeout}s", "-timeout_error",
    ]
    c0 = counters() if counters else {}
    busy0, tot0 = machine_cpu()
    srv0 = cpu_ticks(server_pid)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=open(workdir / f"{tag}-sipp.stderr", "w"),
                            stdin=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    srv1 = cpu_ticks(server_pid)
    busy1, tot1 = machine_cpu()
    c1 = counters() if counters else {}
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc

    st = parse_stat(stf) if stf.exists() else {}
    ok_calls = _int(st, "SuccessfulCall(C)")
    failed = _int(st, "FailedCall(C)")
    retrans = _int(st, "Retransmissions(C)")
    unexpected = _int(st, "FailedUnexpectedMessage(C)")
    out_of_call = _int(st, "OutOfCallMsgs(C)")
    dead = _int(st, "DeadCallMsgs(C)")
    sipp_cpu = ru.ru_utime + ru.ru_stime
    srv_s = (srv1 - srv0) / CLK_TCK
    res = {
        "rate": rate, "calls": calls, "sipp_rc": rc,
        "successful": ok_calls, "failed": failed, "retransmissions": retrans,
        "unexpected": unexpected, "out_of_call": out_of_call, "dead_call": dead,
        "watchdog_major": _int(st, "WatchdogMajor(C)"),
        "watchdog_minor": _int(st, "WatchdogMinor(C)"),
        "wall_s": round(wall, 2),
        "achieved_rate": round(ok_calls / wall, 1) if wall else 0,
        "sipp_cpu_s": round(sipp_cpu, 2),
        "sipp_cpu_frac": round(sipp_cpu / wall, 3) if wall else 0,
        "server_cpu_s": round(srv_s, 2),
        "server_cpu_us_per_reg": round(srv_s * 1e6 / ok_calls, 1) if ok_calls else None,
        "machine_busy_frac": round((busy1 - busy0) / max(1, tot1 - tot0), 3),
    }
    if counters:
        res["counters"] = {k: c1[k] - c0[k] for k in c1 if k in c0}
    # CPU (in cores) used by everything else on the machine during the run —
    # e.g. colleagues compiling: the two cores are shared, so this says how
    # much the figures may be depressed.
    ncpu = os.cpu_count() or 1
    res["other_cpu_cores"] = round(max(0.0, res["machine_busy_frac"] * ncpu
                                       - (sipp_cpu + srv_s) / max(wall, 1e-9)), 2)
    # Pass = every call completed, nothing failed, nothing was retransmitted,
    # nothing unexpected arrived, and the rate was actually sustained (sipp
    # did not fall behind its schedule: the run took about calls/rate).
    reasons = []
    if rc != 0:
        reasons.append(f"sipp exit {rc}")
    if ok_calls != calls:
        reasons.append(f"{ok_calls}/{calls} calls completed")
    if failed:
        reasons.append(f"{failed} failed")
    if retrans:
        reasons.append(f"{retrans} retransmissions")
    if unexpected or out_of_call or dead:
        reasons.append(f"{unexpected + out_of_call + dead} unexpected messages")
    if strict and wall > calls / rate * 1.10 + 1.5:
        reasons.append(f"rate not sustained ({wall:.1f} s for {calls / rate:.1f} s of calls)")
    res["passed"] = not reasons
    res["reasons"] = reasons
    if res["sipp_cpu_frac"] >= SIPP_BOUND:
        res["bound"] = "load generator bound"
    elif res["machine_busy_frac"] >= MACHINE_BOUND:
        res["bound"] = (f"machine bound ({res['machine_busy_frac']:.0%} of the cores busy, "
                        f"{res['other_cpu_cores']:.2f} cores by other processes)")
    else:
        res["bound"] = "server bound"
    if not res["passed"] and errf.exists():
        res["first_error"] = errf.read_text(errors="replace")[:300]
    return res


def _run_args(a) -> dict:
    return dict(target=a.target, csv=a.csv, workdir=Path(a.workdir),
                server_pid=a.server_pid, expires=a.expires,
                local_port=a.local_port)


def cmd_run(a) -> None:
    r = sipp_run(rate=a.rate, calls=a.calls, duration_hint=a.calls / a.rate,
                 tag=f"run-{a.rate}", **_run_args(a))
    print(json.dumps(r, indent=1))


# --------------------------------------------------------------------------
# rate search
# --------------------------------------------------------------------------

def cmd_search(a) -> None:
    """Highest rate that passes, by geometric steps then bisection.

    Start at --start; ×--factor while passing (÷ while failing, when even the
    start fails); once a pass and a fail bracket the limit, bisect until they
    are within --precision of each other. Stops early when the time budget
    cannot fit another run. Each run lasts --duration s (calls = rate × it)."""
    t_start = time.monotonic()
    runs: list[dict] = []
    best: dict | None = None
    fail: dict | None = None
    rate = a.start

    def rnd(x: float) -> int:
        step = 50 if x >= 2000 else 10
        return max(10, int(round(x / step) * step))

    while True:
        elapsed = time.monotonic() - t_start
        if elapsed + a.duration * 1.6 + 5 > a.max_seconds:
            log(f"time budget reached ({elapsed:.0f} s of {a.max_seconds})")
            break
        r = sipp_run(rate=rate, calls=rate * a.duration, duration_hint=a.duration,
                     tag=f"search-{len(runs):02d}-{rate}", **_run_args(a))
        runs.append(r)
        verdict = "PASS" if r["passed"] else "FAIL: " + "; ".join(r["reasons"])
        log(f"  {rate:>6}/s  {verdict}  (server {r['server_cpu_us_per_reg']} µs/reg, "
            f"sipp cpu {r['sipp_cpu_frac']:.0%}, machine {r['machine_busy_frac']:.0%}, "
            f"others {r['other_cpu_cores']:.2f} cores)")
        if r["passed"]:
            if best is None or rate > best["rate"]:
                best = r
        else:
            if fail is None or rate < fail["rate"]:
                fail = r
        # the next rate
        if best and fail and fail["rate"] <= best["rate"]:
            # a pass above a fail: noise. Trust the pass, forget the fail.
            fail = None
        if best is None:
            nxt = rnd(rate / a.factor)
            if nxt >= rate or nxt < a.min_rate:
                break
        elif fail is None:
            nxt = rnd(best["rate"] * a.factor)
        else:
            if fail["rate"] - best["rate"] <= max(best["rate"] * a.precision, 20):
                break
            nxt = rnd((best["rate"] + fail["rate"]) / 2)
            if nxt in (best["rate"], fail["rate"]):
                break
        rate = nxt
        time.sleep(a.pause)  # let stragglers and the server settle

    res = {"best": best, "first_fail_above": fail, "runs": runs,
           "start_rate_run": runs[0] if runs else None,
           "seconds": round(time.monotonic() - t_start, 1)}
    if best is None:
        res["limit"] = "no rate passed"
    elif fail is None:
        res["limit"] = "not reached within the time budget"
    else:
        res["limit"] = fail["bound"]
    print(json.dumps(res, indent=1))


# --------------------------------------------------------------------------
# memory per contact
# --------------------------------------------------------------------------

def cmd_memory(a) -> None:
    """Memory per registered contact.

    1. warm-up: register the warm-up users (a separate set of AORs), so
       allocator arenas, buffers, caches and lazily built tables exist;
    2. wait until quiet, sample;
    3. register the N measured users (distinct AORs, Expires long enough to
       outlive the measurement), at a rate both servers sustain;
    4. wait until quiet (Switchboard: ≥ 35 s so transaction state of those
       requests has expired and only the bindings remain), sample again;
    5. (after − before) / contacts registered.
    The headline figure is the Pss sum over the server's processes (see
    memory_kb); for Kamailio its shared-memory allocator's real_used delta
    is recorded as well (the contacts live in that pool)."""
    args = _run_args(a)
    log(f"  warm-up: {a.warmup_count} registrations")
    args_w = dict(args, csv=a.warmup_csv)
    w = sipp_run(rate=a.rate, calls=a.warmup_count,
                 duration_hint=a.warmup_count / a.rate, tag="mem-warmup",
                 strict=False, **args_w)
    time.sleep(a.settle)
    before = memory_kb(a.server_pid)
    if a.kamailio_ctl:
        before.update(kamailio_shm(a.kamailio_ctl))
    log(f"  registering {a.count} contacts at {a.rate}/s")
    r = sipp_run(rate=a.rate, calls=a.count, duration_hint=a.count / a.rate,
                 tag="mem-load", strict=False, **args)
    log(f"  {r['successful']} registered ({r['failed']} failed, "
        f"{r['retransmissions']} retransmissions); waiting {a.quiet} s until quiet")
    time.sleep(a.quiet)
    after = memory_kb(a.server_pid)
    if a.kamailio_ctl:
        after.update(kamailio_shm(a.kamailio_ctl))

    contacts = r["successful"]
    if a.kamailio_ctl and after.get("contacts") is not None:
        contacts = after["contacts"] - before["contacts"]  # usrloc's own count
    res = {"warmup": {k: w[k] for k in ("successful", "failed", "retransmissions")},
           "load": r, "before": before, "after": after, "contacts": contacts,
           "rate": a.rate, "quiet_s": a.quiet}
    if contacts > 0:
        res["pss_bytes_per_contact"] = round((after["pss_kb"] - before["pss_kb"]) * 1024 / contacts, 1)
        res["rss_bytes_per_contact"] = round((after["rss_kb"] - before["rss_kb"]) * 1024 / contacts, 1)
        if a.kamailio_ctl and after.get("shm_real_used") is not None:
            res["shm_bytes_per_contact"] = round(
                (after["shm_real_used"] - before["shm_real_used"]) / contacts, 1)
    res["complete"] = contacts == a.count and r["failed"] == 0
    print(json.dumps(res, indent=1))
    if contacts <= 0:
        sys.exit(1)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def _load(path: str | None) -> dict | None:
    if not path or not os.path.exists(path):
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def summarize(name: str, meta: dict, search: dict | None, mem: dict | None) -> dict:
    s = dict(meta)
    if search:
        b = search.get("best")
        s["rate"] = b["rate"] if b else None
        s["cpu_us_per_reg"] = b["server_cpu_us_per_reg"] if b else None
        s["sipp_cpu_frac_at_best"] = b["sipp_cpu_frac"] if b else None
        s["limit"] = search.get("limit")
        f = search.get("first_fail_above")
        s["first_fail_rate"] = f["rate"] if f else None
        s["first_fail_reasons"] = f["reasons"] if f else None
        sr = search.get("start_rate_run")
        if sr:
            s["start_rate"] = sr["rate"]
            s["cpu_us_per_reg_at_start_rate"] = sr["server_cpu_us_per_reg"]
        s["search_seconds"] = search.get("seconds")
        s["max_other_cpu_cores"] = max((r.get("other_cpu_cores", 0) for r in search.get("runs", [])),
                                       default=None)
    if mem:
        s["mem_bytes_per_contact"] = mem.get("pss_bytes_per_contact")
        s["mem_rss_bytes_per_contact"] = mem.get("rss_bytes_per_contact")
        if "shm_bytes_per_contact" in mem:
            s["mem_shm_bytes_per_contact"] = mem["shm_bytes_per_contact"]
        s["mem_contacts"] = mem.get("contacts")
        s["mem_complete"] = mem.get("complete")
    return s


def cmd_report(a) -> None:
    kam = summarize("kamailio", json.loads(a.kamailio_meta),
                    _load(a.kamailio_search), _load(a.kamailio_memory))
    sb = summarize("switchboard", json.loads(a.switchboard_meta),
                   _load(a.switchboard_search), _load(a.switchboard_memory))

    def ratio(key):
        x, y = sb.get(key), kam.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y:
            return round(x / y, 2)
        return None

    ratios = {"rate": ratio("rate"), "cpu_us_per_reg": ratio("cpu_us_per_reg"),
              "cpu_us_per_reg_at_start_rate": ratio("cpu_us_per_reg_at_start_rate"),
              "mem_bytes_per_contact": ratio("mem_bytes_per_contact")}
    out = {"benchmark": "REGISTER with digest auth (MD5, qop=auth), sipp over UDP loopback",
           "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
           "settings": json.loads(a.settings),
           "kamailio": kam, "switchboard": sb, "ratios_switchboard_over_kamailio": ratios}
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")

    def cell(d, key, fmt="{:.0f}"):
        v = d.get(key)
        if v is None:
            return d.get("status") if d.get("status") not in (None, "ok") else "-"
        return fmt.format(v)

    def rcell(key):
        v = ratios.get(key)
        return "-" if v is None else f"{v:.2f}"

    kv = kam.get("version", "kamailio")
    n = kam.get("mem_contacts") or sb.get("mem_contacts")
    n_label = (f"{n // 1000}k" if n and n % 1000 == 0 else str(n)) if n else "-"
    start = kam.get("start_rate") or sb.get("start_rate")
    rows = [
        ("highest rate, 0 failures, 0 retrans (reg/s)", "rate", "{:.0f}"),
        ("server CPU per registration at best (µs)", "cpu_us_per_reg", "{:.1f}"),
        (f"server CPU per registration at {start}/s (µs)", "cpu_us_per_reg_at_start_rate", "{:.1f}"),
        (f"memory per contact at {n_label} (bytes)", "mem_bytes_per_contact", "{:.0f}"),
    ]
    w0 = 50
    print()
    print(f"{'REGISTER with digest auth (sipp, ' + str(os.cpu_count()) + ' cores shared)':<{w0}} "
          f"{kv:>16} {'switchboard':>16} {'ratio':>7}")
    for label, key, fmt in rows:
        print(f"{label:<{w0}} {cell(kam, key, fmt):>16} {cell(sb, key, fmt):>16} {rcell(key):>7}")
    print()
    for name, d in (("kamailio", kam), ("switchboard", sb)):
        if d.get("status") not in (None, "ok"):
            print(f"  {name}: {d['status']}")
            continue
        if d.get("limit"):
            if d.get("first_fail_rate"):
                print(f"  {name}: failed at {d['first_fail_rate']}/s "
                      f"({'; '.join(d['first_fail_reasons'] or [])}): {d['limit']}")
            else:
                print(f"  {name}: {d['limit']}")
        if (d.get("max_other_cpu_cores") or 0) >= 0.25:
            print(f"  {name}: other processes used up to {d['max_other_cpu_cores']:.2f} cores during "
                  "the rate search: its figures are depressed and noisy")
        if d.get("sipp_cpu_frac_at_best") is not None and d["sipp_cpu_frac_at_best"] >= SIPP_BOUND:
            print(f"  {name}: sipp used {d['sipp_cpu_frac_at_best']:.0%} of a core at the best rate: "
                  "load generator bound, the server may go faster")
        if d.get("mem_bytes_per_contact") is not None:
            extra = (f", shm allocator {d['mem_shm_bytes_per_contact']:.0f} B"
                     if d.get("mem_shm_bytes_per_contact") is not None else "")
            print(f"  {name}: memory = Δ Pss summed over its processes / {d['mem_contacts']} contacts"
                  f" (Δ RSS sum {d['mem_rss_bytes_per_contact']:.0f} B{extra})")
    print("  ratios = switchboard / kamailio: rate ≥ 1 is better, CPU and memory ≤ 1 are better")
    print(f"  JSON: {a.out}")


# --------------------------------------------------------------------------

def free_port(kind: str, prefer: int) -> int:
    """`prefer` if nothing is bound to it on 127.0.0.1 (UDP and TCP), else
    any free port the kernel picks."""
    def free(p: int) -> bool:
        for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, t)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
            finally:
                s.close()
        return True
    if prefer and free(prefer):
        return prefer
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if free(p):
            return p
    raise SystemExit("no free port")


def cmd_port(a) -> None:
    print(free_port("", a.prefer))


def cmd_wait_tcp(a) -> None:
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(1)


def cmd_wait_udp(a) -> None:
    """Wait until some socket is bound to UDP port --port (IPv4 or IPv6)."""
    want = f":{a.port:04X}"
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:
        for f in ("/proc/net/udp", "/proc/net/udp6"):
            for line in (_read(f) or "").splitlines()[1:]:
                if line.split()[1].endswith(want):
                    return
        time.sleep(0.2)
    sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("users-csv")
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(f=cmd_users_csv)

    s = sub.add_parser("create-users")
    s.add_argument("--api", required=True, help="127.0.0.1:PORT")
    s.add_argument("--token", required=True)
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--connections", type=int, default=8)
    s.add_argument("--max-seconds", type=int, default=300)
    s.set_defaults(f=cmd_create_users)

    def common(s):
        s.add_argument("--target", required=True, help="127.0.0.1:PORT")
        s.add_argument("--csv", required=True)
        s.add_argument("--workdir", required=True)
        s.add_argument("--server-pid", type=int, required=True)
        s.add_argument("--expires", type=int, default=3600)
        s.add_argument("--local-port", type=int, required=True)

    s = sub.add_parser("run")
    common(s)
    s.add_argument("--rate", type=int, required=True)
    s.add_argument("--calls", type=int, required=True)
    s.set_defaults(f=cmd_run)

    s = sub.add_parser("search")
    common(s)
    s.add_argument("--start", type=int, default=2000)
    s.add_argument("--factor", type=float, default=1.25)
    s.add_argument("--precision", type=float, default=0.03)
    s.add_argument("--duration", type=int, default=10)
    s.add_argument("--max-seconds", type=int, default=240)
    s.add_argument("--min-rate", type=int, default=50)
    s.add_argument("--pause", type=float, default=2.0)
    s.set_defaults(f=cmd_search)

    s = sub.add_parser("memory")
    common(s)
    s.add_argument("--warmup-csv", required=True)
    s.add_argument("--warmup-count", type=int, default=1000)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rate", type=int, default=4000)
    s.add_argument("--settle", type=float, default=3.0)
    s.add_argument("--quiet", type=float, default=5.0)
    s.add_argument("--kamailio-ctl")
    s.set_defaults(f=cmd_memory)

    s = sub.add_parser("report")
    s.add_argument("--kamailio-meta", required=True)
    s.add_argument("--kamailio-search")
    s.add_argument("--kamailio-memory")
    s.add_argument("--switchboard-meta", required=True)
    s.add_argument("--switchboard-search")
    s.add_argument("--switchboard-memory")
    s.add_argument("--settings", default="{}")
    s.add_argument("--out", required=True)
    s.set_defaults(f=cmd_report)

    s = sub.add_parser("port")
    s.add_argument("--prefer", type=int, default=0)
    s.set_defaults(f=cmd_port)

    s = sub.add_parser("wait-tcp")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--seconds", type=float, default=30)
    s.set_defaults(f=cmd_wait_tcp)

    s = sub.add_parser("wait-udp")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--seconds", type=float, default=30)
    s.set_defaults(f=cmd_wait_udp)

    a = p.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
