"""Persistent connections in real pools: a worker answers, hands the idle connection
to the master, and any free worker serves the next request on it.  Real masters,
workers and sockets; the master's own account (`prefork status`) says what it holds."""

import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time

import psutil
import pytest

from prefork.command.client import ask

from ..prefork.harness import ROOT, Running, wait_for
from .helpers import TIMEOUT, Client, open_gate, pid_of, request

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def clients():
    made = []

    def make(address, n=1):
        new = [Client(address) for _ in range(n)]
        made.extend(new)
        return new if n > 1 else new[0]
    yield make
    for c in made:
        c.close()


def serve(sockdir, *flags, workers=2, app="wsgiapps:application"):
    ctl = os.path.join(sockdir, "ctl")
    m = Running(sockdir, cli=["--control", ctl, "--workers", str(workers), *flags, app],
                pythonpath=[HERE])
    m.ctl = ctl
    return m


def idle(m):
    """The master's account of idle connections (`prefork status --json`)."""
    return ask(m.ctl, {"cmd": "status"})["idle_connections"]


def held(m, n):
    return wait_for(lambda: idle(m)["held"] == n or None, f"{n} idle connections held")


def holders(pid, client):
    """Whether process *pid* holds the server's end of *client*'s connection."""
    me = client.sock.getsockname()
    return any(c.raddr and tuple(c.raddr) == me
               for c in psutil.Process(pid).net_connections(kind="tcp"))


def test_a_connection_carries_many_requests_and_idles_in_the_master(sockdir, clients):
    with serve(sockdir) as m:
        c = clients(m.address)
        pids = set()
        for _ in range(6):
            status, fields, body = c.get()
            assert status == 200 and "connection" not in fields  # HTTP/1.1: it persists
            pids.add(pid_of(body))
        assert pids <= set(m.workers())
        held(m, 1)
        # Between requests the connection is the master's alone: no worker holds it.
        assert holders(m.pid, c)
        assert not any(holders(pid, c) for pid in m.workers())


def test_idle_clients_pin_no_worker(sockdir, clients):
    with serve(sockdir) as m:
        idle_ones = clients(m.address, 64)
        for c in idle_ones:
            assert c.get()[0] == 200
        held(m, 64)
        # Both workers are free: a new client is answered at once, where a server that
        # waits on its idle clients (one per worker) would leave it waiting.
        newcomer = clients(m.address)
        newcomer.sock.settimeout(5)
        status, fields, _ = newcomer.get(headers=["Connection: close"])
        assert status == 200 and fields["connection"] == "close"
        assert newcomer.closed_by_server()
        # And every idle client can go on.
        for c in idle_ones:
            assert c.get()[0] == 200
        assert idle(m)["passed"] >= 64


def test_an_idle_connection_is_closed_after_keepalive_timeout(sockdir, clients):
    with serve(sockdir, "--keepalive-timeout", "0.3") as m:
        c = clients(m.address)
        assert c.get()[0] == 200
        assert c.closed_by_server()
        counts = idle(m)
        assert counts["held"] == 0 and counts["timed_out"] == 1


def test_past_max_idle_connections_the_longest_idle_is_closed(sockdir, clients):
    with serve(sockdir, "--max-idle-connections", "3") as m:
        cs = clients(m.address, 5)
        for i, c in enumerate(cs):
            assert c.get()[0] == 200
            wait_for(lambda n=i + 1: idle(m)["taken_back"] == n or None, "the hand-back")
        assert cs[0].closed_by_server() and cs[1].closed_by_server()
        for c in cs[2:]:
            assert c.get()[0] == 200
        assert idle(m)["over_limit"] == 2


def test_keepalive_timeout_0_closes_each_connection(sockdir, clients):
    with serve(sockdir, "--keepalive-timeout", "0") as m:
        c = clients(m.address)
        status, fields, _ = c.get()
        assert status == 200 and fields["connection"] == "close"
        assert c.closed_by_server()
        assert idle(m)["taken_back"] == 0


@pytest.mark.parametrize("version, asks, persists, says", [
    ("HTTP/1.1", None, True, None),
    ("HTTP/1.1", "close", False, "close"),
    ("HTTP/1.1", "Keep-Alive, Close", False, "close"),
    ("HTTP/1.0", None, False, "close"),
    ("HTTP/1.0", "keep-alive", True, "keep-alive"),
])
def test_the_client_decides_whether_its_connection_persists(sockdir, clients, version, asks,
                                                            persists, says):
    with serve(sockdir) as m:
        c = clients(m.address)
        headers = [f"Connection: {asks}"] if asks else []
        status, fields, _ = c.get(headers=headers, version=version)
        assert status == 200 and fields.get("connection") == says
        if persists:
            assert c.get(headers=headers, version=version)[0] == 200
        else:
            assert c.closed_by_server()


def test_pipelined_requests_are_answered_in_order_by_one_worker(sockdir, clients):
    with serve(sockdir) as m:
        c = clients(m.address)
        c.sock.sendall(request("/echo", "POST", body=b"first") + request("/")
                       + request("/echo", "POST", body=b"third")
                       + request("/echo", "POST", headers=["Transfer-Encoding: chunked"])[:-4]
                       + b"\r\n\r\n6\r\nfourth\r\n0\r\n\r\n")
        answers = [c.response() for _ in range(4)]
        assert [a[0] for a in answers] == [200] * 4
        assert answers[0][2] == b"first" and answers[2][2] == b"third"
        assert answers[3][2] == b"fourth"
        assert answers[1][2].startswith(b"hello from ")
        assert c.get()[0] == 200  # and the connection goes on


def test_a_request_pipelined_right_after_a_chunked_body_is_answered(sockdir, clients):
    with serve(sockdir) as m:
        c = clients(m.address)
        chunked = request("/echo", "POST", headers=["Transfer-Encoding: chunked"])
        c.sock.sendall(chunked + b"3\r\nabc\r\n0\r\n\r\n" + request("/after"))
        first, second = c.response(), c.response()
        assert first[:1] == second[:1] == (200,) and first[2] == b"abc"
        assert "connection" not in first[1] and second[2].startswith(b"hello from ")
        # Its last CRLF CRLF split over two sends, with trailers: the same.
        c.sock.sendall(chunked + b"2\r\nde\r\n0\r\nX-T: 1\r\n\r")
        c.sock.sendall(b"\n" + request("/after"))
        assert c.response()[2] == b"de" and c.response()[0] == 200
        assert c.get()[0] == 200


def test_empty_lines_after_a_request_leave_the_connection_idle_in_the_master(sockdir,
                                                                            clients):
    # RFC 9112 2.2: a CRLF after a body (old clients send one) is no request begun: the
    # connection goes to the master like any other, and no worker waits on it.
    with serve(sockdir, workers=1) as m:
        first, second = clients(m.address, 2)
        for c in (first, second):
            c.sock.sendall(request("/echo", "POST", body=b"hello") + b"\r\n")
            assert c.response()[2] == b"hello"
        held(m, 2)
        assert clients(m.address).get()[0] == 200  # the one worker is free
        for c in (first, second):
            assert c.get()[0] == 200


def test_a_request_that_did_not_come_whole_is_read_on(sockdir, clients):
    with serve(sockdir) as m:
        c = clients(m.address)
        whole = request("/echo", "POST", body=b"x" * 1000)
        c.sock.sendall(whole[:20])
        c.sock.sendall(whole[20:])
        assert c.response()[2] == b"x" * 1000
        assert c.get()[0] == 200


def test_clients_that_close_while_idle_or_vanish_mid_request(sockdir, clients):
    with serve(sockdir) as m:
        workers = set(m.workers())
        leaving = clients(m.address)
        assert leaving.get()[0] == 200
        held(m, 1)
        leaving.close()
        wait_for(lambda: idle(m)["closed_by_client"] == 1 or None, "the close seen")
        assert idle(m)["held"] == 0
        # Mid-head, and mid-body with a reset: the worker gives up on them, and serves on.
        half_head, half_body = clients(m.address, 2)
        for c in (half_head, half_body):
            assert c.get()[0] == 200
        half_head.send()
        half_head.sock.sendall(b"GET /next HTTP/1.1\r\nHost: te")
        half_head.response()
        half_head.close()
        half_body.sock.sendall(request("/echo", "POST", body=b"y" * 100)[:-60])
        half_body.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        half_body.close()
        c = clients(m.address)
        for _ in range(4):
            assert c.get()[0] == 200
        assert set(m.workers()) == workers  # none died or was replaced
        assert "Traceback" not in m.log()


def test_idle_connections_live_through_a_reload(sockdir, clients):
    with serve(sockdir) as m:
        cs = clients(m.address, 8)
        for c in cs:
            assert c.get()[0] == 200
        held(m, 8)
        old = set(m.workers())
        m.signal(signal.SIGHUP)
        m.expect("RELOADING=1")
        m.expect("READY=1")
        new = m.wait_workers(lambda w: w and not set(w) & old, "the old generation gone")
        for c in cs:
            status, _, body = c.get()
            assert status == 200 and pid_of(body) in new


def test_a_connection_outlives_the_workers_that_served_it(sockdir, clients):
    with serve(sockdir, "--max-requests", "1") as m:
        c = clients(m.address)
        pids = []
        # Each worker is due after one request, and goes once its replacement is ready.
        deadline = time.monotonic() + 30
        while len(set(pids)) < 4 and len(pids) < 5000 and time.monotonic() < deadline:
            pids.append(pid_of(c.get()[2]))
        assert len(set(pids)) >= 4
        first = pids[0]
        wait_for(lambda: first not in m.workers() or None, "the first worker gone")
        assert c.get()[0] == 200  # the connection goes on


def test_a_graceful_stop_finishes_the_request_in_flight_then_closes(sockdir, clients,
                                                                    tmp_path):
    with serve(sockdir) as m:
        idle_one, busy = clients(m.address, 2)
        assert idle_one.get()[0] == 200
        assert busy.get()[0] == 200
        held(m, 2)
        busy.send(f"/gate?{tmp_path}")
        wait_for(lambda: (tmp_path / "entered").exists() or None, "the request in flight")
        m.signal(signal.SIGTERM)
        assert idle_one.closed_by_server()  # idle: closed at once
        open_gate(tmp_path)
        status, _, body = busy.response()
        assert (status, body) == (200, b"passed the gate")
        assert busy.closed_by_server()
        assert m.wait_exit() == 0


def test_a_socketserver_handler_keeps_its_connections_through_the_hook(sockdir):
    with Running(sockdir, handler="apps:KeptLines", settings=["workers=2"]) as m:
        conns = [socket.create_connection(m.address, timeout=TIMEOUT) for _ in range(20)]
        try:
            for i, c in enumerate(conns):
                c.sendall(b"line %d\n" % i)
                assert c.recv(100).startswith(b"line %d from " % i)
            # 20 idle connections and 2 workers: a new one is served all the same.
            assert m.request(b"bye").startswith(b"bye from ")
            for i, c in enumerate(conns):
                c.sendall(b"again %d\n" % i)
                assert c.recv(100).startswith(b"again %d from " % i)
        finally:
            for c in conns:
                c.close()


def test_while_all_are_busy_a_worker_keeps_a_connection_until_a_request_runs_long(
        sockdir, clients, tmp_path):
    gates = [tmp_path / "one", tmp_path / "two"]
    for gate in gates:
        gate.mkdir()
    with serve(sockdir) as m:
        blocker, kept, slow = clients(m.address, 3)
        blocker.send(f"/gate?{gates[0]}")  # one worker busy until the first gate opens
        wait_for(lambda: (gates[0] / "entered").exists() or None, "the first worker busy")
        status, _, body = kept.get()
        other = pid_of(body)
        # The worker that answered keeps the connection, and takes a request that runs
        # long (the only worker free to take it): the watch thread must let go of it.
        slow.send(f"/gate?{gates[1]}")
        wait_for(lambda: (gates[1] / "entered").exists() or None, "the second worker busy")
        open_gate(gates[0])
        assert blocker.response()[2] == b"passed the gate"
        # The kept connection's next request is served by the worker now free, while the
        # one that kept it is still in its long request.
        status, _, body = kept.get()
        assert status == 200 and pid_of(body) != other
        assert not (gates[1] / "go").exists()
        open_gate(gates[1])
        assert slow.response()[2] == b"passed the gate"


def test_a_busy_worker_gives_the_master_a_connection_kept_idle_for_a_second(
        sockdir, clients):
    with serve(sockdir, workers=1) as m:
        quiet, busy = clients(m.address, 2)
        assert _given_back_alone(m, quiet, busy)
        assert quiet.get()[0] == 200  # passed to the worker when its next request comes


def _given_back_alone(m, quiet, busy, attempts=5):
    """Whether the worker gives the master *quiet*, a connection it kept, while it
    never rests (*busy*'s requests follow each other): only its age (HOLD_SECONDS,
    1 s) sends it, alone.  A rest of the worker (a slow machine between two requests)
    sends both, and the attempt is made again."""
    for _ in range(attempts):
        assert quiet.get()[0] == 200  # the worker that answers keeps it
        before = idle(m)["taken_back"]
        deadline = time.monotonic() + 10
        for _ in range(100_000):
            assert busy.get()[0] == 200 and time.monotonic() < deadline
            counts = idle(m)
            if counts["taken_back"] > before:
                break
        if counts["taken_back"] == before + 1 and counts["held"] == 1:
            return holders(m.pid, quiet)
    return False


def test_prefork_status_shows_the_idle_connections_held(sockdir, clients):
    with serve(sockdir) as m:
        for c in clients(m.address, 3):
            assert c.get()[0] == 200
        held(m, 3)
        out = subprocess.run([sys.executable, "-m", "prefork", "status", "--control", m.ctl],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True,
                             env=dict(os.environ, PYTHONPATH=ROOT)).stdout
        assert "idle connections: 3 held by the master (at most 1000, 75s each)" in out


def test_the_master_raises_its_open_file_limit_for_the_idle_connections(sockdir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4024:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # systemd's default soft one
    try:
        with serve(sockdir, "--max-idle-connections", "3000") as m:
            with open(f"/proc/{m.pid}/limits") as f:
                line = next(line for line in f if line.startswith("Max open files"))
            assert line.split()[3] == "4024"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connections_go_out_without_waiting_for_delayed_acks(sockdir):
    # The master sets TCP_NODELAY on the listening socket (this test's own, shared), and
    # every connection inherits it: pipelined answers are not held back by Nagle.
    with serve(sockdir) as m:
        assert m.listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
