"""A Debian machine with systemd as PID 1, booted in a container for the tests that
run prefork under a real systemd.

The root file system is made once with ``mmdebstrap`` and kept in the user's cache
directory, where a later run on the same machine finds it; it is booted with
``systemd-nspawn --boot --volatile=overlay``, so every boot starts from the same
clean system and writes only to memory.  The container has a network of its own
(``--private-network``: only its loopback), so nothing it listens on meets the
host's ports.  Commands run inside it through ``nsenter`` on its PID 1, as root,
with a clean environment: as an operator at its shell would run them.

prefork reaches the container the way the deploy guide says: as wheels, installed
into the container's ``/usr/bin/python3`` by the guide's ``pip install`` command.
"""

import contextlib
import glob
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time

from ..prefork.harness import wait_for

SUITE = "bookworm"  # Debian 12: systemd 252, Python 3.11, nginx 1.22
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-pip", "nginx-light",
            "curl", "procps")
TOOLS = ("mmdebstrap", "systemd-nspawn", "nsenter")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 90.0
COMMAND_TIMEOUT = 60.0


def why_not():
    """Why this machine cannot boot a container, or "" when it can."""
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        return (f"{', '.join(missing)} not installed (Debian packages mmdebstrap, "
                "systemd-container, util-linux)")
    if os.geteuid() != 0:
        return "booting a container with systemd-nspawn needs root"
    return ""


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    path = os.path.join(base, "prefork-tests")
    os.makedirs(path, exist_ok=True)
    return path


def rootfs():
    """The root file system, made on first use: a directory, reused while the suite
    and package list stay the same."""
    key = hashlib.sha256(" ".join((SUITE, MIRROR, *PACKAGES)).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir(), f"rootfs-{SUITE}-{key}")
    if os.path.isdir(path):
        return path
    building = f"{path}.building-{os.getpid()}"
    try:
        result = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
             SUITE, building, MIRROR],
            capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed ({result.returncode}):\n"
                               f"{result.stderr[-3000:]}")
        os.rename(building, path)  # complete, or not there at all
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return path


def python_version(root):
    """The major.minor of the root file system's python3, e.g. "3.11"."""
    found = sorted(glob.glob(os.path.join(root, "usr/lib/python3.*/os.py")))
    if not found:
        raise RuntimeError(f"no python3 in {root}")
    return os.path.basename(os.path.dirname(found[-1]))[len("python"):]


def build_wheels(source, dest, version):
    """Wheels of *source* (the checkout) and its dependencies, for Python *version*.

    With this interpreter at that version, the deploy guide's own command makes them;
    otherwise the checkout's wheel is built alone and its dependencies are fetched as
    wheels made for that version."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        _checked(pip + ["wheel", "--wheel-dir", dest, "."], cwd=source)
        return
    _checked(pip + ["wheel", "--no-deps", "--wheel-dir", dest, "."], cwd=source)
    own = glob.glob(os.path.join(dest, "prefork-*.whl"))
    cp = "cp" + version.replace(".", "")
    _checked(pip + ["download", "--only-binary=:all:", "--python-version", version,
                    "--implementation", "cp", "--abi", cp, "--abi", "abi3", "--abi", "none",
                    "--platform", f"manylinux2014_{platform.machine()}", "--dest", dest,
                    *own])


def _checked(command, cwd=None, timeout=300):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


class Machine:
    """A booted container; ``run()`` and ``popen()`` run commands inside it."""

    def __init__(self, root, binds, workdir):
        """Boot *root*, with *binds* ({host path: container path}, read-only); nspawn's
        console and notify socket go in *workdir*."""
        self.log = open(os.path.join(workdir, "console.log"), "w+")
        notify_path = os.path.join(workdir, "notify")
        # nspawn reports the container's PID 1 (X_NSPAWN_LEADER_PID=) on NOTIFY_SOCKET.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        argv = ["systemd-nspawn", "--boot", "--volatile=overlay", "--register=no",
                "--keep-unit", "--private-network", "--console=read-only",
                "--notify-ready=yes", f"--machine=prefork-test-{os.getpid()}",
                f"--directory={root}"]
        argv += [f"--bind-ro={host}:{inside}" for host, inside in binds.items()]
        self.leader = 0
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                env=dict(os.environ, NOTIFY_SOCKET=notify_path), start_new_session=True,
                preexec_fn=_end_with_parent)
            try:
                self._wait_booted(notify)
            except BaseException:
                self.close()
                raise
        finally:
            notify.close()
            os.unlink(notify_path)

    def _wait_booted(self, notify):
        deadline = time.monotonic() + BOOT_TIMEOUT
        ready = False
        while not (self.leader and ready):
            notify.settimeout(max(0.0, min(1.0, deadline - time.monotonic())))
            try:
                message = notify.recv(4096).decode()
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"systemd-nspawn exited ({self.proc.returncode}):\n"
                                       f"{self.console()}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the container did not start:\n{self.console()}") \
                        from None
                continue
            for line in message.splitlines():
                if line.startswith("X_NSPAWN_LEADER_PID="):
                    self.leader = int(line.split("=", 1)[1])
                ready = ready or line == "READY=1"  # the container's systemd is up
        # Then until the boot is done; systemctl cannot connect for the first instants.
        state = wait_for(lambda: self.run("systemctl is-system-running --wait", check=False,
                                          timeout=BOOT_TIMEOUT).stdout.strip(),
                         "the container's systemd to answer", BOOT_TIMEOUT, interval=0.1)
        if state not in ("running", "degraded"):
            raise RuntimeError(f"the container's systemd is {state!r}:\n{self.console()}\n"
                               + self.run("systemctl --failed --no-pager", check=False).stdout)

    def console(self):
        self.log.seek(0)
        return self.log.read()[-4000:]

    # -- commands -------------------------------------------------------------------

    def argv(self, command):
        """The host command line that runs *command* (a shell line or a list) inside."""
        if isinstance(command, str):
            command = ["sh", "-c", command]
        return ["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={PATH}",
                "LANG=C.UTF-8", "HOME=/root", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
                *command]

    def run(self, command, check=True, timeout=COMMAND_TIMEOUT, cwd=None, input=None):
        """Run *command* inside; with *check*, fail the test on a non-zero status."""
        if cwd:
            command = f"cd {cwd} && {command}" if isinstance(command, str) else \
                ["sh", "-c", f'cd {cwd} && exec "$@"', "sh", *command]
        result = subprocess.run(self.argv(command), capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def popen(self, command, **kwargs):
        return subprocess.Popen(self.argv(command), **kwargs)

    def show(self, unit, *props):
        """``systemctl show``'s properties of *unit*: {name: value}."""
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def path(self, inside):
        """The host's path to *inside*, a path in the container's file system."""
        return f"/proc/{self.leader}/root{inside}"

    def write(self, inside, text, mode=0o644):
        host = self.path(inside)
        os.makedirs(os.path.dirname(host), exist_ok=True)
        with open(host, "w") as f:
            f.write(text)
        os.chmod(host, mode)

    def pid_alive(self, pid):
        return self.run(["kill", "-0", str(pid)], check=False).returncode == 0

    def json(self, command):
        return json.loads(self.run(command).stdout)

    # -- ending ---------------------------------------------------------------------

    def close(self):
        """Power the container off (nspawn turns TERM into a clean shutdown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(BOOT_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.log:
            self.log.close()
            self.log = None


def _end_with_parent():
    """In nspawn, before exec: if the test run dies, TERM (a clean shutdown) follows."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
