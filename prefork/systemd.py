"""systemd's notify protocol, with the standard library alone.

The master tells the service manager where it stands by sending datagrams of
``KEY=value`` lines to the socket named in ``NOTIFY_SOCKET`` (a path, or a name in
the abstract namespace when it starts with ``@``).  Without that variable every
call does nothing, so the same code runs with and without systemd.
"""

import os
import socket
import time

__all__ = ["Notifier"]


class Notifier:
    """Sends notify messages for this process; a no-op without NOTIFY_SOCKET."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = None
        self.sock = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fileno(self):
        return self.sock.fileno() if self.sock else -1

    def send(self, **fields):
        """Send one message: ``send(READY=1, STATUS="...")``; return whether it went out."""
        if self.sock is None:
            return False
        text = "\n".join(f"{k}={v}" for k, v in fields.items())
        try:
            self.sock.sendto(text.encode(), self.address)
        except OSError:
            return False  # the manager went away; serving goes on
        return True

    def reloading(self, status):
        return self.send(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1_000_000),
                         STATUS=status)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
