"""The zero-downtime upgrade (SIGUSR2): a new master image takes over the sockets.

The new master is started by the old one and outlives it, so these tests make
themselves a child subreaper: the orphaned new master becomes the test's child,
which the test stops and reaps (and the leak check would see if it did not).
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import threading

import psutil

from ..prefork.harness import ROOT, Load, Running, descendants, wait_for
from .helpers import (
    WSGI_APPS,
    HttpLoad,
    NewMaster,
    Nginx,
    free_port,
    needs_nginx,
    subreaper,
    upgrade,
)


def prefork(*args, cwd):
    return subprocess.run([sys.executable, "-m", "prefork", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=20,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def test_usr2_hands_over_to_a_new_master_without_a_failed_request(sockdir):
    pidfile = os.path.join(sockdir, "m.pid")
    new = None
    with subreaper(), Running(sockdir, cli=["--pidfile", pidfile, "--workers", "2",
                                            "apps:Probe"],
                              env={"WATCHDOG_USEC": "400000"}) as m:
        try:
            old_workers = set(m.worker_pids())
            slow = threading.Thread(target=lambda: answers.append(m.request(b"sleep 1.5")))
            answers = []
            with Load(m, max_seconds=30) as load:
                wait_for(lambda: load.ok > 20, "requests before the upgrade")
                # An old worker takes this at once and is busy with it for 1.5 s, while the
                # new master boots (a new interpreter: longer than a connect) and takes over.
                slow.start()
                new = upgrade(m)
                old = psutil.Process(m.pid)
                cpu = sum(old.cpu_times()[:2])
                slow.join(0.5)  # a measuring window: the old master waits for that worker
                # ...asleep in poll(), not spinning (at most a few turns of its loop).
                assert sum(old.cpu_times()[:2]) - cpu < 0.1
                slow.join(10)
                assert answers and int(answers[0]) in old_workers
                assert m.wait_exit() == 0  # the old master retired its workers and left
                new_workers = set(new.workers())
                assert len(new_workers) == 2 and not new_workers & old_workers
                wait_for(lambda n=load.ok: load.ok > n + 50, "requests after the upgrade")
            assert load.errors == []
            served_by = {int(a) for a in load.answers}
            assert served_by & old_workers and served_by & new_workers
            # systemd keeps hearing from the service: the new master feeds the watchdog.
            m.expect("WATCHDOG=1")
            assert m.senders[-1] == new.pid
            log = m.log()
            assert log.index(f"master {new.pid} takes over") < log.index("retiring the workers")
            # The pidfile and the control socket follow the new master.
            with open(pidfile) as f:
                assert int(f.read()) == new.pid
            status = prefork("status", "--pidfile", pidfile, cwd=sockdir)
            assert status.returncode == 0 and f"master {new.pid}" in status.stdout
            assert new.stop() == 0
        finally:
            if new:
                new.stop()
    assert not os.path.exists(pidfile) and not os.path.exists(pidfile + ".ctl")


def test_a_new_image_that_fails_leaves_the_old_master_serving(sockdir, tmp_path):
    app = tmp_path / "shopapp.py"
    app.write_text("from apps import Probe as Handler\n")
    pidfile = os.path.join(sockdir, "m.pid")
    new = None
    with subreaper(), Running(sockdir, cli=["--pidfile", pidfile, "--workers", "2",
                                            "--boot-timeout", "1", "shopapp:Handler"],
                              pythonpath=[str(tmp_path)]) as m:
        try:
            old_workers = m.worker_pids()
            app.write_text("this is not python(\n")  # a bad deploy
            failed = prefork("upgrade", "--pidfile", pidfile, cwd=sockdir)
            assert failed.returncode == 1 and failed.stderr.count("\n") == 1
            assert failed.stderr.startswith("prefork: error: upgrade failed: cannot import "
                                            "handler module 'shopapp': SyntaxError")
            assert f"master {m.pid} keeps serving" in failed.stderr
            msg = m.expect("upgrade failed")
            assert "SyntaxError" in msg and "cannot import handler module 'shopapp'" in msg
            assert f"upgrade abandoned, master {m.pid} keeps serving" in m.log()
            assert int(m.request()) in old_workers
            with open(pidfile) as f:
                assert int(f.read()) == m.pid
            status = prefork("status", "--pidfile", pidfile, cwd=sockdir)
            assert f"master {m.pid}" in status.stdout
            # A deploy whose module waits forever at import: the new image gives up at
            # boot_timeout, and says so.
            app.write_text("import threading\nthreading.Event().wait()\n")
            m.signal(signal.SIGUSR2)
            msg = m.expect("upgrade failed")
            assert "importing shopapp:Handler took more than boot_timeout (1s)" in msg
            assert int(m.request()) in old_workers
            # The next deploy is good: the upgrade goes through.
            app.write_text("from apps import Probe as Handler\n")
            done = prefork("upgrade", "--pidfile", pidfile, cwd=sockdir)
            new = upgrade(m, signal_it=False)
            assert done.returncode == 0, done.stderr
            assert done.stdout == f"upgraded: master {new.pid} took over from master {m.pid}\n"
            assert m.wait_exit() == 0
            assert int(m.request()) in new.workers()
        finally:
            if new:
                new.stop()


def test_usr2_of_a_library_server_is_ignored_with_a_reason(sockdir):
    with Running(sockdir) as m:
        m.signal(signal.SIGUSR2)
        wait_for(lambda: "upgrade (SIGUSR2) refused" in m.log(), "the warning")
        assert "needs the `prefork serve` command" in m.log()
        assert m.request()


@needs_nginx
def test_upgrade_through_nginx_fails_no_request(sockdir, tmp_path):
    os.chmod(sockdir, 0o711)
    sock = os.path.join(sockdir, "shop.sock")
    pidfile = os.path.join(sockdir, "shop.pid")
    new = None
    with subreaper(), Running(sockdir, cli=[
            "--bind", f"unix:{sock}", "--socket-group", "nogroup", "--pidfile", pidfile,
            "--workers", "4", "wsgiapps:application"], pythonpath=[WSGI_APPS]) as m:
        nginx = Nginx(str(tmp_path / "nginx"), sock, free_port())
        load = HttpLoad(nginx)
        load.start()
        try:
            wait_for(lambda: load.ok > 50, "requests before the upgrade")
            new = upgrade(m)
            assert m.wait_exit() == 0
            assert os.path.exists(sock)  # the old master left the socket file to the new
            wait_for(lambda n=load.ok: load.ok > n + 200, "requests after the upgrade")
            answers = {nginx.get()[1] for _ in range(20)}
            assert answers <= {f"hello from {pid}".encode() for pid in new.workers()}
        finally:
            load.stop()
            nginx.close()
            if new:
                new.stop()
        print(f"\nfigure: USR2 upgrade through nginx: {load.ok} requests answered, "
              f"{len(load.bad)} failed")
        assert load.bad == [] and load.ok > 250
    assert not os.path.exists(sock)  # unlinked at the new master's final stop


def test_stopping_the_old_master_during_an_upgrade_stops_the_new_one(sockdir, tmp_path):
    app = tmp_path / "slowapp.py"
    app.write_text("from apps import Probe as Handler\n")
    with subreaper(), Running(sockdir, cli=["--workers", "2", "slowapp:Handler"],
                              pythonpath=[str(tmp_path)]) as m:
        # The next image waits at import, so the upgrade is still under way at the stop.
        app.write_text("import threading\nthreading.Event().wait(5)\n"
                       "from apps import Probe as Handler\n")
        m.signal(signal.SIGUSR2)
        status = m.expect("upgrading: new master")  # STATUS= once it is started
        new = int(re.search(r"upgrading: new master (\d+) starting", status)[1])
        wait_for(lambda: descendants(new), "the new master to import the handler in a child")
        m.signal(signal.SIGTERM)
        assert m.wait_exit() == 0
        assert "upgrade: stopping the new master" in m.log()
        # The old master waited until the new one had exited (its zombie is ours: it is
        # the service manager's child, not the old master's).
        assert NewMaster(new).reaped()
        assert psutil.Process().children() == []  # and its import check with it


def test_idle_keepalive_connections_pass_to_the_new_master(sockdir):
    from ..wsgi.helpers import Client, pid_of
    wsgi_dir = os.path.join(ROOT, "tests", "wsgi")
    clients = []
    new = None
    with subreaper(), Running(sockdir, cli=["--workers", "2", "wsgiapps:application"],
                              pythonpath=[wsgi_dir]) as m:
        try:
            clients = [Client(m.address) for _ in range(8)]
            for c in clients:
                assert c.get()[0] == 200
            new = upgrade(m)
            assert m.wait_exit() == 0
            # Each idle connection, held by the old master until it went, is the new
            # master's now, and its workers answer on it.
            for c in clients:
                status, fields, body = c.get()
                assert status == 200 and "connection" not in fields
                assert pid_of(body) in new.workers()
        finally:
            for c in clients:
                c.close()
            if new:
                assert new.stop() == 0


def test_the_metrics_listener_says_ready_throughout_an_upgrade(sockdir):
    """The new master listens on --metrics-bind only once it takes over, and the old one
    stops as it hands over: a probe asking /ready all along never hears 503 nor finds
    the port closed, and then the new master answers."""
    port = free_port()

    def ask(path):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        except OSError as e:
            return repr(e), ""
        finally:
            conn.close()

    def started():
        text = ask("/metrics")[1]
        return re.search(r"^prefork_master_start_time_seconds (\S+)$", text, re.M)[1]

    heard, done = [], threading.Event()

    def probe():
        for _ in range(20_000):  # bounded: the upgrade is over long before
            if done.is_set():
                return
            heard.append(ask("/ready")[0])

    new = None
    with subreaper(), Running(sockdir, cli=["--metrics-bind", f"127.0.0.1:{port}",
                                            "--workers", "2", "apps:Probe"]) as m:
        before = started()
        prober = threading.Thread(target=probe)
        prober.start()
        try:
            new = upgrade(m)
            assert m.wait_exit() == 0
            so_far = len(heard)
            wait_for(lambda: len(heard) > so_far + 20, "probes after the upgrade")
        finally:
            done.set()
            prober.join()
            after = started()
            upgrades = ask("/metrics")[1]
            if new:
                assert new.stop() == 0
    assert len(heard) > 40 and set(heard) == {200}, sorted(set(map(str, heard)))
    assert after != before  # the new master answers now
    # and counts the upgrade that brought it in (the old one is scraped no more)
    assert 'prefork_upgrades_total{result="ok"} 1' in upgrades
