"""Log files: reopened on SIGUSR1 (after logrotate moved them), in master and workers.
(The command sets logging up: prefork.command.process.setup_logging.)"""

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
