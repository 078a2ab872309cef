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

import argparse
import os
import shlex
import subprocess
import sys
import time
import urllib.request

import psutil
from prefork_bench import HERE, add_common_options, prepare, run_kit, stop_group, wait_http

WORKER_COUNTS = (1, 2, 4, 8, 16)
CONNECTIONS = (8, 32, 128, 512)
MEMORY_POOLS = (4, 8)


def uss_of_pool(command, port, workers, env):
    """Start *command*, let each worker serve, return (MiB of the master + workers, count)."""
    proc = subprocess.Popen(command, shell=True, start_new_session=True, env=env, cwd=HERE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_http(port):
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
        stop_group(proc)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seconds", type=int, default=3)
    parts = ["workers", "conns", "memory", "adaptive"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts)
    add_common_options(p)
    a = p.parse_args()
    kit, env, gunicorn, gversion = prepare(a, "scaling_bench")
    py = shlex.quote(sys.executable)
    server = f"{py} {shlex.quote(os.path.join(HERE, 'prefork_server.py'))}"
    print(f"{gversion}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs\n", flush=True)

    def gunicorn_cmd(port, n):
        return f"{gunicorn} -w {n} -b 127.0.0.1:{port} --log-level error hello:app"

    tables = []
    if "workers" in a.parts:
        rows = []
        for i, n in enumerate(WORKER_COUNTS):
            port = 18400 + 2 * i
            r = run_kit(kit, env, a, [(f"prefork{n}", port, f"{server} {port} {n} hello:Raw"),
                                      (f"gunicorn{n}", port + 1, gunicorn_cmd(port + 1, n))],
                        extra=["--conns", "32"])
            pf, gu = r[f"prefork{n}"], r[f"gunicorn{n}"]
            rows.append((n, pf[0], pf[1], gu[0], gu[1], pf[0] / gu[0]))
        tables.append(("req/s against worker count (wrk -c32, Connection: close)",
                       ("workers", "prefork", "errors", "gunicorn", "errors", "ratio"), rows))

    if "conns" in a.parts:
        rows = []
        for i, c in enumerate(CONNECTIONS):
            port = 18420 + 3 * i
            r = run_kit(kit, env, a, [
                ("prefork4", port, f"{server} {port} 4 hello:Raw"),
                ("gunicorn4", port + 1, gunicorn_cmd(port + 1, 4)),
                ("threading", port + 2, f"{py} stdlib_server.py threading {port + 2} raw"),
            ], extra=["--conns", str(c)])
            rows.append((c, *r["prefork4"][:2], *r["gunicorn4"][:2], *r["threading"][:2]))
        tables.append(("req/s against concurrent connections (4 workers; the stdlib's "
                       "ThreadingTCPServer)",
                       ("conns", "prefork", "errors", "gunicorn", "errors", "threading",
                        "errors"), rows))

    if "memory" in a.parts:
        rows = []
        for i, n in enumerate(MEMORY_POOLS):
            port = 18440 + 4 * i
            # Each imports the handler in every worker by default, or once in the
            # master before forking with preload (shared, copy-on-write).
            mib = [uss_of_pool(f"exec {cmd}", port + k, n, env)[0] for k, cmd in enumerate([
                f"{server} {port} {n} hello:Hello",
                f"{server} {port + 1} {n} hello:Hello preload=True",
                gunicorn_cmd(port + 2, n),
                gunicorn_cmd(port + 3, n) + " --preload"])]
            rows.append((n, *(round(m, 1) for m in mib), mib[2] / mib[0], mib[3] / mib[1]))
        tables.append(("USS of master + workers, MiB (after 50 requests per worker)",
                       ("workers", "prefork", "+preload", "gunicorn", "+preload",
                        "gunicorn/prefork", "(preload)"), rows))

    if "adaptive" in a.parts:
        serve = f"{py} -m prefork serve --log-level warning"
        r = run_kit(kit, env, a, [
            ("fixed2", 18450, f"{serve} --bind 127.0.0.1:18450 --workers 2 hello:Hello"),
            ("fixed8", 18451, f"{serve} --bind 127.0.0.1:18451 --workers 8 hello:Hello"),
            ("adaptive", 18452, f"{serve} --bind 127.0.0.1:18452 --workers 2..8 hello:Hello"),
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
