#!/usr/bin/env python3
"""Dashboard page timings for bench/ui.sh (stdlib only).

Logs in to switchboard-ui (POST /login, the session cookie), checks that the
registrations and CDRs are all there, then for each page:

  cached  --warmup requests, then --requests sequential requests on one
          keep-alive connection: the UI serves the backend's answer from
          its 1 s cache (backend.rs, TTL) for all but about one a second;
  cold    --cold requests, each after a pause > 1 s (the cache entries of
          that page have expired, so the UI asks signaling again): what an
          operator's first load of a page costs. The UI has no setting to
          switch its cache off; the pause is how the cache is bypassed.

A request's time is from sending it to the last byte of the body (the page
is rendered in full before axum sends it). Prints p50/p99/max ms per page,
VmRSS and VmHWM of both processes, and PASS/FAIL: every page's p99, cached
and cold, <= --target ms. Exit status 1 on FAIL or a non-200 page.
"""
import argparse
import http.client
import json
import math
import re
import sys
import time
import urllib.parse


def log(msg: str) -> None:
    print(f"[ui] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))  # nearest rank
    return s[k]


def mem(pid: int) -> dict:
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) // 1024  # MiB
    except OSError:
        pass
    return out


class Ui:
    def __init__(self, addr: str):
        self.host, port = addr.split(":")
        self.port = int(port)
        self.cookie = ""
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def req(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes, float]:
        hdrs = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.perf_counter()
        self.conn.request(method, path, body, hdrs)
        r = self.conn.getresponse()
        data = r.read()
        dt = (time.perf_counter() - t0) * 1000
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                self.cookie = v.split(";", 1)[0]
        return r.status, data, dt


def api(addr: str, token: str, path: str):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("GET", "/api/v1" + path, headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    return json.loads(r.read())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ui", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--ui-pid", type=int, required=True)
    p.add_argument("--signaling-pid", type=int, required=True)
    p.add_argument("--registrations", type=int, required=True)
    p.add_argument("--cdrs", type=int, required=True)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--cold", type=int, default=10)
    p.add_argument("--target", type=float, default=50.0)
    p.add_argument("--out")
    a = p.parse_args()

    stats = api(a.api, a.token, "/stats")
    contacts = stats.get("registrations", {}).get("contacts")
    log(f"signaling holds {contacts} contacts")
    ok = True
    if contacts != a.registrations:
        log(f"!! expected {a.registrations} registrations, signaling has {contacts}")
        ok = False

    ui = Ui(a.ui)
    form = urllib.parse.urlencode({"username": "admin", "password": a.password})
    st, body, _ = ui.req("POST", "/login", form)
    if st not in (200, 303) or not ui.cookie:
        sys.exit(f"login failed: HTTP {st} {body[:200]!r}")

    b = urllib.parse.quote(a.backend)
    pages = [
        ("overview", "/"),
        ("registrations", "/registrations"),
        ("registrations, page 50", "/registrations?offset=4900"),
        ("registrations search", "/registrations?q=user42"),
        ("live calls", "/calls"),
        ("media sessions", "/sessions"),
        ("RTP managers", "/rtpmanagers"),
        ("users", "/users"),
        ("users search", "/users?q=user42"),
        ("accounts", "/accounts"),
        ("trunks", "/trunks"),
        ("dialplan", "/dialplan"),
        ("CDRs, first page", "/cdrs"),
        ("CDRs, filtered", f"/cdrs?backend={b}&caller=user42&disposition=answered"),
        ("CDR detail", f"/cdrs/bench-00004242?backend={b}"),
        ("CDRs CSV export", f"/cdrs.csv?backend={b}"),
    ]

    # what the pages show, once: the data must be there
    st, body, _ = ui.req("GET", "/registrations")
    m = re.search(rb"(\d+) of (\d+) contacts", body)
    shown = m.group(0).decode() if m else "no count"
    rows = body.count(b"/registrations/unregister")
    log(f"registrations page: {shown}, {rows} rows on the page")
    if not m or int(m.group(2)) != a.registrations:
        ok = False
        log("!! the registrations page does not count every contact")
    st, body, _ = ui.req("GET", f"/cdrs.csv?backend={b}")
    lines = body.count(b"\n") - 1
    log(f"CSV export: {lines} rows, {len(body)} bytes")

    results = []
    for name, path in pages:
        for _ in range(a.warmup):
            ui.req("GET", path)
        cached, sizes, statuses = [], set(), set()
        for _ in range(a.requests):
            st, body, dt = ui.req("GET", path)
            cached.append(dt)
            sizes.add(len(body))
            statuses.add(st)
        results.append({"page": name, "path": path, "status": sorted(statuses),
                        "bytes": max(sizes), "cached": cached})
    log(f"cold: {a.cold} request(s) per page, each after 1.1 s")
    for r in results:
        cold = []
        for _ in range(a.cold):
            time.sleep(1.1)
            st, _, dt = ui.req("GET", r["path"])
            cold.append(dt)
            if st != 200:
                r["status"] = sorted(set(r["status"]) | {st})
        r["cold"] = cold

    ui_mem, sig_mem = mem(a.ui_pid), mem(a.signaling_pid)
    print(f"\nDashboard pages: {a.registrations} registrations, {a.cdrs} CDRs; "
          f"{a.requests} cached requests per page (after {a.warmup}), {a.cold} cold (> 1 s apart)")
    print(f"{'page':<24} {'KiB':>6}  {'cached p50':>10} {'p99':>7} {'max':>7}   "
          f"{'cold p50':>8} {'p99':>7} {'max':>7}  verdict")
    summary = []
    for r in results:
        c, k = r["cached"], r["cold"]
        row = {"page": r["page"], "path": r["path"], "status": r["status"],
               "kib": round(r["bytes"] / 1024, 1),
               "cached_ms": {"p50": pct(c, 50), "p99": pct(c, 99), "max": max(c)},
               "cold_ms": {"p50": pct(k, 50), "p99": pct(k, 99), "max": max(k) if k else None}}
        good = r["status"] == [200] and row["cached_ms"]["p99"] <= a.target and \
            (not k or row["cold_ms"]["p99"] <= a.target)
        ok &= good
        row["pass"] = good
        summary.append(row)
        cm = row["cold_ms"]
        print(f"{r['page']:<24} {row['kib']:>6}  {row['cached_ms']['p50']:>10.1f} "
              f"{row['cached_ms']['p99']:>7.1f} {row['cached_ms']['max']:>7.1f}   "
              f"{cm['p50']:>8.1f} {cm['p99']:>7.1f} {(cm['max'] or 0):>7.1f}  "
              f"{'PASS' if good else 'FAIL'}{'' if r['status'] == [200] else ' HTTP ' + str(r['status'])}")
    print(f"switchboard-ui        VmRSS {ui_mem.get('VmRSS')} MiB, VmHWM {ui_mem.get('VmHWM')} MiB")
    print(f"switchboard-signaling VmRSS {sig_mem.get('VmRSS')} MiB, VmHWM {sig_mem.get('VmHWM')} MiB")
    print(f"{'PASS' if ok else 'FAIL'}: p99 of every page <= {a.target:g} ms (cached and cold)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"pages": summary, "ui_mib": ui_mem, "signaling_mib": sig_mem,
                       "registrations": a.registrations, "cdrs": a.cdrs,
                       "pass": ok}, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
