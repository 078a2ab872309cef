"""The new master's half of an upgrade: what the old master passed on, and the
takeover once this master's workers are ready.  (The old master's half is
prefork.upgrade; the protocol, PREFORK_UPGRADE and the pipe's messages, is there.)
"""

import json
import os
import socket
import sys

from ..upgrade import ENV, FAILED, READY, Plan

__all__ = ["Inherited", "plan_for", "logical_cwd"]


class Inherited:
    """In the new master: what the old master passed on (from_env() is None when
    this process was not started by an upgrade)."""

    def __init__(self, info):
        self.ready_fd = info["ready"]
        self.pidfile_fd = info["pidfile"]
        # A list, not a dict by spec: systemd may give several sockets one name
        # (FileDescriptorName=), and each must reach the new master.
        self.listeners = [(spec, fd, inherited) for fd, spec, inherited in info["listeners"]]
        self.old_pid = info["master"]
        self.idle_fds = info.get("idle") or []
        os.set_inheritable(self.ready_fd, False)  # this master's alone, not a later exec's

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        text = env.pop(ENV, "")
        if not text:
            return None
        try:
            info = json.loads(text)
            if info.get("pid") != os.getpid():
                return None  # meant for another process (an ancestor of this one)
            return cls(info)
        except (ValueError, KeyError, TypeError):
            return None

    def fileno(self):
        """The pipe to the old master, until ready() or failed() closes it (-1)."""
        return self.ready_fd

    def idle_channel(self):
        """The old master's channel for idle keep-alive connections, shared from now on:
        (master_end, workers_end) sockets, or () when it had none."""
        if len(self.idle_fds) != 2:
            return ()
        pair = []
        for fd in self.idle_fds:
            os.set_inheritable(fd, False)
            pair.append(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fd))
        self.idle_fds = []
        return tuple(pair)

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
        """Tell the old master why this one will not take over; it keeps serving."""
        self._send(FAILED + message.encode(errors="replace")[:4000])

    def _send(self, data):
        if self.ready_fd < 0:
            return
        try:
            os.write(self.ready_fd, data)
        except OSError:
            pass  # the old master is gone already
        os.close(self.ready_fd)
        self.ready_fd = -1


def plan_for(listeners, pidfile_fd=-1):
    """How to start this process again as a new master image (the upgrade's Plan):
    its own command line, from its logical working directory, with *listeners* (the
    command's Listener objects) kept at their descriptors."""
    return Plan(argv=[sys.executable, *sys.orig_argv[1:]], cwd=logical_cwd(),
                listeners=[(lst.sock.fileno(), lst.spec, lst.inherited) for lst in listeners],
                pidfile_fd=pidfile_fd)


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
