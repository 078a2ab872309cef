"""A WSGI application served in-process by core's ThreadingTCPServer through the
WSGI front end, for the HTTP tests; and raw requests against it."""

import contextlib
import os
import socket
import threading

import core
from prefork.wsgi import handler_for

TIMEOUT = 10.0


class Served:
    """*app* served on 127.0.0.1 (an ephemeral port) until the block ends."""

    def __init__(self, app, **settings):
        self.errors = []
        served = self

        class Server(core.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                import sys
                served.errors.append(sys.exc_info()[1])

        self.handler = handler_for(app, **settings)
        self.server = Server(("127.0.0.1", 0), self.handler)
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join(TIMEOUT)
        self.server.server_close()
        if self.handler.access is not None:
            self.handler.access.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close()
        if exc_type is None:
            assert self.errors == [], f"unexpected errors in the handler: {self.errors!r}"

    def take_errors(self):
        """The errors handed to handle_error() so far, as strings; forgotten after."""
        taken, self.errors = [str(e) for e in self.errors], []
        return taken

    def connect(self):
        return socket.create_connection(self.address, timeout=TIMEOUT)

    def exchange(self, raw, shut=True):
        """Send *raw*; return everything the server sent until it closed."""
        with self.connect() as c:
            c.sendall(raw)
            if shut:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_WR)
            return read_all(c)


def read_all(c):
    data = b""
    while True:
        try:
            chunk = c.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def split_response(data):
    """(status code, {lower-case name: value}, body) of one HTTP/1.1 response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return code, headers, body


def unchunk(body):
    """The payload of a chunked body (no trailers)."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += body[:size]
        body = body[size + 2:]


class Client:
    """One connection, HTTP/1.x written and read by hand, one response at a time."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.buf = b""

    def send(self, path="/", method="GET", headers=(), body=b"", version="HTTP/1.1"):
        self.sock.sendall(request(path, method, headers, body, version))

    def response(self):
        """(status, {lowercased name: value}, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, fields, _ = split_response(head)
        size = int(fields.get("content-length", 0))
        while len(self.buf) < size:
            self._more()
        body, self.buf = self.buf[:size], self.buf[size:]
        return status, fields, body

    def get(self, path="/", **kw):
        self.send(path, **kw)
        return self.response()

    def closed_by_server(self):
        """Wait for the server to close the connection: True at end-of-file."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed by the server; had {self.buf!r}")
        self.buf += data

    def close(self):
        self.sock.close()


def request(path="/", method="GET", headers=(), body=b"", version="HTTP/1.1"):
    lines = [f"{method} {path} {version}", "Host: test", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def pid_of(body):
    return int(body.split()[-1])


def open_gate(gate):
    """Let wsgiapps' /gate?GATE request through: GATE/go says so, and opening and closing
    the request's FIFO ends its wait."""
    gate = os.fspath(gate)
    open(os.path.join(gate, "go"), "w").close()
    os.close(os.open(os.path.join(gate, "word"), os.O_WRONLY | os.O_NONBLOCK))
