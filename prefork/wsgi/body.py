"""wsgi.input: the request body, read from the connection as the application asks.

Content-Length and chunked bodies both come through the parser, which counts the
one and decodes the other, so the application reads the body's bytes alone and
sees the end of it (``wsgi.input_terminated``).  ``Expect: 100-continue`` is
answered when the application first reads, if its answer has not begun: one that
refuses an upload without reading it never receives it.  A client that stops
sending before the body ends is an OSError for the application, and too slow a
client a 408 (HTTPError).
"""

from .errors import HTTPError

__all__ = ["Input", "NO_BODY", "ClientGone"]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientGone(ConnectionError):
    """The client closed the connection before its body ended."""


class Input:
    """A file-like read side of the body: read, readline, readlines, iteration."""

    used = False  # the application asked for body bytes

    def __init__(self, request, response=None):
        self._req = request
        self._response = response  # 100 Continue goes out only before its head
        self._buf = bytearray()

    def _take(self):
        if self._req.body:
            self._buf += b"".join(self._req.body)
            self._req.body.clear()
            return True
        return False

    def _fill(self):
        """Read more of the body into the buffer; False at its end."""
        req = self._req
        self.used = True
        if self._take():  # what came with the head, or with the last read
            return True
        if req.done:
            return False
        if req.expect_continue:
            req.expect_continue = False
            # Once the answer has begun, an interim one cannot come (RFC 9110 15.2): the
            # client, waiting for it, sends the body after a while of its own.
            if self._response is None or not self._response.sent_head:
                try:
                    req.sock.sendall(CONTINUE)
                except OSError as e:
                    raise ClientGone(f"sending 100 Continue: {e}") from None
        try:
            data = req.recv(req.header_timeout)
        except OSError as e:  # reset or closed: HTTPError (too slow) goes through
            raise ClientGone(f"reading the body: {e}") from None
        if not data:
            raise ClientGone("the client closed the connection in the middle of its body")
        req.feed_body(data)
        self._take()
        return True

    def read(self, size=-1):
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buf)
            self._buf.clear()
            return data
        while len(self._buf) < size and self._fill():
            pass
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def readline(self, size=-1):
        limit = size if size is not None and size >= 0 else None
        while True:
            end = self._buf.find(b"\n") + 1
            if end or (limit is not None and len(self._buf) >= limit) or not self._fill():
                break
        if not end:
            end = len(self._buf)
        if limit is not None:
            end = min(end, limit)
        data = bytes(self._buf[:end])
        del self._buf[:end]
        return data

    def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, most=1 << 20):
        """Read and drop what is left of the body, up to *most* bytes: a connection
        closed with unread bytes is reset, and the client may lose the answer.  A
        client still waiting for 100 Continue has sent nothing to drain."""
        req = self._req
        if req.expect_continue:
            return
        self._buf.clear()
        req.body.clear()
        try:
            while not req.done and req.body_size < most:
                data = req.recv(min(req.header_timeout, 1.0))
                if not data:
                    return
                req.feed_body(data)
                req.body.clear()
        except (HTTPError, OSError):
            pass


class _NoBody:
    """wsgi.input of a request that has no body (nearly every GET): always empty,
    so one instance serves them all."""

    used = False

    def read(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return iter(())

    def drain(self):
        pass


NO_BODY = _NoBody()
