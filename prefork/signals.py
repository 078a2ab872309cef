"""Signal handlers that only record and wake; the owner's loop drains them.

A handler appends the signal number to a list and nothing else: no logging, no
locks, no I/O.  The wake-up comes from ``signal.set_wakeup_fd``: the interpreter's
C-level handler writes the signal number to a non-blocking pipe, whose read end
the loop polls, so a signal ends a ``poll()`` at once (PEP 475 would otherwise
retry the call and let the flag wait for the next timeout).  ``restore()``
puts every handler and the previous wake-up fd back.
"""

import os
import signal

__all__ = ["SignalInbox"]


class SignalInbox:
    """Catch *signums* while open; ``fileno()`` turns readable when one arrives."""

    def __init__(self, signums):
        self._pending = []
        self._saved = {}
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        try:
            self._saved_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
            for signum in signums:
                self._saved[signum] = signal.signal(signum, self._record)
        except BaseException:
            self.restore()
            raise

    def _record(self, signum, frame):
        self._pending.append(signum)

    def fileno(self):
        return self._read_fd

    def write_fileno(self):
        return self._write_fd

    def pending(self):
        """Whether a signal came in since the last drain (no system call)."""
        return bool(self._pending)

    def drain(self):
        """Return the signals received since the last drain, oldest first."""
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass
        # Swap the list rather than clear it: a handler that runs in between
        # appends to the new one and is seen next time.
        taken, self._pending = self._pending, []
        return taken

    def restore(self):
        """Put back the handlers and wake-up fd that were there before; close the pipe."""
        for signum, handler in self._saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._saved = {}
        if self._read_fd >= 0:
            if hasattr(self, "_saved_wakeup"):
                signal.set_wakeup_fd(self._saved_wakeup)
            os.close(self._read_fd)
            os.close(self._write_fd)
            self._read_fd = self._write_fd = -1
