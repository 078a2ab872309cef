#!/usr/bin/env python3
"""HTTP keep-alive: prefork serving the kit's WSGI app next to its peers, in one run.

The clients keep their connections open; the servers are the ones a user would pick
instead of prefork, each with 4 workers or processes.

Parts (wrk keeps its connections open unless the server closes them):
  throughput  wrk -c64: prefork (keep-alive, its defaults), prefork closing each
              connection (--keepalive-timeout 0), gunicorn sync (closes each), granian
              --interface wsgi (keep-alive), the kit's minimal_wsgi.py (closes each: the
              ceiling for a connection per request)
  cost        CPU per request of prefork's master and workers under wrk -c64: as it is
              (a worker serves the next request on a connection it kept), with every
              idle connection handed to the master and back (servers/handover_prefork.py),
              and closing each connection: what the hand-over costs a request
  latency     64 connections, each sending a request 100 ms after its last answer (wrk
              -t2 -c64 with servers/every_100ms.lua, --timeout 2s), for --latency-seconds:
              p50/p99/max of the answered requests, the share of the offered requests
              answered, and the most clients seen waiting over 2 s for an answer (ss);
              prefork, gunicorn sync, Apache's prefork MPM with mod_wsgi
              (servers/apache_prefork.conf: KeepAlive On, 4 children; a child stays with
              its kept-alive client, so the other clients wait)
  nginx       nginx in front (servers/nginx_proxy.conf), to prefork over a Unix socket and
              over TCP: upstream keep-alive (keepalive 64, HTTP/1.1, as docs/deploy's
              site) against nginx's default (HTTP/1.0, a connection per request); then
              the keep-alive setup with a SIGHUP to the master every 0.2 s
  sighup      under wrk -c64, how long the master takes to start a reload: from os.kill
              (SIGHUP) to the receipt of the RELOADING=1 notify datagram (NOTIFY_SOCKET
              bound by this script), --reloads times, waiting for READY=1 in between

usage: python benchmarks/keepalive_bench.py [--rounds 3] [--seconds 4] [--parts ...]
       [--latency-seconds 10] [--reloads 20]
The latency and sighup parts run once; the goals (prefork's) are printed at the end.
Needs wrk and nginx, and for Apache the Debian packages apache2 and
libapache2-mod-wsgi-py3 (the latency part leaves Apache out without them).  gunicorn
and granian come from throwaway venvs under ~/.cache/prefork-bench (made with pip when
missing), never from this project's dependencies.
"""

import contextlib
import dataclasses
import functools
import os
import re
import shlex
import signal
import socket
import statistics
import string
import subprocess
import sys
import time

import _driver as d

WORKERS = 4
CONNS = 64
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"
UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# --- the servers -------------------------------------------------------------------------

def prefork_args(bind, keepalive_timeout=None, *extra, program=("-m", "prefork"),
                 app="hello:app"):
    """prefork serve of the kit's app (or *app*) on *bind*, 4 workers, as an argument
    list; *keepalive_timeout* None leaves prefork's default (75 s)."""
    keepalive = [] if keepalive_timeout is None else ["--keepalive-timeout",
                                                      str(keepalive_timeout)]
    return [sys.executable, *program, "serve", "--workers", str(WORKERS), "--bind", bind,
            "--log-level", "warning", *keepalive, *extra, app]


def prefork(port, keepalive_timeout=None):
    return shlex.join(prefork_args(f"127.0.0.1:{port}", keepalive_timeout))


def gunicorn(exe, port):
    return f"{exe} -w {WORKERS} -b 127.0.0.1:{port} --log-level error hello:app"


def granian(exe, port):
    return (f"{exe} --interface wsgi --workers {WORKERS} --host 127.0.0.1 --port {port} "
            "--http1-keep-alive --log-level error hello:app")


def fill(template, path, **values):
    """Write servers/*template* with its $names filled in to *path*."""
    with open(os.path.join(d.SERVERS, template)) as f:
        text = string.Template(f.read()).substitute(values)
    with open(path, "w") as f:
        f.write(text)
    return path


def apache_missing():
    """Why Apache cannot run here, or "" when it can."""
    needed = [APACHE, *(os.path.join(APACHE_MODULES, m) for m in
                                     ("mod_mpm_prefork.so", "mod_authz_core.so", "mod_wsgi.so"))]
    missing = [p for p in needed if not os.path.exists(p)]
    return (f"missing {', '.join(missing)} (apt-get install apache2 libapache2-mod-wsgi-py3)"
            if missing else "")


def apache(kit, port):
    """The command that runs Apache (prefork MPM, mod_wsgi, 4 children) on *port* in
    the foreground, from a config written in a scratch directory of its own."""
    directory = d.scratch(f"apache-{port}")
    os.makedirs(directory)
    # Started as root, Apache hands its children to an unprivileged user; the kit and
    # servers/hello.wsgi are readable by anyone.
    user = "User nobody\nGroup nogroup" if os.geteuid() == 0 else ""
    wsgi = os.path.join(d.SERVERS, "hello.wsgi")
    conf = fill("apache_prefork.conf", os.path.join(directory, "apache2.conf"), dir=directory,
                port=port, user=user, modules=APACHE_MODULES, kit=kit, wsgi=wsgi,
                wsgi_dir=d.SERVERS)
    return f"{APACHE} -f {conf} -DFOREGROUND"


def nginx_proxy(port, upstream, keepalive):
    """nginx on *port* proxying to *upstream* ("unix:PATH" or "HOST:PORT"), keeping its
    connections open as docs/deploy/nginx-shop.conf does, or (nginx's default) opening
    one per request: its argument list."""
    prefix = d.scratch(f"nginx-{port}")
    os.makedirs(os.path.join(prefix, "tmp"))
    conf = fill("nginx_proxy.conf", os.path.join(prefix, "nginx.conf"), port=port,
                upstream=upstream,
                upstream_keepalive="keepalive 64; keepalive_timeout 60s;" if keepalive else "",
                proxy_keepalive='proxy_http_version 1.1; proxy_set_header Connection "";'
                if keepalive else "")
    return ["nginx", "-p", prefix, "-c", conf, "-g", "daemon off;"]


@contextlib.contextmanager
def running(command, tag, env, cwd, answers):
    """*command* (a shell line or an argument list) in a session of its own, once
    *answers()* is true: its process.  Its stderr goes to a scratch file, shown when
    it does not come up."""
    log_path = d.scratch(f"{tag}.err")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, shell=isinstance(command, str), env=env, cwd=cwd,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)
    try:
        up = d.wait_until(lambda: proc.poll() is not None or answers(), 30, 0.1)
        if not up or proc.poll() is not None:
            with open(log_path) as f:
                raise SystemExit(f"keepalive_bench: error: {tag} did not answer:\n"
                                 + f.read()[-2000:])
        yield proc
    finally:
        d.stop_group(proc)


def unix_answers(path):
    """Whether GET / on the Unix socket *path* answers 200."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(path)
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return s.recv(64).split(b" ", 2)[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


# --- wrk -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Load:
    """What one wrk run saw; latencies in seconds, of the answered requests only."""
    rps: float
    requests: int
    p50: float
    p99: float
    max: float
    errors: dict

    @property
    def failed(self):
        return sum(self.errors.values())


def seconds_of(text):
    value, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(value) * UNIT[unit]


def parse_wrk(out):
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        latency_max = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1)
    except AttributeError:
        raise SystemExit(f"keepalive_bench: error: wrk said:\n{out}") from None
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M))
    errors = {}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), m.groups(),
                                            strict=True) if int(v)}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors["non-2xx"] = int(m.group(1))
    return Load(rps, requests, seconds_of(percentiles.get("50", "0us")),
                seconds_of(percentiles.get("99", "0us")), seconds_of(latency_max), errors)


def wrk_args(port, seconds, conns=CONNS, threads=1, *extra):
    """wrk keeping its connections open (no "Connection: close")."""
    return ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", *extra,
            f"http://127.0.0.1:{port}/"]


def wrk(port, seconds, conns=CONNS, threads=1, *extra):
    out = subprocess.run(wrk_args(port, seconds, conns, threads, *extra), capture_output=True,
                         text=True).stdout
    return parse_wrk(out)


def warm(port):
    """A second of short connections, so every worker has imported the app."""
    subprocess.run(["wrk", "-t1", "-c8", "-d1s", "-H", "Connection: close",
                    f"http://127.0.0.1:{port}/"], capture_output=True)


class Stranded(d.Every):
    """The most clients seen at once, connected to a TCP port, that neither sent nor
    received anything for over 2 s: a client that sends a request 100 ms after each
    answer is then waiting for an answer to one (ss -i, sampled every 0.5 s)."""

    def __init__(self, port):
        super().__init__(0.5, self.sample)
        self.port, self.most = port, 0

    def sample(self):
        out = subprocess.run(["ss", "-Htni", "state", "established", f"dport = :{self.port}"],
                             capture_output=True, text=True).stdout
        waiting = 0
        for line in out.splitlines():
            idle = dict(re.findall(r"\b(lastsnd|lastrcv):(\d+)", line))
            if len(idle) == 2 and min(map(int, idle.values())) > 2000:
                waiting += 1
        self.most = max(self.most, waiting)


# --- the parts -----------------------------------------------------------------------------

def part_throughput(a, kit, env, exe):
    ports = [d.free_port() for _ in range(5)]
    r = d.run_kit(kit, env, a, [
        ("prefork-ka", ports[0], prefork(ports[0])),
        ("prefork-close", ports[1], prefork(ports[1], 0)),
        ("gunicorn", ports[2], gunicorn(exe["gunicorn"], ports[2])),
        ("granian", ports[3], granian(exe["granian"], ports[3])),
        ("minimal", ports[4], f"{d.PY} minimal_wsgi.py {ports[4]} {WORKERS}"),
    ], extra=["--keepalive", "--conns", str(CONNS)])

    def over(name):  # prefork-ka / name: the ratios are to the first server
        return 1 / r[name][2] if r[name][2] else float("nan")
    return [
        ("throughput: prefork keep-alive / prefork close", over("prefork-close"), ">=", 1.5),
        ("throughput: prefork keep-alive / gunicorn sync", over("gunicorn"), ">=", 3),
        ("throughput: prefork keep-alive / granian", over("granian"), ">=", 0.6),
        ("throughput: prefork keep-alive / minimal_wsgi", over("minimal"), None, None),
        ("throughput: prefork keep-alive, errors", r["prefork-ka"][1], "==", 0),
    ]


def part_latency(a, kit, env, exe):
    lua = os.path.join(d.SERVERS, "every_100ms.lua")
    offered = CONNS / 0.1  # req/s if every answer were instant
    servers = [("prefork", lambda p: prefork(p)),
               ("gunicorn", lambda p: gunicorn(exe["gunicorn"], p))]
    why = apache_missing()
    if why:
        print(f"latency: Apache left out: {why}")
    else:
        servers.append(("apache", lambda p: apache(kit, p)))
    print(f"\nlatency: {CONNS} connections, each a request 100 ms after its last answer "
          f"(~{offered:.0f} req/s offered), wrk -t2 --timeout 2s, {a.latency_seconds} s; "
          "percentiles of the answered requests only")
    print(f"{'server':>10} {'req/s':>7} {'answered':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'waiting > 2s':>13}  errors")
    found = {}
    for name, command in servers:
        port = d.free_port()
        server_env = env if name != "apache" else \
            {k: v for k, v in env.items() if k != "PYTHONPATH"}
        with running(command(port), f"latency-{name}", server_env, kit,
                     lambda p=port: d.wait_http(p, 1)):
            warm(port)
            stranded = Stranded(port)
            stranded.start()
            load = wrk(port, a.latency_seconds, CONNS, 2, "-s", lua, "--timeout", "2s")
            stranded.stop()
        found[name] = load, stranded.most
        print(f"{name:>10} {load.rps:7.0f} {load.rps / offered:8.0%} {load.p50 * 1e3:8.2f} "
              f"{load.p99 * 1e3:8.2f} {load.max * 1e3:8.1f} {stranded.most:13d}  "
              f"{load.errors or 0}", flush=True)
    print("(answered: req/s over the offered rate; waiting > 2s: the most clients seen at "
          "once with a request unanswered for over 2 s.  wrk counts a request as a timeout "
          "only when its answer comes, late, and leaves it out of the percentiles; one never "
          "answered it counts nowhere)")
    rows = []
    for name, (load, stranded) in found.items():
        ours = name == "prefork"  # the goals are prefork's; the peers' figures are context
        rows += [(f"latency: {name} p99 ms", load.p99 * 1e3, "<" if ours else None, 20),
                 (f"latency: {name} answered / offered", load.rps / offered, None, None),
                 (f"latency: {name} clients waiting > 2 s", stranded, "==" if ours else None,
                  0),
                 (f"latency: {name} errors", load.failed, "==" if ours else None, 0)]
    return rows


def behind_nginx(env, kit, seconds, transport, keepalive, hup):
    """prefork behind nginx (over a Unix socket or TCP, *transport*), wrk keep-alive
    against nginx: (Load, the number of SIGHUPs sent)."""
    port = d.free_port()
    if transport == "unix":
        sock = d.scratch(f"prefork-{port}.sock")
        bind, upstream, answers = f"unix:{sock}", f"unix:{sock}", lambda: unix_answers(sock)
    else:
        backend = d.free_port()
        bind = upstream = f"127.0.0.1:{backend}"
        answers = lambda: d.wait_http(backend, 1)  # noqa: E731
    pidfile = d.scratch(f"prefork-{port}.pid")
    args = prefork_args(bind, None, "--socket-mode", "0666", "--pidfile", pidfile)
    with running(args, f"nginx-prefork-{port}", env, kit, answers):
        with running(nginx_proxy(port, upstream, keepalive), f"nginx-{port}", env, kit,
                     lambda: d.wait_http(port, 1)):
            warm(port)
            if not hup:
                return wrk(port, seconds), 0
            storm = d.Every(0.2, lambda: hangup(d.read_pid(pidfile)))
            storm.start()
            try:
                load = wrk(port, seconds)
            finally:
                storm.stop()
            return load, storm.count


def hangup(pid):
    if pid:  # never 0: that is this process group
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)


def part_nginx(a, kit, env):
    cases = [(f"{transport} {name}", transport, keepalive, hup)
             for transport in ("unix", "tcp")
             for name, keepalive, hup in (("upstream keep-alive", True, False),
                                          ("upstream close", False, False),
                                          ("keep-alive + HUP/0.2 s", True, True))]
    # nginx's workers run as nobody when it starts as root: they must reach the sockets.
    os.chmod(d.scratch(), 0o711)
    print(f"\nnginx -> prefork ({WORKERS} workers) over a Unix socket and over TCP, wrk "
          f"-c{CONNS} keep-alive against nginx, {a.seconds} s, {a.rounds} rounds:")
    found = {name: [] for name, *_ in cases}
    for _ in range(a.rounds):
        for name, transport, keepalive, hup in cases:
            load, hups = behind_nginx(env, kit, a.seconds, transport, keepalive, hup)
            found[name].append(load)
            print(f"{name:>28}: {load.rps:8.0f} req/s  p99 {load.p99 * 1e3:6.2f} ms"
                  f"{f'  {hups} SIGHUPs' if hup else ''}  errors {load.errors or 0}", flush=True)
    rows = []
    for transport in ("unix", "tcp"):
        kept = found[f"{transport} upstream keep-alive"]
        closed = found[f"{transport} upstream close"]
        storm = found[f"{transport} keep-alive + HUP/0.2 s"]
        ratio = statistics.median(k.rps / c.rps if c.rps else float("nan")
                                  for k, c in zip(kept, closed, strict=True))
        rows += [
            (f"nginx ({transport}): upstream keep-alive / close", ratio, ">=", 1.2),
            (f"nginx ({transport}): p99 ms, keep-alive / close",
             f"{statistics.median(x.p99 for x in kept) * 1e3:.1f} / "
             f"{statistics.median(x.p99 for x in closed) * 1e3:.1f}", None, None),
            (f"nginx ({transport}): errors, keep-alive and close",
             sum(x.failed for x in kept + closed), "==", 0),
            (f"nginx ({transport}): keep-alive + HUP/0.2 s, req/s",
             round(statistics.median(x.rps for x in storm)), None, None),
            (f"nginx ({transport}): keep-alive + HUP/0.2 s, errors",
             sum(x.failed for x in storm), "==", 0)]
    return rows


def part_cost(a, kit, env):
    """CPU per request (user + system, from /proc) of the master and of the workers
    under wrk -c64 keep-alive: prefork as it is (a worker serves the next request on a
    connection it kept), every idle connection handed to the master and back
    (servers/handover_prefork.py), a connection per request, and the pool alone: a
    handler that answers each request with the same bytes (servers/canned.py)."""
    import psutil  # prefork's own dependency

    modes = [("as it is", prefork_args, None),
             ("hand-over every request", functools.partial(
                 prefork_args, program=(os.path.join(d.SERVERS, "handover_prefork.py"),)),
              None),
             ("close each connection", prefork_args, 0),
             ("canned answer, no HTTP", functools.partial(prefork_args, app="canned:Canned"),
              None)]
    print(f"\ncost: CPU per request under wrk -c{CONNS} keep-alive, {a.seconds} s, "
          f"{a.rounds} rounds (median)")
    found = {name: [] for name, *_ in modes}
    for _ in range(a.rounds):
        for name, args, timeout in modes:
            port = d.free_port()
            with running(args(f"127.0.0.1:{port}", timeout), f"cost-{port}", env, kit,
                         lambda p=port: d.wait_http(p, 1)) as proc:
                warm(port)
                master = psutil.Process(proc.pid)
                before = _cpu(master)
                load = wrk(port, a.seconds)
                after = _cpu(master)
            n = load.requests or 1
            found[name].append((load.rps, *((after[i] - before[i]) / n * 1e6 for i in (0, 1))))
    print(f"{'':>26} {'req/s':>8} {'master us':>10} {'workers us':>11}")
    rows = {}
    for name, *_ in modes:
        rps, master_us, workers_us = (statistics.median(x[i] for x in found[name])
                                      for i in range(3))
        rows[name] = master_us + workers_us
        print(f"{name:>26} {rps:8.0f} {master_us:10.1f} {workers_us:11.1f}", flush=True)
    return [("cost: CPU us/request, as it is", rows["as it is"], None, None),
            ("cost: CPU us/request, hand-over every request", rows["hand-over every request"],
             None, None),
            ("cost: the hand-over, us/request", rows["hand-over every request"]
             - rows["as it is"], None, None),
            ("cost: CPU us/request, close each connection", rows["close each connection"],
             None, None),
            ("cost: CPU us/request, the pool alone (canned answer)",
             rows["canned answer, no HTTP"], None, None),
            ("cost: the HTTP front end and WSGI, us/request", rows["as it is"]
             - rows["canned answer, no HTTP"], None, None)]


def _cpu(master):
    """(the master's CPU seconds, its workers' together), user + system."""
    def used(p):
        t = p.cpu_times()
        return t.user + t.system
    return used(master), sum(used(w) for w in master.children())


def notified(sock, field, seconds):
    """The next notify datagram on *sock* with the line *field* (e.g. READY=1) within
    *seconds*: ({key: value}, time.monotonic() on receipt), or (None, None)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        now = time.monotonic()
        lines = data.decode(errors="replace").splitlines()
        if field in lines:
            return dict(line.partition("=")[::2] for line in lines), now
    return None, None


def part_sighup(a, kit, env):
    path = d.scratch("notify.sock")
    port = d.free_port()
    delays, stamps = [], []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        notify_env = dict(env, NOTIFY_SOCKET=path)
        with running(prefork_args(f"127.0.0.1:{port}"), "sighup-prefork", notify_env, kit,
                     lambda: d.wait_http(port, 1)) as master:
            if notified(sock, "READY=1", 30)[0] is None:
                raise SystemExit("keepalive_bench: error: prefork sent no READY=1 to "
                                 "NOTIFY_SOCKET")
            load = subprocess.Popen(wrk_args(port, 3600), stdout=subprocess.PIPE, text=True)
            try:
                time.sleep(1)
                for _ in range(a.reloads):
                    sock.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        while sock.recv(4096):  # what came before this SIGHUP
                            pass
                    sent = time.monotonic()
                    os.kill(master.pid, signal.SIGHUP)
                    fields, received = notified(sock, "RELOADING=1", 10)
                    if fields is None:
                        raise SystemExit("keepalive_bench: error: no RELOADING=1 within 10 s "
                                         "of a SIGHUP")
                    delays.append(received - sent)
                    if fields.get("MONOTONIC_USEC", "").isdigit():
                        stamps.append(int(fields["MONOTONIC_USEC"]) / 1e6 - sent)
                    if notified(sock, "READY=1", 60)[0] is None:
                        raise SystemExit("keepalive_bench: error: no READY=1 within 60 s of "
                                         "a reload")
                    time.sleep(0.2)
            finally:
                load.send_signal(signal.SIGINT)  # wrk stops and reports
                out = load.communicate(timeout=15)[0]
    under = parse_wrk(out)
    ms = [x * 1e3 for x in delays]
    print(f"\nsighup: {len(ms)} reloads under wrk -c{CONNS} keep-alive ({under.rps:.0f} req/s, "
          f"errors {under.errors or 0}); SIGHUP to RELOADING=1 received, ms: median "
          f"{statistics.median(ms):.2f}, max {max(ms):.2f}  "
          f"({' '.join(f'{x:.1f}' for x in ms)})")
    if stamps:
        print(f"        the master's own stamp (MONOTONIC_USEC) after the SIGHUP, ms: median "
              f"{statistics.median(stamps) * 1e3:.2f}, max {max(stamps) * 1e3:.2f}")
    return [("sighup: SIGHUP to RELOADING=1, median ms", statistics.median(ms), "<", 10),
            ("sighup: SIGHUP to RELOADING=1, max ms", max(ms), "<", 10),
            ("sighup: wrk errors across the reloads", under.failed, None, None)]


# --- the run -------------------------------------------------------------------------------

def versions(exe):
    def first_line(cmd):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except OSError:
            return "missing"
        return (done.stdout or done.stderr).splitlines()[0].strip() if done.returncode == 0 \
            else "missing"
    apache_version = first_line([APACHE, "-v"]).removeprefix("Server version: ")
    nginx_version = first_line(["nginx", "-v"]).removeprefix("nginx version: ")
    return (f"Python {sys.version.split()[0]}; gunicorn {exe['gunicorn version']}, granian "
            f"{exe['granian version']}, {apache_version}, {nginx_version}; {WORKERS} workers")


def verdict(value, op, goal):
    if op is None:
        return ""
    met = {">=": value >= goal, "<": value < goal, "==": value == goal}[op]
    return f"{op} {goal}   {'met' if met else 'NOT met'}"


def main():
    p = d.parser(__doc__)
    parts = ["throughput", "cost", "latency", "nginx", "sighup"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts)
    p.add_argument("--latency-seconds", type=int, default=10)
    p.add_argument("--reloads", type=int, default=20)
    a = p.parse_args()
    kit, env, gunicorn_exe, gunicorn_version = d.prepare(a)
    exe = {"gunicorn": gunicorn_exe,
           "gunicorn version": gunicorn_version.removeprefix("gunicorn (version ").rstrip(")"),
           "granian": d.peer("granian-venv", "granian"),
           "granian version": d.peer_version("granian-venv", "granian")}
    print(versions(exe), flush=True)
    print(flush=True)
    summary = []
    if "throughput" in a.parts:
        print(f"throughput: wrk -c{CONNS} keep-alive, {a.seconds} s, {a.rounds} rounds "
              "(ratio: to prefork-ka)", flush=True)
        summary += part_throughput(a, kit, env, exe)
    if "cost" in a.parts:
        summary += part_cost(a, kit, env)
    if "latency" in a.parts:
        summary += part_latency(a, kit, env, exe)
    if "nginx" in a.parts:
        summary += part_nginx(a, kit, env)
    if "sighup" in a.parts:
        summary += part_sighup(a, kit, env)

    print("\nfigure                                                  value   goal")
    for label, value, op, goal in summary:
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{label:<52}{text:>9}   {verdict(value, op, goal)}")


if __name__ == "__main__":
    main()
