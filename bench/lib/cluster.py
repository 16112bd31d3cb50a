#!/usr/bin/env python3
"""Switchboard embedded against Switchboard clustered, in one run.

One switchboard-signaling process per mode, on 127.0.0.1 only:
  embedded   SQLite under a fresh DATA_DIR, no Redis, no NATS
  clustered  the shared Postgres (a fresh database of its own), Redis (a key
             prefix of its own) and NATS JetStream (a subject root, hence
             stream names, of its own, NATS_STREAM_MAX_BYTES small), with
             CLUSTER_SECRET; a single replica (the comparison is of the cost
             of the shared state, not of scaling out)

Both processes run side by side; the rate searches of steps 3 and 4 take a
step of each mode in turn (embedded, clustered, embedded, …), so a host
whose speed drifts during the run (this machine's does, by a third at
times) weighs on both modes alike. Per mode, on the same process:
  1. users       100,000 + 1,000 warm-up users over the REST API (not timed)
  2. contacts    1,000 warm-up registrations, then 100,000 AORs registered;
                 clustered: Redis `INFO memory` used_memory before/after and
                 the MEMORY USAGE of every key under the bench's prefix
  3. REGISTER    highest rate with 0 failures / retransmissions (sipp,
                 bench/sipp/register_auth.xml, as bench/run.sh), CPU per
                 registration of the signaling process
  4. calls       highest call rate (no media) with 0 failed calls (sipp
                 uac → switchboard B2BUA → sipp uas, as bench/calls.sh),
                 CPU per call
  5. CDRs        after the call steps: wait until the CDR stream is drained,
                 then a check step at half the best call rate on its own:
                 CDRs stored by it (Postgres, or SQLite embedded) must equal
                 the calls sipp completed
Clustered, every sipp step also reads the CPU of the Redis, NATS and
Postgres server processes (found by their listening port in /proc), and the
requests they served (Redis commands by name, Postgres transactions of the
bench database), so each figure can be divided per registration or call.

Afterwards the bench database is dropped, the prefix's keys deleted and the
two streams deleted. Prints a table, writes bench/out/cluster.json.
Stdlib only; psql and redis-cli for the servers' own views.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402
import calls as C  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
OUT = BENCH / "out"


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the shared servers
# --------------------------------------------------------------------------

class Servers:
    def __init__(self, a):
        self.pg_host, self.pg_port = a.pg.split(":")
        self.redis_host, self.redis_port = a.redis.split(":")
        self.nats_host, self.nats_port = a.nats.split(":")
        tag = secrets.token_hex(4)
        self.db = f"sb_bench_{tag}"
        self.prefix = f"sbbench{tag}:"
        self.nats_prefix = f"sbbench{tag}"
        self.streams = [f"SBBENCH{tag.upper()}_EVENTS", f"SBBENCH{tag.upper()}_CDR"]
        self.db_created = False

    # -- Postgres ------------------------------------------------------------
    def psql(self, sql: str, db: str = "postgres") -> str:
        r = subprocess.run(["psql", "-h", self.pg_host, "-p", self.pg_port, "-U", "postgres",
                            "-d", db, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def database_url(self) -> str:
        return f"postgres://postgres@{self.pg_host}:{self.pg_port}/{self.db}"

    def cdr_count(self, call_id_prefix: str = "") -> int | None:
        try:
            return int(self.psql("SELECT count(*) FROM switchboard.cdrs WHERE "
                                 f"coalesce(sip_call_id, '') LIKE '{call_id_prefix}%'", self.db))
        except (RuntimeError, ValueError):
            return None

    # -- Redis ---------------------------------------------------------------
    def redis(self, *args: str) -> str:
        r = subprocess.run(["redis-cli", "-h", self.redis_host, "-p", self.redis_port, *args],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"redis-cli: {r.stderr.strip()}")
        return r.stdout

    def redis_info(self, section: str) -> dict[str, str]:
        out = {}
        for line in self.redis("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.strip().split(":", 1)
                out[k] = v
        return out

    def redis_keys(self) -> list[str]:
        return [k for k in self.redis("--scan", "--pattern", self.prefix + "*").splitlines() if k]

    def redis_prefix_usage(self) -> dict:
        """Keys under the prefix, by kind (the part after the prefix up to
        ':'), and the sum of their MEMORY USAGE (pipelined through one
        redis-cli)."""
        keys = self.redis_keys()
        if not keys:
            return {"keys": 0, "bytes": 0, "by_kind": {}}
        script = "".join(f"MEMORY USAGE {json.dumps(k)} SAMPLES 0\n" for k in keys)
        r = subprocess.run(["redis-cli", "-h", self.redis_host, "-p", self.redis_port],
                           input=script, capture_output=True, text=True, timeout=300)
        sizes = [int(x) if x.strip().lstrip("-").isdigit() else 0
                 for x in r.stdout.splitlines()]
        by_kind: dict[str, list[int]] = {}
        for k, n in zip(keys, sizes):
            kind = k[len(self.prefix):].split(":", 1)[0]
            e = by_kind.setdefault(kind, [0, 0])
            e[0] += 1
            e[1] += n
        return {"keys": len(keys), "bytes": sum(sizes),
                "by_kind": {k: {"keys": v[0], "bytes": v[1]} for k, v in by_kind.items()}}

    # -- NATS (the JetStream API over a plain client connection) -------------
    def js(self, subject: str, payload: bytes = b"") -> dict:
        with socket.create_connection((self.nats_host, int(self.nats_port)), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()  # INFO
            inbox = f"_INBOX.bench{secrets.token_hex(6)}"
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
                      + f"SUB {inbox} 1\r\n".encode()
                      + f"PUB {subject} {inbox} {len(payload)}\r\n".encode() + payload + b"\r\n")
            while True:
                line = f.readline()
                if not line:
                    raise RuntimeError(f"NATS closed the connection ({subject})")
                if line.startswith(b"PING"):
                    s.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    raise RuntimeError(f"NATS: {line.decode().strip()}")
                elif line.startswith(b"MSG"):
                    data = f.read(int(line.split()[-1]) + 2)[:-2]
                    return json.loads(data or b"{}")
                elif line.startswith(b"HMSG"):  # a status reply, e.g. 503 no responders
                    data = f.read(int(line.split()[-1]) + 2)[:-2]
                    raise RuntimeError(f"NATS {subject}: {data[:80]!r}")

    def cdr_pending(self) -> int | None:
        """CDRs in the stream not yet acked by the consumer (work-queue
        retention: an acked CDR leaves the stream)."""
        try:
            info = self.js(f"$JS.API.STREAM.INFO.{self.streams[1]}")
            return int(info["state"]["messages"])
        except (RuntimeError, KeyError, OSError, ValueError):
            return None

    # -- setup / cleanup -----------------------------------------------------
    def check(self) -> None:
        try:
            self.psql("SELECT 1")
        except (RuntimeError, OSError) as e:
            raise SystemExit(f"Postgres {self.pg_host}:{self.pg_port} unreachable: {e}")
        try:
            if self.redis("PING").strip() != "PONG":
                raise RuntimeError("no PONG")
        except (RuntimeError, OSError) as e:
            raise SystemExit(f"Redis {self.redis_host}:{self.redis_port} unreachable: {e}")
        try:
            self.js("$JS.API.INFO")
        except (RuntimeError, OSError) as e:
            raise SystemExit(f"NATS JetStream {self.nats_host}:{self.nats_port} unreachable: {e}")

    def create(self) -> None:
        self.psql(f"CREATE DATABASE {self.db}")
        self.db_created = True

    def cleanup(self) -> dict:
        done: dict = {}
        if self.db_created:
            try:
                self.psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
                done["database_dropped"] = self.db
            except (RuntimeError, OSError) as e:
                done["database_error"] = str(e)
        try:
            keys = self.redis_keys()
            for i in range(0, len(keys), 500):
                self.redis("UNLINK", *keys[i:i + 500])
            done["redis_keys_deleted"] = len(keys)
        except (RuntimeError, OSError) as e:
            done["redis_error"] = str(e)
        for st in self.streams:
            try:
                done.setdefault("streams_deleted", []).append(
                    (st, self.js(f"$JS.API.STREAM.DELETE.{st}").get("success", False)))
            except (RuntimeError, OSError) as e:
                done.setdefault("stream_errors", []).append(f"{st}: {e}")
        return done

    # -- CPU and request counters per sipp run -------------------------------
    def locate(self, quiet: bool = False) -> None:
        self.redis_pid = listening_pid(int(self.redis_port))
        self.nats_pid = listening_pid(int(self.nats_port))
        self.pg_pid = listening_pid(int(self.pg_port))
        if not quiet:
            log(f"server pids: redis {self.redis_pid}, nats {self.nats_pid}, "
                f"postgres {self.pg_pid}")

    def counters(self) -> dict[str, float]:
        c: dict[str, float] = {}
        # found again each time: a server restarted by someone else during
        # a step changes its pid, and per_op then leaves its CPU out
        self.locate(quiet=True)
        for name, pid in (("redis", self.redis_pid), ("nats", self.nats_pid),
                          ("postgres_all", self.pg_pid)):
            c[f"pid_{name}"] = pid or 0
        for name, pid in (("redis", self.redis_pid), ("nats", self.nats_pid)):
            if pid:
                c[f"cpu_{name}"] = own_ticks(pid)
        if self.pg_pid:
            # the whole server: live processes plus what reaped backends used
            c["cpu_postgres_all"] = B.cpu_ticks(self.pg_pid) + reaped_ticks(self.pg_pid)
            try:
                rows = self.psql("SELECT pid FROM pg_stat_activity WHERE datname = "
                                 f"'{self.db}'").split()
                for pid in rows:
                    c[f"pgpid_{pid}"] = own_ticks(int(pid))
                c["pg_xact"] = float(self.psql(
                    f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{self.db}'"))
            except (RuntimeError, ValueError):
                pass
        try:
            st = self.redis_info("commandstats")
            for k, v in st.items():
                if k.startswith("cmdstat_"):
                    c["redis_" + k[8:]] = float(v.split(",")[0].split("=")[1])
        except (RuntimeError, IndexError, ValueError):
            pass
        return c


def listening_pid(port: int) -> int | None:
    """The process with a TCP socket listening on `port` (from /proc)."""
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (B._read(f) or "").splitlines()[1:]:
            p = line.split()
            if p[1].endswith(f":{port:04X}") and p[3] == "0A":
                inodes.add(p[9])
    if not inodes:
        return None
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{d}/fd"):
                link = os.readlink(f"/proc/{d}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    found.append(int(d))
                    break
        except OSError:
            continue
    # Postgres: the postmaster and its forked backends share the socket;
    # the postmaster is the one whose parent is not in the set
    for pid in found:
        f = B._stat_fields(pid)
        if f and int(f[1]) not in found:
            return pid
    return found[0] if found else None


def own_ticks(pid: int) -> int:
    f = B._stat_fields(pid)
    return int(f[11]) + int(f[12]) if f else 0


def reaped_ticks(pid: int) -> int:
    f = B._stat_fields(pid)
    return int(f[13]) + int(f[14]) if f else 0  # cutime + cstime


# --------------------------------------------------------------------------
# the rate search (as bench.py and calls.py: ×1.25 while passing, then bisect)
# --------------------------------------------------------------------------

def search(what: str, start: int, precision: float = 0.03, factor: float = 1.25):
    """One rate search as a generator: yields the next rate to try, is sent
    that step's result (None: the time is up), and returns the summary
    (×1.25 while passing, then bisect between the best pass and the lowest
    fail above it)."""
    t0 = time.monotonic()
    steps: list[dict] = []
    best: dict | None = None
    fail: dict | None = None
    rate = start
    while True:
        r = yield rate
        if r is None:
            break
        steps.append(r)
        verdict = "PASS" if r["passed"] else "FAIL: " + "; ".join(r["reasons"])
        cpu = r.get("server_cpu_us_per_reg") or r.get("server_cpu_us_per_call")
        log(f"  {what} {rate:6d}/s  {verdict}  (signaling {cpu} µs, "
            f"sipp cpu {r['sipp_cpu_frac']:.0%}, machine {r['machine_busy_frac']:.0%})")
        if r["passed"]:
            best = r if best is None or rate > best["rate"] else best
        elif fail is None or rate < fail["rate"]:
            fail = r
        if best and fail and fail["rate"] <= best["rate"]:
            fail = None  # a pass above a fail: noise; trust the pass
        if best is None:
            nxt = rate * 2 // 3
            if nxt < 50:
                break
        elif fail is None:
            nxt = int(best["rate"] * factor)
        else:
            if fail["rate"] - best["rate"] <= max(best["rate"] * precision, 20):
                break
            nxt = (best["rate"] + fail["rate"]) // 2
            if nxt in (best["rate"], fail["rate"]):
                break
        rate = nxt
    return {"steps": steps, "best": best, "first_fail_above": fail,
            "seconds": round(time.monotonic() - t0, 1)}


def interleaved(searches: dict, duration: int, budget: float) -> dict:
    """Runs several rate searches (name → (generator, run)) a step each in
    turn until each has finished or the budget is spent, so a machine whose
    speed drifts during the run (a shared host) weighs on every mode alike
    rather than on whichever ran in the slow minutes."""
    t0 = time.monotonic()
    out: dict = {}
    pending = {}
    for name, (gen, run) in searches.items():
        pending[name] = (gen, run, next(gen))
    while pending:
        for name in list(pending):
            gen, run, rate = pending[name]
            if time.monotonic() - t0 + duration * 1.3 + 4 > budget:
                out[name] = _close(gen)
                del pending[name]
                continue
            try:
                pending[name] = (gen, run, gen.send(run(rate)))
            except StopIteration as done:
                out[name] = done.value
                del pending[name]
            time.sleep(2)  # let the previous step's transactions drain
    return out


def _close(gen) -> dict:
    """The summary of a search stopped by the budget."""
    try:
        gen.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a search went on after the budget")


def per_op(r: dict | None, n_key: str = "successful") -> dict:
    """Counters of one clustered step divided per registration / call:
    µs of CPU per server, Redis commands (total and by name), Postgres
    transactions of the bench database."""
    if not r or not r.get("counters") or not r.get(n_key):
        return {}
    c, n = r["counters"], r[n_key]
    us = lambda ticks: round(ticks / B.CLK_TCK * 1e6 / n, 1)  # noqa: E731
    out = {"cpu_us": {}}
    for k in ("redis", "nats", "postgres_all"):
        if c.get(f"pid_{k}"):
            out["restarted"] = out.get("restarted", []) + [k]  # CPU unknown
        elif f"cpu_{k}" in c:
            out["cpu_us"][k] = us(c[f"cpu_{k}"])
    out["cpu_us"]["postgres_bench_db_backends"] = us(
        sum(v for k, v in c.items() if k.startswith("pgpid_")))
    cmds = {k[6:]: v / n for k, v in c.items() if k.startswith("redis_") and v}
    if "restarted" in out:
        log(f"  {', '.join(out['restarted'])} restarted during the step: its CPU is not counted")
    out["redis_commands"] = round(sum(cmds.values()), 2)
    out["redis_commands_by_name"] = {k: round(v, 2) for k, v in
                                     sorted(cmds.items(), key=lambda kv: -kv[1]) if v >= 0.01}
    if "pg_xact" in c:
        out["pg_transactions"] = round(c["pg_xact"] / n, 3)
    return out


# --------------------------------------------------------------------------
# one mode
# --------------------------------------------------------------------------

def start_mode(mode: str, a, work: Path, srv: Servers | None) -> dict:
    """Starts one mode's signaling process (and its sipp callee), creates
    the users and registers the contacts (steps 1 and 2). Returns the mode's
    context; its "res" holds the results so far and "status" says whether
    the rate searches can go on."""
    binary = Path(a.switchboard_bin)
    if not binary.exists():
        return {"res": {"status": "not built"}}
    work = work / mode
    work.mkdir()
    port, api, uas = B.free_port("", 0), B.free_port("", 0), B.free_port("", 0)
    uac_port, reg_port = B.free_port("", 0), B.free_port("", 0)
    (work / "dialplan.json").write_text(json.dumps({"version": "1.0", "routes": [
        {"id": "bench", "from": "trunk", "pattern": "*", "priority": 1, "direct_media": True,
         "actions": [{"type": "dial", "params": {
             "target": f"sip:${{destination}}@127.0.0.1:{uas}", "timeout": 30}}]}]}))
    (work / "trunks.json").write_text(json.dumps({"trunks": [
        {"name": "bench-caller", "host": f"127.0.0.1:{uac_port}"}]}))
    data = work / "data"
    data.mkdir()
    env = dict(os.environ, PORT=str(port), BIND="127.0.0.1", API_PORT=str(api),
               API_BIND="127.0.0.1", DATA_DIR=str(data), API_TOKEN="bench",
               AUTH_ALGORITHMS="MD5", LOGLEVEL="warn", SHUTDOWN_GRACE="2",
               DIALPLAN_PATH=str(work / "dialplan.json"), TRUNKS_PATH=str(work / "trunks.json"),
               # one source address at thousands of requests/s: the
               # per-source limit and the transaction cap are not measured
               SIP_RATE_PER_IP="0", MAX_TRANSACTIONS="0")
    for k in ("DATABASE_URL", "REDIS_ADDR", "NATS_URL", "CLUSTER_SECRET"):
        env.pop(k, None)
    counters = None
    if srv:
        env.update(DATABASE_URL=srv.database_url(), REDIS_ADDR=f"{srv.redis_host}:{srv.redis_port}",
                   REDIS_PREFIX=srv.prefix, NATS_URL=f"nats://{srv.nats_host}:{srv.nats_port}",
                   NATS_PREFIX=srv.nats_prefix, NATS_STREAM_MAX_BYTES=str(a.stream_max_bytes),
                   CLUSTER_SECRET=secrets.token_hex(32), NODE_NAME=f"bench-{srv.nats_prefix}")
        counters = srv.counters
    users_csv, warm_csv = work / "users.csv", work / "warmup.csv"
    for path, first, count in ((users_csv, 0, a.users), (warm_csv, a.users, a.warmup)):
        with open(path, "w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(first, first + count):
                f.write(f"user{i};[authentication username=user{i} password=password-{i}]\n")

    uas_p = subprocess.Popen(["sipp", "-sf", str(BENCH / "sipp" / "call_uas.xml"), "-i", "127.0.0.1",
                              "-p", str(uas), "-nostdin", "-buff_size", str(4 << 20)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    sb = subprocess.Popen([str(binary)], env=env, stdout=open(OUT / f"cluster-{mode}.log", "w"),
                          stderr=subprocess.STDOUT)
    res: dict = {"status": "ok", "port": port}
    ctx = {"mode": mode, "res": res, "procs": [sb, uas_p], "srv": srv, "data": data,
           "work": work, "sb": sb, "uac_port": uac_port, "counters": counters}
    try:
        if not (C.wait_port(port, 60) and wait_tcp(api, 30)) or sb.poll() is not None:
            res["status"] = f"failed to start (bench/out/cluster-{mode}.log)"
            return ctx
        target = f"127.0.0.1:{port}"
        log(f"{mode}: switchboard on udp:{target}, API :{api}, pid {sb.pid}")

        # 1. users (not timed)
        t0 = time.monotonic()
        cu = subprocess.run([sys.executable, str(HERE / "bench.py"), "create-users",
                             "--api", f"127.0.0.1:{api}", "--token", "bench", "--first", "0",
                             "--count", str(a.users + a.warmup), "--max-seconds", "600"],
                            capture_output=True, text=True)
        res["users"] = {"count": a.users + a.warmup, "seconds": round(time.monotonic() - t0, 1),
                        "result": cu.stdout.strip()[-300:]}
        if cu.returncode != 0:
            res["status"] = "user creation failed"
            return ctx
        log(f"{mode}: {a.users + a.warmup} users in {res['users']['seconds']} s")
        # users reach the registrar through the change poll (clustered: 500 ms)
        time.sleep(2)

        reg = dict(target=target, workdir=work, server_pid=sb.pid, expires=3600,
                   local_port=reg_port)
        # 2. contacts: warm-up, then the 100k measured AORs
        w = B.sipp_run(rate=a.memory_rate, calls=a.warmup, csv=str(warm_csv),
                       duration_hint=a.warmup / a.memory_rate, tag="warmup", strict=False, **reg)
        if w["successful"] == 0:
            res["status"] = f"smoke registrations failed: {w.get('first_error', '')[:200]}"
            return ctx
        time.sleep(3)
        before = srv.redis_info("memory") if srv else None
        r = B.sipp_run(rate=a.memory_rate, calls=a.users, csv=str(users_csv),
                       duration_hint=a.users / a.memory_rate, tag="contacts", strict=False, **reg)
        time.sleep(a.settle)
        mem = {"registered": r["successful"], "failed": r["failed"],
               "retransmissions": r["retransmissions"]}
        log(f"{mode}: {r['successful']}/{a.users} contacts registered at {a.memory_rate}/s")
        if srv:
            after = srv.redis_info("memory")
            locn = srv.redis("GET", srv.prefix + "locn").strip()
            contacts = int(locn) if locn.isdigit() else r["successful"]
            usage = srv.redis_prefix_usage()
            d = int(after["used_memory"]) - int(before["used_memory"])
            mem.update(contacts_in_redis=contacts, used_memory_before=int(before["used_memory"]),
                       used_memory_after=int(after["used_memory"]), used_memory_delta=d,
                       bytes_per_contact=round(d / max(1, contacts - a.warmup), 1),
                       prefix_keys=usage["keys"], prefix_bytes=usage["bytes"],
                       prefix_bytes_per_contact=round(usage["bytes"] / max(1, contacts), 1),
                       prefix_by_kind=usage["by_kind"])
            log(f"{mode}: Redis used_memory {before['used_memory_human']} → "
                f"{after['used_memory_human']}, {mem['bytes_per_contact']} B per contact "
                f"(keys under the prefix: {mem['prefix_bytes_per_contact']} B per contact)")
        res["contacts"] = mem

        ctx.update(target=target, reg=reg, users_csv=users_csv)
        return ctx
    except BaseException:
        stop_mode(ctx)
        raise


def reg_runner(ctx: dict, a):
    """Step 3's runner: one REGISTER step at a rate."""
    def run(rate):
        return B.sipp_run(rate=rate, calls=rate * a.duration, csv=str(ctx["users_csv"]),
                          duration_hint=a.duration, tag=f"reg-{rate}",
                          counters=ctx["counters"], **ctx["reg"])
    return run


def call_runner(ctx: dict, a):
    """Step 4's runner: one call step at a rate (sipp's totals kept for the
    CDR count)."""
    total = ctx["res"].setdefault("sipp_calls", {"successful": 0, "failed": 0})

    def run(rate):
        r = C.sipp_uac(ctx["target"], ctx["uac_port"], rate, rate * a.duration, ctx["work"],
                       f"call-{rate}", ctx["sb"].pid, counters=ctx["counters"])
        total["successful"] += r["successful"]
        total["failed"] += r["failed"]
        return r
    return run


def cdr_check(ctx: dict, a) -> None:
    """Step 5 for one mode, after both modes' call searches."""
    res, srv, data, work = ctx["res"], ctx["srv"], ctx["data"], ctx["work"]
    target, uac_port, sb = ctx["target"], ctx["uac_port"], ctx["sb"]
    # 5. CDRs: drain, then a check step on its own
    def count(prefix: str = "") -> int | None:
        return srv.cdr_count(prefix) if srv else sqlite_cdrs(data, prefix)
    res["cdr_search_total"] = drain(srv, count, a.drain_seconds)
    best = (res["calls"].get("best") or {}).get("rate") or 100
    # half the best rate: the check is of durability, not of the
    # ceiling, and a step that overloads makes sipp give up on calls
    # the server did complete (and store)
    rate = max(20, int(best * a.cdr_share))
    # the check step's calls carry a Call-ID of their own, so late CDRs
    # of calls an earlier (failed) step left behind are not counted
    cid = f"cdrcheck{secrets.token_hex(3)}-"
    r = C.sipp_uac(target, uac_port, rate, rate * a.cdr_duration, work, "cdr-check", sb.pid,
                   extra_args=["-cid_str", cid + "%u-%p@%s"])
    d = drain(srv, lambda: count(cid), a.drain_seconds, want=r["successful"])
    res["cdr_check"] = {"rate": rate, "calls": rate * a.cdr_duration, "call_id_prefix": cid,
                        "sipp_completed": r["successful"], "sipp_failed": r["failed"],
                        "cdrs_stored": d["cdrs"], "drain_seconds": d["seconds"],
                        "stream_pending": d.get("pending")}
    cc = res["cdr_check"]
    # a CDR for each call sipp completed; more CDRs than that are calls
    # the server completed after sipp gave up on them (failed steps)
    cc["lost"] = (max(0, cc["sipp_completed"] - cc["cdrs_stored"])
                  if cc["cdrs_stored"] is not None else None)
    cc["exact"] = cc["sipp_failed"] == 0 and cc["cdrs_stored"] == cc["sipp_completed"]
    log(f"{ctx['mode']}: CDR check at {rate}/s: sipp completed {cc['sipp_completed']}, "
        f"CDRs stored {cc['cdrs_stored']} (drained in {d['seconds']} s)")


def stop_mode(ctx: dict) -> None:
    for p in ctx.get("procs", []):
        C.stop(p)


def wait_tcp(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def sqlite_cdrs(data: Path, call_id_prefix: str = "") -> int | None:
    try:
        con = sqlite3.connect(f"file:{data / 'switchboard.db'}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute("SELECT count(*) FROM cdrs WHERE coalesce(sip_call_id, '') LIKE ?",
                               (call_id_prefix + "%",)).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return None


def drain(srv: Servers | None, count, seconds: float, want: int | None = None) -> dict:
    """Wait until the CDR stream is empty (clustered) and the stored count
    has reached `want` or stopped moving for 5 s; return the count and how
    long it took."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    pending = None
    while time.monotonic() - t0 < seconds:
        n = count()
        pending = srv.cdr_pending() if srv else 0
        if n != last:
            last, since = n, time.monotonic()
        if pending == 0 and (n == want or time.monotonic() - since >= 5):
            break
        time.sleep(0.5)
    return {"cdrs": last, "pending": pending, "seconds": round(time.monotonic() - t0, 1)}


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def best_of(res: dict, what: str, key: str):
    b = (res.get(what) or {}).get("best") or {}
    return b.get("rate"), b.get(key), b


def report(results: dict, a, srv: Servers) -> None:
    e, c = results.get("embedded", {}), results.get("clustered", {})
    er, ecpu, _ = best_of(e, "register", "server_cpu_us_per_reg")
    cr, ccpu, cbest = best_of(c, "register", "server_cpu_us_per_reg")
    ec, eccpu, _ = best_of(e, "calls", "server_cpu_us_per_call")
    cc, cccpu, cbestc = best_of(c, "calls", "server_cpu_us_per_call")

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    def v(x, fmt="{:.0f}"):
        return "-" if x is None else fmt.format(x)

    w = 52
    print()
    print(f"{'switchboard, 1 signaling process, 2 cores shared':<{w}}{'embedded':>12}{'clustered':>12}{'ratio':>8}")
    print(f"{'REGISTER (MD5 digest), highest rate, 0 failures /s':<{w}}{v(er):>12}{v(cr):>12}{ratio(cr, er):>8}")
    print(f"{'  signaling CPU per registration at best (µs)':<{w}}{v(ecpu, '{:.1f}'):>12}{v(ccpu, '{:.1f}'):>12}{ratio(ccpu, ecpu):>8}")
    po = per_op(cbest)
    for k, label in (("redis", "Redis"), ("postgres_bench_db_backends", "Postgres (bench db backends)"),
                     ("postgres_all", "Postgres (whole server)"), ("nats", "NATS")):
        if k in po.get("cpu_us", {}):
            print(f"{'  ' + label + ' CPU per registration (µs)':<{w}}{'':>12}{po['cpu_us'][k]:>12.1f}")
    if po:
        print(f"{'  Redis commands per registration':<{w}}{'':>12}{po['redis_commands']:>12.2f}"
              f"   {', '.join(f'{k} {x}' for k, x in list(po['redis_commands_by_name'].items())[:6])}")
        if "pg_transactions" in po:
            print(f"{'  Postgres transactions per registration':<{w}}{'':>12}{po['pg_transactions']:>12.3f}")
    print(f"{'calls (no media), highest rate, 0 failed /s':<{w}}{v(ec):>12}{v(cc):>12}{ratio(cc, ec):>8}")
    print(f"{'  signaling CPU per call at best (µs)':<{w}}{v(eccpu, '{:.1f}'):>12}{v(cccpu, '{:.1f}'):>12}{ratio(cccpu, eccpu):>8}")
    po = per_op(cbestc)
    for k, label in (("redis", "Redis"), ("postgres_bench_db_backends", "Postgres (bench db backends)"),
                     ("postgres_all", "Postgres (whole server)"), ("nats", "NATS")):
        if k in po.get("cpu_us", {}):
            print(f"{'  ' + label + ' CPU per call (µs)':<{w}}{'':>12}{po['cpu_us'][k]:>12.1f}")
    if po:
        print(f"{'  Redis commands per call':<{w}}{'':>12}{po['redis_commands']:>12.2f}"
              f"   {', '.join(f'{k} {x}' for k, x in list(po['redis_commands_by_name'].items())[:6])}")
        if "pg_transactions" in po:
            print(f"{'  Postgres transactions per call':<{w}}{'':>12}{po['pg_transactions']:>12.3f}")
    for name, r in (("embedded", e), ("clustered", c)):
        ck = r.get("cdr_check")
        if ck:
            where = "Postgres" if name == "clustered" else "SQLite"
            print(f"  CDRs {name}: check step {ck['calls']} calls at {ck['rate']}/s: sipp completed "
                  f"{ck['sipp_completed']} ({ck['sipp_failed']} failed), CDRs stored in {where} "
                  f"{ck['cdrs_stored']} → lost {ck['lost']}{' (exact)' if ck.get('exact') else ''} "
                  f"(drained in {ck['drain_seconds']} s)")
            tot = r.get("cdr_search_total", {})
            st = (r.get("calls") or {}).get("sipp_total", {})
            print(f"    whole call search before it: {tot.get('cdrs')} CDRs for {st.get('successful')} "
                  f"completed + {st.get('failed')} failed sipp calls")
    m = c.get("contacts") or {}
    if "bytes_per_contact" in m:
        print(f"  Redis memory per contact at {m['contacts_in_redis'] - a.warmup} contacts: "
              f"{m['bytes_per_contact']:.0f} B (used_memory {m['used_memory_before']} → "
              f"{m['used_memory_after']}); keys under the prefix: {m['prefix_keys']} keys, "
              f"{m['prefix_bytes_per_contact']:.0f} B per contact (MEMORY USAGE)")
    for name, r in (("embedded", e), ("clustered", c)):
        if r.get("status") != "ok":
            print(f"  {name}: {r.get('status')}")
            continue
        for what in ("register", "calls"):
            s = r.get(what) or {}
            f = s.get("first_fail_above")
            lim = (f"failed at {f['rate']}/s ({'; '.join(f['reasons'])}; {f.get('bound', '')})"
                   if f else "no failing rate reached within the time budget")
            print(f"  {name} {what}: {lim}")
        u = r.get("users", {})
        print(f"  {name}: {u.get('count')} users created over the REST API in {u.get('seconds')} s")
    print(f"  targets: clustered/embedded ≥ 0.8 for both rates; 0 lost CDRs; Redis ≤ 1 KB per contact")
    print(f"  JSON: {OUT / 'cluster.json'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per rate step")
    p.add_argument("--max-seconds", type=float, default=75,
                   help="time budget of each mode's rate search (REGISTER and calls; the "
                        "modes' steps alternate, so a search of both modes gets twice this)")
    p.add_argument("--start", type=int, default=8000,
                   help="first REGISTER rate of each mode")
    p.add_argument("--call-start", type=int, default=2500,
                   help="first call rate of each mode")
    p.add_argument("--users", type=int, default=100000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--memory-rate", type=int, default=4000)
    p.add_argument("--settle", type=float, default=3)
    p.add_argument("--cdr-duration", type=int, default=5, help="seconds of the CDR check step")
    p.add_argument("--cdr-share", type=float, default=0.5,
                   help="rate of the CDR check step, as a share of the best call rate")
    p.add_argument("--drain-seconds", type=float, default=120)
    p.add_argument("--modes", default="embedded clustered")
    p.add_argument("--pg", default="127.0.0.1:5432")
    p.add_argument("--redis", default="127.0.0.1:6379")
    p.add_argument("--nats", default="127.0.0.1:4222")
    p.add_argument("--stream-max-bytes", type=int, default=64 << 20,
                   help="NATS_STREAM_MAX_BYTES of the bench's two streams")
    p.add_argument("--switchboard-bin", default=str(ROOT / "target/release/switchboard-signaling"))
    a = p.parse_args()
    OUT.mkdir(exist_ok=True)
    for tool in ("sipp", "psql", "redis-cli"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not installed (scripts/ensure-deps.sh)")
    T0 = time.monotonic()
    srv = Servers(a)
    modes = a.modes.split()
    if "clustered" in modes:
        srv.check()
        srv.locate()
    results: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "settings": vars(a)}
    ctxs: dict = {}
    try:
        with tempfile.TemporaryDirectory(prefix="switchboard-cluster-") as tmp:
            for mode in modes:
                log(f"== {mode}: start, users, contacts")
                if mode == "clustered":
                    srv.create()
                    results["clustered_names"] = {"database": srv.db, "redis_prefix": srv.prefix,
                                                  "nats_prefix": srv.nats_prefix, "streams": srv.streams}
                ctxs[mode] = start_mode(mode, a, Path(tmp),
                                        srv if mode == "clustered" else None)
                results[mode] = ctxs[mode]["res"]
            live = {m: c for m, c in ctxs.items() if c["res"]["status"] == "ok"}
            # 3 and 4: the modes' rate searches a step each in turn
            log("== REGISTER rate, the modes in turn")
            found = interleaved({m: (search(f"{m} REGISTER", max(50, a.start)), reg_runner(c, a))
                                 for m, c in live.items()}, a.duration, a.max_seconds * len(live))
            for m, c in live.items():
                c["res"]["register"] = found[m]
            log("== call rate, the modes in turn")
            found = interleaved({m: (search(f"{m} calls", max(20, a.call_start)), call_runner(c, a))
                                 for m, c in live.items()}, a.duration, a.max_seconds * len(live))
            for m, c in live.items():
                c["res"]["calls"] = found[m]
                c["res"]["calls"]["sipp_total"] = c["res"].pop("sipp_calls", {})
            for m, c in live.items():
                log(f"== {m}: CDRs")
                cdr_check(c, a)
    finally:
        for c in ctxs.values():
            stop_mode(c)
        if "clustered" in modes:
            results["cleanup"] = srv.cleanup()
            log(f"cleanup: {results['cleanup']}")
    results["machine"] = {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()}
    results["seconds"] = round(time.monotonic() - T0, 1)
    (OUT / "cluster.json").write_text(json.dumps(results, indent=1))
    report(results, a, srv)
    print(f"  total time: {results['seconds']} s")
    ok = all((results.get(m) or {}).get("status") == "ok" for m in modes)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
