#!/usr/bin/env python3
"""What clients see while workers are killed, while reloads storm in, and across
upgrades: prefork next to gunicorn's sync workers, in one run on loopback.

Each case runs wrk (-c8, Connection: close) against a 4-worker server while a
thread injects the fault, then reports req/s and every failed request wrk saw
(socket errors and non-2xx answers):
  kill     SIGKILL a random worker every second
  hup      SIGHUP to the master every 0.2 s
  upgrade  a new master image every 5 s: prefork's SIGUSR2 (the new master takes
           over by itself); gunicorn's SIGUSR2, then TERM to the old master once the
           new one has its workers (gunicorn's documented procedure)

usage: python benchmarks/faults_bench.py [--seconds 20] [--cases kill hup upgrade]
Needs wrk; gunicorn comes from a throwaway venv (see prefork_bench.py).
"""

import os
import random
import signal
import subprocess
import sys

import _driver as d
import psutil
from _driver import read_pid, wait_until

WORKERS = 4


def children(pid):
    try:
        return psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []


def run_case(name, command, port, pidfile, seconds, every, step, env):
    for path in (pidfile, pidfile + ".oldbin"):
        if os.path.exists(path):
            os.unlink(path)
    log_path = d.scratch(f"{name}.log")
    log = open(log_path, "w")
    proc = subprocess.Popen(command, start_new_session=True, env=env, cwd=d.SERVERS,
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        if not d.wait_http(port) or not wait_until(lambda: read_pid(pidfile), 10):
            raise SystemExit(f"faults_bench: error: {name} did not start:\n"
                             + open(log_path).read()[-2000:])
        wait_until(lambda: len(children(read_pid(pidfile))) >= WORKERS, 20)
        injector = d.Every(every, lambda: step(pidfile))
        injector.start()
        rps, _, errors = d.wrk_latency(port, seconds)
        injector.stop()
        return rps, errors, injector.count
    finally:
        for pid in {proc.pid, read_pid(pidfile), read_pid(pidfile + ".oldbin")} - {0}:
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait()
        log.close()


def kill_random_worker(pidfile):
    workers = children(read_pid(pidfile))
    if workers:
        random.choice(workers).kill()


def hup(pidfile):
    os.kill(read_pid(pidfile), signal.SIGHUP)


def prefork_upgrade(pidfile):
    old = read_pid(pidfile)
    os.kill(old, signal.SIGUSR2)
    wait_until(lambda: read_pid(pidfile) not in (0, old), 30)  # the new master took over


def gunicorn_upgrade(pidfile):
    old = read_pid(pidfile)
    os.kill(old, signal.SIGUSR2)
    if not wait_until(lambda: read_pid(pidfile) not in (0, old), 30):
        return
    new = read_pid(pidfile)
    wait_until(lambda: len(children(new)) >= WORKERS, 30)
    os.kill(old, signal.SIGTERM)  # graceful for gunicorn
    wait_until(lambda: not psutil.pid_exists(old) or
               psutil.Process(old).status() == psutil.STATUS_ZOMBIE, 30)


def main():
    p = d.parser(__doc__, seconds=20)
    p.add_argument("--cases", nargs="+", default=["kill", "hup", "upgrade"],
                   choices=["kill", "hup", "upgrade"])
    a = p.parse_args()
    _, env, gunicorn, gversion = d.prepare(a)
    print(f"{gversion}; Python {sys.version.split()[0]}; {WORKERS} workers; wrk -c8, "
          f"Connection: close, {a.seconds} s per case\n", flush=True)
    random.seed(5)
    cases = {"kill": (1.0, kill_random_worker, kill_random_worker),
             "hup": (0.2, hup, hup),
             "upgrade": (5.0, prefork_upgrade, gunicorn_upgrade)}
    rows = []
    for case in a.cases:
        every, prefork_step, gunicorn_step = cases[case]
        for name, step in (("prefork", prefork_step), ("gunicorn", gunicorn_step)):
            port, pidfile = d.free_port(), d.scratch(f"{case}-{name}.pid")
            if name == "prefork":
                command = [sys.executable, "-m", "prefork", "serve", "--bind",
                           f"127.0.0.1:{port}", "--workers", str(WORKERS), "--pidfile",
                           pidfile, "--log-level", "warning", "hello:Raw"]
            else:
                command = [gunicorn, "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "-p",
                           pidfile, "--log-level", "warning", "hello:app"]
            rps, errors, count = run_case(f"{case}-{name}", command, port, pidfile, a.seconds,
                                          every, step, env)
            failed = sum(errors.values())
            rows.append((case, name, count, round(rps), failed, errors))
            print(f"{case:<8} {name:<9} {count:>4} faults  {rps:>8.0f} req/s  "
                  f"{failed:>6} failed  {errors}", flush=True)
    print("\ncase      server     faults     req/s   failed")
    for case, name, count, rps, failed, _ in rows:
        print(f"{case:<9} {name:<9} {count:>7} {rps:>9} {failed:>8}")


if __name__ == "__main__":
    main()
