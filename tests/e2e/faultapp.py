"""An HTTP handler that misbehaves on request, for the fault tests behind nginx.

    /          200, naming the worker
    /hang      never answers: spins in hang_here() until the master's timeout
    /leak      keeps 256 KiB more for each request, and answers 200
    /slow      writes its headers, then takes SLOW seconds for the body
    /orphan    leaves a grandchild process for init (here: the master) to reap
"""

import os
import time
from http.server import BaseHTTPRequestHandler

KEPT = []
SLOW = 0.5


def hang_here():
    while True:  # the stack the master's timeout must log
        pass


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 (the default): one request per connection.  A kept-alive connection
    # would hold its worker between requests, silent, until the timeout killed it.

    def do_GET(self):
        body = f"{self.path} from worker {os.getpid()}\n".encode()
        if self.path == "/hang":
            hang_here()
        elif self.path == "/leak":
            KEPT.append(bytearray(256 * 1024))
        elif self.path == "/orphan":
            body = f"orphan {self._leave_an_orphan()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/slow":
            self.wfile.flush()
            time.sleep(SLOW)  # a request in flight for that long: the test's work item
        self.wfile.write(body)

    def _leave_an_orphan(self):
        """Fork a child that forks a grandchild and exits: the grandchild's parent is
        gone, so it is re-parented to PID 1, which must reap it."""
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(r)
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            grandchild = f.read()
        os.waitpid(child, 0)
        return grandchild

    def log_message(self, *args):
        pass
