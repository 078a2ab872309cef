"""nginx in front of `prefork serve` on a Unix socket: reloads under load answer
every request with a 2xx, through the proxy settings the deploy guide gives."""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from ..prefork.harness import ROOT, TIMEOUT, Running, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_SETTINGS = os.path.join(ROOT, "docs", "deploy", "nginx-prefork.conf")

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX),
                                reason="nginx not installed (Debian package nginx)")

NGINX_CONF = """
daemon off;
worker_processes 1;
user nobody nogroup;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    {upstream}
    server {{
        listen 127.0.0.1:{port};
        location / {{ include {settings}; }}
    }}
}}
"""


class Nginx:
    def __init__(self, directory, sock, port, upstream=None):
        """nginx on 127.0.0.1:*port* proxying to the Unix socket *sock*, or through
        *upstream* (an ``upstream prefork_shop {...}`` block) when given."""
        self.dir = directory
        os.makedirs(os.path.join(directory, "tmp"), exist_ok=True)
        conf = os.path.join(directory, "nginx.conf")
        upstream = upstream or f"upstream prefork_shop {{ server unix:{sock}; }}"
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=directory, upstream=upstream, port=port,
                                      settings=PROXY_SETTINGS))
        self.port = port
        self.proc = subprocess.Popen([NGINX, "-p", directory, "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except ConnectionRefusedError:
                return False
        wait_for(listening, "nginx to listen")

    def get(self, path="/"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def close(self):
        self.proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stderr.close()


class HttpLoad(threading.Thread):
    """GETs through nginx in a loop, bounded in count and time, counting non-2xx."""

    def __init__(self, nginx, max_requests=20_000, max_seconds=60):
        super().__init__(daemon=True)
        self.nginx, self.max_requests, self.max_seconds = nginx, max_requests, max_seconds
        self.stop_event = threading.Event()
        self.ok, self.bad = 0, []

    def stop(self):
        self.stop_event.set()
        self.join(TIMEOUT)

    def run(self):
        end = time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and time.monotonic() < end \
                and self.ok + len(self.bad) < self.max_requests:
            try:
                status, body = self.nginx.get()
                if 200 <= status < 300:
                    self.ok += 1
                else:
                    self.bad.append(status)
            except (OSError, http.client.HTTPException) as e:
                self.bad.append(repr(e))  # e.g. an answer cut short by a killed worker


def http_get(path, sock_path):
    """A raw HTTP/1.0 GET over the Unix socket: (connection, the head read so far)."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(TIMEOUT)
    c.connect(sock_path)
    c.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = c.recv(4096)
        if not chunk:
            break
        head += chunk
    return c, head


def read_rest(c, data):
    with c:
        while True:
            chunk = c.recv(4096)
            if not chunk:
                return data
            data += chunk


def free_port():
    with socket.socket() as s:  # nginx binds by itself; this only finds a free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
