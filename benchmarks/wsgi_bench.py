#!/usr/bin/env python3
"""WSGI serving side by side with the servers a user would pick instead, in one run.

Parts (wrk -c8, Connection: close, 2 workers or processes each):
  hello   the kit's WSGI app: minimal_wsgi.py (the least a Python pre-fork WSGI server
          can do: the ceiling), prefork serve, gunicorn sync, granian --interface wsgi,
          uWSGI --http-socket, waitress (2 threads)
  flask   a Flask "hello" (benchmarks/servers/flask_hello.py): prefork against gunicorn
  memory  the same Flask app with 4 workers, warmed by wrk: the USS (memory no other
          process shares) of the 4 workers and of the master, prefork against gunicorn
  cpu     where the time goes: the CPU time per request (user and system) of each
          server's processes under wrk, the hello app, minimal_wsgi against prefork

usage: python benchmarks/wsgi_bench.py [--rounds 3] [--seconds 4] [--parts ...]
Needs wrk.  The peers come from throwaway venvs under ~/.cache/prefork-bench (made with
pip when missing), never from this project's dependencies.
"""

import contextlib
import re
import shlex
import subprocess
import sys

import _driver as d
import psutil

PEERS = {  # venv name -> (program, what pip installs)
    "gunicorn": ("gunicorn", ["gunicorn", "flask"]),
    "granian": ("granian", ["granian"]),
    "uwsgi": ("uwsgi", ["uwsgi"]),
    "waitress": ("waitress-serve", ["waitress"]),
}


def peers(gunicorn_venv):
    found = {}
    for name, (program, packages) in PEERS.items():
        venv = gunicorn_venv if name == "gunicorn" else f"{name}-venv"
        found[name] = d.peer(venv, program, packages)
        found[name + " version"] = d.peer_version(venv, name)
    python = found["gunicorn"].rsplit("/", 1)[0] + "/python"
    if subprocess.run([python, "-c", "import flask"], capture_output=True).returncode:
        subprocess.run([python, "-m", "pip", "install", "-q", "flask"], check=True)
    return found


def prefork(port, app, workers=2):
    return (f"{d.PY} -m prefork serve --workers {workers} --bind 127.0.0.1:{port} "
            f"--log-level warning {app}")


def gunicorn(exe, port, app, workers=2):
    return f"{exe} -w {workers} -b 127.0.0.1:{port} --log-level error {app}"


@contextlib.contextmanager
def serving(command, port, env, tag):
    """*command* started in a session of its own and answering on *port*: its process."""
    proc = subprocess.Popen(command, shell=True, start_new_session=True, env=env,
                            cwd=d.SERVERS, stdout=subprocess.DEVNULL,
                            stderr=open(d.scratch(f"{tag}-{port}.err"), "w"))
    try:
        if not d.wait_http(port):
            raise SystemExit(f"wsgi_bench: error: nothing answered on {port}")
        yield psutil.Process(proc.pid)
    finally:
        d.stop_group(proc)


def workers_uss(command, port, env, count, seconds):
    """Start *command*, load it with wrk for *seconds*, then the USS in MiB of its
    master and of its *count* workers (the master's children)."""
    with serving(command, port, env, "uss") as shell:
        d.wrk_latency(port, seconds)

        def master():
            return next((p for p in [shell, *shell.children()]
                         if len(p.children()) == count), None)
        if not d.wait_until(lambda: master() is not None, 10):
            raise SystemExit(f"wsgi_bench: error: no master with {count} workers")
        mib = 1 << 20
        found = master()
        workers = [p.memory_full_info().uss / mib for p in found.children()]
        return found.memory_full_info().uss / mib, workers


def cpu_per_request(command, port, env, seconds):
    """Start *command*, load it with wrk for *seconds*: (req/s, user us, system us) per
    request, over all of its processes."""
    with serving(command, port, env, "cpu") as shell:
        procs = [shell, *shell.children(recursive=True)]

        def times():
            return [sum(p.cpu_times().user for p in procs),
                    sum(p.cpu_times().system for p in procs)]
        before = times()
        out = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "-H", "Connection: close",
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
        after = times()
        count = int(re.search(r"(\d+) requests in", out).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        return rps, *(1e6 * (a - b) / count for a, b in zip(after, before, strict=True))


def main():
    p = d.parser(__doc__)
    p.add_argument("--parts", nargs="+", default=["hello", "flask", "memory", "cpu"],
                   choices=["hello", "flask", "memory", "cpu"])
    a = p.parse_args()
    kit, env, _, _ = d.prepare(a, gunicorn=False)
    exe = peers(a.gunicorn_venv)
    print(f"Python {sys.version.split()[0]}; gunicorn {exe['gunicorn version']}, "
          f"granian {exe['granian version']}, uWSGI {exe['uwsgi version']}, "
          f"waitress {exe['waitress version']}; wrk -c8, Connection: close\n", flush=True)
    summary = []
    port = d.free_port

    if "hello" in a.parts:
        ports = [port() for _ in range(6)]
        r = d.run_kit(kit, env, a, [
            ("minimal", ports[0], f"{d.PY} minimal_wsgi.py {ports[0]} 2"),
            ("prefork", ports[1], prefork(ports[1], "hello:app")),
            ("gunicorn", ports[2], gunicorn(exe["gunicorn"], ports[2], "hello:app")),
            ("granian", ports[3], f"{exe['granian']} --interface wsgi --workers 2 "
                                  f"--host 127.0.0.1 --port {ports[3]} --log-level error "
                                  "hello:app"),
            ("uwsgi", ports[4], f"{exe['uwsgi']} --http-socket 127.0.0.1:{ports[4]} "
                                "--processes 2 --master --module hello:app "
                                "--disable-logging --need-app --die-on-term"),
            ("waitress", ports[5], f"{exe['waitress']} --listen 127.0.0.1:{ports[5]} "
                                   "--threads 2 hello:app"),
        ])
        summary += [
            ("hello app: prefork / minimal_wsgi", r["prefork"][2], 0.8),
            ("hello app: prefork / granian", r["prefork"][2] / r["granian"][2], 1.3),
            ("hello app: prefork / gunicorn sync", r["prefork"][2] / r["gunicorn"][2], 3.5),
            ("hello app: prefork / uWSGI", r["prefork"][2] / r["uwsgi"][2], None),
            ("hello app: prefork / waitress", r["prefork"][2] / r["waitress"][2], None),
        ]

    if "flask" in a.parts:
        ports = [port() for _ in range(2)]
        r = d.run_kit(kit, env, a, [
            ("gunicorn", ports[0], gunicorn(exe["gunicorn"], ports[0], "flask_hello:app")),
            ("prefork", ports[1], prefork(ports[1], "flask_hello:app")),
        ])
        summary.append(("Flask hello: prefork / gunicorn sync", r["prefork"][2], 1.3))

    if "memory" in a.parts:
        print("\nUSS with 4 workers serving Flask, after wrk for 3 s (MiB):")
        uss = {}
        for name, command in [
                ("prefork", lambda q: prefork(q, "flask_hello:app", 4)),
                ("gunicorn", lambda q: gunicorn(exe["gunicorn"], q, "flask_hello:app", 4))]:
            q = port()
            master, workers = workers_uss(command(q), q, env, 4, 3)
            uss[name] = sum(workers)
            print(f"{name:>12}: workers {sum(workers):6.1f} "
                  f"({' '.join(f'{w:.1f}' for w in workers)}), master {master:.1f}")
        summary.append(("USS of 4 Flask workers: prefork / gunicorn",
                        uss["prefork"] / uss["gunicorn"], None))
        print()

    if "cpu" in a.parts:
        print("\nCPU per request under wrk -c8 (microseconds), the hello app, "
              f"{a.rounds} rounds:")
        for _ in range(a.rounds):
            for name, command in [
                    ("minimal", lambda q: f"{d.PY} {shlex.quote(kit)}/minimal_wsgi.py {q} 2"),
                    ("prefork", lambda q: prefork(q, "hello:app"))]:
                q = port()
                rps, user, system = cpu_per_request(command(q), q, env, a.seconds)
                print(f"{name:>12}: {rps:8.0f} req/s  user {user:5.1f}  system {system:5.1f}")

    print("\nsummary (ratio, goal):")
    for what, value, goal in summary:
        mark = "" if goal is None else f"   goal >= {goal}: {'met' if value >= goal else 'NOT met'}"
        print(f"  {what:<44} {value:5.2f}{mark}")


if __name__ == "__main__":
    main()
