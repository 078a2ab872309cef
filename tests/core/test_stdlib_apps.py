"""The stdlib's own servers and handlers, run on core, answering the stdlib's clients."""

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
import xmlrpc.client
import xmlrpc.server

import pytest

import core

from .helpers import FORKS_FROM_A_THREAD, IO_TIMEOUT, serving

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


class Program:
    """A child Python process; ends it (stdin EOF, then a bounded wait) when done."""

    def __init__(self, args, **kw):
        self.proc = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT, text=True, **kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.proc.stdin.close()
            self.proc.wait(IO_TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def stdlib_server(request):
    with Program([os.path.join(HERE, "stdlib_on_core.py"), request.param]) as prog:
        line = prog.proc.stdout.readline()
        assert line.strip().isdigit(), prog.proc.stderr.read()
        yield int(line)
    assert prog.proc.returncode == 0, prog.proc.stderr.read()


@pytest.mark.parametrize("stdlib_server", ["http"], indirect=True)
def test_http_server_module_on_core(stdlib_server, tmp_path):
    conn = http.client.HTTPConnection("127.0.0.1", stdlib_server, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", "/pyproject.toml")  # SimpleHTTPRequestHandler serves its cwd
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and b'name = "prefork"' in body
        conn.request("GET", "/no/such/file")  # the same keep-alive connection
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404
        conn.request("POST", "/", body=b"x")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 501
    finally:
        conn.close()


@pytest.mark.parametrize("stdlib_server", ["xmlrpc"], indirect=True)
def test_xmlrpc_server_module_on_core(stdlib_server):
    with xmlrpc.client.ServerProxy(f"http://127.0.0.1:{stdlib_server}/") as proxy:
        assert proxy.pow(2, 10) == 1024
        assert "pow" in proxy.system.listMethods()
        with pytest.raises(xmlrpc.client.Fault, match="ZeroDivisionError"):
            proxy.divide_by_zero()


@pytest.mark.parametrize("stdlib_server", ["wsgi"], indirect=True)
def test_wsgiref_simple_server_on_core(stdlib_server):
    with urllib.request.urlopen(f"http://127.0.0.1:{stdlib_server}/some/path",
                                timeout=IO_TIMEOUT) as resp:
        assert resp.status == 200
        assert resp.read() == b"wsgi GET /some/path"


def test_python_m_http_server_on_core(tmp_path):
    """`python -m http.server`, unchanged, with socketserver replaced by core; stopped by ^C."""
    (tmp_path / "index.html").write_text("served by core\n")
    code = ("import sys, runpy, core; sys.modules['socketserver'] = core; "
            "sys.argv = ['http.server', '--bind', '127.0.0.1', '--directory', sys.argv[1], '0']; "
            "runpy.run_module('http.server', run_name='__main__')")
    with Program(["-c", code, str(tmp_path)]) as prog:
        banner = prog.proc.stdout.readline()
        port = int(re.search(r"port (\d+)", banner).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=IO_TIMEOUT) as resp:
            assert resp.read() == b"served by core\n"
        prog.proc.send_signal(signal.SIGINT)
        assert prog.proc.wait(IO_TIMEOUT) == 0
        assert "Keyboard interrupt" in prog.proc.stdout.read()


def file_handler(directory):
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    return functools.partial(Quiet, directory=str(directory))


@pytest.mark.parametrize("cls", [core.TCPServer, core.ThreadingTCPServer])
def test_http_handler_on_core_servers_in_process(cls, tmp_path):
    (tmp_path / "f.txt").write_text("file body")
    with serving(cls(("127.0.0.1", 0), file_handler(tmp_path))) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/f.txt"
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as resp:
            assert resp.read() == b"file body"


@FORKS_FROM_A_THREAD
def test_http_handler_on_a_core_forking_server_in_process(tmp_path):
    (tmp_path / "f.txt").write_text("file body")
    server = core.ForkingTCPServer(("127.0.0.1", 0), file_handler(tmp_path))
    url = f"http://127.0.0.1:{server.server_address[1]}/f.txt"
    result = {}

    def fetch():
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as resp:
            result["body"] = resp.read()

    try:
        client = threading.Thread(target=fetch)
        client.start()
        server.handle_request()  # forks; the child answers
        client.join(IO_TIMEOUT)
    finally:
        server.server_close()
    assert result == {"body": b"file body"}


def test_xmlrpc_dispatcher_composed_with_a_core_server():
    class CoreXMLRPCServer(xmlrpc.server.SimpleXMLRPCDispatcher, core.ThreadingTCPServer):
        allow_reuse_address = True
        logRequests = False  # read by SimpleXMLRPCRequestHandler.log_request

        def __init__(self, addr):
            xmlrpc.server.SimpleXMLRPCDispatcher.__init__(self, allow_none=True)
            core.ThreadingTCPServer.__init__(
                self, addr, xmlrpc.server.SimpleXMLRPCRequestHandler)

    server = CoreXMLRPCServer(("127.0.0.1", 0))
    server.register_function(lambda a, b: a + b, "add")
    with serving(server):
        with xmlrpc.client.ServerProxy(f"http://127.0.0.1:{server.server_address[1]}/") as p:
            assert p.add(2, 3) == 5
