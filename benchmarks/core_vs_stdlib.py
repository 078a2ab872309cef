#!/usr/bin/env python3
"""core against the standard library's socketserver, side by side, with the peer kit.

For each of ThreadingTCPServer and ForkingTCPServer, serving the kit's ``Raw`` and
``Hello`` handlers, runs ../shared/bench/bench.py with the stdlib's server first and
core's second, so the ratio printed for core is core / stdlib, taken round by round
(median of the rounds).  Needs wrk (Debian package ``wrk``).

usage: python benchmarks/core_vs_stdlib.py [--rounds 3] [--seconds 4] [--kit PATH]
"""

import argparse
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATIO = re.compile(r"^\s*(\S+):\s+(\d+) req/s.*errors (\d+)\s+ratio ([\d.]+)", re.M)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--kit", default=os.path.join(ROOT, "..", "shared", "bench"),
                   help="the peer benchmark kit (default: ../shared/bench)")
    a = p.parse_args()
    kit = os.path.abspath(a.kit)
    if not os.path.exists(os.path.join(kit, "bench.py")):
        sys.exit(f"core_vs_stdlib: error: no bench.py in {kit}; pass --kit PATH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([kit, ROOT]))
    py = shlex.quote(sys.executable)
    rows = []
    port = 18101
    for kind in ("threading", "forking"):
        for handler in ("raw", "hello"):
            arg = "raw" if handler == "raw" else ""
            stdlib_script = shlex.quote(os.path.join(kit, "stdlib_server.py"))
            core_script = shlex.quote(os.path.join(ROOT, "benchmarks", "core_server.py"))
            stdlib = f"stdlib={port}={py} {stdlib_script} {kind} {port} {arg}"
            ours = f"core={port + 1}={py} {core_script} {kind} {port + 1} {arg}"
            out = subprocess.run(
                [sys.executable, os.path.join(kit, "bench.py"), "--rounds", str(a.rounds),
                 "--seconds", str(a.seconds), stdlib, ours],
                env=env, cwd=kit, capture_output=True, text=True, check=True).stdout
            port += 2
            found = {m[0]: m[1:] for m in RATIO.findall(out)}
            rows.append((kind, handler, found["stdlib"], found["core"]))
            print(out, end="", flush=True)
    print(f"\n{'server':<22}{'handler':<8}{'stdlib req/s':>13}{'core req/s':>12}"
          f"{'errors':>8}{'core/stdlib':>13}")
    worst = None
    for kind, handler, (s_rps, s_err, _), (c_rps, c_err, ratio) in rows:
        name = kind.capitalize() + "TCPServer"
        print(f"{name:<22}{handler:<8}{s_rps:>13}{c_rps:>12}{int(s_err) + int(c_err):>8}"
              f"{ratio:>13}")
        worst = min(float(ratio), worst if worst is not None else float(ratio))
    print(f"lowest core/stdlib ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
