#!/usr/bin/env python3
"""Throughput against worker count and connections, and the pool's memory, side by
side with gunicorn's sync workers and the stdlib, in one run on loopback.

Parts:
  workers  PreforkTCPServer and gunicorn sync with 1, 2, 4, 8, 16 workers
           (wrk -c32, so even 16 workers have work; the kit's Raw handler for
           prefork, the same answer as WSGI for gunicorn)
  conns    4 workers each, and the stdlib's ThreadingTCPServer, at 8, 32, 128 and
           512 concurrent connections: req/s and errors
  memory   USS (memory only this process holds) of the master plus its workers,
           for 4 and 8 workers, after every worker has served requests
  adaptive requests that take 0.1 s (the kit's GET /slow), 16 connections, from a
           cold start: 2 workers, 8 workers, and an adaptive pool of 2..8

usage: python benchmarks/scaling_bench.py [--rounds 1] [--seconds 3] [--parts ...]
Needs wrk; gunicorn comes from a throwaway venv (see prefork_bench.py).
"""

import os
import subprocess
import sys
import time
import urllib.request

import _driver as d
import psutil

WORKER_COUNTS = (1, 2, 4, 8, 16)
CONNECTIONS = (8, 32, 128, 512)
MEMORY_POOLS = (4, 8)


def uss_of_pool(command, port, workers, env):
    """Start *command*, let each worker serve, return (MiB of the master + workers, count)."""
    proc = subprocess.Popen(command, shell=True, start_new_session=True, env=env,
                            cwd=d.SERVERS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not d.wait_http(port):
            raise SystemExit(f"scaling_bench: error: nothing answered on {port}")
        shell = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while len(shell.children(recursive=True)) < workers + 1 - (shell.name() != "sh"):
            if time.monotonic() > deadline:
                raise SystemExit(f"scaling_bench: error: {workers} workers did not start")
            time.sleep(0.1)
        for _ in range(workers * 50):  # spread over the pool: every worker imports and serves
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                r.read()
        procs = [p for p in [shell, *shell.children(recursive=True)]
                 if p.name() not in ("sh", "dash", "bash")]
        total = sum(p.memory_full_info().uss for p in procs)
        return total / 1024 / 1024, len(procs)
    finally:
        d.stop_group(proc)


def main():
    p = d.parser(__doc__, rounds=1, seconds=3)
    parts = ["workers", "conns", "memory", "adaptive"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts)
    a = p.parse_args()
    kit, env, gunicorn, gversion = d.prepare(a)
    port = d.free_port
    print(f"{gversion}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs\n", flush=True)

    def gunicorn_cmd(port, n):
        return f"{gunicorn} -w {n} -b 127.0.0.1:{port} --log-level error hello:app"

    tables = []
    if "workers" in a.parts:
        rows = []
        for n in WORKER_COUNTS:
            pp, gp = port(), port()
            r = d.run_kit(kit, env, a, [(f"prefork{n}", pp, d.prefork_server(pp, n, "hello:Raw")),
                                        (f"gunicorn{n}", gp, gunicorn_cmd(gp, n))],
                          extra=["--conns", "32"])
            pf, gu = r[f"prefork{n}"], r[f"gunicorn{n}"]
            rows.append((n, pf[0], pf[1], gu[0], gu[1], pf[0] / gu[0]))
        tables.append(("req/s against worker count (wrk -c32, Connection: close)",
                       ("workers", "prefork", "errors", "gunicorn", "errors", "ratio"), rows))

    if "conns" in a.parts:
        rows = []
        for c in CONNECTIONS:
            pp, gp, tp = port(), port(), port()
            r = d.run_kit(kit, env, a, [
                ("prefork4", pp, d.prefork_server(pp, 4, "hello:Raw")),
                ("gunicorn4", gp, gunicorn_cmd(gp, 4)),
                ("threading", tp, f"{d.PY} stdlib_server.py threading {tp} raw"),
            ], extra=["--conns", str(c)])
            rows.append((c, *r["prefork4"][:2], *r["gunicorn4"][:2], *r["threading"][:2]))
        tables.append(("req/s against concurrent connections (4 workers; the stdlib's "
                       "ThreadingTCPServer)",
                       ("conns", "prefork", "errors", "gunicorn", "errors", "threading",
                        "errors"), rows))

    if "memory" in a.parts:
        rows = []
        for n in MEMORY_POOLS:
            ports = [port() for _ in range(4)]
            # Each imports the handler in every worker by default, or once in the
            # master before forking with preload (shared, copy-on-write).
            mib = [uss_of_pool(f"exec {cmd}", ports[k], n, env)[0] for k, cmd in enumerate([
                d.prefork_server(ports[0], n, "hello:Hello"),
                d.prefork_server(ports[1], n, "hello:Hello", "preload=True"),
                gunicorn_cmd(ports[2], n),
                gunicorn_cmd(ports[3], n) + " --preload"])]
            rows.append((n, *(round(m, 1) for m in mib), mib[2] / mib[0], mib[3] / mib[1]))
        tables.append(("USS of master + workers, MiB (after 50 requests per worker)",
                       ("workers", "prefork", "+preload", "gunicorn", "+preload",
                        "gunicorn/prefork", "(preload)"), rows))

    if "adaptive" in a.parts:
        serve = f"{d.PY} -m prefork serve --log-level warning"
        ports = [port() for _ in range(3)]
        r = d.run_kit(kit, env, a, [
            (name, pt, f"{serve} --bind 127.0.0.1:{pt} --workers {workers} hello:Hello")
            for (name, workers), pt in zip([("fixed2", "2"), ("fixed8", "8"),
                                            ("adaptive", "2..8")], ports, strict=True)
        ], extra=["--conns", "16", "--path", "/slow"])
        rows = [(name, r[name][0], r[name][1], r[name][2])
                for name in ("fixed2", "fixed8", "adaptive")]
        tables.append((f"requests of 0.1 s, 16 connections, {a.seconds} s from a cold start",
                       ("pool", "req/s", "errors", "ratio"), rows))

    for title, head, rows in tables:
        print(f"\n{title}")
        print("  ".join(f"{h:>10}" for h in head))
        for row in rows:
            print("  ".join(f"{v:>10.2f}" if isinstance(v, float) else f"{v:>10}" for v in row))


if __name__ == "__main__":
    main()
