"""The master as PID 1 of a new PID namespace, as in a container: it reaps orphans
that are not its workers, TERM is a graceful stop, and USR2 is refused with a reason.

Needs ``unshare --pid --fork --mount-proc`` (util-linux) and the privilege to make
namespaces; skipped where the machine does not allow it.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import psutil
import pytest

from ..prefork.harness import ROOT, TIMEOUT, wait_for
from .helpers import http_get, read_rest

E2E = os.path.dirname(os.path.abspath(__file__))


def _can_unshare():
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not _can_unshare(),
                                reason="no PID namespaces here (unshare --pid not allowed)")


def test_as_pid_1_the_master_reaps_orphans_and_stops_gracefully(sockdir):
    sock = os.path.join(sockdir, "app.sock")
    notify_path = os.path.join(sockdir, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(TIMEOUT)
    errlog = tempfile.TemporaryFile(mode="w+")
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, PYTHONPATH=os.pathsep.join([E2E, ROOT]))
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "prefork", "serve",
         "--bind", f"unix:{sock}", "--workers", "2", "faultapp:Handler"],
        stdout=errlog, stderr=errlog, env=env, start_new_session=True)

    def log():
        errlog.seek(0)
        return errlog.read()
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        master = psutil.Process(proc.pid).children()[0]  # PID 1 inside, this pid outside
        assert "master 1 starting 2 workers" in log()

        # A handler leaves a grandchild whose parent exits: PID 1 inherits and reaps it.
        c, head = http_get("/orphan", sock)
        body = read_rest(c, head).split(b"\r\n\r\n", 1)[1]
        orphan = int(body.split()[1])
        wait_for(lambda: f"reaped process {orphan}, not a worker" in log(), "the orphan reaped")
        assert not [p for p in master.children() if p.status() == psutil.STATUS_ZOMBIE]

        master.send_signal(signal.SIGUSR2)
        wait_for(lambda: "as PID 1 of its namespace" in log(), "USR2 refused with the reason")

        # TERM while a request is in flight: it is finished, then everything stops.
        c, head = http_get("/slow", sock)
        assert head.startswith(b"HTTP/1.0 200")
        master.send_signal(signal.SIGTERM)
        answer = read_rest(c, head)
        assert re.search(rb"\r\n\r\n/slow from worker \d+\n$", answer), answer
        assert proc.wait(TIMEOUT) == 0
        assert "SIGTERM: graceful stop" in log()
        assert not os.path.exists(sock)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the namespace dies with its PID 1
            proc.wait()
        notify.close()
        os.unlink(notify_path)
        errlog.close()
