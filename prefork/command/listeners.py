"""Listening sockets: parse ``--bind`` addresses, bind them, take systemd's or an
old master's, and make the control socket.

A Unix socket the master creates gets its mode and group from the first instant
(it is bound under a umask that leaves nothing wider than the mode), replaces an
old socket file only when nothing answers on it, and is unlinked only at the
master's final stop.  A socket inherited (``fd://N``, systemd) is never unlinked.
"""

import ctypes
import dataclasses
import errno
import logging
import os
import re
import socket
import stat
import struct

from .. import systemd
from ..errors import BindError, ConfigError
from .process import group_id

__all__ = ["Bind", "Listener", "ControlFile", "DEFAULT_BIND", "parse_bind", "open_listener",
           "open_listeners", "adopt_listener", "close_listeners", "address_text"]

log = logging.getLogger("prefork")

DEFAULT_BIND = "127.0.0.1:8000"


@dataclasses.dataclass(frozen=True)
class Bind:
    spec: str
    family: int
    type: int
    address: object  # (host, port), a path, "\0name", or an fd number for fd://
    option: str = "--bind"  # the option it came from, as its errors name it

    @property
    def said(self):
        return f"{self.option} {self.spec}"


@dataclasses.dataclass
class Listener:
    spec: str
    sock: socket.socket
    path: str = ""       # a Unix socket file this master created and will unlink
    inherited: bool = False

    def describe(self):
        """The spec, and for a socket passed in (systemd's, fd://) the address it is on:
        systemd may give several sockets the same name."""
        if not self.inherited:
            return self.spec
        return f"{self.spec} ({address_text(self.sock)})"


def address_text(sock):
    """Where *sock* listens, as --bind would spell it."""
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    udp = sock.type == socket.SOCK_DGRAM
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):  # the abstract namespace
            name = "@" + name[1:].decode(errors="replace")
        return f"{'unixgram' if udp else 'unix'}:{name}"
    host, port = name[:2]
    host = f"[{host}]" if sock.family == socket.AF_INET6 else host
    return f"{'udp://' if udp else ''}{host}:{port}"


_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)")


def parse_bind(spec):
    """A --bind address -> Bind; ConfigError naming the accepted forms when malformed."""
    kind, address = socket.SOCK_STREAM, spec
    if spec.startswith("fd://"):
        if not spec[5:].isdigit():
            raise _malformed(spec)
        return Bind(spec, 0, 0, int(spec[5:]))
    for prefix, family, kind_ in (("unix:", socket.AF_UNIX, socket.SOCK_STREAM),
                                  ("unixgram:", socket.AF_UNIX, socket.SOCK_DGRAM)):
        if spec.startswith(prefix):
            path = spec[len(prefix):]
            if not path or path == "@":
                raise _malformed(spec)
            return Bind(spec, family, kind_, "\0" + path[1:] if path.startswith("@") else path)
    if spec.startswith("udp://"):
        kind, address = socket.SOCK_DGRAM, spec[len("udp://"):]
    elif spec.startswith("tcp://"):
        address = spec[len("tcp://"):]
    m = _HOST_PORT.fullmatch(address)
    if not m or not 0 <= int(m["port"]) <= 65535:
        raise _malformed(spec)
    if m["v6"] is not None:
        return Bind(spec, socket.AF_INET6, kind, (m["v6"], int(m["port"])))
    return Bind(spec, socket.AF_INET, kind, (m["host"] or "0.0.0.0", int(m["port"])))


def _malformed(spec):
    return ConfigError(f"--bind {spec!r} is not an address; use HOST:PORT, [::1]:PORT, "
                       "unix:PATH, unix:@NAME, udp://HOST:PORT, unixgram:PATH or fd://N")


def open_listener(bind, backlog=2048, socket_mode=0o660, socket_group=""):
    """Bind and listen as *bind* says; BindError says what went wrong and what to do."""
    if isinstance(bind.address, int):
        return _inherit(bind)
    sock = socket.socket(bind.family, bind.type)
    try:
        if bind.family == socket.AF_UNIX:
            path = _bind_unix(sock, bind, socket_mode, socket_group)
        else:
            _bind_inet(sock, bind)
            path = ""
        if bind.type == socket.SOCK_STREAM:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(bind.spec, sock, path)


def adopt_listener(spec, fd, inherited):
    """A listening socket an old master passed on at descriptor *fd* (an upgrade).  A
    Unix socket file the old master made becomes this master's, unlinked at its final
    stop; an inherited one (systemd's, fd://) stays nobody's."""
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    name = sock.getsockname() if sock.family == socket.AF_UNIX else ""
    # A path is a str; an abstract name comes back as bytes (or an empty str: unbound).
    path = name if isinstance(name, str) and not inherited else ""
    return Listener(spec, sock, path, inherited)


def _inherit(bind):
    try:
        sock = socket.socket(fileno=bind.address)
    except OSError as e:
        raise BindError(f"{bind.said}: descriptor {bind.address} is not an open "
                        f"socket ({e.strerror}); pass a listening socket's fd") from None
    return Listener(bind.spec, sock, inherited=True)


def _bind_inet(sock, bind):
    host, port = bind.address
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if bind.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(bind.address)
    except socket.gaierror as e:
        raise BindError(f"{bind.said}: unknown host {host!r} ({e.strerror})") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise BindError(f"{bind.said}: the address is in use by another process; "
                            f"stop it or choose another {bind.option}") from None
        if e.errno == errno.EACCES and port < 1024:
            raise BindError(f"{bind.said}: port {port} needs privilege (root or "
                            "CAP_NET_BIND_SERVICE); use a port above 1023, or let systemd "
                            "pass the socket") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise BindError(f"{bind.said}: {host} is not an address of this "
                            "machine") from None
        raise BindError(f"{bind.said}: {e.strerror}") from None


def _bind_unix(sock, bind, mode, group):
    path = bind.address
    if path.startswith("\0"):  # abstract: no file, no mode
        _bind_or_explain(sock, bind)
        return ""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise BindError(f"{bind.said}: directory {directory} does not exist; "
                        "create it (systemd: RuntimeDirectory=) or choose another path")
    gid = _group_id(group) if group else -1
    if os.path.lexists(path):
        _replace_stale(path, bind)
    old_umask = os.umask(0o777 & ~mode)  # the socket file is born with at most *mode*
    try:
        _bind_or_explain(sock, bind)
    finally:
        os.umask(old_umask)
    try:
        if gid != -1:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
    except OSError as e:
        os.unlink(path)
        raise BindError(f"{bind.said}: cannot give the socket group {group!r} and "
                        f"mode {mode:04o}: {e.strerror}") from None
    return path


def _bind_or_explain(sock, bind):
    try:
        sock.bind(bind.address)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise BindError(f"{bind.said}: the name is in use by a live "
                            "server") from None
        raise BindError(f"{bind.said}: {e.strerror}") from None


def _replace_stale(path, bind):
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise BindError(f"{bind.said}: {path} exists and is not a socket; "
                        "remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, bind.type)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # a socket file with nobody behind it: left by a dead server
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise BindError(f"{bind.said}: {path} is held by a live server; stop it "
                    "first or choose another path")


def _group_id(name):
    try:
        return group_id(name)
    except KeyError:
        raise ConfigError(f"--socket-group {name!r}: no such group") from None


def close_listeners(listeners, final):
    """Close every socket; at the *final* stop, unlink the socket files this master made."""
    for listener in listeners:
        listener.sock.close()
        if final and listener.path and not listener.inherited:
            try:
                os.unlink(listener.path)
            except FileNotFoundError:
                pass


def open_listeners(cfg, predecessor=None):
    """The sockets to serve: --bind's, else systemd's, else the default address.  In
    the new master of an upgrade, the old master's sockets are taken where they match."""
    if not cfg.bind and predecessor:
        passed = predecessor.take_systemd()
        if passed:
            return [adopt_listener(spec, fd, True) for spec, fd in passed]
    if not cfg.bind:
        passed = systemd.listen_fds()
        if passed:
            return [Listener(f"systemd:{name}", sock, inherited=True) for name, sock in passed]
    binds = [parse_bind(b) for b in cfg.bind or [DEFAULT_BIND]]  # all checked first
    listeners = []
    try:
        for b in binds:
            taken = predecessor.take(b.spec) if predecessor else None
            if taken:
                listeners.append(adopt_listener(b.spec, *taken))
            else:
                listeners.append(open_listener(b, cfg.backlog, cfg.socket_mode,
                                               cfg.socket_group))
    except BaseException:
        close_listeners(listeners, final=not predecessor)
        raise
    for spec, fd in predecessor.leftovers() if predecessor else ():
        log.warning("upgrade: %s is no longer in --bind; closed here (the old master's "
                    "workers serve it until they retire)", spec)
        os.close(fd)
    return listeners


METRICS_BACKLOG = 64


def open_metrics(spec, listen=True):
    """The socket of --metrics-bind (HOST:PORT or [V6]:PORT), bound with SO_REUSEPORT:
    the new master of an upgrade binds its own beside the old master's, with *listen*
    False, and listens (listen_metrics()) only as it takes over, so no probe reaches it
    while its workers boot; the old master closes its own at the hand-over."""
    m = _HOST_PORT.fullmatch(spec)
    if not m or not 0 <= int(m["port"]) <= 65535:
        raise ConfigError(f"--metrics-bind {spec!r} is not an address; use HOST:PORT or "
                          "[::1]:PORT")
    v6 = m["v6"] is not None
    bind = Bind(spec, socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM,
                (m["v6"] if v6 else m["host"] or "0.0.0.0", int(m["port"])), "--metrics-bind")
    if listen and bind.address[1]:
        # A first master: the port must be free.  SO_REUSEPORT would let it join another
        # master's socket, and probes and scrapes would reach either at random.
        probe = socket.socket(bind.family, socket.SOCK_STREAM)
        try:
            _bind_inet(probe, bind)
        finally:
            probe.close()
    sock = socket.socket(bind.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _bind_inet(sock, bind)
        if listen:
            sock.listen(METRICS_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


SO_ATTACH_REUSEPORT_CBPF = 51  # Linux's option number (asm-generic/socket.h)
_RETURN_1 = struct.pack("HBBI", 0x06, 0, 0, 1)  # a classic BPF program: "return 1"


def listen_metrics(sock):
    """The new master of an upgrade takes the --metrics-bind port over: *sock* listens,
    and the kernel gives it every new connection from now on.  Its SO_REUSEPORT group
    holds the old master's socket, then this one (a TCP socket joins as it listens); a
    one-instruction program on the group picks the socket at index 1, this one, so no
    connection lands in the old master's queue in the instant it closes (it would be
    reset).  Once the old one is gone, index 1 is past the group and the kernel picks
    as usual; a later upgrade's socket is index 1 again."""
    sock.listen(METRICS_BACKLOG)
    program = ctypes.create_string_buffer(_RETURN_1)  # alive through the call
    fprog = struct.pack("HP", 1, ctypes.addressof(program))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as e:  # a kernel without it: new probes still come here, most of them
        log.warning("--metrics-bind: cannot steer new connections to this master (%s); "
                    "a probe may be reset as the old master closes", e.strerror)


class ControlFile:
    """The master's control socket: a Unix socket of mode 0600 at *path*, so only
    the master's user may talk to it.  *staged* (a new master during an upgrade,
    while the old one still answers at *path*): made beside it, until publish()
    renames it there."""

    def __init__(self, path, staged=False):
        self.path = path
        where = f"{path}.{os.getpid()}" if staged else path
        bind = Bind(path, socket.AF_UNIX, socket.SOCK_STREAM, where, "--control")
        self.listener = open_listener(bind, backlog=64, socket_mode=0o600)
        self.sock = self.listener.sock
        self.inode = os.stat(where).st_ino

    def publish(self):
        """Move a staged socket to its path, atomically replacing the old master's."""
        if self.listener.path != self.path:
            os.rename(self.listener.path, self.path)
            self.listener.path = self.path

    def close(self):
        """Close; unlink the file only while it is still this socket's (after an
        upgrade it is the new master's)."""
        try:
            mine = os.stat(self.listener.path).st_ino == self.inode
        except OSError:
            mine = False
        close_listeners([self.listener], final=mine)
