"""ThreadingMixIn: a thread per request, daemon_threads, block_on_close."""

import socket
import threading

import pytest

from .helpers import IO_TIMEOUT, close_server, recv_all, serving


def threading_server(ss, base):
    return type("Threading" + base.__name__, (ss.ThreadingMixIn, base), {})


def test_each_request_runs_in_a_thread_of_its_own(ss, kind):
    idents = []

    class Handler(kind.handler_base(ss)):
        def handle(self):
            idents.append(threading.get_ident())
            self.wfile.write(self.rfile.read()[::-1])

    with serving(threading_server(ss, kind.server_class(ss))(kind.address(), Handler)) as server:
        loop_ident = None
        for data in (b"abc", b"xyz"):
            assert kind.exchange(server.server_address, data) == data[::-1]
        loop_ident = [t.ident for t in threading.enumerate()
                      if getattr(t, "_target", None) == server.serve_forever]
    assert len(idents) == 2
    assert threading.get_ident() not in idents
    assert not set(idents) & set(loop_ident)


@pytest.mark.parametrize("daemon", [False, True])
def test_daemon_threads(ss, daemon):
    flags = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            flags.append(threading.current_thread().daemon)
            self.wfile.write(b"ok")

    class Server(ss.ThreadingTCPServer):
        daemon_threads = daemon

    with serving(Server(("127.0.0.1", 0), Handler)) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            assert recv_all(c) == b"ok"
    assert flags == [daemon]


@pytest.mark.parametrize("block,daemon,waits", [
    (True, False, True),    # the default: server_close() waits for request threads
    (False, False, False),
    (True, True, False),    # daemon threads are never waited for
])
def test_block_on_close(ss, block, daemon, waits):
    started, finished = threading.Event(), threading.Event()

    class Held(ss.StreamRequestHandler):
        def handle(self):
            started.set()
            self.rfile.read()  # until the client closes
            finished.set()

    class Server(ss.ThreadingTCPServer):
        block_on_close = block
        daemon_threads = daemon

    server = Server(("127.0.0.1", 0), Held)
    loop = threading.Thread(target=server.serve_forever, args=(0.01,))
    loop.start()
    seen = {}
    try:
        with socket.create_connection(server.server_address, IO_TIMEOUT):
            assert started.wait(IO_TIMEOUT)
            server.shutdown()

            def close():
                server.server_close()
                seen["finished"] = finished.is_set()

            closer = threading.Thread(target=close)
            closer.start()
            if not waits:
                closer.join(IO_TIMEOUT)
        closer.join(IO_TIMEOUT)
        assert finished.wait(IO_TIMEOUT)
    finally:
        loop.join(IO_TIMEOUT)
        close_server(server)
    assert seen == {"finished": waits}


def test_handle_error_runs_in_the_request_thread(ss):
    where = []

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            raise LookupError("in a thread")

    class Server(ss.ThreadingTCPServer):
        def handle_error(self, request, client_address):
            where.append(threading.get_ident())

    with serving(Server(("127.0.0.1", 0), Handler)) as server:
        with socket.create_connection(server.server_address, IO_TIMEOUT) as c:
            assert recv_all(c) == b""
    assert len(where) == 1 and where[0] != threading.get_ident()


def test_many_concurrent_requests(ss):
    barrier = threading.Barrier(5, timeout=IO_TIMEOUT)

    class Together(ss.StreamRequestHandler):
        def handle(self):
            barrier.wait()  # passes only if five requests are in flight at once
            self.wfile.write(b"together")

    with serving(ss.ThreadingTCPServer(("127.0.0.1", 0), Together)) as server:
        clients = [socket.create_connection(server.server_address, IO_TIMEOUT) for _ in range(5)]
        try:
            assert [recv_all(c) for c in clients] == [b"together"] * 5
        finally:
            for c in clients:
                c.close()
