"""systemd's notify protocol, with the standard library alone.

The master tells the service manager where it stands by sending datagrams of
``KEY=value`` lines to the socket named in ``NOTIFY_SOCKET`` (a path, or a name in
the abstract namespace when it starts with ``@``).  Without that variable every
call does nothing, so the same code runs with and without systemd.
"""

import logging
import os
import socket
import time

__all__ = ["Notifier", "listen_fds", "LISTEN_FDS_START"]

log = logging.getLogger("prefork")

LISTEN_FDS_START = 3  # sd_listen_fds(3): passed sockets start at this descriptor
SEND_TIMEOUT = 0.5  # seconds a notify message may wait for room in the manager's queue


def listen_fds(environ=None, pid=None):
    """The sockets systemd passed to this process, as [(name, socket)], oldest first.

    Only when LISTEN_PID names this process (the variables are inherited by
    children that must not take them).  Family and type come from each descriptor
    itself.  The variables are removed, so no child sees them.
    """
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID", "") != str(os.getpid() if pid is None else pid):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    names = env.get("LISTEN_FDNAMES", "").split(":")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    found = []
    for i in range(count):
        fd = LISTEN_FDS_START + i
        name = names[i] if i < len(names) and names[i] else f"fd{fd}"
        # systemd passes them inheritable; a program a handler runs must not get them.
        os.set_inheritable(fd, False)
        found.append((name, socket.socket(fileno=fd)))
    return found


class Notifier:
    """Sends notify messages for this process; a no-op without NOTIFY_SOCKET."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = None
        self.sock = None
        # WATCHDOG=1 is due every WATCHDOG_USEC; it is sent at half that, to be safe.
        self.watchdog_interval = 0.0
        usec = env.get("WATCHDOG_USEC", "")
        if usec.isdigit() and env.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid()):
            self.watchdog_interval = int(usec) / 2 / 1_000_000
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A manager that reads nothing fills the socket's queue; the master's loop
            # must not block on it: a message that cannot go in SEND_TIMEOUT is dropped.
            self.sock.settimeout(SEND_TIMEOUT)

    def fileno(self):
        return self.sock.fileno() if self.sock else -1

    def send(self, **fields):
        """Send one message: ``send(READY=1, STATUS="...")``; return whether it went out."""
        if self.sock is None:
            return False
        text = "\n".join(f"{k}={v}" for k, v in fields.items())
        try:
            self.sock.sendto(text.encode(), self.address)
        except OSError:  # the manager went away or is not reading; serving goes on
            log.warning("notify message to the service manager dropped: %s",
                        text.replace("\n", " "))
            return False
        return True

    def reloading(self, status):
        return self.send(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1_000_000),
                         STATUS=status)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
