"""The command's process: its pidfile, its identity, its logging, and detaching
into the background as a classic daemon.

The pidfile is locked (flock) for the master's whole life, so "is a master
running?" is answered by the lock, not by guessing from a pid that may have been
reused: a pidfile nobody holds is stale and is taken over; a held one is refused.
"""

import errno
import fcntl
import grp
import logging
import os
import pwd
import time

from ..errors import ConfigError, PidfileError

__all__ = ["PidFile", "held_pid", "read_pid", "drop_privileges", "daemonize", "under_systemd",
           "setup_logging", "user_id", "group_id"]


def under_systemd(environ=None):
    env = os.environ if environ is None else environ
    return bool(env.get("INVOCATION_ID") or env.get("NOTIFY_SOCKET") or env.get("LISTEN_PID"))


class PidFile:
    """Holds *path* locked with this process's pid in it, until release()."""

    def __init__(self, path, write=True):
        """Lock *path* (or fail); with *write* false it stays empty until write(), as
        when the pid is not yet known (before detaching into the background)."""
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise PidfileError(f"--pidfile {path}: cannot open it: {e.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self.fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                held = read_pid(path)
                raise PidfileError(f"--pidfile {path} is held by a live master (pid {held}); "
                                   "stop it first, or use another pidfile") from None
            raise PidfileError(f"--pidfile {path}: cannot lock it: {e.strerror}") from None
        held = os.pread(self.fd, 64, 0)
        if held.strip() and not held.strip().isdigit():  # not a pidfile: a mistaken path
            os.close(self.fd)
            raise PidfileError(f"--pidfile {path} holds something other than a pid; not "
                               "overwritten (is the path right?)")
        os.ftruncate(self.fd, 0)
        if write:
            self.write()

    @classmethod
    def adopt(cls, path, fd):
        """Hold the lock an old master passed on with *fd* (an upgrade); the pid is
        written at takeover.  A pidfile moved to another path is locked afresh."""
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if not same:
            os.close(fd)
            return cls(path, write=False)
        os.set_inheritable(fd, False)
        self = cls.__new__(cls)
        self.path, self.fd = path, fd
        return self

    def fileno(self):
        return self.fd

    def write(self, pid=None):
        """(Re)write the pid, after a fork into the background for instance."""
        data = f"{pid or os.getpid()}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self, remove=True):
        if self.fd < 0:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except PermissionError:
                # After --user dropped root, the directory may not let us: empty it, so
                # nobody mistakes the pid for a live master (the lock says so anyway).
                os.ftruncate(self.fd, 0)
        os.close(self.fd)
        self.fd = -1


def held_pid(path):
    """The pid in a pidfile a live master holds (its lock), or 0: none there, or a stale
    pidfile whose pid may by now be another process's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # held: a master is alive
        return read_pid(path)
    finally:
        os.close(fd)  # (the probe's own lock, if it got one, goes with it)
    return 0


def read_pid(path):
    """The pid in a pidfile, or 0 when it holds none."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def drop_privileges(user, group):
    """Switch to *group* and *user* (names or numbers); the order matters: group first."""
    if not user and not group:
        return
    try:
        uid = user_id(user) if user else None
        gid = group_id(group) if group else (pwd.getpwuid(uid).pw_gid if uid is not None else None)
    except KeyError as e:
        raise ConfigError(f"no such {e.args[0]}") from None
    if uid in (None, os.getuid()) and gid in (None, os.getgid()):
        return  # already there (a new master of an upgrade, started by a switched one)
    try:
        if gid is not None:
            os.setgroups([gid] if uid is None else os.getgrouplist(pwd.getpwuid(uid).pw_name,
                                                                    gid))
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
    except PermissionError:
        raise ConfigError(f"cannot switch to user {user or '-'} / group {group or '-'}: "
                          "only root can; drop --user/--group or start as root") from None


def user_id(name):
    """A user name (or number) -> uid; KeyError naming it when there is no such user."""
    return _lookup(name, lambda n: pwd.getpwnam(n).pw_uid, "user")


def group_id(name):
    """A group name (or number) -> gid; KeyError naming it when there is no such group."""
    return _lookup(name, lambda n: grp.getgrnam(n).gr_gid, "group")


def _lookup(name, by_name, what):
    if name.isdigit():
        return int(name)
    try:
        return by_name(name)
    except KeyError:
        raise KeyError(f"{what} {name!r}") from None


def daemonize(keep_fds, umask=None, log_stream=None):
    """Detach into the background with python-daemon, keeping *keep_fds* open.

    python-daemon's defaults are not ours: its signal map ignores TTIN/TTOU (our
    scale signals) and makes TERM exit at once, and it closes every descriptor not
    listed.  So the map is empty (the master installs its own handlers right
    after), the sockets are listed, and the working directory and umask stay.
    """
    import daemon  # python-daemon

    current = os.umask(0)
    os.umask(current)
    ctx = daemon.DaemonContext(
        detach_process=True,
        working_directory=os.getcwd(),
        umask=current if umask is None else umask,
        files_preserve=list(keep_fds),
        signal_map={},
        stdout=log_stream, stderr=log_stream,
        prevent_core=False,
    )
    ctx.open()
    return ctx


def setup_logging(level="info", error_log="", systemd=False):
    """Log to *error_log*, or to standard error; return the handler's stream.

    Under systemd, journald stamps every line, so lines carry no time of their own;
    elsewhere each line starts with its time in UTC (2026-11-26T20:45:22.123Z).
    Workers inherit this set-up through fork.
    """
    if error_log:
        handler = logging.FileHandler(error_log)
    else:
        handler = logging.StreamHandler()
    fmt = "%(levelname)s [%(process)d] %(message)s" if systemd and not error_log else \
        "%(asctime)s.%(msecs)03dZ %(levelname)s [%(process)d] %(message)s"
    formatter = logging.Formatter(fmt, datefmt="%Y-%m-%dT%H:%M:%S")
    # UTC, said so: an application may set its process's time zone (Django does), and
    # the master's lines and its workers' must read alike.
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler.stream
