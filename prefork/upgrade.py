"""The zero-downtime upgrade (SIGUSR2), the old master's half: a new master image
on the same sockets.

The old master forks a go-between, which forks the new image and exits at once,
so the new master is adopted by the service manager (systemd, PID 1 or the nearest
subreaper) from its first moment; when it later sends MAINPID=, systemd
supervises it as its own child, waits for it on stop and sees its exit status.
The new image's process marks the listening sockets, the pidfile's descriptor and
one end of a pipe inheritable and execs the command line the master was started
with, so a fresh interpreter runs the code now on disk.  The variable
PREFORK_UPGRADE tells the new master which descriptor is which::

    old master                              new master (a fresh interpreter)
    fork, fork + exec  ------------------>  adopts the sockets and the pidfile lock,
                                            boots its generation of workers
                                            ready: pidfile := its pid, control socket
                                            renamed into place, MAINPID= + READY=1
    reads "R" on the pipe  <--------------  writes "R"
    retires its workers, exits; unlinks nothing, says nothing more to systemd

A new master that fails writes "E" and its error before it exits; the old one
logs it and keeps serving.  The old master watches the new one through a pidfd
(readable once it has exited) and signals it through the pidfd, so a recycled pid
is never hit.  The new master's half (reading PREFORK_UPGRADE, taking over) is
the command's: prefork.command.takeover.  Only `prefork serve` can be upgraded:
it knows the command line and what each socket is (the Plan).
"""

import dataclasses
import json
import os
import select
import signal

__all__ = ["Plan", "Successor", "Upgrader", "Deadline", "refusal", "exec_image", "ENV", "READY",
           "FAILED", "SLACK"]

ENV = "PREFORK_UPGRADE"
READY, FAILED = b"R", b"E"
SLACK = 30.0  # a new master image has boot_timeout plus this to become ready


@dataclasses.dataclass
class Plan:
    """What the old master needs to start its successor (made by the command)."""

    argv: list            # the command line to exec, interpreter first
    cwd: str              # where to start it (PWD's path when that is the cwd)
    listeners: list       # [(fd, spec, inherited)]: each listening socket, kept at its fd
    pidfile_fd: int = -1  # the locked pidfile: the lock passes with the descriptor


def refusal(plan, pid, in_progress, stopping):
    """Why an upgrade cannot start now, or "" when it can.  Pure: the old master's
    pid, whether one is in progress and whether the master is stopping are given."""
    if plan is None:
        return ("an upgrade needs the `prefork serve` command, which knows the command "
                "line and the sockets")
    if pid == 1:
        return ("as PID 1 of its namespace this master cannot hand over to a new one "
                "(its exit would end the namespace); restart it instead")
    if in_progress:
        return "an upgrade is in progress"
    if stopping:
        return "the master is stopping"
    return ""


@dataclasses.dataclass
class Deadline:
    """When the new master must be ready by; overdue() says so once.  Pure."""

    at: object             # monotonic time, or None once it has said so
    after: float           # the seconds it was given

    def overdue(self, now):
        if self.at is not None and now >= self.at:
            self.at = None
            return True
        return False


@dataclasses.dataclass
class Successor:
    """The new master being started, and what it has said."""

    pid: int
    pipe: int             # the read end; "R" = ready, "E..." = failed and why
    pidfd: int            # readable once the new master has exited
    said: bytes = b""

    @classmethod
    def start(cls, plan, idle=()):
        """Fork the go-between, which forks the new image; return the Successor.
        *idle*: the descriptors of the channel for idle connections, passed on too."""
        read_end, write_end = os.pipe()
        pid_r, pid_w = os.pipe()
        me = os.getpid()
        try:
            between = os.fork()
        except OSError:
            for fd in (read_end, write_end, pid_r, pid_w):
                os.close(fd)
            raise
        if between == 0:  # the go-between
            status = 1
            try:
                os.close(read_end)
                os.close(pid_r)
                pid = os.fork()
                if pid == 0:
                    os.close(pid_w)
                    exec_image(plan, write_end, me, idle)  # never returns
                os.write(pid_w, str(pid).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        os.close(pid_w)
        try:
            os.waitpid(between, 0)  # it exits as soon as it has forked
            text = os.read(pid_r, 32)
        finally:
            os.close(pid_r)
        if not text.isdigit():
            os.close(read_end)
            raise OSError(0, "could not fork the new master")
        pid = int(text)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # it failed at once and is gone; its pipe says why
            pidfd = os.eventfd(1)  # readable at once, as its pidfd would be
        os.set_blocking(read_end, False)
        return cls(pid, read_end, pidfd)

    def signal(self, signum):
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except OSError:
            pass  # it has exited already

    def exited(self, timeout=0.0):
        """Whether it has exited, waiting up to *timeout* seconds for it (None: until
        it has)."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else timeout * 1000))

    def hear(self):
        """Read what the new master wrote: what came, b"" at the end of the pipe (it
        has closed its end), None when nothing was there after all."""
        try:
            data = os.read(self.pipe, 4096)
        except BlockingIOError:
            return None
        except OSError:
            return b""
        self.said += data
        return data

    def reason(self):
        """Why the new master failed, in its words when it said any."""
        if self.said.startswith(FAILED):
            return self.said[1:].decode(errors="replace").strip()
        return ""

    def close(self):
        for fd in (self.pipe, self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass


class Upgrader:
    """The old master's side of upgrades, composed by the master.

    For the master: start(now, boot_timeout, stopping) (why not, or ""), fds() to poll,
    heard(fd) when one of them is readable, deadline() and overdue(now),
    stop(graceful), close(graceful_timeout).  ``successor`` is the new master while
    one is starting; ``last`` says how the last one ended.
    """

    def __init__(self, plan):
        self.plan = plan
        self.successor = None
        self.due = None  # a Deadline
        self.handed_over = False
        self.last = ""
        self.results = {"ok": 0, "failed": 0}  # upgrades this master started, by how they ended

    def start(self, now, boot_timeout, stopping, idle=()):
        """Start a new master image, to be ready within *boot_timeout* + SLACK; return
        why not ("" once started).  *idle*: the fds of the idle connections' channel."""
        why = refusal(self.plan, os.getpid(), self.successor is not None, stopping)
        if why:
            return why
        try:
            self.successor = Successor.start(self.plan, idle)
        except OSError as e:
            return f"fork failed: {e.strerror}"
        after = boot_timeout + SLACK
        self.due = Deadline(now + after, after)
        return ""

    def fds(self):
        succ = self.successor
        return [succ.pipe, succ.pidfd] if succ else []

    def heard(self, fd):
        """One of fds() is readable; what it means for the master:

        "ready"   the new master is ready: hand over (said once)
        "closed"  its pipe is at its end: stop polling *fd*
        "failed"  it exited before it was ready (why is in ``last``); fds() are closed
        "gone"    it exited after it took over; fds() are closed
        ""        nothing yet
        """
        succ = self.successor
        if fd == succ.pipe:
            data = succ.hear()
            if data == b"":
                return "closed"
            if succ.said.startswith(READY) and not self.handed_over:
                self.handed_over = True
                self.last = f"ok: master {succ.pid} took over"
                self.results["ok"] += 1
                return "ready"
            return ""
        # Its pidfd: it has exited.
        self.successor = None
        while succ.hear():  # its last words, if any are still in the pipe
            pass
        succ.close()
        if self.handed_over:
            return "gone"
        why = succ.reason() or "it exited before it was ready (its log says why)"
        self.last = f"failed: {why}"
        self.results["failed"] += 1
        return "failed"

    def deadline(self):
        """When the new master must be ready by, while that is still to be checked."""
        if self.successor and not self.handed_over and self.due:
            return self.due.at
        return None

    def overdue(self, now):
        """Whether the new master has just passed its deadline; it is told to stop."""
        if self.successor and not self.handed_over and self.due.overdue(now):
            self.successor.signal(signal.SIGTERM)
            return True
        return False

    def stop(self, graceful):
        """The master stops: a new master still starting stops too."""
        if self.successor and not self.handed_over:
            self.successor.signal(signal.SIGTERM if graceful else signal.SIGINT)
            return True
        return False

    def close(self, graceful_timeout):
        """At the master's end: wait for a new master told to stop (SIGKILL past
        *graceful_timeout*; 0: no limit), then let go of it."""
        succ = self.successor
        if succ is None:
            return
        if not self.handed_over and not succ.exited(graceful_timeout or None):
            succ.signal(signal.SIGKILL)
            succ.exited(5.0)
        succ.close()


def exec_image(plan, ready_fd, old_master, idle=()):
    """In the forked process: exec the new master image.  Never returns."""
    try:
        env = dict(os.environ)
        env[ENV] = json.dumps({"pid": os.getpid(), "master": old_master, "ready": ready_fd,
                               "pidfile": plan.pidfile_fd, "listeners": plan.listeners,
                               "idle": list(idle)})
        if "WATCHDOG_USEC" in env:
            env["WATCHDOG_PID"] = str(os.getpid())  # the new master keeps the watchdog fed
        for fd in (ready_fd, plan.pidfile_fd, *(fd for fd, _, _ in plan.listeners), *idle):
            if fd >= 0:
                os.set_inheritable(fd, True)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        try:
            os.chdir(plan.cwd)
        except OSError:
            pass  # the old directory is gone: stay where the old master is
        os.execve(plan.argv[0], plan.argv, env)
    except BaseException as e:
        message = f"cannot start {plan.argv[0]}: {getattr(e, 'strerror', None) or e}"
        try:
            os.write(ready_fd, FAILED + message.encode()[:4000])
        finally:
            os._exit(127)
