"""systemd: the unit files as systemd reads them, socket activation with systemd's
own tool, and the watchdog."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from ..prefork.harness import HERE as APPS_DIR
from ..prefork.harness import ROOT, TIMEOUT, Running, wait_for
from .helpers import NewMaster, subreaper

UNITS = os.path.join(ROOT, "systemd")

needs = pytest.mark.skipif(not shutil.which("systemd-analyze"),
                           reason="systemd-analyze not installed (Debian package systemd)")


def instance_units(tmp_path):
    """The template units as instance 'shop', as systemd would load them."""
    paths = []
    for name in ("prefork@.service", "prefork@.socket"):
        target = tmp_path / name.replace("@.", "@shop.")
        shutil.copy(os.path.join(UNITS, name), target)
        paths.append(str(target))
    return paths


def _clean_up(proc, files, paths):
    """End the activated process group if it still runs; close *files*; unlink *paths*."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for f in files:
        f.close()
    for path in paths:
        if os.path.exists(path):
            os.unlink(path)


class Activated:
    """`prefork serve app:Handler` (apps.Probe) under systemd-socket-activate, which
    listens on *listen* (TCP on a free loopback port: "tcp"; a Unix socket: "unix")
    and starts it on the first connection; NOTIFY_SOCKET is a socket the test reads."""

    def __init__(self, tmp_path, sockdir, listen, tool_args=(), serve_args=()):
        (tmp_path / "app.py").write_text("from apps import Probe as Handler\n")
        self.unix_path = os.path.join(sockdir, "act.sock")
        self.notify_path = os.path.join(sockdir, "notify")
        with socket.socket(socket.AF_INET) as probe:  # a free port for the tool to bind
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(TIMEOUT)
        self.log = open(tmp_path / "log", "w+")
        where = {"tcp": f"127.0.0.1:{self.port}", "unix": self.unix_path}
        self.proc = subprocess.Popen(
            ["systemd-socket-activate", *(a for kind in listen for a in ("-l", where[kind])),
             *tool_args, "-E", f"NOTIFY_SOCKET={self.notify_path}",
             "-E", f"PYTHONPATH={os.pathsep.join([APPS_DIR, ROOT, str(tmp_path)])}",
             sys.executable, "-m", "prefork", "serve", *serve_args, "app:Handler"],
            cwd=tmp_path, stdout=self.log, stderr=self.log, start_new_session=True)

    def until(self, text):
        """The next notify message with *text* in it."""
        while text not in (msg := self.notify.recv(4096).decode()):
            pass
        return msg

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def close(self):
        _clean_up(self.proc, [self.notify, self.log], [self.unix_path, self.notify_path])


@needs
def test_the_unit_files_verify(tmp_path):
    units = [os.path.join(UNITS, "prefork.service"), *instance_units(tmp_path)]
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs
@pytest.mark.parametrize("unit", ["prefork.service", "prefork@shop.service"])
def test_the_services_are_rated_2_or_better(tmp_path, unit):
    path = os.path.join(UNITS, unit) if "@" not in unit else instance_units(tmp_path)[0]
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", path],
                            capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert m, result.stdout + result.stderr
    assert float(m.group(1)) <= 2.0


def test_every_unit_setting_says_why():
    for name in os.listdir(UNITS):
        with open(os.path.join(UNITS, name)) as f:
            lines = f.read().splitlines()
        assert lines[0].startswith("#"), f"{name} opens with no account of itself"
        # Each setting stands in a paragraph (lines up to a blank one) with a comment.
        paragraph_has_comment = False
        for line in lines:
            if not line.strip():
                paragraph_has_comment = False
            elif line.startswith("#"):
                paragraph_has_comment = True
            elif re.match(r"[A-Z]\w+=", line):
                assert paragraph_has_comment, f"{name}: {line} says not why"


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="systemd-socket-activate not installed (Debian package systemd)")
def test_socket_activation_with_tcp_and_unix_sockets(tmp_path, sockdir):
    act = Activated(tmp_path, sockdir, ["tcp", "unix"], ["--fdname=web:local"])
    try:
        # systemd's tool starts the service on the first connection, as a socket unit
        # would; that connection waits in the queue until the workers are ready.
        def connect():
            try:
                return socket.create_connection(("127.0.0.1", act.port), timeout=TIMEOUT)
            except ConnectionRefusedError:
                return None  # the tool has not bound yet

        with wait_for(connect, "systemd-socket-activate to listen") as c:
            c.sendall(b"first\n")
            first = c.recv(100)
        assert act.notify.recv(4096).startswith(b"READY=1")
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(TIMEOUT)
            c.connect(act.unix_path)
            c.sendall(b"hi\n")
            second = c.recv(100)
        assert int(first) and int(second)
        # An upgrade hands systemd's sockets to the new master, names and all.
        with subreaper():
            act.proc.send_signal(signal.SIGUSR2)
            msg = act.until("MAINPID=")
            new = NewMaster(int(re.search(r"MAINPID=(\d+)", msg)[1]))
            try:
                assert act.proc.wait(TIMEOUT) == 0
                with socket.create_connection(("127.0.0.1", act.port), timeout=TIMEOUT) as c:
                    c.sendall(b"again\n")
                    assert int(c.recv(100)) in new.workers()
            finally:
                assert new.stop() == 0
        text = act.text()
        assert text.count("listening on systemd:web") == 2
        assert text.count("listening on systemd:local") == 2
        # A socket the master inherited is never unlinked by it.
        assert os.path.exists(act.unix_path)
    finally:
        act.close()


def test_watchdog_keeps_coming_from_the_loop(sockdir):
    with Running(sockdir, settings=["workers=1"], env={"WATCHDOG_USEC": "200000"}) as m:
        started = time.monotonic()
        for _ in range(3):
            m.expect("WATCHDOG=1")
        # Three at half of 0.2 s each: well under a second, and not all at once.
        assert time.monotonic() - started >= 0.15


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="systemd-socket-activate not installed (Debian package systemd)")
def test_socket_activation_with_a_datagram_socket(tmp_path, sockdir):
    (tmp_path / "dgram.py").write_text("from apps import DatagramProbe as Handler\n")
    path, client_path = os.path.join(sockdir, "d.sock"), os.path.join(sockdir, "client")
    log = open(tmp_path / "log", "w+")
    proc = subprocess.Popen(
        ["systemd-socket-activate", "--datagram", "-l", path,
         "-E", f"PYTHONPATH={os.pathsep.join([APPS_DIR, ROOT, str(tmp_path)])}",
         sys.executable, "-m", "prefork", "serve", "dgram:Handler"],
        cwd=tmp_path, stdout=log, stderr=log, start_new_session=True)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.bind(client_path)
    client.settimeout(TIMEOUT)
    try:
        # The first datagram starts the service; it waits in the socket meanwhile.
        wait_for(lambda: os.path.exists(path), "systemd-socket-activate to bind")
        client.sendto(b"ping", path)
        assert client.recv(100).endswith(b" ping")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        assert os.path.exists(path)  # inherited: never unlinked by the master
    finally:
        _clean_up(proc, [client, log], [path, client_path])


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="systemd-socket-activate not installed (Debian package systemd)")
@pytest.mark.parametrize("names", [[], ["--fdname=shop:shop"]], ids=["fd3-fd4", "one-name"])
def test_two_upgrades_of_a_socket_activated_master_then_a_reload(tmp_path, sockdir, names):
    # Unnamed sockets, and two sockets under one name, as a socket unit's
    # FileDescriptorName= gives them: each reaches every new master.
    act = Activated(tmp_path, sockdir, ["unix", "tcp"], names, ["--workers", "2"])
    masters = []

    def ask_both():
        """Each socket answers, from a worker of the newest master."""
        pids = set()
        for family, address in ((socket.AF_UNIX, act.unix_path),
                                (socket.AF_INET, ("127.0.0.1", act.port))):
            with socket.socket(family) as c:
                c.settimeout(TIMEOUT)
                c.connect(address)
                c.sendall(b"ping\n")
                pids.add(int(c.recv(100)))
        return pids

    try:
        wait_for(lambda: os.path.exists(act.unix_path), "systemd-socket-activate to bind")
        ask_both()  # starts the service
        act.until("READY=1")
        with subreaper():
            try:
                for _ in range(2):
                    os.kill(masters[-1].pid if masters else act.proc.pid, signal.SIGUSR2)
                    msg = act.until("MAINPID=")
                    masters.append(NewMaster(int(re.search(r"MAINPID=(\d+)", msg)[1])))
                    if len(masters) == 1:
                        assert act.proc.wait(TIMEOUT) == 0  # the old master retired and left
                    else:
                        wait_for(masters[-2].reaped, "the old master to leave")
                        assert masters[-2].status == 0
                    assert ask_both() <= set(masters[-1].workers())
                newest = masters[-1]
                before = set(newest.workers())
                os.kill(newest.pid, signal.SIGHUP)
                assert "reloads: 1 ok" in act.until("READY=1")  # no worker failed to boot
                after = wait_for(lambda: set(newest.workers()) - before
                                 if not set(newest.workers()) & before else None,
                                 "the retired workers to leave")
                assert len(after) == 2
                assert ask_both() <= after
            finally:
                for m in masters:
                    m.stop()
        text = act.text()
        assert "Bad file descriptor" not in text
        for address in (f"unix:{act.unix_path}", f"127.0.0.1:{act.port}"):
            assert len(re.findall(rf"listening on systemd:\S+ \({re.escape(address)}\)",
                                  text)) == 3
    finally:
        act.close()
