"""Flask and Django, from their own packages, served by `prefork serve` behind Debian's
nginx on a Unix socket: the example shop of each (examples/flaskshop.py,
examples/djangoshop/) with its form posts, chunked and 100-continue uploads (curl),
streaming and file responses, HEAD, proxied client addresses, and reloads under
load that fail no request and serve the new code.  Clients: http.client (through
nginx), urllib and curl."""

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from ..prefork.harness import ROOT, Running, wait_for
from .helpers import HttpLoad, Nginx, free_port, needs_nginx

pytestmark = [needs_nginx,
              pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")]

EXAMPLES = os.path.join(ROOT, "examples")
SHOPS = {  # the framework -> what `prefork serve` is given, and the file VERSION is in
    "flask": ("flaskshop:app", "flaskshop.py"),
    "django": ("djangoshop.wsgi:application", os.path.join("djangoshop", "views.py")),
}


class Shop:
    def __init__(self, name, master, nginx, code, files):
        self.name, self.master, self.nginx = name, master, nginx
        self.code, self.files = code, files
        self.sock = master.address

    def request(self, method, path, body=None, headers=None):
        """Through nginx: (status, {lower-case header: value}, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def direct(self, method, path):
        """Straight to prefork's Unix socket, no proxy: (status, headers, body)."""
        conn = http.client.HTTPConnection("localhost", timeout=20)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(20)
        conn.sock.connect(self.sock)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def curl(self, *args, direct=False, data=None):
        """curl's body and its -v trace, through nginx or straight to the socket."""
        where = ["--unix-socket", self.sock, "http://localhost"] if direct else \
            [f"http://127.0.0.1:{self.nginx.port}"]
        *options, path = args
        out = subprocess.run(["curl", "-sS", "-v", "--max-time", "20", *options,
                              where[-1] + path, *where[:-1]],
                             input=data, capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr.decode(errors="replace")
        return out.stdout, out.stderr.decode(errors="replace")

    def set_version(self, version):
        path = self.code / SHOPS[self.name][1]
        path.write_text(re.sub(r'VERSION = "\d+"', f'VERSION = "{version}"', path.read_text()))


@pytest.fixture(params=sorted(SHOPS))
def shop(request, sockdir, tmp_path):
    code = tmp_path / "code"  # the shop's code, which a test may change and reload
    shutil.copytree(EXAMPLES, code, ignore=shutil.ignore_patterns("__pycache__"))
    files = tmp_path / "files"
    files.mkdir()
    (files / "catalogue.bin").write_bytes(os.urandom(3_000_000))
    os.chmod(sockdir, 0o711)  # nginx's workers (nobody) reach the socket
    with Running(sockdir, server="unix", cli=["--workers", "2", SHOPS[request.param][0]],
                 pythonpath=[str(code)], env={"SHOP_FILES": str(files)}) as m:
        os.chmod(m.address, 0o666)
        nginx = Nginx(str(tmp_path / "nginx"), m.address, free_port())
        try:
            yield Shop(request.param, m, nginx, code, files)
        finally:
            nginx.close()


def test_pages_heads_and_the_client_behind_the_proxy(shop):
    status, headers, body = shop.request("GET", "/")
    assert status == 200 and body.startswith(f"{shop.name} shop v1, worker ".encode())
    assert int(body.split()[-1]) in shop.master.workers()
    # nginx told prefork who the client was (X-Forwarded-For from a Unix-socket peer).
    assert shop.request("GET", "/client")[2] == b"127.0.0.1 http\n"
    assert shop.direct("GET", "/client")[2] == b" http\n"  # no proxy: no address
    for path in ("/", "/files/catalogue.bin"):
        get = shop.direct("GET", path)
        head = shop.direct("HEAD", path)
        assert head[0] == 200 and head[2] == b""
        assert head[1]["content-type"] == get[1]["content-type"]
    assert head[1]["content-length"] == "3000000"
    assert urllib_status(shop, "/nowhere") == 404


def urllib_status(shop, path):
    """urllib's status for *path* through nginx (an error status is no exception)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{shop.nginx.port}{path}",
                                    timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def test_a_form_post(shop):
    status, headers, form = shop.request("GET", "/order")
    assert status == 200
    fields = {"item": "tea pot", "quantity": "2"}
    cookie = {}
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    if token:  # Django's CSRF protection: the token in the form and in a cookie
        fields["csrfmiddlewaretoken"] = token.group(1).decode()
        cookie = {"Cookie": headers["set-cookie"].split(";")[0]}
    status, _, body = shop.request(
        "POST", "/order", urllib.parse.urlencode(fields),
        {"Content-Type": "application/x-www-form-urlencoded", **cookie})
    assert (status, body) == (200, b"ordered 2 x tea pot\n")
    fields["quantity"] = "many"  # refused by the view
    assert shop.request("POST", "/order", urllib.parse.urlencode(fields), {
        "Content-Type": "application/x-www-form-urlencoded", **cookie})[0] == 400
    if token:  # and without its token, refused by Django's middleware
        assert shop.request("POST", "/order", "item=x&quantity=1", {
            "Content-Type": "application/x-www-form-urlencoded"})[0] == 403


def test_uploads_chunked_and_with_100_continue(shop):
    data = os.urandom(2_500_000)
    expected = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for direct in (False, True):  # nginx buffers the body; straight, prefork reads it
        body, trace = shop.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                                "/upload", direct=direct, data=data)
        if direct and shop.name == "django":
            # Django reads a body by its Content-Length only, and a chunked one has
            # none: the view sees it empty, and prefork says so (docs/wsgi.rst).
            assert json.loads(body)["bytes"] == 0
            wait_for(lambda: "without reading it: Django, for one" in shop.master.log(),
                     "the warning")
        else:
            assert json.loads(body) == expected
        body, trace = shop.curl("-H", "Expect: 100-continue", "--data-binary", "@-",
                                "/upload", direct=direct, data=data)
        assert json.loads(body) == expected and "HTTP/1.1 100 Continue" in trace


def test_streaming_and_files(shop):
    status, headers, body = shop.request("GET", "/stream?lines=3000")
    assert status == 200 and body == "".join(f"line {i}\n" for i in range(3000)).encode()
    direct = shop.direct("GET", "/stream?lines=3")
    assert direct[1]["transfer-encoding"] == "chunked" and direct[2] == b"line 0\nline 1\nline 2\n"
    # A file goes by sendfile, with its length (never chunked).
    body, _ = shop.curl("/files/catalogue.bin")
    assert body == (shop.files / "catalogue.bin").read_bytes()
    status, headers, body = shop.direct("GET", "/files/catalogue.bin")
    assert headers["content-length"] == "3000000" and "transfer-encoding" not in headers
    assert hashlib.sha256(body).digest() == hashlib.sha256(
        (shop.files / "catalogue.bin").read_bytes()).digest()


def test_reloads_under_load_fail_nothing_and_serve_the_new_code(shop):
    load = HttpLoad(shop.nginx)
    load.start()
    try:
        for version in (2, 3, 4):
            wait_for(lambda n=load.ok: load.ok > n + 20, "requests between reloads")
            shop.set_version(version)
            shop.master.signal(signal.SIGHUP)
            shop.master.expect("RELOADING=1")
            shop.master.expect("READY=1")
        wait_for(lambda n=load.ok: load.ok > n + 20, "requests after the reloads")
    finally:
        load.stop()
    assert load.bad == [] and load.ok > 80
    with urllib.request.urlopen(f"http://127.0.0.1:{shop.nginx.port}/", timeout=20) as r:
        assert r.read().startswith(f"{shop.name} shop v4".encode())
