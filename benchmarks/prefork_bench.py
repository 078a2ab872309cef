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

import subprocess
import sys

import _driver as d


def slow_import_run(name, command, port, seconds, env):
    log = open(d.scratch(f"{name}.err"), "w")
    proc = subprocess.Popen(command, shell=True, start_new_session=True, env=env,
                            cwd=d.SERVERS, stdout=subprocess.DEVNULL, stderr=log)
    try:
        if not d.wait_http(port):
            raise SystemExit(f"prefork_bench: error: {name} did not answer on {port}")
        return d.wrk_latency(port, seconds)
    finally:
        d.stop_group(proc)
        log.close()


def main():
    p = d.parser(__doc__)
    p.add_argument("--slow-seconds", type=int, default=12)
    p.add_argument("--parts", nargs="+", default=["throughput", "hup", "slow"],
                   choices=["throughput", "hup", "slow"])
    a = p.parse_args()
    kit, env, gunicorn, gversion = d.prepare(a)
    print(f"{gversion}; Python {sys.version.split()[0]}; wrk -c8, Connection: close\n", flush=True)
    summary = []
    port = d.free_port

    if "throughput" in a.parts:
        ports = [port() for _ in range(5)]
        r = d.run_kit(kit, env, a, [
            ("ceiling", ports[0], f"{d.PY} minimal_prefork.py {ports[0]} 2"),
            ("prefork2", ports[1], d.prefork_server(ports[1], 2, "hello:Raw")),
            ("prefork8", ports[2], d.prefork_server(ports[2], 8, "hello:Raw")),
            ("gunicorn2", ports[3], f"{gunicorn} -w 2 -b 127.0.0.1:{ports[3]} --log-level error "
                                    "hello:app"),
            # nginx answering from C: what this machine's loopback and wrk allow at all.
            ("nginx", ports[4], d.nginx_command(kit, ports[4])),
        ])
        summary += [
            ("nginx return 200 (C) / minimal_prefork 2", r["nginx"][2], None),
            ("Raw, 2 workers / minimal_prefork 2", r["prefork2"][2], 0.90),
            ("Raw, 8 workers / minimal_prefork 2", r["prefork8"][2], 0.90),
            ("Raw, 2 workers / gunicorn sync 2", r["prefork2"][0] / r["gunicorn2"][0], 3.0),
        ]
        ports = [port() for _ in range(3)]
        r = d.run_kit(kit, env, a, [
            ("prefork2", ports[0], d.prefork_server(ports[0], 2, "hello:Hello")),
            ("threading", ports[1], f"{d.PY} stdlib_server.py threading {ports[1]}"),
            ("forking", ports[2], f"{d.PY} stdlib_server.py forking {ports[2]}"),
        ])
        summary += [
            ("Hello, 2 workers / stdlib ThreadingTCPServer", 1 / r["threading"][2], None),
            ("Hello, 2 workers / stdlib ForkingTCPServer", 1 / r["forking"][2], None),
        ]

    if "hup" in a.parts:
        ports = [port(), port()]
        r = d.run_kit(kit, env, a, [
            ("steady", ports[0], d.prefork_server(ports[0], 2, "hello:Raw")),
            ("hup0.2s", ports[1], d.with_hup(d.prefork_server(ports[1], 2, "hello:Raw"), 0.2)),
        ])
        summary += [("Raw, HUP every 0.2 s / no reloads", r["hup0.2s"][2], 0.90),
                    ("  errors with HUP every 0.2 s", r["hup0.2s"][1], 0)]

    if "slow" in a.parts:
        slow_env = dict(env, SLOW_IMPORT_S="3")
        for name, make in [
            ("prefork", lambda p: d.with_hup(d.prefork_server(p, 2, "slow_hello:Raw"), 5)),
            ("gunicorn", lambda p: d.with_hup(f"{gunicorn} -w 2 -b 127.0.0.1:{p} --log-level "
                                              "error slow_hello:app", 5)),
        ]:
            p_ = port()
            rps, max_latency, errors = slow_import_run(name, make(p_), p_, a.slow_seconds,
                                                       slow_env)
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
