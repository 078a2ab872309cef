#!/usr/bin/env python3
"""Instructions a request costs the WSGI front end, counted by callgrind: a figure that
does not move with the machine's load, for changes too small for wrk to see.

One process serves requests on one end of a socket pair with the front end's handler
(handler_for() of the kit's WSGI app), as a pre-forked worker's handler serves a kept
connection, and reads each answer on the other end; it runs twice under callgrind,
--small and --small * 5 requests, and the difference of the two totals over the
difference of the counts is a request's instructions (Python's start and the imports
cancel out).  The same for servers/canned.py, a handler that answers each request with
the same bytes: the floor (the read, the write, socketserver's handler and this loop).
--ref COMMIT counts that commit's front end too (a git worktree of it), side by side.

usage: python benchmarks/frontend_instructions.py [--small 500] [--ref COMMIT]
Needs valgrind.  The request is a GET of the kind wrk sends, with three header fields.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIT = os.path.join(ROOT, "..", "shared", "bench")

# The loop that callgrind counts: run as `python -c LOOP N HANDLER` in the tree measured.
LOOP = """
import socket, sys
n, which = int(sys.argv[1]), sys.argv[2]
if which == "wsgi":
    from hello import app
    from prefork.wsgi import handler_for
    handler = handler_for(app)
else:
    from canned import Canned as handler

class Server:
    server_address = ("127.0.0.1", 8000)
    def keep_alive(self, sock, keep=True):
        return keep
    def handle_error(self, request, address):
        raise

server, (ours, theirs) = Server(), socket.socketpair()
request = (b"GET /index?x=1 HTTP/1.1\\r\\nHost: 127.0.0.1:8000\\r\\n"
           b"User-Agent: wrk\\r\\nAccept: */*\\r\\n\\r\\n")
for _ in range(n):
    theirs.sendall(request)
    handler(ours, ("127.0.0.1", 5555), server)
    if not theirs.recv(65536).startswith(b"HTTP/1.1 200 "):
        raise SystemExit("not answered 200")
"""


def instructions(tree, which, n, kit):
    env = dict(os.environ, PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([tree, os.path.join(tree, "benchmarks", "servers"),
                                           kit]))
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, "-c", LOOP, str(n), which],
                         capture_output=True, text=True, env=env, cwd=tree)
    found = re.search(r"refs:\s+([\d,]+)", out.stderr)
    if out.returncode or not found:
        raise SystemExit(f"frontend_instructions.py: error: {tree}: {which}: "
                         f"{out.stderr.strip().splitlines()[-1:]}")
    return int(found.group(1).replace(",", ""))


def per_request(tree, which, small, kit):
    return (instructions(tree, which, small * 5, kit)
            - instructions(tree, which, small, kit)) / (small * 4)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=500, help="requests in the shorter run")
    p.add_argument("--ref", help="also count this commit's front end")
    p.add_argument("--kit", default=KIT, help="the peer benchmark kit (its hello.py)")
    a = p.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("frontend_instructions.py: error: valgrind is not installed")
    kit = os.path.abspath(a.kit)
    trees = [("this tree", ROOT)]
    with tempfile.TemporaryDirectory() as scratch:
        if a.ref:
            where = os.path.join(scratch, "ref")
            subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", where, a.ref],
                           check=True, capture_output=True)
            trees.append((a.ref, where))
        try:
            print(f"instructions a request, callgrind, Python {sys.version.split()[0]}")
            for name, tree in trees:
                wsgi = per_request(tree, "wsgi", a.small, kit)
                floor = per_request(tree, "canned", a.small, kit)
                print(f"  {name:>12}: WSGI front end {wsgi:9,.0f}   canned answer "
                      f"{floor:7,.0f}   the front end's own {wsgi - floor:9,.0f}", flush=True)
        finally:
            if a.ref:
                subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", where],
                               capture_output=True)


if __name__ == "__main__":
    main()
