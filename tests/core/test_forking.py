"""ForkingMixIn with real forks: a child per request, reaping, limits, closing.

Most tests drive the server with handle_request() from the test's only thread, so
that no fork happens while other threads run.  Clients live in this process too, so
every child inherits a copy of the client sockets open at its fork: a child can never
wait for a client's EOF, so clients say ``bye`` instead of closing.
"""

import contextlib
import os
import socket
import subprocess
import sys
import threading

import psutil
import pytest

from .helpers import FORKS_FROM_A_THREAD, IO_TIMEOUT, close_server, recv_all, serving


def forking(ss, base):
    return type("Forking" + base.__name__, (ss.ForkingMixIn, base), {})


def wait_exited(pid):
    """Block until child *pid* has exited, without reaping it (it may be reaped meanwhile)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        pass  # reaped already: exited all the more


def reap(pid):
    """Wait for child *pid* and return its exit code."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def stream_client(address, family=socket.AF_INET):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(IO_TIMEOUT)
    try:
        sock.connect(address)
        yield sock
    finally:
        sock.close()


def test_each_request_runs_in_a_child_process(ss, kind):
    class Pid(kind.handler_base(ss)):
        def handle(self):
            self.rfile.read()
            self.wfile.write(str(os.getpid()).encode())

    server = forking(ss, kind.server_class(ss))(kind.address(), Pid)
    pids = set()
    try:
        for _ in range(3):
            with kind.client() as c:
                if kind.stream:
                    c.connect(server.server_address)
                    c.sendall(b"who")
                    c.shutdown(socket.SHUT_WR)
                else:
                    c.sendto(b"who", server.server_address)
                server.handle_request()
                pid = int(c.recv(64))
            assert pid != os.getpid()
            assert pid in server.active_children
            pids.add(pid)
    finally:
        close_server(server)  # block_on_close: waits for and reaps every child
    assert len(pids) == 3
    assert not server.active_children


def test_exit_status_and_the_child_never_returns(ss):
    parent = os.getpid()

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            what = self.rfile.readline().strip()
            if what == b"raise":
                raise ValueError("handler failed")
            if what == b"exit":
                raise SystemExit(0)  # not an Exception: must still end in the child

    server = forking(ss, ss.TCPServer)((("127.0.0.1", 0)), Handler)
    server.handle_error = lambda request, client_address: None  # keep the child's stderr quiet
    statuses = {}
    try:
        for what in (b"ok", b"raise", b"exit"):
            with stream_client(server.server_address) as c:
                c.sendall(what + b"\n")
                server.handle_request()
                if os.getpid() != parent:
                    os._exit(99)  # a child came back up the parent's stack
                (pid,) = server.active_children
                statuses[what] = reap(pid)
                server.active_children.discard(pid)
    finally:
        close_server(server)
    assert statuses == {b"ok": 0, b"raise": 1, b"exit": 1}


def test_handle_error_runs_in_the_child(ss, capfd):
    class Handler(ss.BaseRequestHandler):
        def handle(self):
            raise RuntimeError(f"raised in {os.getpid()}")

    server = forking(ss, ss.TCPServer)(("127.0.0.1", 0), Handler)
    try:
        with stream_client(server.server_address) as c:
            server.handle_request()
            (pid,) = server.active_children
            assert recv_all(c) == b""
    finally:
        close_server(server)
    err = capfd.readouterr().err
    assert f"RuntimeError: raised in {pid}" in err


@FORKS_FROM_A_THREAD
def test_service_actions_reaps_zombies(ss):
    turns = threading.Condition()
    count = [0]

    class Server(forking(ss, ss.TCPServer)):
        def service_actions(self):
            super().service_actions()
            with turns:
                count[0] += 1
                turns.notify_all()

    class Pid(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(str(os.getpid()).encode())

    server = Server(("127.0.0.1", 0), Pid)
    with serving(server, poll_interval=0.01):
        with stream_client(server.server_address) as c:
            pid = int(recv_all(c))
        wait_exited(pid)
        with turns:
            # Two more turns: the one under way may have started before the exit.
            target = count[0] + 2
            assert turns.wait_for(lambda: count[0] >= target, IO_TIMEOUT)
        assert pid not in server.active_children
        assert not psutil.pid_exists(pid) or psutil.Process(pid).ppid() != os.getpid()


def test_handle_timeout_reaps_zombies(ss):
    class Pid(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(str(os.getpid()).encode())

    class Server(forking(ss, ss.TCPServer)):
        timeout = 0.001

    server = Server(("127.0.0.1", 0), Pid)
    try:
        with stream_client(server.server_address) as c:
            server.handle_request()
            pid = int(recv_all(c))
        wait_exited(pid)
        server.handle_request()  # nothing comes: handle_timeout() collects the child
        assert pid not in server.active_children
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    finally:
        close_server(server)


@FORKS_FROM_A_THREAD
def test_max_children_bounds_live_children(ss):
    me = psutil.Process()
    live_at_fork = []

    class Held(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"started")
            self.rfile.readline()  # until the client says bye

    class Server(forking(ss, ss.TCPServer)):
        max_children = 2

        def process_request(self, request, client_address):
            live_at_fork.append(sum(c.status() != psutil.STATUS_ZOMBIE for c in me.children()))
            super().process_request(request, client_address)

    with serving(Server(("127.0.0.1", 0), Held), poll_interval=0.01) as server:
        clients = []
        try:
            for _ in range(2):
                clients.append(socket.create_connection(server.server_address, IO_TIMEOUT))
                assert clients[-1].recv(7) == b"started"
            # At the cap, the server waits for a child before it takes this one.
            clients.append(socket.create_connection(server.server_address, IO_TIMEOUT))
            first = clients.pop(0)
            first.sendall(b"bye\n")
            first.close()
            assert clients[-1].recv(7) == b"started"
        finally:
            for c in clients:
                c.sendall(b"bye\n")
                c.close()
    assert len(live_at_fork) == 3
    assert max(live_at_fork) < Server.max_children


@pytest.mark.parametrize("block", [True, False])
def test_block_on_close(ss, block):
    class Held(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(str(os.getpid()).encode() + b"\n")
            self.rfile.readline()  # until the client says bye

    class Server(forking(ss, ss.TCPServer)):
        block_on_close = block

    server = Server(("127.0.0.1", 0), Held)
    seen = {}
    with stream_client(server.server_address) as c:
        server.handle_request()
        pid = int(c.makefile("rb").readline())

        def close():
            server.server_close()
            seen["child alive after close"] = psutil.pid_exists(pid) and \
                psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

        closer = threading.Thread(target=close)
        closer.start()
        if not block:
            closer.join(IO_TIMEOUT)  # returns while the child still serves
        c.sendall(b"bye\n")
    closer.join(IO_TIMEOUT)
    assert not closer.is_alive()
    if block:
        assert seen == {"child alive after close": False}
        assert not server.active_children
    else:
        assert seen == {"child alive after close": True}
        assert reap(pid) == 0


def test_collect_children_blocking_waits_for_all(ss):
    class Quick(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"x")

    server = forking(ss, ss.TCPServer)(("127.0.0.1", 0), Quick)
    try:
        for _ in range(3):
            with stream_client(server.server_address) as c:
                server.handle_request()
                assert recv_all(c) == b"x"
        assert len(server.active_children) == 3
        server.collect_children(blocking=True)
        assert not server.active_children
    finally:
        close_server(server)


def test_collect_children_tolerates_children_reaped_elsewhere(ss):
    class Quick(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"x")

    server = forking(ss, ss.TCPServer)(("127.0.0.1", 0), Quick)
    try:
        with stream_client(server.server_address) as c:
            server.handle_request()
            recv_all(c)
        (pid,) = server.active_children
        assert reap(pid) == 0  # someone else reaps it first
        server.collect_children()
        assert not server.active_children
    finally:
        close_server(server)


PRINTING_SERVER = """
import socket, core

class Handler(core.BaseRequestHandler):
    def handle(self):
        print("handled")

print("serving")  # buffered: stdout is a pipe
with core.ForkingTCPServer(("127.0.0.1", 0), Handler) as server:
    for _ in range(3):
        with socket.create_connection(server.server_address):
            server.handle_request()
"""


def test_what_the_server_printed_is_written_once_and_what_children_print_too():
    # Every child writes what it prints before it exits; the bytes the parent had not
    # yet written are written before each fork, so no child writes them again.  (The
    # stdlib's children write neither: "handled" is lost there.)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", PRINTING_SERVER], env=env, timeout=60,
                         capture_output=True, text=True, check=True).stdout
    assert sorted(out.split()) == ["handled"] * 3 + ["serving"]
