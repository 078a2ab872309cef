"""Before `prefork serve` binds anything: import the handler once in a child, as
a worker would, so a path that does not import is reported at once with one line,
and an import that hangs is stopped at boot_timeout instead of hanging the command.
"""

import os
import select
import signal

from ..errors import BootError, HandlerImportError
from ..loader import describe, load_handler
from ..policy import describe_exit

__all__ = ["import_in_child", "load_in_time"]


def import_in_child(spec, settings, timeout, close_fds=()):
    """Import *spec* in a child process and make a handler of it with *settings*, as
    a worker would; return what it is (describe()), or raise why not.  An import
    still running after *timeout* seconds (boot_timeout) fails too.  The child
    first closes *close_fds* (descriptors it must not hold: the pipe to an old
    master)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            for fd in (read_end, *close_fds):
                os.close(fd)
            os.write(write_end, b"ok " + describe(load_handler(spec, settings)).encode())
        except BaseException as e:
            os.write(write_end, str(e).encode()[:4000] or type(e).__name__.encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    # A TERM meanwhile (a stop, or the old master abandoning this upgrade) ends the
    # child too, instead of leaving it to wait at its import.  The handler raises:
    # this is a short check in the command's own thread, not the master's loop.
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        with os.fdopen(read_end, "rb") as r:
            if not select.select([r], [], [], timeout)[0]:
                raise BootError(f"importing {spec} took more than boot_timeout "
                                f"({timeout:g}s); does the module wait for something at "
                                "import? Fix that or raise --boot-timeout")
            reason = r.read().decode(errors="replace")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not reason.startswith("ok "):
        raise HandlerImportError(reason or f"importing {spec} ended the process "
                                 f"({describe_exit(code)}) before it could say why: "
                                 "does the module call os._exit() as it is imported?")
    return reason[len("ok "):]


def load_in_time(spec, settings, timeout):
    """load_handler() in this process (--preload), within *timeout* seconds: a timer's
    SIGALRM interrupts an import that waits for something (a network, a lock)."""
    def too_long(signum, frame):
        raise _TooLong  # not an Exception: the import's own handlers let it through

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return load_handler(spec, settings)
    except _TooLong:
        raise BootError(f"importing {spec} took more than boot_timeout ({timeout:g}s); "
                        "does the module wait for something at import? Fix that or raise "
                        "--boot-timeout") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _TooLong(BaseException):
    """boot_timeout passed during a preloaded import."""


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)
