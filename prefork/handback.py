"""A worker's side of keep-alive: the connections its handlers kept (keep_alive())
go to the master, and those the master passes back are served here.

Handing a connection over costs the master and two workers a few system calls
each (sendmsg and recvmsg with SCM_RIGHTS, twice), as much as the rest of a small
request.  So a worker first keeps the connection it answered, in its own epoll
beside the listening socket, and serves the next request on it itself when that
comes first; it waits on all its work at once, never on one idle client.  What
it keeps goes to the master, to be passed to whichever worker is free:

* when it takes other work while another worker is free, and its requests
  are not short (HOLD_FAST on average): then the kept ones could be served at
  once elsewhere rather than after its request;
* when it has had nothing to do for HOLD_IDLE, and each after HOLD_SECONDS;
* when it leaves (told to, max_requests, or its master gone);
* and while one request runs longer than HOLD_CHECK: a thread of the worker
  gives them to the master then, so a slow request delays no other client's.

While every worker is busy there is no free one to go to: a worker keeps what
it answered (up to HOLD_MOST) and serves each next request as it comes, with no
trip through the master at all.
"""

import select
import socket
import threading
import time

from . import keeper
from .scoreboard import IDLE

__all__ = ["HandBack", "HOLD_MOST", "HOLD_SECONDS", "HOLD_IDLE", "HOLD_CHECK"]

HOLD_MOST = 32       # connections a worker keeps at once; more go to the master
HOLD_SECONDS = 1.0   # the longest a worker keeps one before giving it to the master
HOLD_IDLE = 0.1      # a worker with nothing to do for this long gives them all
HOLD_CHECK = 0.02    # a request running this long: the connections kept go
HOLD_FAST = 0.002    # requests this short on average: kept ones wait for the one at hand
_READABLE = select.EPOLLIN | select.EPOLLRDHUP
monotonic = time.monotonic


class HandBack:
    """*channel*: the pool's workers_end; *servers*: the worker's servers, in the
    order the master knows them; *states*: every slot's state, from the scoreboard
    (another worker IDLE is a free one); *poller*: the worker's epoll."""

    def __init__(self, channel, servers, keepalive, states, poller):
        self.channel = channel
        self.servers = servers
        self.states = states
        self.poller = poller
        self.index = {}
        self.kinds = []
        for i, srv in enumerate(servers):
            sock = srv.socket
            self.index[id(srv)] = i
            self.kinds.append((sock.family, sock.type, sock.proto))
            if keepalive and sock.type == socket.SOCK_STREAM:
                srv._keeps = True
        # fd -> (connection, server, address, since).  One taken out to be served stays
        # in the epoll meanwhile: kept again, it costs no system call.
        self.held = {}
        self.watched = set()         # the descriptors of connections in the epoll
        self.leaving = False
        # The loop's lock: the worker's main thread has it, except while a request
        # runs; then the watch thread may take it and give what is held away.
        self.lock = threading.Lock()
        self.lock.acquire()
        self.request_since = None
        self.typical = 0.0             # seconds a request takes here, on average
        self.wake = threading.Event()  # set while something is held
        self.watch = None

    # -- a request ends with its connection kept ---------------------------------------

    def give(self, server, conn, address, fd, now):
        """Keep the idle connection *conn* (descriptor *fd*) here, or hand it to the
        master when this worker holds enough or is leaving; closed if neither can take
        it."""
        if conn.fileno() < 0:
            self.watched.discard(fd)
            return  # the server closed it after all
        if len(self.held) < HOLD_MOST and not self.leaving:
            if fd not in self.watched:  # else still in the epoll since its last request
                self.poller.register(fd, _READABLE)
                self.watched.add(fd)
            self.held[fd] = (conn, server, address, now)
            if not self.wake.is_set():
                self.wake.set()
                if self.watch is None:
                    self.watch = threading.Thread(target=self._watch, daemon=True,
                                                  name="prefork hand-back")
                    self.watch.start()
            return
        self._to_master(server, conn, address)

    def _to_master(self, server, conn, address):
        fd = conn.fileno()
        if fd in self.watched:  # before the master has it: no event for it here any more
            self.poller.unregister(fd)
            self.watched.discard(fd)
        if keeper.give(self.channel, fd, payload(self.index[id(server)], address)):
            conn.close()  # the master holds it now; this process's descriptor goes
        else:
            server.shutdown_request(conn)  # the master is not taking any: close it

    # -- what the loop asks ------------------------------------------------------------

    def others_free(self):
        """Whether a worker besides this one (IDLE itself, in its loop) is free."""
        return self.states.tolist().count(IDLE) > 1

    def release(self, older_than=None, but=None):
        """Give the master what is held: all of it but *but* (a descriptor), or only
        what was kept before *older_than* (they are in the order they were kept)."""
        held = self.held
        if but is not None:
            for fd in [fd for fd in held if fd != but]:
                self._release(fd)
            return
        while held:
            fd = next(iter(held))
            if older_than is not None and held[fd][3] >= older_than:
                return
            self._release(fd)

    def _release(self, fd):
        conn, server, address, _ = self.held.pop(fd)
        self._to_master(server, conn, address)

    def receive(self):
        """A connection the master passed on: (connection, server, address), or None
        if another worker took it."""
        got = keeper.receive(self.channel)
        if got is None or got[0] < 0:
            return None
        fd, data = got
        index, address = unpack(data)
        return socket.socket(*self.kinds[index], fd), self.servers[index], address, fd

    # -- while a request runs ------------------------------------------------------------

    def serve(self, request, server, address, fd, slot):
        """Serve a request on connection *request* (descriptor *fd*; -1 for a datagram)
        through the server's hooks, the slot busy meanwhile; then keep the connection
        if the handler asked to (keep_alive()), or forget it."""
        now = monotonic()
        slot.begin_request(now)
        self.request_since = now
        self.lock.release()  # the watch thread may give the kept connections away meanwhile
        try:
            server.process_request(request, address)
        except Exception:
            server._kept = None
            server.handle_error(request, address)
            server.shutdown_request(request)
        finally:
            self.lock.acquire()
            end = monotonic()
            # How long this worker's requests take (a moving average): short ones are
            # worth waiting for, rather than handing what is kept over.
            self.typical += (end - now - self.typical) * 0.1
            self.request_since = None
            slot.end_request(end)
        if server._kept is None:
            self.watched.discard(fd)  # closed: out of the epoll too
            return
        server._kept = None
        self.give(server, request, address, fd, end)

    def worth_passing(self):
        """Whether to give what is kept to the master before taking other work: when
        this worker's requests are not short and another worker is free."""
        return self.typical > HOLD_FAST and self.others_free()

    def _watch(self):
        """The watch thread: a request that runs long lets go of what is held."""
        while True:
            self.wake.wait()
            time.sleep(HOLD_CHECK)
            if not self.held:  # cleared here, not by the loop: it sets it again at most
                self.wake.clear()  # once a period under load, not once a request
                if self.held:
                    self.wake.set()
                continue
            if not self.lock.acquire(blocking=False):
                continue  # the loop has it: no request is running
            try:
                since = self.request_since
                if self.held and since is not None and time.monotonic() - since >= HOLD_CHECK:
                    self.release()
            finally:
                self.lock.release()


def payload(index, address):
    """Which server, and the client's address, as the master carries them."""
    if isinstance(address, tuple):
        return f"{index}|{'|'.join(map(str, address))}".encode()
    if isinstance(address, bytes):
        return f"{index}|b{address.hex()}".encode()
    return f"{index}|u{address or ''}".encode()


def unpack(data):
    index, _, rest = data.decode().partition("|")
    kind = rest[:1]
    if kind == "u":
        return int(index), rest[1:]
    if kind == "b":
        return int(index), bytes.fromhex(rest[1:])
    host, *numbers = rest.split("|")
    return int(index), (host, *map(int, numbers))
