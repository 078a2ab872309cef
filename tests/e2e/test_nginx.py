"""nginx in front of `prefork serve` on a Unix socket: reloads under load answer
every request with a 2xx, through the proxy settings the deploy guide gives."""

import os
import subprocess
import sys

from ..prefork.harness import ROOT, TIMEOUT, Running, wait_for
from .helpers import HttpLoad, Nginx, free_port, needs_nginx

pytestmark = needs_nginx


def test_reloads_through_nginx_answer_every_request(sockdir, tmp_path):
    os.chmod(sockdir, 0o711)  # nginx's workers (nobody) reach the socket by its group
    sock = os.path.join(sockdir, "shop.sock")
    ctl = os.path.join(sockdir, "ctl.sock")
    with Running(sockdir, cli=["--bind", f"unix:{sock}", "--socket-mode", "0660",
                               "--socket-group", "nogroup", "--control", ctl,
                               "--workers", "2", "examples.hello:Hello"]) as m:
        st = os.stat(sock)
        assert oct(st.st_mode & 0o777) == oct(0o660)
        nginx = Nginx(str(tmp_path / "nginx"), sock, free_port())
        try:
            status, body = nginx.get()
            assert status == 200 and body.startswith(b"hello from worker")
            load = HttpLoad(nginx)
            load.start()
            try:
                for _ in range(5):
                    wait_for(lambda n=load.ok: load.ok > n + 20, "requests between reloads")
                    result = subprocess.run(
                        [sys.executable, "-m", "prefork", "reload", "--control", ctl],
                        capture_output=True, text=True, timeout=TIMEOUT,
                        env=dict(os.environ, PYTHONPATH=ROOT))
                    assert result.returncode == 0, result.stderr
                    m.expect("RELOADING=1")
                    m.expect("READY=1")
                wait_for(lambda n=load.ok: load.ok > n + 20, "requests after the reloads")
            finally:
                load.stop()
            assert load.bad == [] and load.ok > 100
        finally:
            nginx.close()
    assert not os.path.exists(sock)  # the master's own socket, removed at its final stop
