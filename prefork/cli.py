"""The ``prefork`` command: serve, check, and talk to a running master.

Bad input ends in one line, ``prefork: error: ...``, naming what was wrong and
what would be right, with exit status 2 for usage and configuration and 1 for
failures at run time; ``--debug`` adds the traceback.  Library code raises typed
errors (prefork.errors); only this module turns them into messages and statuses.
"""

import argparse
import difflib
import logging
import os
import select
import signal
import socket
import sys
import traceback

from . import client, logs, sockets, systemd, upgrade
from . import config as config_mod
from . import daemon as daemon_mod
from .errors import BootError, ConfigError, HandlerImportError, PreforkError
from .loader import check_handler, import_object
from .mixin import PreforkMixIn, PreforkTCPServer, PreforkUDPServer

log = logging.getLogger("prefork")

EXIT_USAGE, EXIT_RUNTIME = 2, 1
DEFAULT_BIND = "127.0.0.1:8000"
FLAG_SETTINGS = [s for s in config_mod.SETTINGS if s.source == "flag"]
KNOWN_FLAGS = [s.flag for s in FLAG_SETTINGS] + [
    "--config", "--server", "--control", "--pidfile", "--json", "--fast", "--help"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        see = f"prefork {self.prog.split()[-1]} --help" if " " in self.prog else "prefork --help"
        if message.startswith("unrecognized arguments: "):
            words = message.split(": ", 1)[1].split()
            unknown = next((w for w in words if w.startswith("-")), words[0])
            message = f"unknown option {unknown}" if unknown.startswith("-") else \
                f"unexpected argument {unknown!r}"
            close = difflib.get_close_matches(unknown.split("=")[0], KNOWN_FLAGS, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        raise ConfigError(f"{message}; see {see}")


def build_parser():
    top = _Parser(prog="prefork", description="A pre-fork server daemon for Python "
                  "request handlers, built on a drop-in socketserver.")
    top.add_argument("--version", action="version", version="prefork 0.1.0")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, text in (("serve", "serve MODULE:HANDLER with a pre-forked pool of workers"),
                       ("check", "check the configuration and import the handler, then exit")):
        p = sub.add_parser(name, help=text, description=text, epilog=SERVE_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        handler = next(s for s in config_mod.SETTINGS if s.source == "argument")
        p.add_argument(handler.name, metavar=handler.metavar, nargs="?",
                       default=argparse.SUPPRESS, help=f"{handler.help}; without it, "
                       f"{handler.name} from the file or {handler.env}")
        p.add_argument("--config", metavar="FILE.toml",
                       help="read settings from a TOML file (also PREFORK_CONFIG); "
                       "SIGHUP re-reads it")
        p.add_argument("--server", metavar="MODULE:CLASS",
                       help="a server class to pre-fork instead of the default "
                       "(e.g. http.server:HTTPServer)")
        for s in FLAG_SETTINGS:
            shown = s.shown_default()
            kw = {"dest": s.name, "default": argparse.SUPPRESS,
                  "help": s.help + (f" (default: {shown})" if shown else "")}
            if s.kind.action != "store_true":
                kw["metavar"] = s.metavar or s.kind.metavar
            p.add_argument(s.flag, action=s.kind.action, **kw)
    for name, text in (("status", "show the workers of a running master"),
                       ("reload", "reload a running master (as SIGHUP)"),
                       ("upgrade", "start a new master image on the same sockets (as "
                        "SIGUSR2) and wait until it has taken over"),
                       ("stop", "stop a running master: gracefully, or at once with --fast"),
                       ("scale", "set the number of workers of a running master")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--control", metavar="PATH", help="the master's control socket")
        p.add_argument("--pidfile", metavar="PATH", help="the master's pidfile")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print JSON for machines")
        if name == "stop":
            p.add_argument("--fast", action="store_true", help="do not wait for requests")
        if name == "scale":
            p.add_argument("workers", type=int, metavar="N", help="the number of workers")
    return top


SERVE_EPILOG = """\
Every option is also a key of the TOML file (--config; "max-requests" or
"max_requests") and an environment variable (PREFORK_MAX_REQUESTS).  The command
line wins over the environment, which wins over the file.

signals to the master:  HUP reload   TERM graceful stop   INT/QUIT fast stop
                        TTIN/TTOU one worker more/fewer   USR1 reopen logs
                        USR2 upgrade: a new master image on the same sockets

examples:
  prefork serve --workers 4 --bind unix:/run/shop.sock myapp.handlers:Handler
  prefork serve --workers 2..16 --pidfile /run/shop.pid myapp.handlers:Handler
  prefork serve --server http.server:HTTPServer http.server:SimpleHTTPRequestHandler
  prefork check --config /etc/prefork/shop.toml myapp.handlers:Handler
"""


def cli_values(args):
    """The options given on the command line, typed."""
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


def main(argv=None):
    args = None
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except ConfigError as e:
        return _fail(e, EXIT_USAGE, args)
    except BootError as e:
        if e.note.startswith(HandlerImportError.__name__ + ": "):
            return _fail(e.note.split(": ", 1)[1] + "; check MODULE:HANDLER and that the "
                         "module imports from the current directory", EXIT_USAGE, args, e)
        return _fail(e, EXIT_RUNTIME, args)
    except HandlerImportError as e:
        return _fail(e, EXIT_USAGE, args)
    except PreforkError as e:
        return _fail(e, EXIT_RUNTIME, args)
    except KeyboardInterrupt:
        return 130


def _fail(message, status, args, exc=None):
    if args is not None and getattr(args, "debug", False):
        traceback.print_exc()
    print(f"prefork: error: {message}", file=sys.stderr)
    upgrade.report_failure(str(message))  # a new master of an upgrade: the old one says so
    return status


# -- serve and check ------------------------------------------------------------------

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


class _BoundSocket(socket.socket):
    """An already-bound socket whose bind() does nothing, so a server class's own
    server_bind() (http.server's sets server_name) runs unchanged over it."""

    def bind(self, address):
        pass


def wrap(cls, listener, handler, cfg):
    """A server of *cls* over *listener*'s socket, configured from *cfg*."""
    server = cls(listener.sock.getsockname(), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = _BoundSocket(fileno=listener.sock.detach())
    listener.sock = server.socket
    server.server_bind()
    for name in config_mod.POOL_SETTINGS:
        setattr(server, name, getattr(cfg, name))
    return server


def open_listeners(cfg, predecessor=None):
    """The sockets to serve: --bind's, else systemd's, else the default address.  In
    the new master of an upgrade, the old master's sockets are taken where they match."""
    if not cfg.bind and predecessor:
        passed = predecessor.take_systemd()
        if passed:
            return [sockets.adopt_listener(spec, fd, True) for spec, fd in passed]
    if not cfg.bind:
        passed = systemd.listen_fds()
        if passed:
            return [sockets.Listener(f"systemd:{name}", sock, inherited=True)
                    for name, sock in passed]
    binds = [sockets.parse_bind(b) for b in cfg.bind or [DEFAULT_BIND]]  # all checked first
    listeners = []
    try:
        for b in binds:
            taken = predecessor.take(b.spec) if predecessor else None
            if taken:
                listeners.append(sockets.adopt_listener(b.spec, *taken))
            else:
                listeners.append(sockets.open_listener(b, cfg.backlog, cfg.socket_mode,
                                                       cfg.socket_group))
    except BaseException:
        sockets.close_listeners(listeners, final=not predecessor)
        raise
    for spec, fd in predecessor.leftovers() if predecessor else ():
        log.warning("upgrade: %s is no longer in --bind; closed here (the old master's "
                    "workers serve it until they retire)", spec)
        os.close(fd)
    return listeners


def cmd_check(args):
    cfg = load_config(args)
    for b in cfg.bind:
        sockets.parse_bind(b)
    if args.server:
        server_class(args.server, socket.SOCK_STREAM)
    _import_in_child(cfg.handler, cfg.boot_timeout)
    binds = ", ".join(cfg.bind) or "systemd's sockets, else " + DEFAULT_BIND
    print(f"ok: {cfg.handler} imports; {cfg.workers} workers (max {cfg.max_workers}); "
          f"bind {binds}")
    return 0


def _import_in_child(spec, timeout):
    """Import the handler in a child process, as a worker would, and report why not;
    an import still running after *timeout* seconds (boot_timeout) fails too."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        status = 0
        try:
            check_handler(import_object(spec), spec)
        except BaseException as e:
            os.write(write_end, str(e).encode()[:4000] or type(e).__name__.encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    # A TERM meanwhile (a stop, or the old master abandoning this upgrade) ends the
    # child too, instead of leaving it to wait at its import.
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
    if os.waitstatus_to_exitcode(status) != 0:
        raise HandlerImportError(reason + "; check MODULE:HANDLER and that the module "
                                 "imports from the current directory")


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


class _Service:
    """What `prefork serve` owns besides the pool: sockets, pidfile, config on HUP."""

    def __init__(self, args):
        self.predecessor = upgrade.Inherited.from_env()  # set when started by SIGUSR2
        self.args = args
        self.cfg = load_config(args)
        self.listeners = []
        self.pidfile = None
        self.took_over = self.handed_over = False

    def reread(self, server):
        """on_reload: read the configuration again; an invalid one abandons the reload."""
        new = load_config(self.args)
        if new.bind != self.cfg.bind:
            log.warning("reload: a changed bind takes effect at the next restart")
        handler_changed = new.handler != self.cfg.handler
        if handler_changed and new.preload:
            log.warning("reload: with preload, a changed handler takes effect at the next "
                        "restart or upgrade")
        self.cfg = new
        for srv in (server, *server.prefork_servers):
            for name in config_mod.POOL_SETTINGS:
                setattr(srv, name, getattr(new, name))
            if handler_changed and not new.preload:
                srv.RequestHandlerClass = new.handler  # imported by the new generation

    def run(self):
        cfg, args = self.cfg, self.args
        if cfg.daemon and daemon_mod.under_systemd():
            raise ConfigError("--daemon under systemd: systemd runs the service in the "
                              "background itself; drop --daemon (Type=notify)")
        handler = cfg.handler
        if cfg.preload:
            handler = check_handler(import_object(handler), handler)
        else:
            # Workers import the handler after fork; a path that cannot import is bad
            # input, so it is found here first, in a child, with one clear line.
            _import_in_child(handler, cfg.boot_timeout)
        if cfg.umask is not None:
            os.umask(cfg.umask)  # before any file is made: the log, the pidfile, sockets
        stream = self._logging()
        old = self.predecessor
        try:
            self.listeners = open_listeners(cfg, old)
            if cfg.pidfile and old and old.pidfile_fd >= 0:
                self.pidfile = daemon_mod.PidFile.adopt(cfg.pidfile, old.pidfile_fd)
            elif cfg.pidfile:
                self.pidfile = daemon_mod.PidFile(cfg.pidfile, write=not cfg.daemon and not old)
            elif old and old.pidfile_fd >= 0:
                os.close(old.pidfile_fd)  # the new settings have no pidfile: let it go
            servers = []
            for listener in self.listeners:
                cls = server_class(args.server, listener.sock.type)
                servers.append(wrap(cls, listener, handler, cfg))
            main_server = servers[0]
            main_server.prefork_servers = tuple(servers[1:])
            main_server.on_reload = lambda: self.reread(main_server)
            main_server.prefork_control = client.control_path(cfg.control, cfg.pidfile)
            # The pidfile's lock must die with the master, not live on in workers; and
            # the pipe to an old master is the master's alone.  Objects, not numbers:
            # the pipe closes at takeover, and its number is then reused.
            main_server.prefork_master_files = tuple(f for f in (self.pidfile, old) if f)
            main_server.prefork_upgrade = upgrade.Plan.for_this_process(
                self.listeners, self.pidfile.fd if self.pidfile else -1)
            if old:
                main_server.prefork_takeover = self._take_over
            daemon_mod.drop_privileges(cfg.user, cfg.group)
            if cfg.daemon and not old:  # a new master of an upgrade is detached already
                keep = [lst.sock.fileno() for lst in self.listeners]
                if self.pidfile:
                    keep.append(self.pidfile.fd)
                daemon_mod.daemonize(keep, cfg.umask, stream)
                if self.pidfile:
                    self.pidfile.write()
            for lst in self.listeners:
                log.info("listening on %s", lst.describe())
            main_server.serve_forever()
            self.handed_over = main_server.prefork_handed_over
        finally:
            # After an upgrade the successor owns the socket files and the pidfile; a
            # new master that never took over leaves them to the old one.
            final = not self.handed_over and (not old or self.took_over)
            sockets.close_listeners(self.listeners, final=final)
            if self.pidfile:
                self.pidfile.release(remove=final)
        return 0

    def _take_over(self):
        """The new master of an upgrade is ready: the pidfile names it, the old goes."""
        if self.pidfile:
            self.pidfile.write()
        self.took_over = True
        log.info("upgrade: master %d takes over from master %d", os.getpid(),
                 self.predecessor.old_pid)
        self.predecessor.ready()

    def _logging(self):
        try:
            return logs.setup(self.cfg.log_level, self.cfg.error_log, daemon_mod.under_systemd())
        except OSError as e:
            raise ConfigError(f"--error-log {self.cfg.error_log}: cannot open it: "
                              f"{e.strerror}") from None


def cmd_serve(args):
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory is importable, as users expect
    return _Service(args).run()


COMMANDS = {"serve": cmd_serve, "check": cmd_check, "status": client.cmd_status,
            "reload": client.cmd_reload, "upgrade": client.cmd_upgrade,
            "stop": client.cmd_stop, "scale": client.cmd_scale}
