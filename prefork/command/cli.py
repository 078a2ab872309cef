"""The ``prefork`` command line: its parser, and the one place where an error
becomes a message and an exit status.

Bad input ends in one line, ``prefork: error: ...``, naming what was wrong and
what would be right, with exit status 2 for usage and configuration and 1 for
failures at run time; ``--debug`` adds the traceback.  Library code raises typed
errors (prefork.errors); only this module turns them into messages and statuses.
"""

import argparse
import difflib
import os
import sys
import traceback

from .. import config as config_mod
from ..errors import BootError, ConfigError, HandlerImportError, PreforkError
from . import client, serve
from .takeover import Inherited

EXIT_USAGE, EXIT_RUNTIME = 2, 1
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
                       ("top", "watch a running master's pool live, refreshed every second "
                        "(q quits)"),
                       ("metrics", "print a running master's metrics (Prometheus text format)"),
                       ("reload", "reload a running master (as SIGHUP)"),
                       ("upgrade", "start a new master image on the same sockets (as "
                        "SIGUSR2) and wait until it has taken over"),
                       ("stop", "stop a running master: gracefully, or at once with --fast"),
                       ("scale", "set the number of workers of a running master")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--control", metavar="PATH", help="the master's control socket")
        p.add_argument("--pidfile", metavar="PATH", help="the master's pidfile")
        p.add_argument("--name", metavar="NAME", default="",
                       help="without --control or --pidfile: the master started with "
                       "this --name, among those found in the default places")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print JSON for machines")
        if name == "stop":
            p.add_argument("--fast", action="store_true", help="do not wait for requests")
        if name == "top":
            p.add_argument("-n", dest="iterations", type=int, default=0, metavar="N",
                           help="quit after N screens (default: at q or Ctrl-C)")
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


def main(argv=None):
    # Set when this process is the new master of an upgrade: its old master hears of
    # a failure through it.
    predecessor = Inherited.from_env()
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            return serve.cmd_serve(args, predecessor)
        return COMMANDS[args.command](args)
    except ConfigError as e:
        return _fail(e, EXIT_USAGE, args, predecessor)
    except BootError as e:
        if e.import_failed:  # the workers could not import the handler: bad input
            return _fail(e.note, EXIT_USAGE, args, predecessor)
        return _fail(e, EXIT_RUNTIME, args, predecessor)
    except HandlerImportError as e:
        return _fail(e, EXIT_USAGE, args, predecessor)
    except PreforkError as e:
        return _fail(e, EXIT_RUNTIME, args, predecessor)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`prefork status | head -1`): nothing more to say, and nothing
        # to say it on; what Python would print at exit goes nowhere either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _fail(message, status, args, predecessor):
    if _debug(args):
        traceback.print_exc()
    print(f"prefork: error: {message}", file=sys.stderr)
    if predecessor:  # a new master that never took over: the old one says why
        predecessor.failed(str(message))
    return status


def _debug(args):
    """--debug, PREFORK_DEBUG or the config file's debug: the error's traceback too.  The
    settings are read again here (the error may have come before they were), and a
    file that cannot be read says no."""
    if args is None:
        return False
    if getattr(args, "debug", False):
        return True
    try:
        return bool(serve.load_config(args).debug)
    except Exception:
        return False


COMMANDS = {"check": serve.cmd_check, "status": client.cmd_status,
            "metrics": client.cmd_metrics, "top": client.cmd_top,
            "reload": client.cmd_reload, "upgrade": client.cmd_upgrade,
            "stop": client.cmd_stop, "scale": client.cmd_scale}


