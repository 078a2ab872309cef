#!/usr/bin/env python3
"""How fast the master replaces a killed worker, and what an idle master costs.

Starts PreforkTCPServer (2 workers, the kit's Raw handler) and:
  respawn   kills a worker (older than a second) with SIGKILL N times; for each, the
            time from the kill until a replacement exists and the pool answers a
            request
  idle      the master's CPU time over an idle stretch of S seconds

usage: python benchmarks/master_bench.py [--kills 20] [--idle-seconds 10] [--kit PATH]
"""

import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import _driver as d
import psutil


def ask(port):
    """One HTTP request, answered in full."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while c.recv(4096):
            pass


def workers(master):
    return {p.pid for p in master.children() if p.status() != psutil.STATUS_ZOMBIE}


def main():
    p = d.parser(__doc__)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    a = p.parse_args()
    a.port = d.free_port()
    _, env, _, _ = d.prepare(a, gunicorn=False)
    proc = subprocess.Popen([sys.executable, os.path.join(d.SERVERS, "prefork_server.py"),
                             str(a.port), "2", "hello:Raw"], env=env, start_new_session=True,
                            stderr=subprocess.DEVNULL)
    try:
        master = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while len(workers(master)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        ask(a.port)
        delays = []
        for _ in range(a.kills):
            # Past the policy's YOUNG age, so the kill is an ordinary death and not
            # a crash loop (which backs off on purpose).
            time.sleep(1.2)
            before = workers(master)
            victim = min(before)
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            while True:  # until a replacement exists and the pool answers
                now = workers(master)
                if victim not in now and len(now) == 2:
                    break
                if time.monotonic() - t0 > 10:
                    raise SystemExit("master_bench: error: no replacement within 10 s")
                time.sleep(0.0005)
            ask(a.port)
            delays.append(time.monotonic() - t0)
        print("respawn delays, ms:", " ".join(f"{d * 1000:.1f}" for d in delays))
        median = statistics.median(delays) * 1000
        print(f"respawn after SIGKILL ({a.kills} kills): median {median:.1f} ms, "
              f"max {max(delays) * 1000:.1f} ms")
        cpu0 = sum(master.cpu_times()[:2])
        time.sleep(a.idle_seconds)
        cpu = sum(master.cpu_times()[:2]) - cpu0
        print(f"idle master CPU over {a.idle_seconds:g} s: {cpu * 1000:.0f} ms "
              f"({cpu / a.idle_seconds * 100:.3f} % of a core)")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
