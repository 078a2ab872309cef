"""The pool in Prometheus's text format, rendered by the master from what it knows:
the policy's worker table, the scoreboard, the idle connections, the upgrades, and
the kernel's count of connections waiting in each listening socket's queue.

Counters never go back while the master runs: what a worker counted (requests,
their durations) is added to ``Totals`` when the worker is reaped, before its slot
is reused.  Rendering reads memory and a /proc file a process (its memory and
CPU) and asks the kernel for each queue: about a millisecond for a small pool,
paid by the master only when it is scraped.
"""

import os
import socket
import struct
from bisect import bisect_left

from .policy import BOOTING, EXIT_REASONS, READY
from .scoreboard import BUCKETS, BUSY

__all__ = ["Totals", "render", "listen_queue", "listen_queues", "address_of", "BOOT_BUCKETS",
           "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BOOT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # seconds


class Totals:
    """What the workers the master has reaped had counted, and how long boots took."""

    def __init__(self):
        self.requests = 0
        self.buckets = [0] * len(BUCKETS)
        self.seconds = 0.0
        self.boots = [0] * len(BOOT_BUCKETS)
        self.boot_count = 0
        self.boot_seconds = 0.0

    def absorb(self, slot):
        """Add what the slot of a reaped worker counted (before the slot is reused)."""
        counts, seconds = slot.durations()
        self.requests += slot.requests
        self.buckets = [a + b for a, b in zip(self.buckets, counts, strict=True)]
        self.seconds += seconds

    def booted(self, seconds):
        """A worker became ready *seconds* after its fork."""
        self.boot_count += 1
        self.boot_seconds += seconds
        bucket = bisect_left(BOOT_BUCKETS, seconds)
        if bucket < len(BOOT_BUCKETS):
            self.boots[bucket] += 1


def render(pool, board, totals, *, upgrader, keeper, sockets, usage, master, started):
    """The metrics as text.  *sockets*: the pool's listening sockets; *usage*: pid ->
    (resident bytes, CPU seconds) of the workers (limits.sample_usage), and *master* the same of
    the master (None if unknown); *started*: the master's start, seconds since the
    epoch."""
    out = _Out()
    workers = sorted(pool.workers.values(), key=lambda w: w.slot)
    states = dict.fromkeys(("booting", "idle", "busy", "retiring"), 0)
    requests, buckets, seconds = totals.requests, list(totals.buckets), totals.seconds
    for w in workers:
        slot = board[w.slot]
        if w.state == BOOTING:
            states["booting"] += 1
        elif w.state == READY:
            states["busy" if slot.state == BUSY else "idle"] += 1
        else:
            states["retiring"] += 1
        counts, took = slot.durations()
        requests += slot.requests
        buckets = [a + b for a, b in zip(buckets, counts, strict=True)]
        seconds += took
    out.family("prefork_workers", "gauge", "Worker processes by state (retiring: asked to "
               "go, or being stopped).", [({"state": k}, v) for k, v in states.items()])
    out.family("prefork_workers_wanted", "gauge", "Workers the pool keeps serving.",
               [({}, pool.target)])
    out.family("prefork_generation", "gauge", "The generation now serving (each reload "
               "makes a new one).", [({}, pool.generation)])
    out.family("prefork_requests_total", "counter", "Requests served by the pool's "
               "workers, those since replaced included.", [({}, requests)])
    out.histogram("prefork_request_duration_seconds", "How long requests took in the "
                  "workers, from taking the request to its end.", BUCKETS, buckets,
                  requests, seconds)
    out.family("prefork_worker_exits_total", "counter", "Workers that exited, by why: asked "
               "to by the master (reload, scale, stop, max_rss, timeout), or on their own "
               "(max_requests, crash), or before they were ready (boot).",
               [({"reason": r}, pool.exits[r]) for r in EXIT_REASONS])
    out.histogram("prefork_worker_boot_seconds", "Time from a worker's fork to its first "
                  "ready.", BOOT_BUCKETS, totals.boots, totals.boot_count,
                  totals.boot_seconds)
    out.family("prefork_reloads_total", "counter", "Reloads by result.",
               [({"result": k}, v) for k, v in pool.reloads.items()])
    out.family("prefork_upgrades_total", "counter", "Upgrades: ok, the one that brought "
               "this master in; failed, those it started that failed.",
               [({"result": k}, v) for k, v in upgrader.results.items()])
    out.family("prefork_idle_connections", "gauge", "Idle keep-alive connections the "
               "master holds.", [({}, len(keeper.idle) if keeper else 0)])
    queues = listen_queues(sockets)
    queued = [({"listener": where}, waiting) for where, waiting, _ in queues]
    limits = [({"listener": where}, limit) for where, _, limit in queues]
    out.family("prefork_listen_queue", "gauge", "Connections waiting in a listening "
               "socket's queue for a worker to accept them.", queued)
    out.family("prefork_listen_queue_limit", "gauge", "The most a listening socket's queue "
               "holds (its backlog).", limits)
    rss, cpu = [], []
    for w in workers:
        labels = {"slot": str(w.slot), "pid": str(w.pid), "generation": str(w.generation)}
        if w.pid in usage:
            rss.append((labels, usage[w.pid][0]))
            cpu.append((labels, usage[w.pid][1]))
    out.family("prefork_worker_resident_bytes", "gauge", "Resident memory of each worker.",
               rss)
    out.family("prefork_worker_cpu_seconds_total", "counter", "CPU time (user and system) "
               "of each worker.", cpu)
    if master:
        out.family("prefork_master_resident_bytes", "gauge", "Resident memory of the "
                   "master.", [({}, master[0])])
        out.family("prefork_master_cpu_seconds_total", "counter", "CPU time of the master.",
                   [({}, master[1])])
    out.family("prefork_master_start_time_seconds", "gauge", "When the master started, "
               "seconds since the epoch.", [({}, started)])
    return out.text()


class _Out:
    def __init__(self):
        self.lines = []

    def family(self, name, kind, text, samples):
        self.lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        self.lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]

    def histogram(self, name, text, bounds, counts, count, total):
        self.lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
        running = 0
        for bound, n in zip(bounds, counts, strict=True):
            running += n
            self.lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
        self.lines += [f'{name}_bucket{{le="+Inf"}} {count}', f"{name}_sum {_number(total)}",
                       f"{name}_count {count}"]

    def text(self):
        return "\n".join(self.lines) + "\n"


def _labels(labels):
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value):
    if isinstance(value, float):
        return repr(round(value, 6)) if value != int(value) else f"{value:.1f}"
    return str(value)


def address_of(sock):
    """Where *sock* listens: HOST:PORT, [V6]:PORT or unix:PATH."""
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):
            name = "@" + name[1:].decode(errors="replace")
        return f"unix:{name}"
    host, port = name[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


# -- the kernel's queue of a listening socket -------------------------------------------

_TCP_LISTEN = 10
_TCP_INFO_QUEUE = struct.Struct("=B7xIIIIII")  # tcpi_state ... tcpi_unacked, tcpi_sacked
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_RQLEN = 4
_NLMSG = struct.Struct("=IHHII")           # nlmsghdr: len, type, flags, seq, pid
_UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")  # family, protocol, pad, states, ino, show, cookie
_UNIX_DIAG_MSG = struct.Struct("=BBBBIII")   # family, type, state, pad, ino, cookie
_RTATTR = struct.Struct("=HH")
_NLMSG_ERROR = 2


def listen_queues(sockets):
    """[(where it listens, connections waiting, the queue's limit)] of each of the
    listening *sockets* whose queue the kernel tells."""
    found = [(sock, listen_queue(sock)) for sock in sockets]
    return [(address_of(sock), *queue) for sock, queue in found if queue is not None]


def listen_queue(sock):
    """(connections waiting to be accepted, the queue's limit) of the listening stream
    socket *sock*, as the kernel counts them; None for another socket, or where the
    kernel will not say."""
    if sock.type != socket.SOCK_STREAM:
        return None
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # For a listening socket, TCP_INFO's unacked and sacked are the accept
            # queue's length and its limit.
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_QUEUE.size)
            state, *_, waiting, limit = _TCP_INFO_QUEUE.unpack_from(info)
            return (waiting, limit) if state == _TCP_LISTEN else None
        if sock.family == socket.AF_UNIX:
            return _unix_queue(sock)
    except (OSError, struct.error):
        return None
    return None


def _unix_queue(sock):
    """A Unix socket's queue through the sock_diag netlink interface (unix_diag): the
    socket is asked for by its inode; RQLEN is (waiting, limit) for a listening one."""
    inode = os.fstat(sock.fileno()).st_ino
    request = _UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, 1 << _TCP_LISTEN, inode,
                                  UDIAG_SHOW_RQLEN, 0xFFFFFFFF, 0xFFFFFFFF)
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(0.1)
        nl.sendto(header + request, (0, 0))
        reply = nl.recv(8192)
    length, kind, _, _, _ = _NLMSG.unpack_from(reply)
    if kind != SOCK_DIAG_BY_FAMILY:
        return None  # an error message: no such socket, or no unix_diag in this kernel
    at = _NLMSG.size + _UNIX_DIAG_MSG.size
    while at + _RTATTR.size <= length:
        size, attr = _RTATTR.unpack_from(reply, at)
        if size < _RTATTR.size:
            break
        if attr == UNIX_DIAG_RQLEN:
            return struct.unpack_from("=II", reply, at + _RTATTR.size)
        at += (size + 3) & ~3
    return None
