"""The zero-downtime upgrade (SIGUSR2): a new master image on the same sockets.

The old master forks; the child marks the listening sockets, the pidfile's
descriptor and one end of a pipe inheritable and execs the command line the
master was started with, so a fresh interpreter runs the code now on disk.  The
variable PREFORK_UPGRADE tells the new master which descriptor is which::

    old master                              new master (a fresh interpreter)
    fork + exec  ------------------------>  adopts the sockets and the pidfile lock,
                                            boots its generation of workers
                                            ready: pidfile := its pid, control socket
                                            renamed into place, MAINPID= + READY=1
    reads "R" on the pipe  <--------------  writes "R"
    retires its workers, exits; unlinks nothing, says nothing more to systemd

A new master that fails writes "E" and its error before it exits; the old one
logs it and keeps serving.  Only `prefork serve` can be upgraded: it knows the
command line and what each socket is.
"""

import dataclasses
import json
import logging
import os
import select
import signal
import sys
import time

__all__ = ["Plan", "Successor", "UpgradeSteps", "Inherited", "exec_image",
           "report_failure", "ENV"]

log = logging.getLogger("prefork")

ENV = "PREFORK_UPGRADE"
READY, FAILED = b"R", b"E"
SLACK = 30.0  # a new master image has boot_timeout plus this to become ready


@dataclasses.dataclass
class Plan:
    """What the old master needs to start its successor."""

    argv: list            # the command line to exec, interpreter first
    cwd: str              # where to start it (PWD's path when that is the cwd)
    listeners: list       # [(fd, spec, inherited)]: each listening socket, kept at its fd
    pidfile_fd: int = -1  # the locked pidfile: the lock passes with the descriptor

    @classmethod
    def for_this_process(cls, listeners, pidfile_fd=-1):
        return cls(argv=[sys.executable, *sys.orig_argv[1:]], cwd=logical_cwd(),
                   listeners=[(lst.sock.fileno(), lst.spec, lst.inherited)
                              for lst in listeners],
                   pidfile_fd=pidfile_fd)


@dataclasses.dataclass
class Successor:
    """In the old master: the new master being started, and what it has said.

    It is not this master's child.  The master forks a go-between that forks the
    new image and exits at once, so the new master is adopted by the service manager
    (systemd, PID 1 or the nearest subreaper) from its first moment.  When it then
    sends MAINPID=, systemd supervises it as its own child: it waits for it on stop
    and sees its exit status, as for the master it started itself.  This master
    watches it through a pidfd, which becomes readable when it exits, and signals it
    through the pidfd too, so a recycled pid can never be hit."""

    pid: int
    pipe: int             # the read end; "R" = ready, "E..." = failed and why
    pidfd: int            # readable once the new master has exited
    deadline: object      # monotonic time by which it must be ready; None once passed
    deadline_after: float
    said: bytes = b""

    @classmethod
    def start(cls, plan, deadline_after, now):
        """Fork the go-between, which forks the new image; return the Successor."""
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
                    exec_image(plan, write_end, me)  # never returns
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
        return cls(pid, read_end, pidfd, now + deadline_after, deadline_after)

    def signal(self, signum):
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except (ProcessLookupError, OSError):
            pass  # it has exited already

    def exited(self, timeout=0.0):
        """Whether it has exited, waiting up to *timeout* seconds for it."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def wait_or_kill(self, seconds):
        """Wait until it has exited, SIGKILLing it after *seconds*."""
        if not self.exited(seconds):
            self.signal(signal.SIGKILL)
            self.exited(5.0)

    def close(self):
        for fd in (self.pipe, self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass

    def hear(self):
        """Read what the new master wrote; return "ready", a failure message, or ""
        while it has said nothing conclusive (None at end of file)."""
        try:
            data = os.read(self.pipe, 4096)
        except BlockingIOError:
            return ""
        if not data:
            return None
        self.said += data
        if self.said.startswith(READY):
            return "ready"
        return ""

    def reason(self):
        """Why the new master failed, in its words when it said any."""
        if self.said.startswith(FAILED):
            return self.said[1:].decode(errors="replace").strip()
        return ""


class UpgradeSteps:
    """The upgrade's half of prefork.master.Master: both the old master's steps
    (start a successor, hear it, hand over or carry on) and the new master's (take
    over)."""

    def start_upgrade(self, now):
        """Start a new master image; return why not ("" once started)."""
        plan = getattr(self.server, "prefork_upgrade", None)
        why = ""
        if plan is None:
            why = ("an upgrade needs the `prefork serve` command, which knows the command "
                   "line and the sockets")
        elif os.getpid() == 1:
            why = ("as PID 1 of its namespace this master cannot hand over to a new one "
                   "(its exit would end the namespace); restart it instead")
        elif self.successor or self.pool.stopping is not None:
            why = "an upgrade is in progress" if self.successor else "the master is stopping"
        if why:
            log.warning("upgrade (SIGUSR2) refused: %s", why)
            return why
        try:
            self.successor = Successor.start(plan, self.cfg.boot_timeout + SLACK, now)
        except OSError as e:
            log.error("upgrade: fork failed (%s); still serving", e.strerror)
            return f"fork failed: {e.strerror}"
        self.poller.register(self.successor.pipe, select.POLLIN)
        self.poller.register(self.successor.pidfd, select.POLLIN)
        log.info("upgrade: started new master %d (%s)", self.successor.pid, " ".join(plan.argv))
        self.notifier.send(STATUS=self.status())
        return ""

    def _on_successor_message(self):
        heard = self.successor.hear()
        if heard is None:  # it closed the pipe: it exited, or it is exiting; reaping tells
            self.poller.unregister(self.successor.pipe)
        elif heard == "ready" and not self.handed_over:
            self._hand_over()

    def _hand_over(self):
        log.info("upgrade: new master %d serves; retiring the workers of master %d",
                 self.successor.pid, os.getpid())
        self.handed_over = True
        self.last_upgrade = f"ok: master {self.successor.pid} took over"
        self.server.prefork_handed_over = True  # the command leaves files and sockets be
        self.notifier.close()  # systemd listens to the new master now
        self._next_watchdog = None
        if self.control:  # its path is the new master's socket now: close, do not unlink
            self.poller.unregister(self.control)
            self.control.close()
            self.control = None
        self._apply(self.pool.stop(True, time.monotonic()))

    def _successor_deadline(self):
        """When the new master must be ready by, while that is still to be checked."""
        succ = self.successor
        return succ.deadline if succ and not self.handed_over else None

    def _check_successor(self, now):
        deadline = self._successor_deadline()
        if deadline is not None and now >= deadline:
            succ = self.successor
            log.error("upgrade: the new master %d is not ready after %gs; stopping it, this "
                      "one keeps serving", succ.pid, succ.deadline_after)
            succ.deadline = None  # told once; its exit ends the upgrade
            succ.signal(signal.SIGTERM)

    def _successor_exited(self):
        """Its pidfd is readable: the new master has exited."""
        succ, self.successor = self.successor, None
        for fd in (succ.pipe, succ.pidfd):
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
        succ.hear()  # its last words, if any are still in the pipe
        succ.close()
        if self.handed_over:
            return
        why = succ.reason() or "it exited before it was ready (its log says why)"
        log.error("upgrade abandoned, master %d keeps serving: new master %d failed: %s",
                  os.getpid(), succ.pid, why)
        self.last_upgrade = f"failed: {why}"
        self.notifier.send(STATUS=f"upgrade failed: {why}; {self.status()}")

    def _announce(self):
        """The first generation is ready: tell systemd; as the new master of an upgrade,
        first take over the control socket, then the pidfile (takeover())."""
        takeover = getattr(self.server, "prefork_takeover", None)
        if takeover is None:
            self.notifier.send(READY=1, STATUS=self.status())
            return
        if self.control:
            self.control.publish()
        # MAINPID: systemd tracks this process from now on (NotifyAccess=all lets it say so).
        self.notifier.send(MAINPID=os.getpid(), READY=1, STATUS=self.status())
        takeover()


def logical_cwd():
    """The working directory by the path it was entered through: a deploy that moves
    a `current` symlink is followed by the new master, as a shell's PWD would be."""
    here = os.getcwd()
    pwd = os.environ.get("PWD", "")
    try:
        if pwd and os.path.isabs(pwd) and os.path.samefile(pwd, here):
            return pwd
    except OSError:
        pass
    return here


def exec_image(plan, ready_fd, old_master):
    """In the forked child: exec the new master image.  Never returns."""
    try:
        env = dict(os.environ)
        env[ENV] = json.dumps({"pid": os.getpid(), "master": old_master, "ready": ready_fd,
                               "pidfile": plan.pidfile_fd, "listeners": plan.listeners})
        if "WATCHDOG_USEC" in env:
            env["WATCHDOG_PID"] = str(os.getpid())  # the new master keeps the watchdog fed
        for fd in (ready_fd, plan.pidfile_fd, *(fd for fd, _, _ in plan.listeners)):
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


class Inherited:
    """In the new master: what the old master passed on (None when not an upgrade)."""

    def __init__(self, info):
        self.ready_fd = info["ready"]
        self.pidfile_fd = info["pidfile"]
        # A list, not a dict by spec: systemd may give several sockets one name
        # (FileDescriptorName=), and each must reach the new master.
        self.listeners = [(spec, fd, inherited) for fd, spec, inherited in info["listeners"]]
        self.old_pid = info["master"]
        os.set_inheritable(self.ready_fd, False)  # this master's alone, not a later exec's

    def fileno(self):
        """The pipe to the old master, until ready() or failed() closes it (-1)."""
        return self.ready_fd

    @classmethod
    def from_env(cls, environ=None):
        global _current
        env = os.environ if environ is None else environ
        text = env.pop(ENV, "")
        if not text:
            return None
        try:
            info = json.loads(text)
            if info.get("pid") != os.getpid():
                return None  # meant for another process (an ancestor of this one)
            _current = cls(info)
        except (ValueError, KeyError, TypeError):
            return None
        return _current

    def take(self, spec):
        """The inherited socket for --bind *spec*: (fd, inherited), or None."""
        for i, (known, fd, inherited) in enumerate(self.listeners):
            if known == spec:
                del self.listeners[i]
                return fd, inherited
        return None

    def take_systemd(self):
        """The sockets the old master had from systemd, in their order: [(spec, fd)]."""
        found = [(spec, fd) for spec, fd, _ in self.listeners if spec.startswith("systemd:")]
        self.listeners = [entry for entry in self.listeners
                          if not entry[0].startswith("systemd:")]
        return found

    def leftovers(self):
        """Sockets no --bind asks for any more: [(spec, fd)]."""
        left = [(spec, fd) for spec, fd, _ in self.listeners]
        self.listeners = []
        return left

    def ready(self):
        """Tell the old master this one serves now; it retires and exits."""
        self._send(READY)

    def failed(self, message):
        self._send(FAILED + message.encode(errors="replace")[:4000])

    def _send(self, data):
        global _current
        if self.ready_fd < 0:
            return
        try:
            os.write(self.ready_fd, data)
        except OSError:
            pass  # the old master is gone already
        os.close(self.ready_fd)
        self.ready_fd = -1
        if _current is self:
            _current = None


_current = None


def report_failure(message):
    """If this process is a new master that has not taken over, tell the old one why
    it will not: the old master logs it and keeps serving."""
    if _current is not None:
        _current.failed(message)
