"""A socketserver handler that answers each request on a connection with the same
bytes, reading only that a request came: no HTTP parsing, no WSGI.  For
keepalive_bench.py's cost part: prefork's pool (its loop, the connections a worker
keeps, the scoreboard, socketserver's request path) with the HTTP of a request
taken away, so the CPU a request costs splits into the pool's share and the front
end's.  Each read is taken to be one whole request, as wrk sends them.

usage: prefork serve ... canned:Canned   (with this directory on PYTHONPATH)
"""

import core

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"


class Canned(core.BaseRequestHandler):
    def handle(self):
        try:
            if self.request.recv(65536):
                self.request.sendall(ANSWER)
                self.server.keep_alive(self.request)  # the next request, when it comes
        except OSError:
            pass  # the client left
