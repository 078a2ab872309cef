"""What the end-to-end tests share: nginx in front of a master, a load through it,
raw HTTP over a Unix socket, and the new master of an upgrade (adopted by the test,
which makes itself a child subreaper for it).  A module that needs nginx applies
``needs_nginx`` itself."""

import contextlib
import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psutil
import pytest

from ..prefork.harness import ROOT, TIMEOUT, Background, descendants, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_SETTINGS = os.path.join(ROOT, "docs", "deploy", "nginx-prefork.conf")
SITE = os.path.join(ROOT, "docs", "deploy", "nginx-shop.conf")
WSGI_APPS = os.path.join(ROOT, "tests", "wsgi")  # wsgiapps:application, for keep-alive

needs_nginx = pytest.mark.skipif(not os.path.exists(NGINX),
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
    client_max_body_size 16m;
    client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
    {upstream}
    server {{
        listen 127.0.0.1:{port};
        {locations}
    }}
}}
"""
MOUNTED = os.path.join(ROOT, "docs", "deploy", "nginx-mounted.conf")


class Nginx:
    def __init__(self, directory, sock, port, upstream=None, locations=None):
        """nginx on 127.0.0.1:*port* proxying to the Unix socket *sock*, or through
        *upstream* (an ``upstream prefork_shop {...}`` block) when given; at /, or at
        the *locations* given (a file's text, with /etc/nginx/prefork.conf in it)."""
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        # Where nginx's workers (nobody) buffer large bodies: a place they can reach.
        self.tmp = tempfile.mkdtemp(prefix="nginx-", dir="/tmp")
        os.chmod(self.tmp, 0o777)
        conf = os.path.join(directory, "nginx.conf")
        upstream = upstream or site_upstream(sock)
        with open(conf, "w") as f:
            where = (locations or "location / { include /etc/nginx/prefork.conf; }") \
                .replace("/etc/nginx/prefork.conf", PROXY_SETTINGS)
            f.write(NGINX_CONF.format(dir=directory, upstream=upstream, port=port,
                                      locations=where, tmp=self.tmp))
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
        return fetch(("127.0.0.1", self.port), path, timeout=10)

    def close(self):
        self.proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def fetch(address, path="/", timeout=TIMEOUT):
    """GET *path* from *address* (host, port) on a connection of its own: (status, body)."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Foreground:
    """A program of a deployment (a load balancer, a scraper) run in the foreground by
    a test, in a session of its own, its output in a log file."""

    def __init__(self, argv, log_path):
        self.log = open(log_path, "w+")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self):
        """What it has written so far."""
        self.log.seek(0)
        return self.log.read()

    def close(self):
        self.proc.terminate()
        self.proc.wait(TIMEOUT)
        self.log.close()


def site_upstream(sock):
    """The upstream block of the documented site (docs/deploy/nginx-shop.conf), its
    socket replaced by *sock*."""
    with open(SITE) as f:
        text = "".join(line for line in f if not line.lstrip().startswith("#"))
    block = re.search(r"upstream prefork_shop \{.*?\n\}", text, re.S)[0]
    assert "server unix:/run/prefork-shop.sock;" in block
    return block.replace("unix:/run/prefork-shop.sock", f"unix:{sock}")


class HttpLoad(Background):
    """GETs through nginx in a loop, bounded in count and time, counting non-2xx: a
    ``with`` block, or start() and stop()."""

    def __init__(self, nginx, max_requests=20_000, max_seconds=60):
        super().__init__()
        self.nginx, self.max_requests, self.max_seconds = nginx, max_requests, max_seconds
        self.ok, self.bad = 0, []

    def stop(self):
        self.__exit__()

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


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) is not allowed here")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        # New masters that failed were adopted here (an old master does not parent its
        # successor): reap them.  A live one is left for the leak check to report.
        for child in psutil.Process().children():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(child.pid, 0)
            except (psutil.Error, ChildProcessError):
                pass


class NewMaster:
    """The master an upgrade started, once it is this test's (orphaned) child."""

    def __init__(self, pid):
        self.pid = pid
        self.status = None

    def workers(self):
        return sorted(p.pid for p in descendants(self.pid))

    def reaped(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def stop(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            wait_for(self.reaped, f"new master {self.pid} to stop")
        return self.status


def upgrade(m, signal_it=True):
    """Send USR2 to the master of *m*; wait for the new master's MAINPID= + READY=1."""
    if signal_it:
        m.signal(signal.SIGUSR2)
    msg = m.expect("MAINPID=")
    new = NewMaster(int(re.search(r"MAINPID=(\d+)", msg)[1]))
    assert "READY=1" in msg and new.pid != m.pid
    # Sent by the new master itself (NotifyAccess=all lets it), while the old one lives.
    assert m.senders[m.messages.index(msg)] == new.pid
    return new
