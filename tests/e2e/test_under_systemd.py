"""prefork under a real systemd: the unit files in systemd/ and the nginx settings in
docs/deploy/, installed and driven by the very commands docs/deploy.rst gives, in a
Debian 12 container booted with systemd 252 as its PID 1 (tests/e2e/machine.py).

Each test starts from prefork installed and no unit of it enabled, and leaves it so:
the ``box`` fixture stops and disables every prefork unit after the test and fails
it if a prefork process is left in the container.  The load comes from
loadclient.py, run inside the container; ``-s`` prints each step's figures.
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from ..prefork.harness import ROOT, wait_for
from . import machine

WHY_NOT = machine.why_not()
pytestmark = [pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT or "can boot"),
              pytest.mark.timeout(900)]

DEPLOY_GUIDE = os.path.join(ROOT, "docs", "deploy.rst")
HERE = "/root/prefork"  # the checkout's files the guide uses, as an operator copies them
SHOP = "prefork@shop"
SOCKET = "/run/prefork-shop.sock"
CONTROL = "/run/prefork-shop/prefork-shop.ctl"  # the default place, after --name shop

APP = '''\
import os
import time
from http.server import BaseHTTPRequestHandler

VERSION = "{version}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/slow?"):  # a request that takes its time
            time.sleep(float(self.path[len("/slow?"):]))
        body = f"{{NAME}} {{VERSION}} {{os.getpid()}}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # the journal gets the master's lines, not one a request


NAME = "{name}"
'''


def documented(command):
    """*command*, after checking that the deploy guide gives it word for word."""
    with open(DEPLOY_GUIDE) as f:
        lines = {line.strip() for line in f}
    assert command in lines, f"docs/deploy.rst does not give the command {command!r}"
    return command


@pytest.fixture(scope="module")
def machine_(tmp_path_factory):
    work = tmp_path_factory.mktemp("systemd")
    root = machine.rootfs()
    stage = work / "prefork"
    for part in ("systemd", os.path.join("docs", "deploy")):
        shutil.copytree(os.path.join(ROOT, part), stage / part)
    os.makedirs(stage / "tests")
    shutil.copy(os.path.join(ROOT, "tests", "e2e", "loadclient.py"), stage / "tests")
    machine.build_wheels(ROOT, str(stage / "wheels"), machine.python_version(root))
    box = machine.Machine(root, {str(stage): HERE}, str(work))
    try:
        for command in (
                "python3 -m pip install --break-system-packages --no-index "
                "--find-links wheels prefork",
                "cp systemd/prefork@.service systemd/prefork@.socket /etc/systemd/system/",
                "systemctl daemon-reload",
                "mkdir -p /etc/prefork /srv/shop",
                "cp docs/deploy/shop.toml docs/deploy/shop.env /etc/prefork/"):
            box.run(documented(command), cwd=HERE, timeout=120)
        yield box
    finally:
        box.close()


@pytest.fixture
def box(machine_):
    """The machine, with the shop's code at version 1; after the test, every prefork
    unit stopped and disabled, and no prefork process left."""
    write_app(machine_, "v1")
    yield machine_
    machine_.run(f"systemctl stop {SHOP}.socket {SHOP}.service prefork.service; "
                 f"systemctl disable --quiet {SHOP}.socket; "
                 f"rm -rf /etc/systemd/system/{SHOP}.service.d; "
                 "systemctl daemon-reload; systemctl reset-failed", check=False)
    left = machine_.run("pgrep -a -f '^prefork: '", check=False).stdout
    assert left == "", f"prefork processes left in the container:\n{left}"


def write_app(box, version, name="shop", path="/srv/shop/shop/handlers.py"):
    box.write(os.path.join(os.path.dirname(path), "__init__.py"), "")
    box.write(path, APP.format(version=version, name=name))


def get(box, url="http://127.0.0.1:8000/", unix=None):
    """curl's answer: (status, body)."""
    argv = ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"]
    argv += ["--unix-socket", unix, "http://localhost/"] if unix else [url]
    body, _, status = box.run(argv).stdout.rpartition("\n")
    return int(status), body


def main_pid(box, unit=SHOP):
    return int(box.show(unit, "MainPID")["MainPID"])


def new_main_pid(box, old, unit=SHOP):
    """Wait until *unit* runs with a main process other than *old*; return its pid."""
    def moved():
        props = box.show(unit, "MainPID", "ActiveState", "SubState")
        pid = int(props["MainPID"])
        return pid if pid not in (0, old) and props["SubState"] == "running" else 0
    return wait_for(moved, f"{unit} to run with a new main process", interval=0.05)


def journal(box, unit=SHOP):
    return box.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit]).stdout


def workers_of(box, pid):
    out = box.run(["ps", "-o", "pid=", "--ppid", str(pid)], check=False).stdout
    return {int(p) for p in out.split()}


def stopped_cleanly(box, unit):
    """`systemctl stop` as the guide gives it; then what systemd says of the result."""
    box.run(documented(f"systemctl stop {unit}"))
    props = box.show(f"{unit}.service", "Result", "ActiveState", "MainPID", "ControlGroup")
    procs = box.run("pgrep -a -f '^prefork: '", check=False).stdout
    return props, procs


class Load:
    """loadclient.py inside the container: *connections* clients on *target*."""

    def __init__(self, box, target, connections=4):
        self.proc = box.popen(["python3", f"{HERE}/tests/loadclient.py", target,
                               "--connections", str(connections)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.result = None

    def after(self, n):
        """Return once *n* more requests have been answered."""
        self.proc.stdin.write(f"after {n}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline().split()[1])

    def stop(self):
        if self.result is None:
            out, _ = self.proc.communicate("stop\n", timeout=60)
            self.result = json.loads(out.splitlines()[-1])
        return self.result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            try:
                self.stop()
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                self.proc.kill()
                self.proc.communicate()


def figure(step, **values):
    print(f"\nfigure: {step}: " + ", ".join(f"{k} {v}" for k, v in values.items()))


# -- the tests ------------------------------------------------------------------------

def test_socket_activation_nginx_status_and_stop(box):
    box.run(documented(f"systemctl enable --now {SHOP}.socket"))
    assert box.show(f"{SHOP}.service", "ActiveState")["ActiveState"] == "inactive"
    # The first connection starts the service; it waits in the queue meanwhile.
    started = time.monotonic()
    status, body = get(box, unix=SOCKET)
    first_answer = time.monotonic() - started
    assert status == 200 and body.startswith("shop v1 ")
    master = main_pid(box)
    assert int(body.split()[2]) in workers_of(box, master)
    assert get(box)[1].startswith("shop v1 ")  # the socket unit's TCP listener
    shown = box.run(documented(f"systemctl status {SHOP}")).stdout
    assert re.search(r'Status: "2 workers ready, 0 booting, generation 1, \d+ requests', shown)
    # nginx (its workers run as www-data) in front of the socket unit's Unix socket.
    for command in ("cp docs/deploy/nginx-prefork.conf /etc/nginx/prefork.conf",
                    "cp docs/deploy/nginx-shop.conf /etc/nginx/sites-available/shop",
                    "ln -s /etc/nginx/sites-available/shop /etc/nginx/sites-enabled/shop",
                    "rm /etc/nginx/sites-enabled/default",
                    "nginx -t && systemctl reload nginx"):
        box.run(documented(command), cwd=HERE)
    assert "www-data" in box.run("ps -o user= -C nginx").stdout
    # nginx's reload returns before its new workers run: the old ones answer a moment.
    wait_for(lambda: get(box, "http://127.0.0.1/")[1].startswith("shop v1 "),
             "nginx to serve the new site", interval=0.05)
    answers = [get(box, "http://127.0.0.1/") for _ in range(5)]
    assert all(s == 200 and b.startswith("shop v1 ") for s, b in answers), answers
    # The control socket in the DynamicUser service's runtime directory, found there.
    assert box.run(f"test -S {CONTROL}", check=False).returncode == 0
    out = box.run(documented("prefork status --name shop")).stdout
    assert out.startswith(f"master {master} [shop]: generation 1, 2 workers wanted")
    # The stop is graceful: a request in flight is answered.
    slow = box.popen(["curl", "-sS", "--max-time", "20", "--unix-socket", SOCKET,
                      "http://localhost/slow?1.5"], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(w["busy"] for w in box.json(
            "prefork status --json --name shop")["workers"]),
            "a worker busy with the slow request", interval=0.05)
        props, procs = stopped_cleanly(box, SHOP)
        answer, _ = slow.communicate(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.communicate()
    assert answer.startswith("shop v1 ")
    assert props["Result"] == "success" and props["ActiveState"] == "inactive", props
    assert procs == ""
    assert box.run(["test", "-S", SOCKET], check=False).returncode == 0  # the socket unit's
    assert get(box, unix=SOCKET)[0] == 200  # and it starts the service again
    figure("socket activation", first_answer=f"{first_answer:.2f}s", master=master,
           nginx="200", stop=props["Result"], slow_request_in_flight="answered")


def test_reload_under_load_serves_the_new_code(box):
    box.run(f"systemctl enable --now {SHOP}.socket")
    get(box, unix=SOCKET)
    master = main_pid(box)
    with Load(box, f"unix:{SOCKET}") as load, \
            Load(box, f"unix:{SOCKET}", connections=1) as single:
        load.after(300)
        single.after(20)
        write_app(box, "v2")
        started = time.monotonic()
        box.run(documented(f"systemctl reload {SHOP}"))
        wait_for(lambda: "reloads: 1 ok" in box.show(SHOP, "StatusText")["StatusText"],
                 "the reload to be done", interval=0.05)
        took = time.monotonic() - started
        load.after(300)
        single.after(20)
        result, one = load.stop(), single.stop()
    figure("reload under load", requests=result["requests"], failed=len(result["failed"]),
           slowest=f"{result['slowest']}s", versions=result["versions"], took=f"{took:.2f}s")
    figure("reload, one request at a time", requests=one["requests"],
           failed=len(one["failed"]), slowest=f"{one['slowest']}s")
    assert result["failed"] == [] and one["failed"] == []
    assert one["slowest"] < 1.0, one["slowest5"]
    assert result["versions"].get("shop v2", 0) >= 300
    assert get(box, unix=SOCKET)[1].startswith("shop v2 ")
    assert main_pid(box) == master


def test_upgrades_under_load_and_one_request_at_a_time(box):
    box.run(f"systemctl enable --now {SHOP}.socket")
    get(box, unix=SOCKET)
    first = main_pid(box)
    since = box.show(SHOP, "ActiveEnterTimestampMonotonic")
    with Load(box, f"unix:{SOCKET}") as load, \
            Load(box, f"unix:{SOCKET}", connections=1) as single:
        load.after(200)
        single.after(20)
        box.run(documented(f"systemctl kill --signal=SIGUSR2 --kill-whom=main {SHOP}"))
        second = new_main_pid(box, first)
        wait_for(lambda: not box.pid_alive(first), "the old master to exit")
        load.after(200)
        single.after(20)
        out = box.run(documented("prefork upgrade --name shop")).stdout
        third = new_main_pid(box, second)
        assert out == f"upgraded: master {third} took over from master {second}\n"
        wait_for(lambda: not box.pid_alive(second), "the old master to exit")
        load.after(200)
        single.after(20)
        loaded, one = load.stop(), single.stop()
    figure("upgrades under load", requests=loaded["requests"], failed=len(loaded["failed"]),
           slowest=f"{loaded['slowest']}s")
    figure("upgrades, one request at a time", requests=one["requests"],
           failed=len(one["failed"]), slowest=f"{one['slowest']}s",
           MainPID=f"{first} -> {second} -> {third}")
    assert loaded["failed"] == [] and one["failed"] == []
    assert one["slowest"] < 1.0, one["slowest5"]
    assert loaded["slowest"] < 1.0, loaded["slowest5"]
    status, body = get(box, unix=SOCKET)
    assert int(body.split()[2]) in workers_of(box, third)
    # The service never left "active": no restart, the same activation.
    props = box.show(SHOP, "ActiveState", "NRestarts", "ActiveEnterTimestampMonotonic")
    assert props["ActiveState"] == "active" and props["NRestarts"] == "0"
    assert props["ActiveEnterTimestampMonotonic"] == since["ActiveEnterTimestampMonotonic"]
    log = journal(box)
    assert f"upgrade: master {second} takes over from master {first}" in log
    assert f"upgrade: master {third} takes over from master {second}" in log
    # The new master is systemd's own child: no "not our child" warning, and a stop
    # waits for it and its workers, as for the master systemd started.
    assert "not our child" not in log
    props, procs = stopped_cleanly(box, SHOP)
    assert props["Result"] == "success", journal(box)[-2000:]
    assert procs == ""


def test_the_watchdog_restarts_a_frozen_master_only(box):
    box.write(f"/etc/systemd/system/{SHOP}.service.d/watchdog.conf",
              "[Service]\nWatchdogSec=2\n")
    box.run("systemctl daemon-reload")
    box.run(f"systemctl enable --now {SHOP}.socket")
    get(box, unix=SOCKET)
    master = main_pid(box)
    # A master that runs keeps the watchdog fed: three periods, and it is still there.
    first_ping = int(box.show(SHOP, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
    wait_for(lambda: int(box.show(SHOP, "WatchdogTimestampMonotonic")
                         ["WatchdogTimestampMonotonic"]) - first_ping >= 6_000_000,
             "three watchdog periods of pings", interval=0.25)
    assert main_pid(box) == master and box.show(SHOP, "NRestarts")["NRestarts"] == "0"
    # A frozen one is not: systemd aborts it and starts the service again.
    box.run(["kill", "-STOP", str(master)])
    frozen = time.monotonic()
    new = new_main_pid(box, master)
    took = time.monotonic() - frozen
    assert get(box, unix=SOCKET)[0] == 200
    assert box.show(SHOP, "NRestarts")["NRestarts"] == "1"
    assert "Watchdog timeout" in journal(box)
    figure("watchdog", WatchdogSec="2s", restarted_after=f"{took:.1f}s",
           MainPID=f"{master} -> {new}")


def test_a_killed_master_is_restarted_and_no_connection_is_refused(box):
    box.run(f"systemctl enable --now {SHOP}.socket")
    get(box, unix=SOCKET)
    master = main_pid(box)
    with Load(box, f"unix:{SOCKET}") as load:
        load.after(200)
        box.run(["kill", "-9", str(master)])
        killed = time.monotonic()
        new = new_main_pid(box, master)
        took = time.monotonic() - killed
        load.after(200)
        result = load.stop()
    figure("kill -9 of the master", requests=result["requests"],
           refused=result["refused"], failed=len(result["failed"]),
           slowest=f"{result['slowest']}s", restarted_after=f"{took:.1f}s",
           MainPID=f"{master} -> {new}")
    assert result["refused"] == 0
    assert result["failed"] == [], result["failed"]
    assert box.show(SHOP, "NRestarts")["NRestarts"] == "1"


def test_the_single_service_unit(box):
    for command in ("cp systemd/prefork.service /etc/systemd/system/",
                    "cp docs/deploy/prefork.toml /etc/prefork/",
                    "systemctl daemon-reload"):
        box.run(documented(command), cwd=HERE)
    write_app(box, "v1", name="app", path="/srv/prefork/app.py")
    box.run(documented("systemctl start prefork"))
    master = main_pid(box, "prefork")
    status, body = get(box)
    assert status == 200 and body.startswith("app v1 ")
    assert int(body.split()[2]) in workers_of(box, master)
    shown = box.run("systemctl status prefork").stdout
    assert 'Status: "2 workers ready' in shown
    out = box.run(documented("prefork status")).stdout
    assert out.startswith(f"master {master}:")
    write_app(box, "v2", name="app", path="/srv/prefork/app.py")
    box.run(documented("systemctl reload prefork"))
    wait_for(lambda: "reloads: 1 ok" in box.show("prefork", "StatusText")["StatusText"],
             "the reload to be done", interval=0.05)
    assert get(box)[1].startswith("app v2 ")
    props, procs = stopped_cleanly(box, "prefork")
    assert props["Result"] == "success" and props["ActiveState"] == "inactive"
    assert procs == ""
