"""Reload as a transaction: new code from disk, no failed or stalled request, and a
bad reload that leaves the old generation serving.

The handler module is written to a directory on the workers' PYTHONPATH; a
version of it may block its own import on a "gate" (a Unix socket the test
answers only when it chooses), which stands in for an import that takes as long
as the test likes.
"""

import os
import signal
import socket
import threading

from .harness import Load, Running, Sampler, wait_for

MODULE = '''\
import os
import socketserver

VERSION = {version!r}
if {gated!r}:
    import socket
    with socket.socket(socket.AF_UNIX) as gate:  # the import waits for the test's "go"
        gate.connect({gate!r})
        gate.recv(2)
{extra}

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(f"{{VERSION}} {{os.getpid()}}\\n".encode())
'''


class App:
    """The handler module on disk, rewritten by the test between reloads, and its gate."""

    def __init__(self, directory, sockdir):
        self.dir = directory
        self.path = os.path.join(directory, "reloadable.py")
        self.gate = os.path.join(sockdir, "gate")
        self._opened = False
        self._waiting = []
        self._lock = threading.Lock()

    def write(self, version, gated=False, extra=""):
        with open(self.path, "w") as f:
            f.write(MODULE.format(version=version, gated=gated, gate=self.gate, extra=extra))

    def open_gate(self):
        """Let every import waiting on the gate, and every later one, go on."""
        with self._lock:
            self._opened = True
            waiting, self._waiting = self._waiting, []
        for conn in waiting:
            self._release(conn)

    def _release(self, conn):
        try:
            conn.sendall(b"go")
        except OSError:
            pass  # that worker is gone already
        conn.close()

    def _serve(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # the gate was closed
            with self._lock:
                if not self._opened:
                    self._waiting.append(conn)
                    continue
            self._release(conn)

    def __enter__(self):
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.bind(self.gate)
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        self._sock.close()
        self._thread.join(10)
        for conn in self._waiting:
            conn.close()
        os.unlink(self.gate)


def versions(load):
    return {a.split()[0] for a in load.answers}


def start(sockdir, tmp_path, *settings):
    return Running(sockdir, handler="reloadable:Handler", pythonpath=[str(tmp_path)],
                   settings=list(settings))


def test_reload_serves_the_code_now_on_disk_with_no_failed_request(sockdir, tmp_path):
    with App(str(tmp_path), sockdir) as app:
        app.write("v1")
        with start(sockdir, tmp_path, "workers=2") as m:
            with Load(m) as load:
                for n in range(2, 6):
                    app.write(f"v{n}")
                    m.signal(signal.SIGHUP)
                    m.expect("RELOADING=1")
                    m.expect("READY=1")
                    # An old worker may still finish a request it had taken.
                    wait_for(lambda n=n: m.request().split()[0] == f"v{n}".encode(),
                             f"v{n} to answer")
            assert load.errors == [] and load.ok > 0
            assert versions(load) <= {b"v1", b"v2", b"v3", b"v4", b"v5"}
            # Retired workers leave; the pool is generation 5 alone.
            m.wait_workers(lambda w: sorted(t.split(" gen ")[-1] for t in w.values()) == ["5", "5"],
                           "only generation 5")


def test_a_slow_import_does_not_stall_a_request(sockdir, tmp_path):
    with App(str(tmp_path), sockdir) as app:
        app.write("v1")
        with start(sockdir, tmp_path, "workers=2", "max_workers=3") as m:
            old = set(m.worker_pids())
            with Load(m) as load:
                app.write("v2", gated=True)
                m.signal(signal.SIGHUP)
                m.expect("RELOADING=1")
                # The new generation is stuck importing: the old one serves on.
                booting = m.wait_workers(lambda w: len(w) == 3, "a new worker importing")
                served_during = load.ok
                wait_for(lambda: load.ok > served_during + 20, "requests during the import")
                assert set(m.worker_pids()) >= old  # nothing retired yet
                assert len(booting) <= 3  # max_workers holds
                app.open_gate()
                m.expect("READY=1")
                wait_for(lambda: b"v2" in versions(load), "the new code answering")
            assert load.errors == []
            assert max(load.latencies) < 1.0, "a request stalled during the reload"
            m.wait_workers(lambda w: not old & set(w), "the old workers to leave")


def test_a_broken_module_abandons_the_reload_and_the_old_code_serves(sockdir, tmp_path):
    with App(str(tmp_path), sockdir) as app:
        app.write("v1")
        with start(sockdir, tmp_path, "workers=2") as m:
            old = m.worker_pids()
            with Load(m) as load:
                app.write("v2", extra="raise ImportError('the new code is broken')")
                m.signal(signal.SIGHUP)
                m.expect("RELOADING=1")
                status = m.expect("READY=1")
                assert "1 failed" in status
                assert m.request().split()[0] == b"v1"
            assert load.errors == [] and versions(load) == {b"v1"}
            # The abandoned generation's workers are killed; the old ones remain.
            m.wait_workers(lambda w: sorted(w) == old, "only the old workers")
            log = m.log()
            assert "abandoned" in log and "the new code is broken" in log
            # Fixed on disk, the next reload goes through.
            app.write("v3")
            m.signal(signal.SIGHUP)
            m.expect("RELOADING=1")
            m.expect("READY=1")
            wait_for(lambda: m.request().split()[0] == b"v3", "v3 to answer")


def test_a_syntax_error_is_a_failed_reload_too(sockdir, tmp_path):
    with App(str(tmp_path), sockdir) as app:
        app.write("v1")
        with start(sockdir, tmp_path, "workers=1") as m:
            with open(app.path, "a") as f:
                f.write("\ndef broken(:\n")
            m.signal(signal.SIGHUP)
            m.expect("RELOADING=1")
            m.expect("READY=1")
            assert "SyntaxError" in m.log()
            assert m.request().split()[0] == b"v1"


def test_hup_storm_coalesces_and_never_fails_a_request(sockdir, tmp_path):
    with App(str(tmp_path), sockdir) as app:
        app.write("v1")
        with start(sockdir, tmp_path, "workers=2", "max_workers=3") as m:
            with Load(m) as load, Sampler(m) as sampler:
                for _ in range(15):
                    m.signal(signal.SIGHUP)
                    m.expect("RELOADING=1")
                # READY=1 comes once no reload is under way or queued: the last one's
                # generation is the newest announced.
                ready = m.expect("READY=1\nSTATUS=2 workers ready, 0 booting, generation ")
                generation = ready.split(", generation ")[1].split(",")[0]
                announced = [int(x.split("reloading to generation ")[1].split(";")[0])
                             for x in m.messages if "reloading to generation " in x]
                assert int(generation) == max(announced)
            assert load.errors == [] and load.ok > 0
            assert sampler.most <= 3, "max_workers was exceeded during reloads"
            m.wait_workers(lambda w: {t.split(" gen ")[-1] for t in w.values()} == {generation},
                           f"only generation {generation}")
