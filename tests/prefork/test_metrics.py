"""A running master's metrics, readiness and liveness, read as Prometheus (its own
client library's parser), a load balancer and an operator read them."""

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from prefork.command.listeners import listen_metrics, open_metrics

from ..e2e.helpers import WSGI_APPS, free_port
from ..wsgi.helpers import open_gate, split_response
from .harness import HERE, ROOT, TIMEOUT, Running, wait_for


def serve(sockdir, *flags, app="wsgiapps:application", workers=2, server="tcp", ready=True):
    port = free_port()
    ctl = os.path.join(sockdir, "ctl")
    m = Running(sockdir, server=server, ready=ready, pythonpath=[WSGI_APPS],
                cli=["--control", ctl, "--metrics-bind", f"127.0.0.1:{port}",
                     "--workers", str(workers), *flags, app])
    m.ctl, m.port = ctl, port
    return m


def get(m, path, method="GET"):
    """(status, body) of *path* on the master's metrics listener."""
    conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=TIMEOUT)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def parse(text):
    """{(sample name, ((label, value), ...)): value}, as Prometheus's parser reads *text*."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(m):
    status, text = get(m, "/metrics")
    assert status == 200, text
    return parse(text)


def scrape_until(m, check, what):
    """The metrics, once check(metrics) holds."""
    def look():
        found = scrape(m)
        return found if check(found) else None
    return wait_for(look, what)


def value(found, name, **labels):
    return found[(name, tuple(sorted(labels.items())))]


def states(found):
    return {s: value(found, "prefork_workers", state=s)
            for s in ("booting", "idle", "busy", "retiring")}


def http_get(m, target):
    """A request on a connection of its own, closed after the answer: its response."""
    with socket.create_connection(m.address, timeout=TIMEOUT) as c:
        c.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return _answer(c)


def _answer(c):
    """The response on *c*, read until the server closes it."""
    data = b""
    while chunk := c.recv(65536):
        data += chunk
    return split_response(data)


def enter_gate(m, gate):
    """A /gate request in flight (a worker busy with it): its connection."""
    os.mkdir(gate)
    c = socket.create_connection(m.address, timeout=TIMEOUT)
    c.sendall(f"GET /gate?{gate} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    wait_for(lambda: os.path.exists(os.path.join(gate, "entered")), "the request in its worker")
    return c


def test_the_metrics_follow_the_pool_through_requests_a_reload_and_recycling(sockdir,
                                                                           tmp_path):
    with serve(sockdir, "--max-requests", "3") as m:
        found = scrape(m)
        assert states(found) == {"booting": 0, "idle": 2, "busy": 0, "retiring": 0}
        assert value(found, "prefork_worker_boot_seconds_count") == 2
        assert value(found, "prefork_generation") == 1
        assert value(found, "prefork_requests_total") == 0
        for pid in m.worker_pids():  # each worker's memory and CPU, by its pid
            mine = {k[0]: v for k, v in found.items() if ("pid", str(pid)) in k[1]}
            assert mine["prefork_worker_resident_bytes"] > 1_000_000
            assert mine["prefork_worker_cpu_seconds_total"] >= 0

        gates = [os.path.join(tmp_path, f"gate{i}") for i in range(2)]
        inflight = [enter_gate(m, g) for g in gates]
        try:
            assert states(scrape(m))["busy"] == 2
        finally:
            for gate in gates:
                open_gate(gate)
        for c in inflight:
            with c:
                assert _answer(c)[2] == b"passed the gate"
        # 3 a worker: past them a worker is recycled (once its replacement is ready).
        sent = 2
        while value(scrape(m), "prefork_worker_exits_total", reason="max_requests") < 2:
            assert sent < 1000, "no two workers recycled"
            assert http_get(m, "/")[0] == 200
            sent += 1
        found = scrape_until(m, lambda f: value(f, "prefork_requests_total") == sent,
                             "every request counted")  # the recycled ones' count stays
        assert value(found, "prefork_request_duration_seconds_count") == sent
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in found.items()
                         if k[0] == "prefork_request_duration_seconds_bucket")
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert buckets[-1] == (float("inf"), sent)
        assert value(found, "prefork_request_duration_seconds_sum") > 0

        before = m.worker_pids()
        m.signal(signal.SIGHUP)
        found = scrape_until(m, lambda f: value(
            f, "prefork_worker_exits_total", reason="reload") == 2, "the old generation gone")
        assert value(found, "prefork_reloads_total", result="ok") == 1
        assert value(found, "prefork_generation") == 2
        assert value(found, "prefork_requests_total") == sent
        assert not set(before) & set(m.worker_pids())

        # The same text through the control socket, for an operator's shell.
        out = subprocess.run([sys.executable, "-m", "prefork", "metrics", "--control", m.ctl],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True)
        assert value(parse(out.stdout), "prefork_reloads_total", result="ok") == 1


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_the_listen_queue_shows_connections_no_worker_takes(sockdir, kind):
    with serve(sockdir, server=kind) as m:
        listener = (f"127.0.0.1:{m.address[1]}" if kind == "tcp" else f"unix:{m.address}")
        depth = ("prefork_listen_queue", (("listener", listener),))
        assert scrape(m)[depth] == 0
        assert scrape(m)[("prefork_listen_queue_limit", (("listener", listener),))] == 2048
        workers = m.worker_pids()
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        family = socket.AF_INET if kind == "tcp" else socket.AF_UNIX
        waiting = []
        try:
            for _ in range(5):
                c = socket.socket(family, socket.SOCK_STREAM)
                c.connect(m.address)
                waiting.append(c)
            wait_for(lambda: scrape(m)[depth] == 5 or None, "5 connections queued")
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        for c in waiting:
            c.close()
        wait_for(lambda: scrape(m)[depth] == 0 or None, "the queue taken")


def test_scrapers_that_never_send_or_never_read_delay_no_reload_and_no_reap(sockdir):
    with serve(sockdir) as m:
        silent = socket.create_connection(("127.0.0.1", m.port), timeout=TIMEOUT)
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # takes a little, never more
        stuck.connect(("127.0.0.1", m.port))
        stuck.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            old = set(m.worker_pids())
            m.signal(signal.SIGHUP)
            m.expect("RELOADING=1")
            m.expect("READY=1")  # the reload is done
            new = m.wait_workers(lambda w: len(w) == 2 and not set(w) & old,
                                 "the old generation gone")
            victim = sorted(new)[0]
            os.kill(victim, signal.SIGKILL)
            m.wait_workers(lambda w: len(w) == 2 and victim not in w, "the killed worker replaced")
            # The silent one is still open in the master: nothing waited it out.  The
            # other has its answer coming, as fast as it reads (here: never).
            me = silent.getsockname()
            assert any(c.raddr and tuple(c.raddr) == me
                       for c in psutil.Process(m.pid).net_connections(kind="tcp"))
            assert stuck.recv(12, socket.MSG_PEEK) == b"HTTP/1.1 200"
            assert get(m, "/live")[0] == 200
        finally:
            silent.close()
            stuck.close()


def test_ready_follows_the_start_a_failed_reload_and_a_graceful_stop(sockdir, tmp_path):
    gate = os.path.join(tmp_path, "boot")
    os.mkdir(gate)
    os.mkfifo(os.path.join(gate, "boot"))
    holder = os.open(os.path.join(gate, "boot"), os.O_RDWR)  # the workers' boot waits on it
    try:
        m = serve(sockdir, app=f'wsgiapps:held("{gate}")', workers=1, ready=False)
    except BaseException:
        os.close(holder)
        raise
    with m:
        try:
            wait_for(lambda: _answers(m, "/live"), "the metrics listener")
            assert get(m, "/ready") == (503, "not ready\n")  # its one worker is booting
            assert states(scrape(m))["booting"] == 1
        finally:
            os.close(holder)
        m.expect("READY=1")
        assert get(m, "/ready") == (200, "ready\n")
        assert get(m, "/ready", "HEAD") == (200, "")
        assert get(m, "/nothing")[0] == 404
        with socket.create_connection(("127.0.0.1", m.port), timeout=TIMEOUT) as c:
            c.sendall(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            code, headers, _ = _answer(c)
        assert (code, headers["allow"]) == (405, "GET, HEAD")

        open(os.path.join(gate, "fail"), "w").close()  # the new generation cannot boot
        m.signal(signal.SIGHUP)
        m.expect("RELOADING=1")
        assert get(m, "/ready")[0] == 200  # the old generation serves meanwhile
        found = scrape_until(m, lambda f: value(
            f, "prefork_reloads_total", result="failed") == 1, "the reload failed")
        assert value(found, "prefork_worker_exits_total", reason="boot") == 1
        assert get(m, "/ready")[0] == 200
        os.unlink(os.path.join(gate, "fail"))

        request = enter_gate(m, os.path.join(tmp_path, "inflight"))
        try:
            m.signal(signal.SIGTERM)
            wait_for(lambda: get(m, "/ready")[0] == 503 or None, "/ready 503 while stopping")
            assert get(m, "/live")[0] == 200
            assert states(scrape(m))["retiring"] == 1
        finally:
            open_gate(os.path.join(tmp_path, "inflight"))
        with request:
            assert _answer(request)[:1] == (200,)  # the request in flight was answered
        assert m.wait_exit() == 0


def _answers(m, path):
    try:
        return get(m, path)[0] == 200
    except OSError:
        return False


def test_the_documented_commands_run_as_written(tmp_path):
    """docs/observe.rst's three commands, as an operator would type them."""
    with open(os.path.join(ROOT, "docs", "observe.rst")) as f:
        text = f.read()
    block = text.split("``/ready`` and ``/live``::\n\n", 1)[1].split("\n\n", 1)[0]
    serve_line, curl_line, metrics_line = [line.strip() for line in block.splitlines()]
    (tmp_path / "app.py").write_text("from apps import Probe as Handler\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), HERE, ROOT]))
    bin_dir = os.path.dirname(sys.executable)  # where pip put the prefork command
    env["PATH"] = bin_dir + os.pathsep + env["PATH"]
    master = subprocess.Popen(shlex.split(serve_line), cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / "ctl.sock").exists() or master.poll() is not None,
                 "the control socket")
        curl = wait_for(lambda: (r := subprocess.run(
            curl_line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=TIMEOUT)).stdout and r, "metrics over HTTP")
        assert value(parse(curl.stdout), "prefork_workers_wanted") == 4
        shown = subprocess.run(shlex.split(metrics_line), cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=TIMEOUT, check=True)
        assert value(parse(shown.stdout), "prefork_workers", state="booting") + value(
            parse(shown.stdout), "prefork_workers", state="idle") == 4
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        _, err = master.communicate(timeout=TIMEOUT)
    assert master.returncode == 0, err
    assert not (tmp_path / "ctl.sock").exists()


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed (Debian package tmux)")
def test_prefork_top_in_a_real_terminal(sockdir, tmp_path):
    """`prefork top` in tmux's 80x24 terminal: the pool, a worker in a request (which,
    for how long), refreshed; q quits and gives the terminal back."""
    tmux = ["tmux", "-L", f"prefork-top-{os.getpid()}"]  # a server of the test's own
    with serve(sockdir) as m:
        def screen_with(text):
            """The terminal's screen, once it shows *text*."""
            def look():
                seen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"],
                                      capture_output=True, text=True, timeout=TIMEOUT).stdout
                return seen if text in seen else None
            return wait_for(look, f"{text!r} on the screen")

        subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "80", "-y", "24",
                        shlex.join([sys.executable, "-m", "prefork", "top", "--control",
                                    m.ctl])], check=True, timeout=TIMEOUT)
        try:
            first = screen_with("REQUEST")
            assert f"master {m.pid}  up " in first
            for pid in m.worker_pids():
                assert re.search(rf"^\s+\d+\s+{pid}\s+1 idle\s", first, re.M), first
            gate = os.path.join(tmp_path, "gate")
            with enter_gate(m, gate) as request:
                try:
                    busy = screen_with("GET /gate?")  # the request line, cut at 80 columns
                    line = next(x for x in busy.splitlines() if "GET /gate" in x)
                    assert " busy " in line and re.search(r"\d+(ms|\.\ds)\s+GET", line), line
                    assert "busy 1/2" in busy
                    assert max(len(x) for x in busy.splitlines()) <= 80
                finally:
                    open_gate(gate)
                assert _answer(request)[0] == 200
            subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True, timeout=TIMEOUT)
            wait_for(lambda: subprocess.run([*tmux, "has-session", "-t", "top"],
                                            capture_output=True).returncode != 0 or None,
                     "top to quit at q")
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_the_grafana_dashboard_asks_only_for_metrics_the_master_serves(sockdir):
    with open(os.path.join(ROOT, "docs", "deploy", "grafana-dashboard.json")) as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= len(dashboard["panels"]) >= 8
    asked = {re.sub(r"_(bucket|sum|count)$", "", name)
             for e in exprs for name in re.findall(r"\bprefork_\w+", e)}
    with serve(sockdir) as m:
        status, text = get(m, "/metrics")
    served = {family.name for family in text_string_to_metric_families(text)}
    # prometheus_client names a counter's family without its _total
    served |= {f"{name}_total" for name in served}
    assert asked <= served, asked - served
    assert {"prefork_requests_total", "prefork_request_duration_seconds",
            "prefork_listen_queue", "prefork_workers"} <= asked


def test_in_an_upgrade_the_new_metrics_socket_takes_every_new_connection():
    """The port's SO_REUSEPORT group through two upgrades: the new master's socket,
    bound beside the old one's, gets nothing before it listens and everything after
    (so none lands in the old one's queue as it closes), then alone, then hands the
    port on the same way."""
    def accepted(sock):
        n = 0
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1

    def connect(port, n):
        for _ in range(n):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()

    old = open_metrics("127.0.0.1:0")
    port = old.getsockname()[1]
    new = newer = None
    try:
        new = open_metrics(f"127.0.0.1:{port}", listen=False)
        for sock in (old, new):
            sock.setblocking(False)
        connect(port, 20)
        assert accepted(old) == 20  # booting: not listening yet
        assert not new.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        listen_metrics(new)  # it takes over
        connect(port, 40)
        assert (accepted(old), accepted(new)) == (0, 40)
        old.close()  # the old master hands over
        connect(port, 10)
        assert accepted(new) == 10
        newer = open_metrics(f"127.0.0.1:{port}", listen=False)  # the next upgrade
        newer.setblocking(False)
        listen_metrics(newer)
        connect(port, 40)
        assert (accepted(new), accepted(newer)) == (0, 40)
    finally:
        for sock in (old, new, newer):
            if sock is not None:
                sock.close()


def test_a_second_master_on_the_same_metrics_port_is_refused(sockdir):
    # SO_REUSEPORT lets a new master of an upgrade join the old one's socket; an
    # unrelated master must not, or probes would reach either at random.
    with serve(sockdir) as m:
        spec = f"127.0.0.1:{m.port}"
        other = subprocess.run(
            [sys.executable, "-m", "prefork", "serve", "--bind", "127.0.0.1:0",
             "--metrics-bind", spec, "wsgiapps:application"],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([WSGI_APPS, ROOT])),
            cwd=sockdir, capture_output=True, text=True, timeout=TIMEOUT)
        assert other.returncode == 1
        assert other.stderr.strip().splitlines() == [
            f"prefork: error: --metrics-bind {spec}: the address is in use by another "
            "process; stop it or choose another --metrics-bind"]
        assert get(m, "/ready")[0] == 200


def test_a_connection_that_carries_no_request_is_not_counted_as_one(sockdir):
    # A keep-alive client that leaves after its request, and TCP checks that connect and
    # close: neither is a request served, nor a duration in the histogram.
    from ..wsgi.helpers import Client
    with serve(sockdir, workers=1) as m:
        kept = Client(m.address)
        assert kept.get()[0] == 200
        wait_for(lambda: json.loads(subprocess.run(
            [sys.executable, "-m", "prefork", "status", "--json", "--control", m.ctl],
            capture_output=True, text=True, timeout=TIMEOUT).stdout)["idle_connections"]
            ["held"] == 1 or None, "the kept connection held by the master")
        kept.close()  # the master hands its end-of-file to the worker
        for _ in range(3):
            socket.create_connection(m.address, timeout=TIMEOUT).close()
        assert http_get(m, "/")[0] == 200  # behind the three, in the one worker's queue
        found = scrape_until(m, lambda f: states(f)["busy"] == 0 and value(
            f, "prefork_idle_connections") == 0, "the worker idle, nothing held")
        assert value(found, "prefork_requests_total") == 2
        assert value(found, "prefork_request_duration_seconds_count") == 2


def test_idle_connections_to_the_metrics_port_never_keep_a_probe_out(sockdir):
    # 40 connections that send nothing, more than are served at once: /live and /ready
    # still answer, each at once, and the silent ones are the ones let go.
    from prefork.scrape import MAX_CLIENTS
    with serve(sockdir) as m:
        idle = [socket.create_connection(("127.0.0.1", m.port), timeout=TIMEOUT)
                for _ in range(MAX_CLIENTS + 8)]
        try:
            for _ in range(3):
                assert get(m, "/live") == (200, "live\n")
                assert get(m, "/ready")[0] == 200
        finally:
            for c in idle:
                c.close()
