"""The `prefork` commands that talk to a running master: status, metrics, reload, upgrade,
scale and stop, through its control socket (or, for reload and stop, a signal
to the pid in its pidfile).  Errors are raised typed; cli.main() reports them.
"""

import json
import os
import signal
import socket
import time

from ..errors import ConfigError, PreforkError
from .process import read_pid

__all__ = ["control_path", "ask", "cmd_status", "cmd_metrics", "cmd_reload", "cmd_upgrade",
           "cmd_scale", "cmd_stop"]


def control_path(given, pidfile):
    """The control socket: --control (*given*), else one beside the pidfile (PIDFILE.ctl)."""
    return given or (pidfile + ".ctl" if pidfile else "")


def ask(path, request, timeout=10.0):
    """Send *request* (a dict) to the control socket at *path*; return the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def _ask(args, request):
    path = control_path(args.control, args.pidfile)
    if not path:
        raise ConfigError("say which master: --control PATH or --pidfile PATH")
    try:
        reply = ask(path, request)
    except FileNotFoundError:
        raise PreforkError(f"no control socket at {path}: is the master running, and "
                           "started with this --control or --pidfile?") from None
    except ConnectionRefusedError:
        raise PreforkError(f"nothing answers on {path}: the master is gone; "
                           "remove the stale file") from None
    except OSError as e:
        raise PreforkError(f"cannot reach the master at {path}: {e.strerror or e}") from None
    if not reply.get("ok"):
        raise PreforkError(reply.get("error", "the master refused"))
    return reply


def _signal_or_ask(args, signum, request):
    """Use the control socket when there is one, else signal the pid in the pidfile."""
    if args.control or (args.pidfile and os.path.exists(args.pidfile + ".ctl")):
        _ask(args, request)
        return 0
    if not args.pidfile:
        raise ConfigError("say which master: --pidfile PATH (or --control PATH)")
    pid = read_pid(args.pidfile)
    if not pid:
        raise PreforkError(f"--pidfile {args.pidfile} names no running master")
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise PreforkError(f"no master with pid {pid} (from {args.pidfile}) is running; "
                           "remove the stale pidfile") from None
    return 0


def cmd_reload(args):
    return _signal_or_ask(args, signal.SIGHUP, {"cmd": "reload"})


def cmd_stop(args):
    return _signal_or_ask(args, signal.SIGINT if args.fast else signal.SIGTERM,
                          {"cmd": "stop", "fast": bool(args.fast)})


UPGRADE_WAIT = 120.0  # at most; a new master that cannot boot gives up sooner


def cmd_upgrade(args):
    """Ask for an upgrade, then watch the control socket until the new master answers
    there (it renames its socket into place when it takes over) or the old says why not."""
    old = _ask(args, {"cmd": "status"})["master"]["pid"]
    _ask(args, {"cmd": "upgrade"})
    deadline = time.monotonic() + UPGRADE_WAIT
    while time.monotonic() < deadline:
        try:
            now = _ask(args, {"cmd": "status"})
        except PreforkError:
            now = None  # between the two masters for an instant
        if now and now["master"]["pid"] != old:
            print(f"upgraded: master {now['master']['pid']} took over from master {old}")
            return 0
        if now and now["upgrade"]["new_master"] is None:
            raise PreforkError(f"upgrade {now['upgrade']['last']}; master {old} keeps serving")
        time.sleep(0.1)
    raise PreforkError(f"no new master took over within {UPGRADE_WAIT:g}s; see the log")


def cmd_scale(args):
    reply = _ask(args, {"cmd": "scale", "workers": args.workers})
    print(f"workers: {reply['workers']}")
    return 0


def cmd_metrics(args):
    """The master's metrics, in Prometheus's text format."""
    print(_ask(args, {"cmd": "metrics"})["text"], end="")
    return 0


def cmd_status(args):
    reply = _ask(args, {"cmd": "status"})
    if args.json:
        print(json.dumps(reply, indent=2))
        return 0
    m = reply["master"]
    name = f" [{m['name']}]" if m["name"] else ""
    adaptive = reply["adaptive"]
    sizing = f"adaptive {adaptive['min']}..{adaptive['max']}, load {adaptive['load']:.1f}; " \
        if adaptive else ""
    print(f"master {m['pid']}{name}: generation {reply['generation']}, "
          f"{reply['target']} workers wanted ({sizing}max {reply['max_workers']}), "
          f"up {_age(m['uptime'])}, reloads {reply['reloads']['ok']} ok / "
          f"{reply['reloads']['failed']} failed")
    if reply["upgrade"]["new_master"]:
        print(f"upgrading: new master {reply['upgrade']['new_master']} starting")
    print(f"{'PID':>8} {'SLOT':>4} {'GEN':>4} {'STATE':<11} {'REQUESTS':>9} {'RSS':>8} {'AGE':>8}")
    for w in reply["workers"]:
        print(f"{w['pid']:>8} {w['slot']:>4} {w['generation']:>4} {w['state']:<11} "
              f"{w['requests']:>9} {_mib(w['rss']):>8} {_age(w['age']):>8}")
    t = reply["totals"]
    print(f"{'total':>8} {t['workers']:>4} {'':>4} {'':<11} {t['requests']:>9} "
          f"{_mib(t['rss']):>8}  (RSS with the master)")
    idle = reply.get("idle_connections")
    if idle:
        print(f"idle connections: {idle['held']} held by the master (at most {idle['limit']}, "
              f"{idle['timeout']:g}s each); since start: {idle['taken_back']} given back, "
              f"{idle['passed']} passed to a worker, {idle['timed_out']} timed out, "
              f"{idle['over_limit']} over the limit, {idle['closed_by_client']} closed "
              "by the client")
    return 0


def _mib(n):
    return f"{n / 1024 / 1024:.1f}M"


def _age(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
