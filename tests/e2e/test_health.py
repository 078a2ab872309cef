"""Load balancers and Kubernetes asking the master's /ready and /live: HAProxy with
docs/deploy/haproxy.cfg in front of two masters, and the container of
docs/deploy/kubernetes.yaml run and stopped as the kubelet would."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from ..prefork.harness import ROOT, TIMEOUT, Running, wait_for
from ..wsgi.helpers import open_gate, pid_of, split_response
from .helpers import WSGI_APPS, Foreground, HttpLoad, fetch, free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
DEPLOY = os.path.join(ROOT, "docs", "deploy")


class Haproxy(Foreground):
    """docs/deploy/haproxy.cfg run in the foreground, its example hosts replaced by
    *hosts*: [(address "127.0.0.1:PORT", metrics port)]; get() is one request through it."""

    def __init__(self, directory, hosts):
        with open(os.path.join(DEPLOY, "haproxy.cfg")) as f:
            text = f.read()
        self.port = free_port()
        text = text.replace("bind :80", f"bind 127.0.0.1:{self.port}", 1)
        examples = re.findall(r"server (\S+) (\S+) check port (\d+)", text)
        assert len(examples) == len(hosts) == 2
        for (name, address, port), (new, metrics) in zip(examples, hosts, strict=True):
            text = text.replace(f"server {name} {address} check port {port}",
                                f"server {name} {new} check port {metrics}", 1)
        os.makedirs(directory, exist_ok=True)
        conf = os.path.join(directory, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(text)
        super().__init__([HAPROXY, "-db", "-f", conf], os.path.join(directory, "haproxy.log"))
        wait_for(self._answers, "haproxy to answer")

    def _answers(self):
        try:
            return self.get()[0] == 200
        except OSError:
            return False

    def get(self):
        return fetch(("127.0.0.1", self.port))


def metrics_ready(port):
    return fetch(("127.0.0.1", port), "/ready")[0]


def gate_request(address, gate):
    """A /gate request in flight on *address*: its connection, once the worker is in it."""
    os.mkdir(gate)
    c = socket.create_connection(address, timeout=TIMEOUT)
    c.sendall(f"GET /gate?{gate} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    wait_for(lambda: os.path.exists(os.path.join(gate, "entered")), "the request in its worker")
    return c


def _request(address):
    c = socket.create_connection(address, timeout=TIMEOUT)
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return c


def answer_of(c):
    data = b""
    while chunk := c.recv(65536):
        data += chunk
    return split_response(data)


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="haproxy not installed (Debian haproxy)")
def test_haproxy_takes_a_stopping_host_out_and_no_request_fails(sockdir, tmp_path):
    ports = [free_port(), free_port()]
    masters = []
    try:
        for tag, port in zip("ab", ports, strict=True):
            masters.append(Running(sockdir, tag=tag, pythonpath=[WSGI_APPS], cli=[
                "--metrics-bind", f"127.0.0.1:{port}", "--workers", "2",
                "--accept-grace", "3", "wsgiapps:application"]))
        a, b = masters
        proxy = Haproxy(str(tmp_path / "haproxy"),
                        [(f"{h}:{p}", m) for (h, p), m in zip((a.address, b.address), ports,
                                                               strict=True)])
        try:
            with HttpLoad(proxy, max_requests=100_000, max_seconds=60) as load:
                wait_for(lambda: load.ok > 100, "requests through haproxy")
                with gate_request(a.address, str(tmp_path / "gate")) as inflight:
                    a.signal(signal.SIGTERM)  # a graceful stop, with a request in flight
                    wait_for(lambda: metrics_ready(ports[0]) == 503 or None, "a's /ready 503")
                    # accept_grace: not ready, and still serving what comes meanwhile.
                    with _request(a.address) as c:
                        assert answer_of(c)[0] == 200
                    wait_for(lambda: "shop1 is DOWN" in proxy.output() or None,
                             "haproxy's check to take a out")
                    open_gate(str(tmp_path / "gate"))
                    assert answer_of(inflight)[0] == 200  # the request in flight finished
                assert a.wait_exit() == 0
                a.listener.close()  # the host is gone: its port refuses, as a stopped one's
                b_workers = set(b.worker_pids())
                assert all(pid_of(proxy.get()[1]) in b_workers for _ in range(20))
                served = load.ok
                wait_for(lambda: load.ok > served + 100, "requests after the stop")
            print(f"\nfigure: haproxy, a host stopped under load: {load.ok} answered, "
                  f"{len(load.bad)} failed")
            assert load.bad == []
        finally:
            proxy.close()
    finally:
        for m in masters:
            m.close()


def test_the_kubernetes_container_serves_probes_and_stops_as_the_kubelet_stops_it(tmp_path):
    with open(os.path.join(DEPLOY, "kubernetes.yaml")) as f:
        deployment = yaml.safe_load(f)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    command = container["command"]
    assert command[0] == "prefork"
    graceful = float(command[command.index("--graceful-timeout") + 1])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # The grace period covers the preStop wait and graceful_timeout, with room.
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + graceful + 5

    def probe(kind):
        get = container[kind]["httpGet"]
        try:
            return fetch(("127.0.0.1", ports[get["port"]]), get["path"])[0]
        except OSError:
            return None

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(ROOT, "examples"), WSGI_APPS, ROOT]))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    for key in [k for k in env if k.startswith(("PREFORK_", "NOTIFY_", "LISTEN_"))]:
        del env[key]
    pod_proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: probe("livenessProbe") == 200 or None, "the liveness probe")
        wait_for(lambda: probe("readinessProbe") == 200 or None, "the readiness probe")
        # The kubelet's stop: the preStop command (the pod serves on meanwhile), then
        # SIGTERM to the container's first process, with a request in flight: half its
        # head sent before the stop, the rest after.
        with socket.create_connection(("127.0.0.1", ports["http"]), timeout=TIMEOUT) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            began = time.monotonic()
            subprocess.run(pre_stop, check=True, timeout=TIMEOUT)
            assert probe("readinessProbe") == 200
            os.kill(pod_proc.pid, signal.SIGTERM)
            wait_for(lambda: probe("readinessProbe") in (503, None) or None,
                     "readiness failing")
            c.sendall(b"Connection: close\r\n\r\n")
            assert answer_of(c)[0] == 200
        pod_proc.wait(pod["terminationGracePeriodSeconds"])
        assert time.monotonic() - began < pod["terminationGracePeriodSeconds"]
    finally:
        if pod_proc.poll() is None:
            os.killpg(pod_proc.pid, signal.SIGKILL)
        _, err = pod_proc.communicate()
    assert pod_proc.returncode == 0, err
