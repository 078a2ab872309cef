"""WSGI applications served by the `prefork serve` command and by a Prefork server
from Python: real masters and workers, real clients (urllib, http.client, curl)."""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from ..prefork.harness import Running, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def url(m, path="/"):
    return f"http://{m.address[0]}:{m.address[1]}{path}"


def get(m, path="/"):
    with urllib.request.urlopen(url(m, path), timeout=10) as r:
        return r.status, r.read()


def test_the_command_serves_an_application_a_factory_makes(sockdir):
    with Running(sockdir, cli=["--workers", "2", "wsgiapps:make('hi', loud=True)"],
                 pythonpath=[HERE]) as m:
        status, body = get(m)
        assert status == 200 and body.startswith(b"HI from ")
        assert int(body.split()[-1]) in m.workers()  # a worker answered, not the master
        conn = http.client.HTTPConnection(*m.address, timeout=10)
        conn.request("POST", "/echo", body=b"x" * 100_000)
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"x" * 100_000)
        conn.close()


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_curl_uploads_chunked_and_with_100_continue(sockdir):
    with Running(sockdir, cli=["--workers", "1", "wsgiapps:application"],
                 pythonpath=[HERE]) as m:
        data = os.urandom(3000).hex().encode()
        for extra in (["-H", "Transfer-Encoding: chunked"], ["-H", "Expect: 100-continue"]):
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--data-binary", "@-",
                                  "-v", *extra, url(m, "/echo")], input=data,
                                 capture_output=True, timeout=20)
            assert out.returncode == 0 and out.stdout == data, out.stderr
            if "Expect" in extra[1]:
                assert b"HTTP/1.1 100 Continue" in out.stderr


def test_a_server_from_python_serves_the_application_a_spec_names(sockdir):
    # tests/prefork/serve.py: PreforkTCPServer.over_socket(sock, "wsgiapps:application")
    with Running(sockdir, handler="wsgiapps:application", pythonpath=[HERE]) as m:
        assert get(m)[1].startswith(b"hello from ")


def test_a_hung_worker_is_killed_and_the_log_names_its_request(sockdir):
    with Running(sockdir, cli=["--workers", "1", "--timeout", "1", "wsgiapps:application"],
                 pythonpath=[HERE]) as m:
        (first,) = m.workers()
        with socket.create_connection(m.address, timeout=20) as c:
            c.sendall(b"GET /hang?order=17 HTTP/1.1\r\nHost: shop\r\n\r\n")
            assert c.recv(100) == b""  # no answer: the worker died with the request
        wait_for(lambda: f"worker {first} was serving: GET /hang?order=17 HTTP/1.1"
                 in m.log(), "the request line in the master's log")
        assert "in application" in m.log()  # and where it was stuck, from the stack dump
        m.wait_workers(lambda w: w and first not in w, "a new worker")
        assert get(m)[0] == 200


def test_the_access_log_is_written_by_the_workers_and_reopened_on_usr1(sockdir, tmp_path):
    log = tmp_path / "access.log"
    with Running(sockdir, cli=["--workers", "2", "--access-log", str(log),
                               "--access-log-format", "json", "wsgiapps:application"],
                 pythonpath=[HERE]) as m:
        get(m, "/first")
        wait_for(lambda: log.exists() and b"/first" in log.read_bytes(), "the first line")
        os.rename(log, tmp_path / "access.log.1")  # as logrotate does
        m.signal(signal.SIGUSR1)
        wait_for(lambda: m.log().count("log files reopened") >= 1, "the reopen")
        # Each worker reopens when it next wakes; a request reaches one that has.
        wait_for(lambda: get(m, "/second") and log.exists() and b"/second" in log.read_bytes(),
                 "a line in the new file")
    assert b"/first" in (tmp_path / "access.log.1").read_bytes()


ROOT = os.path.dirname(os.path.dirname(HERE))
GUIDE = os.path.join(ROOT, "docs", "wsgi.rst")


@pytest.mark.parametrize("command, answer", [
    ("prefork serve flaskshop:app", b"flask shop v"),
    ("prefork serve djangoshop.wsgi:application", b"django shop v"),
])
def test_the_guide_s_commands_serve_the_example_shops(command, answer, tmp_path):
    # docs/wsgi.rst, word for word, run by a shell from a clone: cd, then the command,
    # with the prefork this Python installed on PATH and PREFORK_BIND for a free port.
    with open(GUIDE) as f:
        assert f"   cd examples\n   {command}\n" in f.read(), f"docs/wsgi.rst lost {command!r}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
               PREFORK_BIND=f"127.0.0.1:{port}")
    with open(tmp_path / "log", "w+") as log:
        shell = subprocess.Popen(["sh", "-c", f"cd examples\n{command}"], cwd=ROOT, env=env,
                                 stdout=log, stderr=log, start_new_session=True)
        try:
            def answers():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                        return r.status == 200 and r.read().startswith(answer)
                except OSError:
                    return shell.poll() is not None and pytest.fail(_log(log))
            wait_for(answers, f"{command} to answer")
        finally:
            os.killpg(shell.pid, signal.SIGTERM)
            shell.wait(30)

            def gone():
                try:
                    os.killpg(shell.pid, 0)
                    return False
                except ProcessLookupError:
                    return True
            wait_for(gone, "the master and its workers to stop")
        assert "Traceback" not in _log(log)


def _log(log):
    log.seek(0)
    return log.read()
