"""A prefork master run as a real process for a test, and a client load against it.

``Running`` starts tests/prefork/serve.py on a socket the test bound (passed as an
inherited fd, so no port is guessed), with NOTIFY_SOCKET pointing at a datagram
socket the test reads: READY=1 is the event tests synchronise on.  On exit it
stops the master (TERM, then KILL after a bound) and checks no worker is left.
"""

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from ..core.helpers import recv_all

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIMEOUT = 20.0  # the bound on any single wait; a passing test is far below it


def wait_for(predicate, what, timeout=TIMEOUT, interval=0.01):
    """Poll *predicate* until it returns a true value; fail loudly after *timeout*.

    For states no event announces (a process title, a process gone); every wait is
    bounded, and the interval only paces the polling.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_gone(pids, what, timeout=TIMEOUT):
    """Wait until every process in *pids* has exited (a zombie has), through pidfds:
    the kernel says so, nothing is sampled."""
    fds = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                pass  # gone and reaped already
        deadline = time.monotonic() + timeout
        waiting = set(fds)
        while waiting:
            left = deadline - time.monotonic()
            ready = select.select(list(waiting), [], [], max(0.0, left))[0]
            if not ready and left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            waiting -= set(ready)
    finally:
        for fd in fds:
            os.close(fd)


def descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def title(proc):
    try:
        return " ".join(proc.cmdline()).strip()
    except psutil.Error:
        return ""


class Running:
    def __init__(self, sockdir, handler="apps:Probe", server="tcp", settings=(),
                 pythonpath=(), ready=True, cli=None, env=None, notify_mode=None, tag=""):
        """Run serve.py with *server*, *handler* and *settings*; or, given *cli* (a
        list of arguments), the `prefork serve` command with ``--bind fd://N``.  *tag*
        tells apart the files of several masters run in one *sockdir*."""
        self.sockdir = sockdir
        self.kind = server if server in ("udp", "unix", "unixgram") else "tcp"
        self.listener = self._listen()
        self.address = self.listener.getsockname()
        self.notify_path = os.path.join(sockdir, f"notify{tag}")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        # As systemd does: the kernel tells which process sent each message.
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if notify_mode is not None:  # for a master that will not be root
            os.chmod(self.notify_path, notify_mode)
        self.messages = []
        self.senders = []  # the pid that sent each of self.messages
        # Appending: the master's writes go to the end even while log() reads from 0.
        self.errlog = tempfile.TemporaryFile(mode="a+")
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=os.pathsep.join([*pythonpath, HERE, ROOT]), **(env or {}))
        fd = self.listener.fileno()
        if cli is None:
            argv = [os.path.join(HERE, "serve.py"), server, str(fd), handler, *settings]
        else:
            argv = ["-m", "prefork", "serve", "--bind", f"fd://{fd}", *cli]
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            pass_fds=[fd], stdin=subprocess.PIPE, stdout=self.errlog, stderr=self.errlog,
            env=env, cwd=sockdir, start_new_session=True)
        self.pid = self.proc.pid
        self.started = time.monotonic()
        self.known_workers = set()
        try:
            if ready:
                self.expect("READY=1")
                self.workers()  # known from the start, so close() can end orphans too
        except BaseException:
            self.close()
            raise

    def _listen(self):
        if self.kind == "tcp":
            return socket.create_server(("127.0.0.1", 0), backlog=2048)
        if self.kind == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            return s
        s = socket.socket(socket.AF_UNIX,
                          socket.SOCK_STREAM if self.kind == "unix" else socket.SOCK_DGRAM)
        s.bind(os.path.join(self.sockdir, "server.sock"))
        if self.kind == "unix":
            s.listen(2048)
        return s

    # -- observing --------------------------------------------------------------------

    def expect(self, text, timeout=TIMEOUT):
        """Wait for a notify message containing *text*; return it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} from the master within {timeout}s; "
                                     f"got {self.messages}\n{self.log()}")
            self.notify.settimeout(min(left, 0.2))
            try:
                data, ancillary, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"master exited ({self.proc.returncode}) before "
                                         f"{text!r}\n{self.log()}") from None
                continue
            msg = data.decode()
            sender = next((struct.unpack("3i", cdata[:12])[0] for level, kind, cdata
                           in ancillary if kind == socket.SCM_CREDENTIALS), 0)
            self.messages.append(msg)
            self.senders.append(sender)
            if text in msg:
                return msg

    def log(self):
        """What the master and its workers wrote (kept after close())."""
        if self.errlog.closed:
            return self.final_log
        self.errlog.seek(0)
        return self.errlog.read()

    def workers(self):
        """Live (non-zombie) workers: {pid: title}."""
        found = {}
        for p in descendants(self.pid):
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    found[p.pid] = title(p)
            except psutil.Error:
                pass
        self.known_workers |= set(found)
        return found

    def worker_pids(self):
        return sorted(self.workers())

    def wait_workers(self, predicate, what):
        """Wait until predicate(workers) holds; return those workers."""
        def check():
            workers = self.workers()
            return workers if predicate(workers) else None
        return wait_for(check, what)

    # -- talking ----------------------------------------------------------------------

    def request(self, line=b"ping", timeout=10.0):
        if self.kind in ("udp", "unixgram"):
            return self._datagram(line, timeout)
        family = socket.AF_INET if self.kind == "tcp" else socket.AF_UNIX
        with socket.socket(family, socket.SOCK_STREAM) as c:
            c.settimeout(timeout)
            c.connect(self.address)
            c.sendall(line + b"\n")
            return recv_all(c)

    def _datagram(self, line, timeout):
        family = socket.AF_INET if self.kind == "udp" else socket.AF_UNIX
        with socket.socket(family, socket.SOCK_DGRAM) as c:
            path = None
            if family == socket.AF_UNIX:
                path = os.path.join(self.sockdir, f"client{threading.get_ident()}")
                c.bind(path)
            try:
                c.settimeout(timeout)
                c.sendto(line, self.address)
                return c.recv(4096)
            finally:
                if path:
                    os.unlink(path)

    def hang(self, timeout=TIMEOUT):
        """A connection whose request (apps.Probe's "hang") keeps a worker busy for
        good, returned once the worker has said it is in it; close it when done."""
        c = socket.create_connection(self.address, timeout=timeout)
        c.sendall(b"hang\n")
        if c.recv(100) != b"hanging\n":
            c.close()
            raise AssertionError(f"no worker took the hanging request\n{self.log()}")
        return c

    def signal(self, signum):
        self.workers()  # a master killed now leaves orphans close() must still find
        os.kill(self.pid, signum)

    def wait_exit(self, timeout=TIMEOUT):
        return self.proc.wait(timeout)

    # -- ending -----------------------------------------------------------------------

    def close(self):
        self.workers()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdin.close()
        # Workers notice their master is gone and leave (tests of that assert it
        # themselves); one stuck in a request it cannot finish is ended here.
        def live_workers():
            alive = []
            for pid in self.known_workers:
                try:
                    proc = psutil.Process(pid)
                    if proc.status() != psutil.STATUS_ZOMBIE and "prefork: worker" in title(proc):
                        alive.append(pid)
                except psutil.Error:
                    pass  # gone
            return alive
        try:
            wait_for(lambda: not live_workers(), "workers to exit", 5)
        except AssertionError:
            pass
        finally:
            for pid in live_workers():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.listener.close()
            self.notify.close()
            self.final_log = self.log()
            self.errlog.close()
            for path in (self.notify_path, os.path.join(self.sockdir, "server.sock")):
                if os.path.exists(path):
                    os.unlink(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Background(threading.Thread):
    """A thread for the length of a ``with`` block, told to stop at its end."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop_event = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(TIMEOUT)


class Load(Background):
    """Requests in a loop from a thread until stopped, bounded in count and time."""

    def __init__(self, running, line=b"ping", max_requests=100_000, max_seconds=60.0,
                 timeout=10.0):
        super().__init__()
        self.running, self.line, self.timeout = running, line, timeout
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.ok, self.errors, self.latencies, self.answers = 0, [], [], set()

    def run(self):
        end = time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and self.ok + len(self.errors) < self.max_requests \
                and time.monotonic() < end:
            t0 = time.monotonic()
            try:
                answer = self.running.request(self.line, self.timeout)
                if not answer:
                    raise ConnectionError("empty answer")
                self.answers.add(answer)
                self.ok += 1
            except OSError as e:
                self.errors.append(repr(e))
            self.latencies.append(time.monotonic() - t0)


class Sampler(Background):
    """Counts a master's live workers every few milliseconds; ``most`` is the peak."""

    def __init__(self, running, max_seconds=60.0):
        super().__init__()
        self.running, self.max_seconds = running, max_seconds
        self.most = 0

    def run(self):
        end = time.monotonic() + self.max_seconds
        while not self.stop_event.wait(0.002) and time.monotonic() < end:
            self.most = max(self.most, len(self.running.workers()))
