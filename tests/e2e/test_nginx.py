"""nginx in front of `prefork serve` on a Unix socket, with the site and proxy
settings the deploy guide gives (upstream keep-alive): reloads under load answer
every request with a 2xx, and the connections nginx keeps are the master's while
idle."""

import os
import signal
import subprocess
import sys

from prefork.command.client import ask

from ..prefork.harness import ROOT, TIMEOUT, Running, wait_for
from .helpers import MOUNTED, WSGI_APPS, HttpLoad, Nginx, free_port, needs_nginx

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


def test_kept_connections_through_a_reload_storm_fail_no_request(sockdir, tmp_path):
    os.chmod(sockdir, 0o711)
    sock = os.path.join(sockdir, "shop.sock")
    ctl = os.path.join(sockdir, "ctl.sock")
    with Running(sockdir, cli=["--bind", f"unix:{sock}", "--socket-group", "nogroup",
                               "--control", ctl, "--workers", "2", "wsgiapps:application"],
                 pythonpath=[WSGI_APPS]) as m:
        nginx = Nginx(str(tmp_path / "nginx"), sock, free_port())
        try:
            status, body = nginx.get()
            assert status == 200 and body.startswith(b"hello from ")
            # nginx keeps its connection: idle, the master holds it.
            wait_for(lambda: ask(ctl, {"cmd": "status"})["idle_connections"]["held"] >= 1
                     or None, "the idle upstream connection held by the master")
            with HttpLoad(nginx) as load:
                # A reload starts as soon as the last has, many times over: generations
                # come and go while nginx's kept connections carry requests.
                for _ in range(12):
                    wait_for(lambda n=load.ok: load.ok > n + 10, "requests between reloads")
                    m.signal(signal.SIGHUP)
                    m.expect("RELOADING=1")
                m.expect("READY=1")
                wait_for(lambda n=load.ok: load.ok > n + 50, "requests after the reloads")
            assert load.bad == [] and load.ok > 150
            counts = ask(ctl, {"cmd": "status"})["idle_connections"]
            assert counts["taken_back"] > 0  # the connections were kept, not closed
            with open(tmp_path / "nginx" / "error.log") as f:
                assert "upstream prematurely closed" not in f.read()
        finally:
            nginx.close()


def test_an_application_mounted_under_a_path_behind_nginx(sockdir, tmp_path):
    # docs/deploy/nginx-mounted.conf as written: /shop/... reaches the application with
    # SCRIPT_NAME /shop and the rest as PATH_INFO.
    os.chmod(sockdir, 0o711)
    sock = os.path.join(sockdir, "shop.sock")
    with Running(sockdir, cli=["--bind", f"unix:{sock}", "--socket-group", "nogroup",
                               "--workers", "1", "wsgiapps:application"],
                 pythonpath=[WSGI_APPS]):
        with open(MOUNTED) as f:
            nginx = Nginx(str(tmp_path / "nginx"), sock, free_port(), locations=f.read())
        try:
            assert nginx.get("/shop/where") == (200, b"/shop|/where")
            assert nginx.get("/shop/a/where")[1] == b"/shop|/a/where"
            assert nginx.get("/where")[0] != 200  # nginx answers itself: outside the mount
        finally:
            nginx.close()
