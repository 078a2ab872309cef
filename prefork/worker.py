"""The worker: what runs in each child after fork, until it calls os._exit().

A worker drops what belongs to the master, imports the handler (unless the
master preloaded it), reports ready, then serves the inherited listening socket
through the server's documented request path: get_request, verify_request,
process_request (finish_request, shutdown_request), handle_error.

It waits in an epoll of its own, where the listening socket is registered with
EPOLLEXCLUSIVE so that a new connection wakes one idle worker rather than all of
them (the thundering herd).  Between requests it reads its control socket: ``Q``
from the master means finish and go; end-of-file means the master is gone, and
the worker goes too.  SIGTERM sent to the worker itself also means finish and
go; SIGUSR2 writes its Python stack to standard error (faulthandler).
"""

import dataclasses
import faulthandler
import logging
import os
import select
import signal
import sys
import time
import traceback

from . import logs, sched
from .errors import HandlerImportError
from .handback import HOLD_IDLE, HOLD_SECONDS, HandBack
from .loader import is_spec, load_handler
from .policy import EXIT_BOOT_FAILED, EXIT_IMPORT_FAILED, STACK_SIGNAL
from .scoreboard import IDLE, STOPPING, Slot
from .signals import SignalInbox

__all__ = ["WorkerInfo", "run_worker"]

log = logging.getLogger("prefork")

# The longest a worker waits in epoll: an idle worker also tries accept() this often,
# in case a connection's wake-up went to a worker that died before taking it.
IDLE_ACCEPT_INTERVAL = 1.0

# At most this many connections are taken in a row before the control socket and
# signals are looked at again.
GREEDY_BURST = 16

# The master's environment that a worker must not see: only the master talks to systemd.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
                     "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """What the hooks learn about a worker: its slot, generation and (once forked) pid."""

    slot: int
    generation: int
    pid: int = 0


@dataclasses.dataclass
class WorkerPlan:
    """Everything the child needs, prepared by the master before the fork."""

    info: WorkerInfo
    slot: Slot
    control: object          # this worker's end of its socket pair with the master
    servers: tuple           # the server, then one more per further listening socket
    handlers: tuple          # each server's RequestHandlerClass in this worker's generation
    settings: object         # the generation's Config: what a handler loaded here may read
    max_requests: int        # 0: no limit
    beat_interval: float     # seconds between heartbeats while idle; 0: none
    close_fds: list          # the master's descriptors, closed first thing
    title: str
    channel: object = None   # the idle connections' channel (workers_end), if any
    keepalive: bool = False  # keep persistent connections (keepalive_timeout > 0)
    states: object = None    # every worker's state (the scoreboard's), to find a free one
    master: int = 0          # the master's pid
    orphan_limit: float = 0  # once the master is gone, the longest the worker lives on


def flush_std_streams():
    """Write what sys.stdout and sys.stderr hold: as a worker exits, and in the master
    before it forks (or each worker would write the master's unwritten bytes again)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass  # a closed or broken stream must not stop a fork or an exit


def run_worker(server, plan):
    """The whole life of a worker.  Never returns: it ends in os._exit()."""
    status = 1
    try:
        status = _live(server, plan)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        flush_std_streams()
        for handler in logging.getLogger().handlers + log.handlers:
            try:
                handler.flush()
            except Exception:
                pass
        os._exit(status)


def _live(server, plan):
    slot = plan.slot
    inbox = _reset_after_fork(plan)
    slot.set_pid(os.getpid())
    failed = _boot(server, plan)
    if failed:
        return failed
    servers = plan.servers
    from .mixin import PreforkMixIn  # here: the mix-in imports the master, which imports this
    tally = _Tally(slot, plan.max_requests, inbox)
    for srv in servers:
        srv._slot = slot  # for note_request(), no_request() and handle_error()
        if getattr(type(srv), "note_request", None) is PreforkMixIn.note_request:
            srv.note_request = slot.set_note  # the same, one call shorter
        if getattr(type(srv), "next_request", None) is PreforkMixIn.next_request:
            srv.next_request = tally.next_request
    by_fd = {srv.socket.fileno(): srv for srv in servers}
    ep = select.epoll()
    back = None  # the idle connections' channel, this worker's side
    if plan.channel is not None:
        back = HandBack(plan.channel, servers, plan.keepalive, plan.states, ep)
    try:
        for fd, srv in by_fd.items():
            srv.socket.setblocking(False)  # a woken worker that loses the race gets EAGAIN
            ep.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        if back is not None:  # connections whose next request came, from the master
            ep.register(plan.channel.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
            by_fd[plan.channel.fileno()] = back
        ep.register(plan.control.fileno(), select.EPOLLIN)
        ep.register(inbox.fileno(), select.EPOLLIN)
        slot.set_state(IDLE)
        plan.control.send(b"R")
        timeout = min(plan.beat_interval or IDLE_ACCEPT_INTERVAL, IDLE_ACCEPT_INTERVAL)
        control_fd, inbox_fd = plan.control.fileno(), inbox.fileno()
        held = back.held if back is not None else {}
        leaving = False
        while not leaving:
            events = ep.poll(min(timeout, HOLD_IDLE) if held else timeout)
            take = []
            ready = []  # connections this worker kept, their next request come
            for fd, _ in events:
                if fd in by_fd:
                    take.append(by_fd[fd])
                elif fd in held:
                    ready.append(fd)
                elif fd == control_fd:
                    leaving = leaving or _told_to_go(plan.control)
                elif fd == inbox_fd:
                    received = inbox.drain()
                    if signal.SIGUSR1 in received:
                        logs.reopen_files()
                    leaving = leaving or signal.SIGTERM in received
            if not events:
                slot.beat()  # idle: show the master this worker is alive
                take = list(by_fd.values())  # and try each socket, as a safety net (below)
            if held:
                if leaving or not events:
                    back.release()  # to the master, to be passed to a free worker
                elif (len(held) > 1 or take) and back.worth_passing():
                    # Busy now: what waits for a request goes where one would be served
                    # at once, all but the first that has its request here already.
                    back.release(but=ready[0] if ready else None)
                else:  # those kept too long; the first kept is the oldest
                    oldest = time.monotonic() - HOLD_SECONDS
                    if held[next(iter(held))][3] < oldest:
                        back.release(older_than=oldest)
            for fd in ready:
                entry = held.pop(fd, None)  # None: given to the master meanwhile
                if entry is not None:
                    back.serve(entry[0], entry[1], entry[2], fd, slot)
                    tally.connection_done()
            # A wake-up for a listener is this worker's alone (EPOLLEXCLUSIVE): it
            # takes the connection even when it is leaving, or nobody may be woken
            # for it.  Greedy: while connections wait, it keeps taking them before
            # sleeping again, so a hot worker serves a burst instead of waking cold ones.
            for srv in take:
                burst = 0
                while burst < GREEDY_BURST and (_serve(back.receive(), slot, back)
                                                if srv is back else _serve_one(srv, slot, back)):
                    tally.connection_done()
                    burst += 1
                    if inbox.pending() or tally.used_up():
                        break
            if tally.used_up():
                # Due for recycling: the master retires this worker once a new one is
                # ready to take its place (a new one that cannot boot leaves it serving).
                tally.max_requests = 0
                try:
                    plan.control.send(b"D")
                except OSError:
                    leaving = True  # the master is gone
        slot.set_state(STOPPING)
        _call_hook(server, "worker_exit", plan.info)
        return 0
    finally:
        if back is not None:
            back.leaving = True
            back.release()  # what this worker kept goes to the master, to be served on
        ep.close()


def _reset_after_fork(plan):
    """Drop the master's signal handling, descriptors and systemd environment."""
    signal.set_wakeup_fd(-1)
    for fd in plan.close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for name in SYSTEMD_VARIABLES:
        os.environ.pop(name, None)
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    # Job-control and master-only signals must not stop or kill a worker that a
    # terminal or a careless `kill` reaches.
    for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(STACK_SIGNAL, signal.SIG_DFL)
    faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True, chain=False)
    set_title(plan.title)
    sched.restore()  # the master's short CPU slice is not a worker's
    _outlive_the_master_by(plan.orphan_limit, plan.master)
    inbox = SignalInbox([signal.SIGTERM, signal.SIGUSR1])
    # With an error log, standard error (a stack dumped above, a traceback) goes there
    # (the master wrote out its buffers before the fork); from now on a USR1 is this
    # worker's own to follow a rotation with.
    logs.stderr_to_log()
    return inbox


ORPHANED = getattr(signal, "SIGPWR", None)  # the kernel's word that the master is gone
PR_SET_PDEATHSIG = 1


def _outlive_the_master_by(limit, master):
    """A worker sees the master gone through its socket pair, between requests; one
    stuck in a request never would, and would hold the listening socket for good.
    So the kernel tells it when the master dies (PR_SET_PDEATHSIG), and from then on
    it has *limit* seconds (timeout, else graceful_timeout; 0: no limit) before a
    timer's SIGALRM, at its default action, ends it.  (The timer is set by a Python
    signal handler: C code that never gives the interpreter back is beyond it.)"""
    if not limit or ORPHANED is None:
        return
    # (The signal also comes when the thread that forked ends: only a new parent counts.)
    signal.signal(ORPHANED, lambda signum, frame: os.getppid() != master and _last_call(limit))
    try:
        import ctypes  # here: a Python built without it runs on without the deadline

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(ORPHANED), 0, 0, 0) != 0:
            return
    except (ImportError, OSError, AttributeError):
        return
    if os.getppid() != master:  # it died before the call: no signal will come
        _last_call(limit)


def _last_call(limit):
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, limit)


def set_title(title):
    """The process title ps and top show (setproctitle)."""
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency
        return
    setproctitle.setproctitle(title)


def _boot(server, plan):
    """Import the handler and run post_fork; on failure note why and return the
    exit status that says so (0 when booted)."""
    try:
        for srv, handler in zip(plan.servers, plan.handlers, strict=True):
            srv.RequestHandlerClass = handler  # this generation's (a reload may change it)
        handler = server.RequestHandlerClass
        if is_spec(handler):
            resolved = load_handler(handler, plan.settings)
            for srv in plan.servers:
                if srv.RequestHandlerClass == handler:
                    srv.RequestHandlerClass = resolved
        _call_hook(server, "post_fork", plan.info, raise_errors=True)
        return 0
    except HandlerImportError as e:
        plan.slot.set_note(str(e))
        log.error("worker %d failed to boot", os.getpid(), exc_info=True)
        return EXIT_IMPORT_FAILED
    except Exception as e:
        plan.slot.set_note(f"{type(e).__name__}: {e}")
        log.error("worker %d failed to boot", os.getpid(), exc_info=True)
        return EXIT_BOOT_FAILED


def _told_to_go(control):
    try:
        data = control.recv(64)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return not data or b"Q" in data  # EOF: the master is gone


def _serve_one(server, slot, back=None):
    """Take one request, if this worker wins it, and serve it through the server's hooks.

    The same request path as BaseServer's handle_request() (get_request,
    verify_request, process_request, handle_error, shutdown_request), written out
    here rather than called: the worker marks its slot busy once it has a request
    and idle after it, and counts it, which the master's scoreboard needs.  A
    connection the handler kept (keep_alive()) goes to *back*."""
    try:
        request, client_address = server.get_request()
    except OSError:
        return False  # another worker took it, or the client left before accept
    verified = server.verify_request(request, client_address)
    if verified and back is not None:
        back.serve(request, server, client_address,
                   request.fileno() if type(request) is not tuple else -1, slot)  # (datagram)
        return True
    slot.begin_request(time.monotonic())
    try:
        if not verified:
            server.shutdown_request(request)
        else:
            try:
                server.process_request(request, client_address)
            except Exception:
                server.handle_error(request, client_address)
                server.shutdown_request(request)
    finally:
        slot.end_request(time.monotonic())
    return True


def _serve(kept, slot, back):
    """Serve the next request on a kept connection: (connection, server, address, fd),
    or None when another worker took it first."""
    if kept is None:
        return False
    back.serve(*kept, slot)
    return True


class _Tally:
    """The requests this worker has served (its slot counts them, those a handler
    serves in place on a connection with next_request() too, and not a connection
    that carried none), against max_requests."""

    def __init__(self, slot, max_requests, inbox):
        self.slot = slot
        self.max_requests = max_requests
        self.inbox = inbox
        self.in_place = 0  # served in a row on the connection at hand

    def connection_done(self):
        """A connection served: the next request is not in place on it."""
        self.in_place = 0

    def used_up(self):
        return self.max_requests and self.slot.served >= self.max_requests

    def next_request(self, request):
        if self.in_place >= GREEDY_BURST or self.inbox.pending() or \
                (self.max_requests and self.slot.served + 1 >= self.max_requests):
            return False
        self.in_place += 1
        now = time.monotonic()
        self.slot.end_request(now)  # one request ends, the next begins
        self.slot.begin_request(now)
        return True


def _call_hook(server, name, info, raise_errors=False):
    hook = getattr(server, name, None)
    if hook is None:
        return
    try:
        hook(info)
    except Exception:
        if raise_errors:
            raise
        log.exception("%s hook failed", name)
