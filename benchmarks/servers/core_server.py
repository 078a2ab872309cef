"""Serve the peer kit's handlers with core: the twin of the kit's stdlib_server.py.

usage: core_server.py forking|threading PORT [raw]
Needs the peer kit (../shared/bench) on PYTHONPATH for ``hello``.
"""

import sys

from hello import Hello

import core

kind, port = sys.argv[1], int(sys.argv[2])
handler = Hello
if len(sys.argv) > 3 and sys.argv[3] == "raw":
    from hello import Raw as handler
cls = {"forking": core.ForkingTCPServer, "threading": core.ThreadingTCPServer}[kind]
# The same settings the kit gives the stdlib's servers.
cls.allow_reuse_address = True
cls.request_queue_size = 1024
with cls(("127.0.0.1", port), handler) as srv:
    srv.serve_forever()
