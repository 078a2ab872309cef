"""Idle keep-alive connections, held by the master so that no worker waits on one.

A worker that has answered a request on a persistent connection, and finds no
next request there yet, hands the connection back to the master instead of
waiting: it sends the descriptor over the pool's channel (a SOCK_SEQPACKET socket
pair made once, before the first fork; SCM_RIGHTS) and closes its own copy.  The
master (Keeper) watches the idle connections in an epoll of their own, closes
those idle past ``keepalive_timeout`` and the longest idle above
``max_idle_connections``, and sends one whose next request has arrived back into
the channel.  Each worker has the channel's other end in its epoll with
EPOLLEXCLUSIVE, beside the listening socket, so a ready connection wakes one free
worker, as a new connection does::

    worker  --- idle connection (fd + where it came from) -->  master_end
    worker  <-- connection with a request waiting ----------   master_end
            (workers_end: shared by every worker)

The channel outlives generations: a reload's new workers take what the old ones
gave back.  At an upgrade both ends pass to the new master, which then holds the
idle connections the old one gives it (through workers_end, as a worker would).

Each message carries one descriptor and a short text saying which of the pool's
listening sockets it came from and the client's address, which the master passes
back unread.
"""

import array
import collections
import os
import resource
import select
import socket

__all__ = ["Channel", "Keeper", "for_pool", "give", "receive"]

BUFFER = 4 << 20      # each end's send buffer: thousands of messages in flight
MOST_PER_TURN = 256   # messages or events taken in one turn of the master's loop
_FD_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)
_RECV_FLAGS = socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
_GONE = select.EPOLLHUP | select.EPOLLERR
_WATCH = select.EPOLLIN | select.EPOLLRDHUP


class Channel:
    """The pool's socket pair for idle connections: ``master_end`` is the master's,
    ``workers_end`` every worker's.  *pair* adopts an inherited one."""

    def __init__(self, pair=()):
        if not pair:
            pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.master_end, self.workers_end = pair
        for end in pair:
            end.setblocking(False)
            try:
                end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            except OSError:
                pass

    def fds(self):
        """Both ends' descriptors, as an upgrade passes them to the new master."""
        return (self.master_end.fileno(), self.workers_end.fileno())

    def close(self):
        self.master_end.close()
        self.workers_end.close()


def for_pool(servers, cfg, poller, inherited=()):
    """The master's Keeper for a pool of *servers* with settings *cfg*, watched by
    *poller*, over the *inherited* channel (an upgrade's) or a new one; None when no
    server has a stream socket (no connections to keep)."""
    if not any(srv.socket.type == socket.SOCK_STREAM for srv in servers):
        return None
    for srv in servers:
        _no_delay(srv.socket)
    _room_for(cfg.max_idle_connections)
    keeper = Keeper(Channel(inherited), cfg.keepalive_timeout, cfg.max_idle_connections)
    keeper.watch(poller)
    return keeper


def give(sock, fd, payload):
    """Send descriptor *fd* with *payload* (bytes) on *sock*; False if it cannot now."""
    try:
        sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", (fd,)))], socket.MSG_DONTWAIT)
    except OSError:  # full (EAGAIN), or no one at the other end any more
        return False
    return True


def receive(sock):
    """One (fd, payload) from *sock*, or None when nothing waits (another took it)."""
    try:
        payload, ancillary, _, _ = sock.recvmsg(256, _FD_SPACE, _RECV_FLAGS)
    except (BlockingIOError, InterruptedError):
        return None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(data) >= 4:
            return array.array("i", data[:4])[0], payload
    return None if payload else (-1, b"")  # b"": the channel's other end is closed


class Keeper:
    """The master's side: holds idle connections, passes on those a request arrived on.

    The master's loop has it watch() its poller, hands it the poller's events each
    turn (serve()), and wakes by next_deadline().  Nothing here blocks: every socket
    is non-blocking."""

    def __init__(self, channel, timeout, limit):
        self.channel = channel
        self.timeout = timeout          # seconds an idle connection is held; 0: none
        self.limit = limit              # the most held at once
        self.epoll = select.epoll()
        self.idle = {}                  # fd -> (deadline, payload), oldest first
        self.queue = collections.deque()  # (fd, payload): ready, not yet sent (a full channel)
        self.holding = True             # False once stopping: idle ones are closed at once
        self.counts = {"taken back": 0, "passed": 0, "timed out": 0, "over limit": 0,
                       "closed by client": 0}

    def fds(self):
        return [self.channel.master_end.fileno(), self.epoll.fileno()]

    def reconfigure(self, cfg):
        """A reload's settings: for the connections given back from now on."""
        self.timeout = cfg.keepalive_timeout
        self.limit = cfg.max_idle_connections

    def watch(self, poller):
        """Have the master's *poller* (a select.poll) wake for what this needs."""
        self.poller = poller
        self._sending = False  # the channel is full: the poller waits for room too
        for fd in self.fds():
            poller.register(fd, select.POLLIN)

    def serve(self, events, now):
        """One turn of the master's loop for the idle connections: take back those
        given, pass on those a request came on, close those timed out.  *events* are
        the poller's; the others are returned."""
        channel_fd, epoll_fd = self.fds()
        rest = []
        for fd, mask in events:
            if fd == channel_fd:
                if mask & select.POLLIN:
                    self.take_back(now)
                if mask & select.POLLOUT:
                    self.flush()
            elif fd == epoll_fd:
                self.pass_ready()
            else:
                rest.append((fd, mask))
        deadline = self.next_deadline()
        if deadline is not None and deadline <= now:
            self.expire(now)
        if bool(self.queue) != self._sending:
            self._sending = bool(self.queue)
            self.poller.modify(channel_fd, select.POLLIN | (select.POLLOUT if self._sending
                                                            else 0))
        return rest

    def take_back(self, now):
        """Hold the idle connections the workers gave back."""
        sock = self.channel.master_end
        for _ in range(MOST_PER_TURN):
            got = receive(sock)
            if got is None or got[0] < 0:  # nothing more, or the channel closed
                return
            self.hold(*got, now)

    def hold(self, fd, payload, now):
        self.counts["taken back"] += 1
        if not self.holding or self.timeout <= 0:
            _close(fd)
            return
        while len(self.idle) >= self.limit:
            self._drop(next(iter(self.idle)), "over limit")  # the longest idle
        try:
            self.epoll.register(fd, _WATCH)
        except OSError:  # not a socket epoll can watch: nothing to hold
            _close(fd)
            return
        self.idle[fd] = (now + self.timeout, payload)

    def pass_ready(self):
        """Send each connection whose next request (or end) has arrived to the workers."""
        for fd, events in self.epoll.poll(0, MOST_PER_TURN):
            entry = self.idle.pop(fd, None)
            self.epoll.unregister(fd)
            if entry is None:
                continue
            if events & _GONE or (events & select.EPOLLRDHUP and not _has_data(fd)):
                self.counts["closed by client"] += 1
                _close(fd)
                continue
            self.queue.append((fd, entry[1]))
        self.flush()

    def flush(self):
        """Send what waits; what the channel cannot take yet stays queued."""
        sock = self.channel.master_end
        queue = self.queue
        while queue:
            fd, payload = queue[0]
            if not give(sock, fd, payload):
                return
            queue.popleft()
            _close(fd)
            self.counts["passed"] += 1

    def expire(self, now):
        """Close the connections idle past their deadline."""
        late = []
        for fd, (deadline, _) in self.idle.items():
            if deadline > now:
                break
            late.append(fd)
        for fd in late:
            self._drop(fd, "timed out")

    def next_deadline(self):
        for deadline, _ in self.idle.values():
            return deadline
        return None

    def stop_holding(self):
        """A stop: close every idle connection now, and each one given back from now on."""
        self.holding = False
        for fd in list(self.idle):
            self._drop(fd, "timed out")

    def give_all(self, sock):
        """An upgrade's hand-over: send every connection held or queued into *sock* (the
        channel's workers_end, which the new master reads) and stop holding; what the
        new master cannot take now is closed."""
        self.holding = False
        for fd in self.fds():
            self.poller.unregister(fd)
        for fd, (_, payload) in list(self.idle.items()):
            del self.idle[fd]
            self.epoll.unregister(fd)
            self.queue.append((fd, payload))
        while self.queue:
            fd, payload = self.queue.popleft()
            give(sock, fd, payload)
            _close(fd)

    def close(self):
        self.stop_holding()
        while self.queue:
            _close(self.queue.popleft()[0])
        self.epoll.close()
        self.channel.close()

    def _drop(self, fd, why):
        del self.idle[fd]
        self.epoll.unregister(fd)
        _close(fd)
        self.counts[why] += 1


def _no_delay(sock):
    """TCP_NODELAY on a TCP listening socket, which its connections inherit: on a kept
    connection, answers to pipelined requests and an answer written in pieces go out
    at once, instead of waiting for the client's delayed ACK of the last one."""
    if sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _room_for(idle):
    """Raise the open-file limit so *idle* held connections fit beside the rest, as far
    as the hard limit allows (systemd's default soft limit is 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = idle + 1024
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _has_data(fd):
    """Whether bytes wait on connection *fd* (a peek; the connection is not changed)."""
    sock = socket.socket(fileno=fd)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False
    finally:
        sock.detach()


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass
