"""Log files: reopened on SIGUSR1 (after logrotate moved them), in master and workers."""

import logging

__all__ = ["reopen_files"]


def reopen_files():
    """Reopen every logging.FileHandler's file under its name; return how many."""
    count = 0
    seen = set()
    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in
                                           list(logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.FileHandler) and id(handler) not in seen:
                seen.add(id(handler))
                handler.acquire()
                try:
                    if handler.stream:
                        handler.stream.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()
                count += 1
    return count


def setup(level="info", error_log="", systemd=False):
    """Log to *error_log*, or to standard error; return the handler's stream.

    Under systemd, journald stamps every line, so lines carry no time of their own.
    Workers inherit this set-up through fork.
    """
    if error_log:
        handler = logging.FileHandler(error_log)
    else:
        handler = logging.StreamHandler()
    fmt = "%(levelname)s [%(process)d] %(message)s" if systemd and not error_log else \
        "%(asctime)s %(levelname)s [%(process)d] %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler.stream
