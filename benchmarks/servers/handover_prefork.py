"""`prefork serve` with one change, for keepalive_bench.py's cost part: a worker keeps
no idle connection itself, so every one goes to the master and back (the hand-over
on every request, as it would be with a free worker always about).

usage: python handover_prefork.py serve ARGS...   (the arguments of `prefork serve`)
"""

import sys

import prefork.handback
from prefork.command import main

prefork.handback.HOLD_MOST = 0

if __name__ == "__main__":
    sys.argv[0] = "prefork"
    sys.exit(main())
