"""What the benchmark scripts share: the peer kit and its driver, the servers they
start (in benchmarks/servers/), gunicorn from a throwaway venv, free ports, scratch
directories, and waiting for a server.

A benchmark is a few lines on top of this: describe the servers as (name, port,
command) and hand them to run_kit(), which runs the kit's bench.py (wrk, rounds
interleaved, ratios to the first server taken in one run).  Ports are picked free
at the moment, and scratch files go in a directory of the run's own, so two runs
can share a machine.
"""

import argparse
import atexit
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

__all__ = ["ROOT", "SERVERS", "PY", "parser", "prepare", "free_port", "scratch", "run_kit",
           "wrk_latency", "wait_http", "wait_until", "stop_group", "read_pid", "prefork_server",
           "nginx_command", "with_hup", "peer", "peer_version", "Every"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVERS = os.path.join(ROOT, "benchmarks", "servers")
PY = shlex.quote(sys.executable)
RESULT = re.compile(r"^\s*(\S+):\s+(\d+) req/s.*errors (\d+)\s+ratio ([\d.]+)", re.M)
_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                      "prefork-bench")


def parser(doc, **defaults):
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--rounds", type=int, default=defaults.get("rounds", 3))
    p.add_argument("--seconds", type=int, default=defaults.get("seconds", 4))
    p.add_argument("--kit", default=os.path.join(ROOT, "..", "shared", "bench"),
                   help="the peer benchmark kit (default: ../shared/bench)")
    p.add_argument("--gunicorn-venv", default=os.path.join(_CACHE, "gunicorn-venv"),
                   help="a throwaway venv for gunicorn, made when missing")
    return p


def prepare(args, gunicorn=True):
    """(the kit's directory, the servers' environment, gunicorn's path, its version)."""
    kit = os.path.abspath(args.kit)
    if not os.path.exists(os.path.join(kit, "bench.py")):
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: no bench.py in {kit}; pass --kit")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([kit, SERVERS, ROOT]))
    if not gunicorn:
        return kit, env, None, ""
    return (kit, env, *_gunicorn(args.gunicorn_venv))


def _gunicorn(venv):
    exe = peer(venv, "gunicorn")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return exe, version


def peer(venv, program, packages=None):
    """The path of *program* in the throwaway venv *venv* (a name under the cache, or a
    path), made with pip installing *packages* (default: the program) when missing.
    Peers are compared with, never depended on."""
    if os.sep not in venv:
        venv = os.path.join(_CACHE, venv)
    exe = os.path.join(venv, "bin", program)
    if not os.path.exists(exe):
        print(f"creating {venv} with {' '.join(packages or [program])} (a throwaway venv, "
              "for comparison only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q",
                        *(packages or [program])], check=True)
    return exe


def peer_version(venv, distribution):
    """The installed version of *distribution* in the throwaway venv *venv*."""
    if os.sep not in venv:
        venv = os.path.join(_CACHE, venv)
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    return subprocess.run([os.path.join(venv, "bin", "python"), "-c", code],
                          capture_output=True, text=True).stdout.strip()


def free_port():
    """A loopback port nothing listens on now (the server binds it itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_scratch = None


def scratch(name=""):
    """A path in this run's own scratch directory, removed when the run ends."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="prefork-bench-")
        atexit.register(shutil.rmtree, _scratch, True)
    return os.path.join(_scratch, name) if name else _scratch


def prefork_server(port, workers, handler, *settings):
    """The command that serves *handler* with PreforkTCPServer (servers/prefork_server.py)."""
    script = shlex.quote(os.path.join(SERVERS, "prefork_server.py"))
    return f"{PY} {script} {port} {workers} {handler} {' '.join(settings)}".rstrip()


def nginx_command(kit, port):
    """The kit's nginx (2 workers, ``return 200``) in the foreground from a scratch prefix,
    on *port* instead of the kit's own."""
    prefix = scratch("nginx")
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    with open(os.path.join(kit, "nginx.conf")) as f:
        conf = re.sub(r"listen\s+127\.0\.0\.1:\d+", f"listen 127.0.0.1:{port}", f.read())
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return f"nginx -p {prefix} -c {path} -g 'daemon off;'"


class Every(threading.Thread):
    """Runs *step()* every *interval* seconds until stop(); counts the steps."""

    def __init__(self, interval, step):
        super().__init__(daemon=True)
        self.interval, self.step, self.count = interval, step, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(self.interval):
            self.step()
            self.count += 1

    def stop(self):
        self.done.set()
        self.join()


def with_hup(command, every):
    """A shell command that runs *command* and sends it SIGHUP every *every* seconds."""
    return f"{command} & pid=$!; while sleep {every}; do kill -HUP $pid 2>/dev/null || break; done"


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


def _duration(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk_latency(port, seconds, conns=8):
    """wrk against *port*: (req/s, the largest latency in seconds, {error kind: count})."""
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-H",
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
    return rps, _duration(lat.group(3)), errors


def wait_until(predicate, seconds, interval=0.05):
    """Poll *predicate* until true or *seconds* pass; whether it came true."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False


def wait_http(port, seconds=60):
    """Whether GET / on *port* answers 200 within *seconds*."""
    def answers():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False
    return wait_until(answers, seconds, 0.1)


def stop_group(proc):
    """End a server started with start_new_session: TERM its group, KILL after 15 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def read_pid(path):
    """The pid in a pidfile, or 0."""
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
