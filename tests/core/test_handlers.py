"""Request handlers on real sockets: the setup/handle/finish contract and the file objects."""

import io
import socket

import pytest

from .helpers import IO_TIMEOUT, recv_all, serving


def record(ss, fail_in=None):
    calls = []

    class Recorder(ss.BaseRequestHandler):
        def setup(self):
            calls.append(("setup", self.request is not None, self.client_address, self.server))
            if fail_in == "setup":
                raise OSError("setup failed")

        def handle(self):
            calls.append("handle")
            if fail_in == "handle":
                raise OSError("handle failed")

        def finish(self):
            calls.append("finish")

    return Recorder, calls


@pytest.mark.parametrize("fail_in,expected", [
    (None, ["setup", "handle", "finish"]),
    ("handle", ["setup", "handle", "finish"]),   # finish() runs after a failed handle()
    ("setup", ["setup"]),                        # ... but not after a failed setup()
])
def test_setup_handle_finish(ss, fail_in, expected):
    Recorder, calls = record(ss, fail_in)
    a, b = socket.socketpair()
    with a, b:
        server = object()
        if fail_in:
            with pytest.raises(OSError, match=f"{fail_in} failed"):
                Recorder(a, ("peer", 1), server)
        else:
            Recorder(a, ("peer", 1), server)
    assert calls[0] == ("setup", True, ("peer", 1), server)  # attributes set before setup()
    assert [c if isinstance(c, str) else c[0] for c in calls] == expected


def test_base_handle_does_nothing(ss):
    a, b = socket.socketpair()
    with a, b:
        h = ss.BaseRequestHandler(a, None, None)
        assert (h.request, h.client_address, h.server) == (a, None, None)
    assert b.fileno() == -1


def stream_pair(ss, handler_cls):
    """Run *handler_cls* over one connection of a real TCP server; return the server."""
    return serving(ss.ThreadingTCPServer(("127.0.0.1", 0), handler_cls))


def test_stream_rfile_and_wfile(ss):
    class Lines(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(b"> " + line)

    with stream_pair(ss, Lines) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            c.sendall(b"one\ntwo\n")
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"> one\n> two\n"


def test_unbuffered_wfile_reaches_the_peer_at_once(ss):
    # With wbufsize 0 (the default) a write is on the wire before handle() goes on:
    # the handler waits for an answer to what it wrote, without any flush().
    class PingPong(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"ping\n")
            self.wfile.write(b"got " + self.rfile.readline())

    with stream_pair(ss, PingPong) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            f = c.makefile("rb")
            assert f.readline() == b"ping\n"
            c.sendall(b"pong\n")
            assert f.readline() == b"got pong\n"
            f.close()


def test_buffered_wfile_is_flushed_by_finish(ss):
    class Buffered(ss.StreamRequestHandler):
        wbufsize = 65536

        def handle(self):
            assert not isinstance(self.wfile, io.RawIOBase)
            self.wfile.write(b"held until finish")

    with stream_pair(ss, Buffered) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            assert recv_all(c) == b"held until finish"


def test_rbufsize_zero_reads_unbuffered(ss):
    kinds = []

    class Raw(ss.StreamRequestHandler):
        rbufsize = 0

        def handle(self):
            kinds.append(isinstance(self.rfile, io.RawIOBase))
            self.wfile.write(self.rfile.read(3))

    with stream_pair(ss, Raw) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            c.sendall(b"abc")
            assert recv_all(c) == b"abc"
    assert kinds == [True]


def test_wfile_write_returns_the_length_written(ss):
    results = []

    class Counting(ss.StreamRequestHandler):
        def handle(self):
            results.append(self.wfile.write(memoryview(b"12345")))
            results.append(self.wfile.writable())

    with stream_pair(ss, Counting) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            assert recv_all(c) == b"12345"
    assert results == [5, True]


def test_timeout_and_nagle_options_reach_the_connection(ss):
    seen = []

    class Tuned(ss.StreamRequestHandler):
        timeout = 7.5
        disable_nagle_algorithm = True

        def handle(self):
            seen.append(self.connection is self.request)
            seen.append(self.connection.gettimeout())
            seen.append(bool(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))

    class Plain(ss.StreamRequestHandler):
        def handle(self):
            seen.append(self.connection.gettimeout())
            seen.append(bool(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))

    for cls in (Tuned, Plain):
        with stream_pair(ss, cls) as server:
            with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
                recv_all(c)
    assert seen == [True, 7.5, True, None, False]


def test_handler_timeout_ends_a_silent_request(ss):
    errors = []

    class Impatient(ss.StreamRequestHandler):
        timeout = 0.05

        def handle(self):
            self.rfile.readline()

    class Server(ss.ThreadingTCPServer):
        def handle_error(self, request, client_address):
            import sys
            errors.append(sys.exc_info()[0])

    with serving(Server(("127.0.0.1", 0), Impatient)) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            assert recv_all(c) == b""  # closed by the server, not by us
    assert errors == [TimeoutError]


def test_datagram_handler_files(ss):
    seen = []

    class Echo(ss.DatagramRequestHandler):
        def handle(self):
            seen.append((self.packet, self.socket is self.server.socket))
            self.wfile.write(b"[" + self.rfile.read() + b"]")
            self.wfile.write(b"!")

    with serving(ss.UDPServer(("127.0.0.1", 0), Echo)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(IO_TIMEOUT)
            c.sendto(b"data", server.server_address)
            reply, addr = c.recvfrom(100)
    assert reply == b"[data]!"  # one datagram, sent by finish()
    assert addr == server.server_address
    assert seen == [(b"data", True)]
