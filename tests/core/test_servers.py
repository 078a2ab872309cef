"""The synchronous servers over real sockets: the request path, its hooks, and the loop."""

import errno
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import core

from .helpers import IO_TIMEOUT, close_server, recv_all, serving

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def upper_handler(kind, ss):
    class Upper(kind.handler_base(ss)):
        def handle(self):
            self.wfile.write(self.rfile.read().upper())
    return Upper


def test_serves_a_request_through_handle_request(ss, kind):
    server = kind.server_class(ss)(kind.address(), upper_handler(kind, ss))
    try:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("answer", kind.exchange(
            server.server_address, b"hello")))
        t.start()
        server.handle_request()
        t.join(IO_TIMEOUT)
        assert result["answer"] == b"HELLO"
    finally:
        close_server(server)


def test_serve_forever_serves_many_requests(ss, kind):
    with serving(kind.server_class(ss)(kind.address(), upper_handler(kind, ss))) as server:
        for i in range(5):
            assert kind.exchange(server.server_address, b"n%d" % i) == b"N%d" % i


def test_hooks_run_in_the_documented_order(ss, kind):
    calls = []

    class Handler(kind.handler_base(ss)):
        def setup(self):
            calls.append("setup")
            super().setup()

        def handle(self):
            calls.append("handle")
            self.wfile.write(self.rfile.read())

        def finish(self):
            calls.append("finish")
            super().finish()

    base = kind.server_class(ss)

    class Server(base):
        pass

    for hook in ("get_request", "verify_request", "process_request", "finish_request",
                 "shutdown_request", "close_request", "service_actions"):
        def traced(self, *args, _hook=hook):
            calls.append(_hook)
            return getattr(base, _hook)(self, *args)
        setattr(Server, hook, traced)

    server = Server(kind.address(), Handler)
    try:
        t = threading.Thread(target=kind.exchange, args=(server.server_address, b"x"))
        t.start()
        server.handle_request()
        t.join(IO_TIMEOUT)
    finally:
        close_server(server)
    assert calls == ["get_request", "verify_request", "process_request", "finish_request",
                     "setup", "handle", "finish", "shutdown_request", "close_request"]


def test_handle_error_gets_the_exception_and_the_server_carries_on(ss, kind, capsys):
    seen = []

    class Handler(kind.handler_base(ss)):
        def handle(self):
            data = self.rfile.read()
            if data == b"boom":
                raise ValueError("boom")
            self.wfile.write(data)

    class Server(kind.server_class(ss)):
        def handle_error(self, request, client_address):
            import sys
            seen.append((sys.exc_info()[0], client_address))
            super().handle_error(request, client_address)

    with serving(Server(kind.address(), Handler)) as server:
        # Stream: the connection closes unanswered.  Datagram: finish() still runs
        # after the exception and sends the (empty) reply.
        assert kind.exchange(server.server_address, b"boom") == b""
        assert kind.exchange(server.server_address, b"fine") == b"fine"
    assert len(seen) == 1 and seen[0][0] is ValueError
    err = capsys.readouterr().err
    assert "ValueError: boom" in err and "Traceback" in err


def test_verify_request_false_refuses_without_processing(ss, kind):
    processed, verdicts = [], iter([False, True])

    class Handler(kind.handler_base(ss)):
        def handle(self):
            processed.append(self.rfile.read())
            self.wfile.write(b"served")

    class Server(kind.server_class(ss)):
        def verify_request(self, request, client_address):
            return next(verdicts)

    with serving(Server(kind.address(), Handler)) as server:
        with kind.client() as sock:
            if kind.stream:
                sock.connect(server.server_address)
                assert recv_all(sock) == b""  # closed unanswered
            else:
                sock.sendto(b"denied", server.server_address)
        assert kind.exchange(server.server_address, b"allow") == b"served"
    assert processed == [b"allow"]


def test_handle_timeout_when_nothing_arrives(ss, kind):
    class Server(kind.server_class(ss)):
        timeout = 0.01

        def handle_timeout(self):
            return "timed out"

    server = Server(kind.address(), ss.BaseRequestHandler)
    try:
        assert server.handle_request() == "timed out"
    finally:
        close_server(server)


def test_socket_timeout_shorter_than_timeout_wins(ss):
    class Server(ss.TCPServer):
        timeout = 3600

        def handle_timeout(self):
            return "timed out"

    server = Server(("127.0.0.1", 0), ss.BaseRequestHandler)
    try:
        server.socket.settimeout(0.01)
        assert server.handle_request() == "timed out"
    finally:
        server.server_close()


def test_serve_forever_calls_service_actions_while_idle(ss, kind):
    called = threading.Event()

    class Server(kind.server_class(ss)):
        def service_actions(self):
            called.set()

    with serving(Server(kind.address(), ss.BaseRequestHandler), poll_interval=0.01):
        assert called.wait(IO_TIMEOUT)


def test_serve_forever_ignores_timeout(ss):
    timeouts = []

    class Server(ss.TCPServer):
        timeout = 0.001

        def handle_timeout(self):
            timeouts.append(1)

    calls = threading.Semaphore(0)

    class Counting(Server):
        def service_actions(self):
            calls.release()

    with serving(Counting(("127.0.0.1", 0), ss.BaseRequestHandler), poll_interval=0.001):
        for _ in range(20):
            assert calls.acquire(timeout=IO_TIMEOUT)
    assert timeouts == []


def test_shutdown_from_another_thread_stops_the_loop(ss):
    server = ss.TCPServer(("127.0.0.1", 0), ss.BaseRequestHandler)
    started = threading.Event()

    class Loop(threading.Thread):
        def run(self):
            started.set()
            server.serve_forever(poll_interval=0.01)

    loop = Loop()
    loop.start()
    try:
        started.wait(IO_TIMEOUT)
        server.shutdown()
        loop.join(IO_TIMEOUT)
        assert not loop.is_alive()
    finally:
        server.server_close()


def test_shutdown_returns_promptly_not_after_poll_interval():
    # core wakes its loop on shutdown(); the stdlib waits out poll_interval.
    in_loop = threading.Event()

    class Server(core.TCPServer):
        def service_actions(self):
            in_loop.set()

    server = Server(("127.0.0.1", 0), core.BaseRequestHandler)
    thread = threading.Thread(target=server.serve_forever, args=(3600,))
    thread.start()
    try:
        # service_actions() runs only after a wake-up: connect once to get a turn.
        socket.create_connection(server.server_address, IO_TIMEOUT).close()
        assert in_loop.wait(IO_TIMEOUT)
        started = time.monotonic()
        server.shutdown()
        thread.join(IO_TIMEOUT)
        assert not thread.is_alive()
        assert time.monotonic() - started < 5, "shutdown() waited for poll_interval"
    finally:
        server.server_close()


def test_a_handler_stops_its_own_server_as_socketserver_code_does(ss):
    # Not documented, but written in programs for socketserver: shutdown() would wait
    # on its own thread, so a handler sets the loop's flag under the stdlib's name.
    class Last(ss.BaseRequestHandler):
        def handle(self):
            self.server._BaseServer__shutdown_request = True

    server = ss.TCPServer(("127.0.0.1", 0), Last)
    try:
        client = socket.create_connection(server.server_address, IO_TIMEOUT)
        server.serve_forever(poll_interval=0.01)  # returns after that one request
        client.close()
        assert server._BaseServer__is_shut_down.is_set()
        assert server._BaseServer__shutdown_request is False  # ready to run again
    finally:
        server.server_close()


SHORT_OF_DESCRIPTORS = """
import os, resource, socket, sys, threading
ss = __import__(sys.argv[1])

class Hello(ss.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"hello")

class Server(ss.TCPServer):
    def service_actions(self):
        running.set()  # the loop turns: past its start

running = threading.Event()
server = Server(("127.0.0.1", 0), Hello)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(map(int, os.listdir("/dev/fd"))) + 8, hard))
held = []
while True:  # every descriptor this process may have, taken
    try:
        held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
os.close(held.pop())  # one to spare: too few for a socket pair
loop = threading.Thread(target=server.serve_forever, args=(0.05,))
loop.start()
running.wait()
os.close(held.pop())
os.close(held.pop())  # the client's and the accepted socket
with socket.create_connection(server.server_address) as client:
    print(client.recv(100).decode())
server.shutdown()
loop.join()
print("stopped")
"""


@pytest.mark.parametrize("module", ["core", "socketserver"])
def test_serve_forever_with_no_descriptor_to_spare_serves_and_stops(module):
    # core's loop wakes on shutdown() through a socket pair; without the descriptors
    # for one, it serves on and sees shutdown() within poll_interval, as the stdlib's.
    out = subprocess.run([sys.executable, "-c", SHORT_OF_DESCRIPTORS, module], timeout=30,
                         capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["hello", "stopped"], out.stderr


def test_shutdown_before_the_loop_starts_makes_it_return(ss):
    server = ss.TCPServer(("127.0.0.1", 0), ss.BaseRequestHandler)
    try:
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        # Whether shutdown() came first or not, serve_forever() must return.
        server.serve_forever(poll_interval=0.01)
        stopper.join(IO_TIMEOUT)
        assert not stopper.is_alive()
        # And the request was used up: the loop can run again and be stopped again.
        with serving(server, poll_interval=0.01):
            pass
    finally:
        server.server_close()


def test_context_manager_closes_the_socket(ss, kind):
    with kind.server_class(ss)(kind.address(), ss.BaseRequestHandler) as server:
        assert server.fileno() == server.socket.fileno() >= 0
    assert server.socket.fileno() == -1
    if kind.family == socket.AF_UNIX:
        os.unlink(server.server_address)


def test_server_address_is_the_bound_one(ss):
    with ss.TCPServer(("127.0.0.1", 0), ss.BaseRequestHandler) as server:
        host, port = server.server_address
        assert host == "127.0.0.1" and port > 0
        assert server.socket.getsockname() == (host, port)


def test_ipv6_by_address_family(ss):
    class Server6(ss.TCPServer):
        address_family = socket.AF_INET6

    try:
        server = Server6(("::1", 0), ss.StreamRequestHandler)
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")

    class Echo(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline())

    server.RequestHandlerClass = Echo
    with serving(server):
        with socket.create_connection(server.server_address[:2], IO_TIMEOUT) as c:
            c.sendall(b"six\n")
            assert recv_all(c) == b"six\n"


def test_bind_and_activate_false_leaves_it_to_the_caller(ss, kind):
    cls = kind.server_class(ss)
    server = cls(kind.address(), upper_handler(kind, ss), bind_and_activate=False)
    try:
        assert server.socket.getsockname() in (("0.0.0.0", 0), "", b"", None)
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        with serving(server):
            assert kind.exchange(server.server_address, b"late") == b"LATE"
    finally:
        close_server(server)


def test_failed_constructor_closes_its_socket(ss):
    with ss.TCPServer(("127.0.0.1", 0), ss.BaseRequestHandler) as busy:
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(OSError) as info:
            ss.TCPServer(busy.server_address, ss.BaseRequestHandler)
        assert info.value.errno == errno.EADDRINUSE
        assert len(os.listdir("/proc/self/fd")) == before


def test_failed_activate_closes_its_socket(ss):
    closed = []

    class Server(ss.TCPServer):
        def server_activate(self):
            raise RuntimeError("cannot listen")

        def server_close(self):
            closed.append(True)
            super().server_close()

    with pytest.raises(RuntimeError):
        Server(("127.0.0.1", 0), ss.BaseRequestHandler)
    assert closed == [True]


@pytest.mark.parametrize("attr,option", [("allow_reuse_address", "SO_REUSEADDR"),
                                         ("allow_reuse_port", "SO_REUSEPORT")])
def test_reuse_options_reach_the_socket(ss, attr, option):
    for wanted in (False, True):
        cls = type("Server", (ss.TCPServer,), {attr: wanted})
        with cls(("127.0.0.1", 0), ss.BaseRequestHandler) as server:
            value = server.socket.getsockopt(socket.SOL_SOCKET, getattr(socket, option))
            assert bool(value) is wanted


def test_allow_reuse_address_rebinds_a_port_in_time_wait(ss):
    class Server(ss.TCPServer):
        allow_reuse_address = True

    class Hello(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"hi")

    with serving(Server(("127.0.0.1", 0), Hello)) as first:
        address = first.server_address
        # The server closes first, so its side of the connection sits in TIME_WAIT.
        assert socket.create_connection(address, IO_TIMEOUT).recv(2) == b"hi"
    with Server(address, Hello) as second:
        assert second.server_address == address


def test_request_queue_size_is_the_listen_backlog(ss):
    class Server(ss.TCPServer):
        request_queue_size = 37

    with Server(("127.0.0.1", 0), ss.BaseRequestHandler) as server:
        port = server.server_address[1]
        # For a listening socket, /proc/net/tcp has no backlog; ss(8) shows it as Send-Q.
        import shutil
        import subprocess
        if not shutil.which("ss"):
            pytest.skip("ss(8) not installed")
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, check=True).stdout.split()
        assert out[2] == "37"


def test_udp_max_packet_size_truncates(ss):
    got = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            got.append(self.rfile.read())

    class Server(ss.UDPServer):
        max_packet_size = 10

    with serving(Server(("127.0.0.1", 0), Handler)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(IO_TIMEOUT)
            c.sendto(b"x" * 100, server.server_address)
            c.recv(100)  # the (empty) reply: the handler has run
    assert got == [b"x" * 10]


def test_udp_request_is_data_and_the_server_socket(ss):
    seen = []

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            seen.append((data, sock is self.server.socket))
            sock.sendto(b"re:" + data, self.client_address)

    with serving(ss.UDPServer(("127.0.0.1", 0), Handler)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(IO_TIMEOUT)
            c.sendto(b"ping", server.server_address)
            assert c.recv(100) == b"re:ping"
        # The server socket survives the request (close_request does nothing for UDP).
        assert server.socket.fileno() >= 0
    assert seen == [(b"ping", True)]


def test_stream_request_sees_eof_after_handle(ss, stream_kind):
    kind = stream_kind

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            self.request.sendall(b"bye")

    with serving(kind.server_class(ss)(kind.address(), Handler)) as server:
        with kind.client() as c:
            c.connect(server.server_address)
            # No shutdown from the client: EOF comes from the server's half-close.
            assert recv_all(c) == b"bye"


def test_get_request_failure_is_not_an_error(ss):
    errors = []

    class Server(ss.TCPServer):
        def get_request(self):
            raise ConnectionAbortedError("gone before accept")

        def handle_error(self, request, client_address):
            errors.append(client_address)

    server = Server(("127.0.0.1", 0), ss.BaseRequestHandler)
    try:
        with socket.create_connection(server.server_address, IO_TIMEOUT):
            assert server.handle_request() is None
    finally:
        server.server_close()
    assert errors == []


def test_get_request_returns_a_connected_socket_like_accept(ss, stream_kind):
    # Every family, a listener with a timeout (its connections stay blocking), and a
    # listener whose class brings its own accept(), which is used.
    accepted = []

    class Listener(socket.socket):
        def accept(self):
            accepted.append(True)
            return super().accept()

    server = stream_kind.server_class(ss)(stream_kind.address(), ss.BaseRequestHandler)
    try:
        server.socket.settimeout(IO_TIMEOUT)
        for round_ in range(3):
            if round_ == 2:
                own = Listener(server.socket.family, server.socket.type,
                               fileno=os.dup(server.socket.fileno()))
                server.socket.close()
                server.socket = own
            with stream_kind.client() as c:
                c.connect(server.server_address)
                conn, address = server.get_request()
                with conn:
                    assert (conn.family, conn.type) == (server.socket.family, socket.SOCK_STREAM)
                    assert conn.gettimeout() is None and conn.getblocking()
                    conn.sendall(b"x")
                    assert c.recv(1) == b"x"
                    if conn.family != socket.AF_UNIX:
                        assert address == c.getsockname()
        assert accepted == [True]
    finally:
        close_server(server)


def test_keyboard_interrupt_in_a_handler_propagates_and_closes_the_request(ss):
    closed = []

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            raise KeyboardInterrupt

    class Server(ss.TCPServer):
        def shutdown_request(self, request):
            closed.append(True)
            super().shutdown_request(request)

    server = Server(("127.0.0.1", 0), Handler)
    try:
        with socket.create_connection(server.server_address, IO_TIMEOUT):
            with pytest.raises(KeyboardInterrupt):
                server.handle_request()
    finally:
        server.server_close()
    assert closed == [True]


def test_several_servers_in_one_selector(ss):
    import selectors

    class Tag(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(str(self.server.server_address[1]).encode())

    servers = [ss.TCPServer(("127.0.0.1", 0), Tag) for _ in range(2)]
    try:
        with selectors.DefaultSelector() as sel:
            for s in servers:
                sel.register(s, selectors.EVENT_READ)
            for s in reversed(servers):
                with socket.create_connection(s.server_address, IO_TIMEOUT) as c:
                    (key, _), = sel.select(IO_TIMEOUT)
                    key.fileobj.handle_request()
                    assert recv_all(c) == str(s.server_address[1]).encode()
    finally:
        for s in servers:
            s.server_close()
