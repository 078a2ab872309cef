#!/usr/bin/env python3
"""core against the standard library's socketserver, side by side, with the peer kit.

For each of ThreadingTCPServer and ForkingTCPServer, serving the kit's ``Raw`` and
``Hello`` handlers, runs ../shared/bench/bench.py with the stdlib's server first and
core's second, so the ratio printed for core is core / stdlib, taken round by round
(median of the rounds).  Needs wrk (Debian package ``wrk``).

usage: python benchmarks/core_bench.py [--rounds 3] [--seconds 4] [--kit PATH]
"""

import os

import _driver as d


def main():
    a = d.parser(__doc__).parse_args()
    kit, env, _, _ = d.prepare(a, gunicorn=False)
    rows = []
    for kind in ("threading", "forking"):
        for handler in ("raw", "hello"):
            arg = "raw" if handler == "raw" else ""
            ps, pc = d.free_port(), d.free_port()
            core_script = os.path.join(d.SERVERS, "core_server.py")
            r = d.run_kit(kit, env, a, [
                ("stdlib", ps, f"{d.PY} stdlib_server.py {kind} {ps} {arg}"),
                ("core", pc, f"{d.PY} {core_script} {kind} {pc} {arg}")])
            rows.append((kind, handler, r["stdlib"], r["core"]))
    print(f"\n{'server':<22}{'handler':<8}{'stdlib req/s':>13}{'core req/s':>12}"
          f"{'errors':>8}{'core/stdlib':>13}")
    worst = None
    for kind, handler, (s_rps, s_err, _), (c_rps, c_err, ratio) in rows:
        name = kind.capitalize() + "TCPServer"
        print(f"{name:<22}{handler:<8}{s_rps:>13}{c_rps:>12}{s_err + c_err:>8}{ratio:>13}")
        worst = min(ratio, worst if worst is not None else ratio)
    print(f"lowest core/stdlib ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
