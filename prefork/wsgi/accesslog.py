"""The access log: one line per request, in the common or combined format or as JSON,
with the request's duration.

What the client sent is escaped before it is written: a quote, a backslash, a
control character or a byte past ASCII becomes ``\\"``, ``\\\\`` or ``\\xNN`` in the
text formats (JSON escapes its own), so a header can neither break a line nor
forge one.  Lines go through the logger ``prefork.access``, so the master's USR1
reopens the file after rotation.
"""

import json
import logging
import sys
import time

__all__ = ["AccessLog", "FORMATS"]

FORMATS = ("common", "combined", "json")
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7f, 0x100)]}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def escape(text):
    return text.translate(_ESCAPES)


class AccessLog:
    """Writes access lines to *target* ("-" for standard output, else a path)."""

    _opened = {}  # target -> logger: one handler a file, however many servers share it

    def __init__(self, target, fmt="combined"):
        if fmt not in FORMATS:
            raise ValueError(f"access log format {fmt!r}: one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.logger = self._opened.get(target) or self._open(target)

    @classmethod
    def _open(cls, target):
        logger = logging.getLogger(f"prefork.access.{len(cls._opened)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(sys.stdout) if target == "-" else \
            logging.FileHandler(target)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        cls._opened[target] = logger
        return logger

    def log(self, remote, request, status, size, duration, env=None):
        """One request: the client's address, the request line ("-" when it was not
        read), the status sent, the body bytes sent, the seconds it took, and the
        environ when one was made (the combined and JSON formats show two headers)."""
        env = env or {}
        now = time.time()
        if self.fmt == "json":
            line = json.dumps({
                "remote": remote, "time": time.strftime(
                    "%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
                "request": request, "status": status, "bytes": size,
                "referer": env.get("HTTP_REFERER", ""),
                "user_agent": env.get("HTTP_USER_AGENT", ""),
                "duration": round(duration, 6)})
        else:
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
            line = (f"{escape(remote or '-')} - - [{stamp}] "
                    f"\"{escape(request)}\" {status} {size or '-'}")
            if self.fmt == "combined":
                line += (f" \"{escape(env.get('HTTP_REFERER', '-'))}\" "
                         f"\"{escape(env.get('HTTP_USER_AGENT', '-'))}\"")
            line += f" {duration:.6f}"
        self.logger.info(line)

    def close(self):
        """Close the log's file (for a server that ends before its process does)."""
        for target, logger in list(self._opened.items()):
            if logger is self.logger:
                del self._opened[target]
                for handler in logger.handlers[:]:
                    logger.removeHandler(handler)
                    if target != "-":
                        handler.close()
