"""A working example: an HTTP "hello" service served by a pre-forked pool.

    python examples/hello.py [PORT]      (default 8000, on 127.0.0.1)

then try ``curl http://127.0.0.1:8000/``.  The master forks 2 workers; send it
SIGHUP to reload them, SIGTTIN/SIGTTOU to add or remove one, and stop it with
Ctrl-C (fast) or SIGTERM (graceful).
"""

import logging
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler

from prefork import PreforkTCPServer


class Hello(BaseHTTPRequestHandler):
    def setup(self):
        # Head and body go out in two writes: without TCP_NODELAY the second waits
        # for a delayed ACK.  (Unix sockets, behind nginx, have no Nagle to disable.)
        self.disable_nagle_algorithm = self.request.family != socket.AF_UNIX
        super().setup()

    def do_GET(self):
        body = f"hello from worker {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(PreforkTCPServer):
    workers = 2
    name = "hello"


def main():
    logging.basicConfig(level=logging.INFO, format="%(process)d %(levelname)s %(message)s")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with Server(("127.0.0.1", port), Hello) as server:
        print(f"serving on http://127.0.0.1:{server.server_address[1]}/ "
              f"(master pid {os.getpid()})", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
