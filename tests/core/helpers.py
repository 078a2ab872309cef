"""Helpers for core's tests: a client per socket type, and a server run in a thread."""

import contextlib
import os
import socket
import threading

import pytest

# For the few tests whose server forks from a thread (serve_forever() in a thread):
# Python 3.12+ warns about any fork in a multi-threaded process.  Here the other
# threads hold no lock the child needs.
FORKS_FROM_A_THREAD = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning")

# Long enough never to fire in a passing test; short enough that a broken one ends.
IO_TIMEOUT = 10.0


class Kind:
    """One socket type: its server class name, a fresh address, and a client for it."""

    def __init__(self, name, server_name, family, stream, sockdir):
        self.name, self.server_name, self.family, self.stream = name, server_name, family, stream
        self.sockdir = sockdir
        self._n = 0

    def server_class(self, ss):
        return getattr(ss, self.server_name)

    def address(self):
        if self.family == socket.AF_UNIX:
            self._n += 1
            return os.path.join(self.sockdir, f"s{self._n}")
        return ("127.0.0.1", 0)

    def handler_base(self, ss):
        return ss.StreamRequestHandler if self.stream else ss.DatagramRequestHandler

    @contextlib.contextmanager
    def client(self):
        """A client socket; a Unix datagram one is bound so that it can be answered."""
        kind = socket.SOCK_STREAM if self.stream else socket.SOCK_DGRAM
        sock = socket.socket(self.family, kind)
        sock.settimeout(IO_TIMEOUT)
        path = None
        if self.family == socket.AF_UNIX and not self.stream:
            self._n += 1
            path = os.path.join(self.sockdir, f"c{self._n}")
            sock.bind(path)
        try:
            yield sock
        finally:
            sock.close()
            if path:
                os.unlink(path)

    def exchange(self, server_address, data):
        """Send *data* as one request and return the whole answer."""
        with self.client() as sock:
            if self.stream:
                sock.connect(server_address)
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                return recv_all(sock)
            sock.sendto(data, server_address)
            return sock.recv(65536)


def recv_all(sock):
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


KINDS = [
    ("tcp", "TCPServer", socket.AF_INET, True),
    ("udp", "UDPServer", socket.AF_INET, False),
    ("unix", "UnixStreamServer", socket.AF_UNIX, True),
    ("unixgram", "UnixDatagramServer", socket.AF_UNIX, False),
]


def close_server(server):
    """server_close(), and remove a Unix socket file, which closing leaves behind."""
    server.server_close()
    address = server.server_address
    if isinstance(address, str) and address and os.path.exists(address):
        os.unlink(address)


@contextlib.contextmanager
def serving(server, poll_interval=0.05):
    """Run serve_forever() in a thread for the block; then shut down and close."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,))
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(IO_TIMEOUT)
        close_server(server)
