"""The `prefork` commands that talk to a running master: status, metrics, reload, upgrade,
scale and stop, through its control socket (or, for reload and stop, a signal
to the pid in its pidfile).  Errors are raised typed; cli.main() reports them.
"""

import glob
import json
import os
import re
import select
import signal
import socket
import stat
import time

from ..errors import ConfigError, PreforkError
from .process import held_pid

__all__ = ["control_path", "ask", "cmd_status", "cmd_top", "cmd_metrics", "cmd_reload",
           "cmd_upgrade", "cmd_scale", "cmd_stop"]


def control_path(given, pidfile):
    """The control socket asked for: --control (*given*), else one beside the pidfile
    (PIDFILE.ctl); "" when neither says, and the default place is used."""
    return given or (pidfile + ".ctl" if pidfile else "")


def _default_places():
    """Where a master may make its control socket, first choice first: systemd's
    RuntimeDirectory=, $XDG_RUNTIME_DIR, the working directory ("" where unset)."""
    return [os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0],
            os.environ.get("XDG_RUNTIME_DIR", ""), os.getcwd()]


def default_control(name):
    """Where a master makes its control socket when nothing says where: the first of
    _default_places(); named prefork.ctl, or prefork-NAME.ctl after --name."""
    where = next(filter(None, _default_places()))
    return os.path.join(where, f"prefork-{name}.ctl" if name else "prefork.ctl")


# prefork.ctl, prefork-NAME.ctl, and prefork[-NAME].PID.ctl (a second master whose
# default name was taken by a live one).
_CONTROL_FILE = re.compile(r"prefork(?:-(?P<name>.+?))?(?:\.\d+)?\.ctl")


def find_masters(name=""):
    """The live control sockets in the places masters make them by default (those of
    default_control(), and the runtime directories of the systemd units, /run/prefork*),
    of the master named *name* if given: their paths."""
    places = [*_default_places(), *sorted(glob.glob("/run/prefork*/"))]
    found, seen = [], set()
    for place in filter(None, places):
        for path in sorted(glob.glob(os.path.join(glob.escape(place), "prefork*.ctl"))):
            m = _CONTROL_FILE.fullmatch(os.path.basename(path))
            real = os.path.realpath(path)
            if not m or real in seen or (name and m["name"] != name):
                continue
            seen.add(real)
            if answers(path):
                found.append(path)
    return found


def answers(path):
    """Whether a master answers on the control socket *path*."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except BlockingIOError:
            return True  # its queue is full: alive, and busy
        except OSError:
            return False  # a stale file, or not ours to reach
    return True


def _connect(s, path, timeout):
    """Connect *s* to *path*, waiting while the master's queue is full (a Unix socket
    refuses at once then, with EAGAIN, instead of waiting as TCP does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def ask(path, request, timeout=10.0):
    """Send *request* (a dict) to the control socket at *path*; return the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        _connect(s, path, timeout)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        return json.loads(data)
    except ValueError:
        raise PreforkError(f"the master at {path} sent no answer") from None


def _ask(args, request):
    path = control_path(args.control, args.pidfile)
    if not path:
        path = args.control = _found(args)  # found once: the next calls ask the same
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):  # a pidfile, a config file...
            raise PreforkError(f"{path} is not a socket, so no master's control socket "
                               "(a pidfile goes with --pidfile)")
    except OSError:
        pass  # missing or out of reach: said below
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
        raise (ConfigError if reply.get("usage") else PreforkError)(
            reply.get("error", "the master refused"))
    return reply


def _found(args):
    """The one master found in the default places (named --name, if given)."""
    name = getattr(args, "name", "") or ""
    found = find_masters(name)
    if len(found) == 1:
        return found[0]
    called = f"a master named {name!r}" if name else "a master"
    if not found:
        raise ConfigError(f"no control socket of {called} in the default places (systemd's "
                           "runtime directory, $XDG_RUNTIME_DIR, this directory, "
                           "/run/prefork*); say which master: --control PATH or --pidfile PATH")
    seen = []
    for path in found:
        try:
            m = ask(path, {"cmd": "status"}, timeout=2.0)["master"]
        except (OSError, ValueError, KeyError):
            seen.append(path)
            continue
        seen.append(f"{path} (master {m['pid']}" + (f" [{m['name']}])" if m["name"] else ")"))
    raise ConfigError(f"{len(found)} masters answer here: {', '.join(seen)}; say which with "
                      "--name NAME or --control PATH")


def _by_control_socket(args):
    """Whether a command reaches the master by its control socket (else by a signal to
    the pid in --pidfile)."""
    return bool(args.control or (args.pidfile and os.path.exists(args.pidfile + ".ctl"))
                or not args.pidfile)


def _signal_or_ask(args, signum, request):
    """Use the control socket when there is one, else signal the pid in the pidfile."""
    if _by_control_socket(args):
        _ask(args, request)
        return 0
    pid = held_pid(args.pidfile)
    if not pid:  # nobody holds it: its pid may be anyone's by now, and is not signalled
        raise PreforkError(f"--pidfile {args.pidfile}: no running master holds it")
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise PreforkError(f"no master with pid {pid} (from {args.pidfile}) is running; "
                           "remove the stale pidfile") from None
    return 0


RELOAD_WAIT = 600.0  # at most; a new generation that cannot boot fails by boot_timeout


def cmd_reload(args):
    """Reload; through the control socket, wait until the new generation serves, or the
    master says why the reload was abandoned (exit status 1)."""
    if not _by_control_socket(args):
        return _signal_or_ask(args, signal.SIGHUP, {"cmd": "reload"})
    reply = _ask(args, {"cmd": "reload"})  # settings that cannot be read: refused here
    target, queued = reply.get("generation"), reply.get("queued")
    deadline = time.monotonic() + RELOAD_WAIT
    while time.monotonic() < deadline:
        target, queued, said = reload_outcome(target, queued, _ask(args, {"cmd": "status"}))
        if said is not None:
            if said.startswith("reloaded"):
                print(said)
                return 0
            raise PreforkError(said)
        time.sleep(0.1)
    raise PreforkError(f"the reload did not end within {RELOAD_WAIT:g}s; see the log")


def reload_outcome(target, queued, status):
    """One look at the master's *status* while waiting for the reload that builds
    generation *target* (or, *queued*, for the one that follows it): (target, queued,
    None) while it goes on, else what to say: "reloaded: ..." or why not."""
    building = status["reloading"]
    if queued and building is not None and building > target:
        return building, False, None  # the one under way ended: this one began
    if building is not None and (queued or building == target):
        return target, queued, None
    # It has ended (and so has any other under way).
    if status["last_reload"] == "ok" and (queued or status["generation"] == target):
        return target, False, f"reloaded: generation {status['generation']} serving"
    if status["last_reload"].startswith("cancelled"):
        return target, False, "the reload was cancelled: the master is stopping"
    return target, False, (f"reload {status['last_reload']}; generation "
                           f"{status['generation']} keeps serving")


STOP_WAIT = 600.0  # at most: a graceful stop waits for the requests in flight


def cmd_stop(args):
    """Stop the master, and wait until it has exited: its requests in flight are
    answered, and its sockets free for the next master."""
    if _by_control_socket(args):
        pid = _ask(args, {"cmd": "status"})["master"]["pid"]
    else:
        pid = held_pid(args.pidfile)
    _signal_or_ask(args, signal.SIGINT if args.fast else signal.SIGTERM,
                   {"cmd": "stop", "fast": bool(args.fast)})
    if pid and not _gone(pid, STOP_WAIT):
        raise PreforkError(f"master {pid} is still stopping after {STOP_WAIT:g}s; see the log")
    print(f"stopped: master {pid}" if pid else "stopped")
    return 0


def _gone(pid, timeout):
    """Wait up to *timeout* seconds for process *pid* to exit; whether it has."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


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


def cmd_top(args):
    """The pool, live in the terminal, until q or Ctrl-C (prefork.command.top)."""
    from .top import run_top

    _ask(args, {"cmd": "status"})  # found (and reachable) before the screen is taken
    return run_top(lambda: _ask(args, {"cmd": "status"}), args.iterations)


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
          f"up {age_text(m['uptime'])}, reloads {reply['reloads']['ok']} ok / "
          f"{reply['reloads']['failed']} failed")
    if reply["upgrade"]["new_master"]:
        print(f"upgrading: new master {reply['upgrade']['new_master']} starting")
    print(f"{'PID':>8} {'SLOT':>4} {'GEN':>4} {'STATE':<11} {'REQUESTS':>9} {'RSS':>8} {'AGE':>8}")
    for w in reply["workers"]:
        print(f"{w['pid']:>8} {w['slot']:>4} {w['generation']:>4} {w['state']:<11} "
              f"{w['requests']:>9} {mib_text(w['rss']):>8} {age_text(w['age']):>8}")
    t = reply["totals"]
    print(f"{'total':>8} {t['workers']:>4} {'':>4} {'':<11} {t['requests']:>9} "
          f"{mib_text(t['rss']):>8}  (RSS with the master)")
    idle = reply.get("idle_connections")
    if idle:
        print(f"idle connections: {idle['held']} held by the master (at most {idle['limit']}, "
              f"{idle['timeout']:g}s each); since start: {idle['taken_back']} given back, "
              f"{idle['passed']} passed to a worker, {idle['timed_out']} timed out, "
              f"{idle['over_limit']} over the limit, {idle['closed_by_client']} closed "
              "by the client")
    return 0


def mib_text(n):
    """Bytes as MiB with one decimal: 20.4M."""
    return f"{n / 1024 / 1024:.1f}M"


def age_text(seconds):
    """A duration in its largest whole unit: 45s, 12m, 3h."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
