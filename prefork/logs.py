"""Log files: reopened on SIGUSR1 (after logrotate moved them), in master and workers.
(The command sets logging up: prefork.command.process.setup_logging.)"""

import logging
import os

__all__ = ["reopen_files", "stderr_to_log"]

STDERR = 2


def reopen_files():
    """Reopen every logging.FileHandler's file under its name; return how many.  Where
    standard error was that file (a daemon's, a worker's), it follows to the new one."""
    count = 0
    seen = set()
    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in
                                           list(logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.FileHandler) and id(handler) not in seen:
                seen.add(id(handler))
                handler.acquire()
                try:
                    was_stderr = False
                    if handler.stream:
                        was_stderr = _same_file(handler.stream.fileno(), STDERR)
                        handler.stream.close()
                    handler.stream = handler._open()
                    if was_stderr:
                        os.dup2(handler.stream.fileno(), STDERR)
                finally:
                    handler.release()
                count += 1
    return count


def stderr_to_log():
    """In a worker: standard error goes to the error log, when there is one, so what
    is written there (a traceback, a stack dumped by faulthandler) is in the log.  A
    log moved away since the master opened it (a rotation whose USR1 came as this
    worker was forked) is reopened first."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream:
            try:
                moved = not os.path.samestat(os.stat(handler.baseFilename),
                                             os.fstat(handler.stream.fileno()))
            except OSError:
                moved = True
            if moved:
                reopen_files()
            handler.flush()
            os.dup2(handler.stream.fileno(), STDERR)
            return


def _same_file(fd, other):
    try:
        return os.path.samestat(os.fstat(fd), os.fstat(other))
    except OSError:
        return False
