#!/usr/bin/env python3
"""The pre-fork master side by side with its peers, in one run, on loopback.

Parts (each a set of servers loaded in turn by wrk, -c8, Connection: close):
  throughput  the kit's Raw handler: minimal_prefork (2 workers, the ceiling),
              PreforkTCPServer with 2 and with 8 workers, gunicorn sync (2 workers,
              the WSGI app); then Hello: PreforkTCPServer (2) against the stdlib's
              ThreadingTCPServer and ForkingTCPServer
  hup         PreforkTCPServer (2 workers, Raw) without reloads, and with a SIGHUP
              every 0.2 s for the whole run
  slow        a handler module that takes 3 s to import, a SIGHUP every 5 s:
              PreforkTCPServer against gunicorn sync; errors and the largest latency

usage: python benchmarks/prefork_bench.py [--rounds 3] [--seconds 4] [--parts ...]
Needs wrk.  gunicorn comes from a throwaway venv (--gunicorn-venv, created with
pip when missing), never from this project's dependencies.
"""

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "benchmarks")
RESULT = re.compile(r"^\s*(\S+):\s+(\d+) req/s.*errors (\d+)\s+ratio ([\d.]+)", re.M)


def run_kit(kit, env, args, servers, extra=()):
    """Run the kit's bench.py over *servers* [(name, port, command)], with *extra*
    options (e.g. ["--conns", "32"]).

    Returns {name: (median req/s, errors, median ratio to the first server)}.
    """
    cmd = [sys.executable, os.path.join(kit, "bench.py"), "--rounds", str(args.rounds),
           "--seconds", str(args.seconds), *extra] + [f"{n}={p}={c}" for n, p, c in servers]
    out = subprocess.run(cmd, env=env, cwd=kit, capture_output=True, text=True, check=True).stdout
    print(out, end="", flush=True)
    return {m[0]: (int(m[1]), int(m[2]), float(m[3])) for m in RESULT.findall(out)}


def ensure_gunicorn(venv):
    exe = os.path.join(venv, "bin", "gunicorn")
    if not os.path.exists(exe):
        print(f"creating {venv} with gunicorn (a throwaway venv, for comparison only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "gunicorn"], check=True)
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return exe, version


def nginx_command(kit):
    """The kit's nginx (2 workers, ``return 200``) run in the foreground from a scratch prefix."""
    prefix = "/tmp/prefork-bench-nginx"
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    conf = os.path.join(kit, "nginx.conf")
    return f"nginx -p {prefix} -c {shlex.quote(conf)} -g 'daemon off;'"


def with_hup(command, every):
    """A shell command that runs *command* and sends it SIGHUP every *every* seconds."""
    return f"{command} & pid=$!; while sleep {every}; do kill -HUP $pid 2>/dev/null || break; done"


def parse_duration(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk_latency(port, seconds):
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-H",
                          "Connection: close", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    names = ("connect", "read", "write", "timeout")
    errors = dict(zip(names, map(int, m.groups()), strict=True)) if m else {}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors["non-2xx"] = int(non2xx.group(1))
    return rps, parse_duration(lat.group(3)), errors


def wait_http(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_group(proc):
    """End a server started with start_new_session: TERM its group, KILL after 15 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def add_common_options(parser):
    parser.add_argument("--kit", default=os.path.join(ROOT, "..", "shared", "bench"))
    parser.add_argument("--gunicorn-venv", default="/tmp/bench-venv")


def prepare(args, prog):
    """(the kit's directory, the servers' environment, gunicorn's path, its version)."""
    kit = os.path.abspath(args.kit)
    if not os.path.exists(os.path.join(kit, "bench.py")):
        sys.exit(f"{prog}: error: no bench.py in {kit}; pass --kit PATH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([kit, HERE, ROOT]))
    return (kit, env, *ensure_gunicorn(args.gunicorn_venv))


def slow_import_run(name, command, port, seconds, env):
    proc = subprocess.Popen(command, shell=True, start_new_session=True, env=env, cwd=HERE,
                            stdout=subprocess.DEVNULL, stderr=open(f"/tmp/bench-{name}.err", "w"))
    try:
        if not wait_http(port):
            raise SystemExit(f"prefork_bench: error: {name} did not answer on {port}")
        return wrk_latency(port, seconds)
    finally:
        stop_group(proc)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--slow-seconds", type=int, default=12)
    p.add_argument("--parts", nargs="+", default=["throughput", "hup", "slow"],
                   choices=["throughput", "hup", "slow"])
    add_common_options(p)
    a = p.parse_args()
    kit, env, gunicorn, gversion = prepare(a, "prefork_bench")
    py = shlex.quote(sys.executable)
    server = f"{py} {shlex.quote(os.path.join(HERE, 'prefork_server.py'))}"
    print(f"{gversion}; Python {sys.version.split()[0]}; wrk -c8, Connection: close\n", flush=True)
    summary = []

    if "throughput" in a.parts:
        r = run_kit(kit, env, a, [
            ("ceiling", 18301, f"{py} minimal_prefork.py 18301 2"),
            ("prefork2", 18302, f"{server} 18302 2 hello:Raw"),
            ("prefork8", 18303, f"{server} 18303 8 hello:Raw"),
            ("gunicorn2", 18304, f"{gunicorn} -w 2 -b 127.0.0.1:18304 --log-level error hello:app"),
            # nginx answering from C: what this machine's loopback and wrk allow at all.
            ("nginx", 18090, nginx_command(kit)),
        ])
        summary += [
            ("nginx return 200 (C) / minimal_prefork 2", r["nginx"][2], None),
            ("Raw, 2 workers / minimal_prefork 2", r["prefork2"][2], 0.90),
            ("Raw, 8 workers / minimal_prefork 2", r["prefork8"][2], 0.90),
            ("Raw, 2 workers / gunicorn sync 2", r["prefork2"][0] / r["gunicorn2"][0], 3.0),
        ]
        r = run_kit(kit, env, a, [
            ("prefork2", 18305, f"{server} 18305 2 hello:Hello"),
            ("threading", 18306, f"{py} stdlib_server.py threading 18306"),
            ("forking", 18307, f"{py} stdlib_server.py forking 18307"),
        ])
        summary += [
            ("Hello, 2 workers / stdlib ThreadingTCPServer", 1 / r["threading"][2], None),
            ("Hello, 2 workers / stdlib ForkingTCPServer", 1 / r["forking"][2], None),
        ]

    if "hup" in a.parts:
        r = run_kit(kit, env, a, [
            ("steady", 18308, f"{server} 18308 2 hello:Raw"),
            ("hup0.2s", 18309, with_hup(f"{server} 18309 2 hello:Raw", 0.2)),
        ])
        summary += [("Raw, HUP every 0.2 s / no reloads", r["hup0.2s"][2], 0.90),
                    ("  errors with HUP every 0.2 s", r["hup0.2s"][1], 0)]

    if "slow" in a.parts:
        slow_env = dict(env, SLOW_IMPORT_S="3")
        for name, port, cmd in [
            ("prefork", 18310, with_hup(f"{server} 18310 2 slow_hello:Raw", 5)),
            ("gunicorn", 18311, with_hup(f"{gunicorn} -w 2 -b 127.0.0.1:18311 --log-level error "
                                         "slow_hello:app", 5)),
        ]:
            rps, max_latency, errors = slow_import_run(name, cmd, port, a.slow_seconds, slow_env)
            print(f"slow import, HUP every 5 s, {name}: {rps:.0f} req/s, max latency "
                  f"{max_latency * 1000:.1f} ms, errors {errors}", flush=True)
            summary.append((f"3 s import + HUP/5 s, {name}: errors", sum(errors.values()),
                            0 if name == "prefork" else None))
            summary.append((f"3 s import + HUP/5 s, {name}: max latency ms",
                            round(max_latency * 1000, 1), 100 if name == "prefork" else None))

    print("\nfigure                                            value   goal")
    for label, value, goal in summary:
        value_text = f"{value:.2f}" if isinstance(value, float) else str(value)
        goal_text = "" if goal is None else (f"<= {goal}" if "latency" in label or
                                             "errors" in label else f">= {goal}")
        print(f"{label:<48}{value_text:>7}   {goal_text}")


if __name__ == "__main__":
    main()
