"""A worker's side of keep-alive: the connections its handlers kept (keep_alive())
go to the master, and those the master passes back are served here.

Handing a connection over costs the master and two workers a few system calls
each, which is worth it while some worker is free: the next request then goes
to whichever worker is.  While every worker is busy there is none to go to, so
a worker keeps the connections it answered itself, in its own epoll beside the
listening socket, and serves their next requests as they come, with no trip
through the master.  It keeps them only so long:

* as soon as it sees another worker free, it gives them all to the master;
* when it has had nothing to do for HOLD_IDLE, and each after HOLD_SECONDS;
* when it leaves (told to, max_requests, or its master gone);
* and while one request runs longer than HOLD_CHECK, a thread of the worker
  gives them to the master, so a slow request delays no other client's.

No worker waits on an idle connection: it waits on all its work at once.
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
_READABLE = select.EPOLLIN | select.EPOLLRDHUP


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
        self.held = {}               # fd -> (connection, server, address, since)
        self.leaving = False
        # The loop's lock: the worker's main thread has it, except while a request
        # runs; then the watch thread may take it and give what is held away.
        self.lock = threading.Lock()
        self.lock.acquire()
        self.request_since = None
        self.wake = threading.Event()  # set while something is held
        self.watch = None

    # -- a request ends with its connection kept ---------------------------------------

    def give(self, server, conn, address):
        """Keep the idle connection *conn* here while no other worker is free, else
        hand it to the master; closed if neither can take it."""
        fd = conn.fileno()
        if fd < 0:
            return  # the server closed it after all
        if len(self.held) < HOLD_MOST and not self.leaving and IDLE not in self.states:
            self.poller.register(fd, _READABLE)
            self.held[fd] = (conn, server, address, time.monotonic())
            if not self.wake.is_set():
                self.wake.set()
                if self.watch is None:
                    self.watch = threading.Thread(target=self._watch, daemon=True,
                                                  name="prefork hand-back")
                    self.watch.start()
            return
        self._to_master(server, conn, address)

    def _to_master(self, server, conn, address):
        if keeper.give(self.channel, conn.fileno(),
                       payload(self.index[id(server)], address)):
            conn.close()  # the master holds it now; this process's descriptor goes
        else:
            server.shutdown_request(conn)  # the master is not taking any: close it

    # -- what the loop asks ------------------------------------------------------------

    def others_free(self):
        """Whether a worker besides this one (IDLE itself, in its loop) is free."""
        return self.states.tolist().count(IDLE) > 1

    def release(self, older_than=None):
        """Give the master what is held (or only what was kept before *older_than*:
        they are in the order they were kept)."""
        held = self.held
        while held:
            fd = next(iter(held))
            conn, server, address, since = held[fd]
            if older_than is not None and since >= older_than:
                return
            del held[fd]
            self.poller.unregister(fd)
            self._to_master(server, conn, address)

    def take(self, fd):
        """The kept connection *fd*, readable now: (connection, server, address), or None
        if it is not held here any more."""
        entry = self.held.pop(fd, None)
        if entry is None:
            return None
        self.poller.unregister(fd)
        return entry[:3]

    def receive(self):
        """A connection the master passed on: (connection, server, address), or None
        if another worker took it."""
        got = keeper.receive(self.channel)
        if got is None or got[0] < 0:
            return None
        fd, data = got
        index, address = unpack(data)
        return socket.socket(*self.kinds[index], fd), self.servers[index], address

    # -- while a request runs ------------------------------------------------------------

    def running(self, now):
        self.request_since = now
        self.lock.release()

    def done(self):
        self.lock.acquire()
        self.request_since = None

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
