"""`prefork serve` and `prefork check`: a master composed from the command's settings.

serve: read the settings; check that the handler imports (in a child); set the
umask and logging; open the sockets, or take them from systemd or from an old
master; lock the pidfile; build a server of the chosen class over each socket;
make the control socket; drop privileges; detach if asked; then run the pool with
a Deployment that carries the rest.  Afterwards it closes what it made, and
unlinks its files, unless a new master took them over.
"""

import logging
import os
import socket
import sys

from .. import config as config_mod
from ..deployment import Deployment, Ending
from ..errors import BindError, ConfigError, HandlerImportError
from ..loader import import_object
from ..mixin import PreforkMixIn, PreforkTCPServer, PreforkUDPServer
from . import listeners as listeners_mod
from . import process
from .client import answers, control_path, default_control
from .preflight import import_in_child, load_in_time
from .takeover import plan_for

__all__ = ["cmd_serve", "cmd_check", "load_config", "server_class"]

log = logging.getLogger("prefork")


def cli_values(args):
    """The settings given on the command line, typed."""
    values = {}
    for s in config_mod.SETTINGS:
        if s.name not in vars(args):
            continue
        raw = getattr(args, s.name)
        if s.kind.action == "store_true":
            values[s.name] = bool(raw)
        elif s.kind.action == "append":
            values[s.name] = tuple(raw)
        else:
            values[s.name] = config_mod.parse_value(
                s, raw, s.flag if s.source == "flag" else s.name)
    return values


def load_config(args):
    cfg = config_mod.load(cli_values(args), args.config, os.environ)
    if not cfg.handler:
        raise ConfigError("nothing to serve: give MODULE:HANDLER, or set handler in the "
                          "config file or PREFORK_HANDLER in the environment")
    return cfg


def server_class(spec, sock_type):
    """The class to wrap each socket in: --server's (made pre-forking), or a default."""
    if not spec:
        return PreforkUDPServer if sock_type == socket.SOCK_DGRAM else PreforkTCPServer
    cls = import_object(spec, "server")
    if not isinstance(cls, type) or not hasattr(cls, "serve_forever"):
        raise HandlerImportError(f"--server {spec} is not a server class (one with "
                                 "serve_forever(), e.g. http.server:HTTPServer)")
    if issubclass(cls, PreforkMixIn):
        return cls
    return type(f"Prefork{cls.__name__}", (PreforkMixIn, cls), {"__module__": __name__})


def cmd_check(args):
    cfg = load_config(args)
    for b in cfg.bind:
        bind = listeners_mod.parse_bind(b)
        if bind.family == socket.AF_UNIX and not bind.address.startswith("\0"):
            _writable_directory(bind.address, f"--bind {b}")
    _check_places(cfg)
    if args.server:
        server_class(args.server, socket.SOCK_STREAM)
    what = import_in_child(cfg.handler, cfg, cfg.boot_timeout)
    binds = ", ".join(cfg.bind) or "systemd's sockets, else " + listeners_mod.DEFAULT_BIND
    print(f"ok: {cfg.handler} imports; {cfg.workers} workers (max {cfg.max_workers}); "
          f"bind {binds}; serving {what}")
    return 0


def _check_places(cfg):
    """What serve would find wrong as it starts, found without starting: the users and
    groups named, and the directories of the files it writes."""
    try:
        for name, lookup in ((cfg.user, process.user_id), (cfg.group, process.group_id),
                             (cfg.socket_group, process.group_id)):
            if name:
                lookup(name)
    except KeyError as e:
        raise ConfigError(f"no such {e.args[0]}") from None
    for path, option in ((cfg.pidfile, "--pidfile"), (cfg.error_log, "--error-log"),
                         (cfg.access_log, "--access-log"), (cfg.control, "--control")):
        if path and path != "-":
            _writable_directory(path, f"{option} {path}")


def _writable_directory(path, said):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"{said}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"{said}: directory {directory} is not writable by this user")


def cmd_serve(args, predecessor=None):
    """*predecessor* (a takeover.Inherited) is set in the new master of an upgrade."""
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory is importable, as users expect
    return Service(args, predecessor).run()


class Service:
    """What `prefork serve` owns besides the pool: sockets, pidfile, the control
    socket, and the settings, read again on each reload."""

    def __init__(self, args, predecessor):
        self.args = args
        self.predecessor = predecessor
        self.cfg = load_config(args)
        self.listeners = []
        self.servers = []
        self.pidfile = None
        self.control = None
        self.metrics = None  # the --metrics-bind socket
        self.took_over = False

    def reread(self):
        """On a reload: the settings read again (an invalid file raises, and the
        reload is abandoned); a changed handler is served by the new generation."""
        new = load_config(self.args)
        if new.bind != self.cfg.bind:
            log.warning("reload: a changed bind takes effect at the next restart")
        if new.handler != self.cfg.handler:
            if new.preload:
                log.warning("reload: with preload, a changed handler takes effect at the "
                            "next restart or upgrade")
            else:
                for server in self.servers:
                    server.RequestHandlerClass = new.handler  # imported after each fork
        self.cfg = new
        return new

    def run(self):
        cfg, old = self.cfg, self.predecessor
        if cfg.daemon and process.under_systemd():
            raise ConfigError("--daemon under systemd: systemd runs the service in the "
                              "background itself; drop --daemon (Type=notify)")
        if cfg.access_log and cfg.access_log != "-":
            try:  # (opened again by each worker; a path it cannot open is said here)
                with open(cfg.access_log, "a"):
                    pass
            except OSError as e:
                raise ConfigError(f"--access-log {cfg.access_log}: cannot open it: "
                                  f"{e.strerror}") from None
        handler = cfg.handler
        if cfg.preload:
            handler = load_in_time(handler, cfg, cfg.boot_timeout)
        else:
            # Workers import the handler after fork; a path that cannot import is bad
            # input, so it is found here first, in a child, with one clear line.
            import_in_child(handler, cfg, cfg.boot_timeout, [old.fileno()] if old else [])
        if cfg.umask is not None:
            os.umask(cfg.umask)  # before any file is made: the log, the pidfile, sockets
        stream = self._logging()
        ending = Ending.STOPPED
        try:
            self.listeners = listeners_mod.open_listeners(cfg, old)
            self._lock_pidfile()
            if cfg.metrics_bind:
                self.metrics = listeners_mod.open_metrics(cfg.metrics_bind, listen=old is None)
            for listener in self.listeners:
                cls = server_class(self.args.server, listener.sock.type)
                server = cls.over_socket(listener.sock, handler)
                listener.sock = server.socket
                self.servers.append(server)
            process.drop_privileges(cfg.user, cfg.group)
            # Made as the user the master runs as, who alone may use it; before a
            # daemon detaches, so that a path it cannot make is said here, not in a log.
            path = control_path(cfg.control, cfg.pidfile)
            if path:
                self.control = listeners_mod.ControlFile(path, staged=old is not None)
            else:
                self.control = self._default_control()
            if cfg.daemon and not old:  # a new master of an upgrade is detached already
                keep = [lst.sock.fileno() for lst in self.listeners]
                keep += [f.fileno() for f in (self.pidfile, self.metrics,
                                              self.control and self.control.sock) if f]
                process.daemonize(keep, cfg.umask, stream)
                if self.pidfile:
                    self.pidfile.write()
            for lst in self.listeners:
                log.info("listening on %s", lst.describe())
            ending = self.servers[0].serve_pool(Deployment(
                servers=tuple(self.servers[1:]),
                control=self.control.sock if self.control else None,
                # The pidfile's lock must die with the master, not live on in workers;
                # and the pipe to an old master is the master's alone.
                master_files=tuple(f for f in (self.pidfile, old) if f),
                reread=self.reread,
                upgrade=plan_for(self.listeners, self.pidfile.fd if self.pidfile else -1),
                takeover=self._take_over if old else None,
                idle_channel=old.idle_channel() if old else (),
                metrics=self.metrics), cfg)
        finally:
            # After an upgrade the successor owns the socket files and the pidfile; a
            # new master that never took over leaves them to the old one.
            final = ending is not Ending.HANDED_OVER and (not old or self.took_over)
            listeners_mod.close_listeners(self.listeners, final=final)
            if self.control:
                self.control.close()
            if self.metrics:
                self.metrics.close()
            if self.pidfile:
                self.pidfile.release(remove=final)
        return 0

    def _default_control(self):
        """The control socket in its default place (client.default_control()); beside
        it, with this master's pid in its name, when a live master has that place; none,
        with a warning, when the place cannot be had."""
        path = default_control(self.cfg.name)
        if answers(path):  # another master's
            path = f"{path[:-len('.ctl')]}.{os.getpid()}.ctl"
        try:
            control = listeners_mod.ControlFile(path)
        except (BindError, OSError) as e:
            why = str(e).rsplit(": ", 1)[-1]
            log.warning("no control socket: cannot make %s (%s); give --control PATH", path,
                        why)
            return None
        # A new master of an upgrade, and a reload, keep this path: it becomes the
        # setting, as if given (PREFORK_CONTROL is --control's variable).
        os.environ["PREFORK_CONTROL"] = control.path
        return control

    def _lock_pidfile(self):
        cfg, old = self.cfg, self.predecessor
        if cfg.pidfile and old and old.pidfile_fd >= 0:
            self.pidfile = process.PidFile.adopt(cfg.pidfile, old.pidfile_fd)
        elif cfg.pidfile:
            self.pidfile = process.PidFile(cfg.pidfile, write=not cfg.daemon and not old)
        elif old and old.pidfile_fd >= 0:
            os.close(old.pidfile_fd)  # the new settings have no pidfile: let it go

    def _take_over(self):
        """The new master of an upgrade is ready: the control socket and the pidfile
        name it, and the old master is told to go."""
        if self.control:
            self.control.publish()
        if self.metrics:
            listeners_mod.listen_metrics(self.metrics)  # new probes come here alone
        if self.pidfile:
            self.pidfile.write()
        self.took_over = True
        log.info("upgrade: master %d takes over from master %d", os.getpid(),
                 self.predecessor.old_pid)
        self.predecessor.ready()

    def _logging(self):
        try:
            return process.setup_logging(self.cfg.log_level, self.cfg.error_log,
                                         process.under_systemd())
        except OSError as e:
            raise ConfigError(f"--error-log {self.cfg.error_log}: cannot open it: "
                              f"{e.strerror}") from None
