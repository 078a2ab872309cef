"""The master's HTTP listener for metrics and health (``--metrics-bind``): GET
``/metrics``, ``/ready`` and ``/live``, answered from the master's own loop.

The master never waits on a scraper: the listening socket and each client's
connection are non-blocking and sit in the master's poll set; a request is read
as it comes, the answer made at once and written as the client takes it, and a
client that has not sent its request and taken its answer within CLIENT_TIME is
dropped.  A scraper that connects and then never sends, or never reads, costs a
descriptor until then, and never delays a reload, a reap or a signal.  At most
MAX_CLIENTS are served at once; past that a new client takes the place of the
oldest one that has sent nothing yet, or is closed when every one is under way.
"""

import select
import socket
import time

__all__ = ["Scrape", "MAX_CLIENTS", "CLIENT_TIME"]

MAX_CLIENTS = 32
CLIENT_TIME = 5.0   # seconds a client has to send its request and take the answer
MAX_HEAD = 8192     # a request head longer than this is answered 431
_IN = select.POLLIN
_OUT = select.POLLOUT
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class _Client:
    __slots__ = ("conn", "deadline", "got", "out")

    def __init__(self, conn, deadline):
        self.conn, self.deadline, self.got, self.out = conn, deadline, b"", None


class Scrape:
    """Serves *sock* (a listening TCP socket) in *poller* (the master's select.poll);
    *answer(path)* gives (status, content type, body bytes) for a GET of *path*."""

    def __init__(self, sock, poller, answer):
        self.sock = sock
        self.poller = poller
        self.answer = answer
        self.clients = {}  # fd -> _Client
        self.polled = False
        sock.setblocking(False)
        self.start()

    def start(self):
        """Poll the socket once it listens (a new master of an upgrade: at takeover)."""
        if not self.polled and self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            self.poller.register(self.sock, _IN)
            self.polled = True

    def owns(self, fd):
        return fd == self.sock.fileno() or fd in self.clients

    def handle(self, fd, event, now):
        """*fd* (one owns() said yes to) has *event*."""
        if fd == self.sock.fileno():
            self._accept(now)
            return
        client = self.clients[fd]
        try:
            if client.out is None and event & (_IN | select.POLLHUP):
                data = client.conn.recv(MAX_HEAD)
                if not data:
                    self._drop(fd)
                    return
                client.got += data
                self._answer_if_whole(fd, client)
            if client.out is not None:
                self._send(fd, client)
        except BlockingIOError:
            pass
        except OSError:
            self._drop(fd)

    def _make_room(self):
        """Drop the oldest client that has sent nothing yet, for a new one: connections
        left idle (a flood of them, a scraper that never sends) must not keep a
        probe of /live or /ready out.  False when every client is under way."""
        silent = [(c.deadline, fd) for fd, c in self.clients.items()
                  if not c.got and c.out is None]
        if not silent:
            return False
        self._drop(min(silent)[1])
        return True

    def expire(self, now):
        """Drop the clients past their time."""
        for fd in [fd for fd, c in self.clients.items() if now >= c.deadline]:
            self._drop(fd)

    def next_deadline(self):
        return min((c.deadline for c in self.clients.values()), default=None)

    def stop_listening(self, now):
        """Take the connections already waiting, then close the listening socket: a new
        master answers on its own from now on, and none of these is reset."""
        if self.polled:
            self._accept(now)
            self.poller.unregister(self.sock)
            self.polled = False
        self.sock.close()

    def close(self):
        """Drop every client and stop polling the listening socket (its owner closes it)."""
        for fd in list(self.clients):
            self._drop(fd)
        try:
            self.poller.unregister(self.sock)
        except (KeyError, ValueError):
            pass

    def _accept(self, now):
        for _ in range(MAX_CLIENTS):
            try:
                conn, _ = self.sock.accept()
            except OSError:  # none left (BlockingIOError), or one that left at once
                return
            if len(self.clients) >= MAX_CLIENTS and not self._make_room():
                conn.close()
                continue
            conn.setblocking(False)
            fd = conn.fileno()
            self.clients[fd] = _Client(conn, now + CLIENT_TIME)
            self.poller.register(conn, _IN)
            self.handle(fd, _IN, now)  # its request is often there already: one turn

    def _answer_if_whole(self, fd, client):
        end = client.got.find(b"\r\n\r\n")
        if end < 0:
            end = client.got.find(b"\n\n")
        if end < 0:
            if len(client.got) >= MAX_HEAD:
                client.out = _response(431, "text/plain", b"request head too long\n", True)
                self.poller.modify(fd, _OUT)
            return
        line = client.got.split(b"\n", 1)[0].decode("latin-1").strip()
        method, _, rest = line.partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            status, kind, body = 405, "text/plain", b"GET or HEAD\n"
        else:
            status, kind, body = self.answer(path)
        client.out = _response(status, kind, body, method == "HEAD")
        self.poller.modify(fd, _OUT)

    def _send(self, fd, client):
        sent = client.conn.send(client.out)
        client.out = client.out[sent:]
        if not client.out:
            self._drop(fd)

    def _drop(self, fd):
        client = self.clients.pop(fd)
        try:
            self.poller.unregister(fd)
        except (KeyError, ValueError):
            pass
        client.conn.close()


def _response(status, kind, body, head_only):
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n"
            + ("Allow: GET, HEAD\r\n" if status == 405 else "")  # RFC 9110 15.5.6
            + "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode("latin-1")
    return head if head_only else head + body
