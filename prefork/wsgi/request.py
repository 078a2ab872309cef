"""Reading an HTTP/1.x request from a connected socket.

The parser is httptools (Node.js's llhttp), in its strict mode: no lenient flag is
ever set, so what llhttp refuses (Content-Length together with Transfer-Encoding, a
Transfer-Encoding whose last coding is not chunked, repeated or malformed
Content-Length, obs-fold, whitespace before a colon, bad characters in names and
values, bad chunk sizes and extensions, bare LF) is refused here with 400 and the
connection closed.  On top of it this module enforces the limits (request line,
header count and size, body size, the time a client has to send its head) and
what llhttp lets through but this server will not serve: a version other than
1.0 and 1.1, a transfer coding other than chunked, a missing or repeated Host.

The head is read with one deadline, so a client that sends a byte now and then
cannot hold a worker past it.  Body bytes that arrive with the head are kept for
wsgi.input; the rest is read when the application asks (body.py).
"""

import time

import httptools

from .errors import HTTPError

__all__ = ["Request", "read_request"]

RECV = 65536


class Request:
    """One request as it is being read: the parser's protocol object, then the record."""

    __slots__ = ("limits", "url", "headers", "head_bytes", "headers_done", "done", "body",
                 "body_size", "parser", "method", "version", "chunked", "content_length",
                 "expect_continue", "sock", "after")

    def __init__(self, limits, sock):
        self.limits = limits
        self.sock = sock
        self.url = b""
        self.headers = []            # [(name, value)] as sent, bytes
        self.head_bytes = 0
        self.headers_done = False
        self.done = False            # the whole message (body included) is read
        self.body = []               # body bytes read and not yet taken by wsgi.input
        self.body_size = 0
        self.parser = httptools.HttpRequestParser(self)
        self.method = self.version = ""
        self.chunked = False
        self.content_length = None
        self.expect_continue = False
        self.after = False           # bytes after this message (a pipelined request)

    # -- the parser's callbacks ---------------------------------------------------------

    def on_url(self, url):
        if self.headers_done:  # the start of a pipelined request: not this one's
            self.after = True
            return
        self.url += url
        if len(self.url) > self.limits.max_request_line:
            raise HTTPError(414, f"request target longer than {self.limits.max_request_line}")

    def on_header(self, name, value):
        if self.headers_done:  # a trailer field after a chunked body: not used
            return
        size = len(name) + len(value)
        if size > self.limits.max_header_size:
            raise HTTPError(431, f"a header field of {size} bytes")
        self.headers.append((name, value))
        if len(self.headers) > self.limits.max_headers:
            raise HTTPError(431, f"more than {self.limits.max_headers} header fields")

    def on_headers_complete(self):
        self.headers_done = True

    def on_body(self, data):
        if self.done:
            return
        self.body_size += len(data)
        limit = self.limits.max_body_size
        if limit and self.body_size > limit:
            raise HTTPError(413, f"a body of more than {limit} bytes")
        self.body.append(data)

    def on_message_complete(self):
        self.done = True

    # -- reading ------------------------------------------------------------------------

    def feed(self, data):
        """Hand *data* to the parser; its refusals become HTTPError."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, HTTPError):
                raise cause from None
            raise
        except httptools.HttpParserUpgrade:
            # Upgrade or CONNECT: this server serves the request as it is, or refuses.
            if self.parser.get_method() == b"CONNECT":
                raise HTTPError(501, "CONNECT") from None
        except httptools.HttpParserInvalidMethodError:
            raise HTTPError(501, "a method this server does not know") from None
        except httptools.HttpParserError as e:
            raise HTTPError(400, str(e)) from None

    def recv(self, timeout):
        """More bytes from the client, within *timeout* seconds; b"" if it left."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            return self.sock.recv(RECV)
        except TimeoutError:
            raise HTTPError(408, f"nothing from the client in {timeout:.3g}s") from None


def read_request(sock, limits):
    """The next request's head from *sock*, parsed and checked: a Request, or None
    when the client closed the connection (or stayed silent) before sending one."""
    req = Request(limits, sock)
    deadline = time.monotonic() + limits.header_timeout
    while not req.headers_done:
        try:
            data = req.recv(deadline - time.monotonic())
        except HTTPError:
            if not req.url and not req.headers and not req.parser.get_method():
                return None  # an idle connection: nothing to answer
            raise
        if not data:
            return None  # the client left (before or in the middle of its head)
        req.head_bytes += len(data)
        req.feed(data)
    _check_head(req)
    return req


def _check_head(req):
    version = req.parser.get_http_version()
    if version not in ("1.1", "1.0"):
        raise HTTPError(505, f"HTTP/{version}")
    req.version = version
    req.method = req.parser.get_method().decode("ascii")
    hosts = 0
    for name, value in req.headers:
        lowered = name.lower()
        if lowered == b"host":
            hosts += 1
        elif lowered == b"transfer-encoding":
            # llhttp has made sure the last coding is chunked; no other is decoded here.
            if req.chunked or value.strip().lower() != b"chunked":
                raise HTTPError(501, f"Transfer-Encoding {value!r}")
            req.chunked = True
        elif lowered == b"content-length":
            req.content_length = int(value)  # llhttp allows digits alone, and one header
        elif lowered == b"expect":
            if value.strip().lower() != b"100-continue":
                raise HTTPError(417, f"Expect {value!r}")
            req.expect_continue = version == "1.1"
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise HTTPError(400, f"{hosts} Host header fields")
    limit = req.limits.max_body_size
    if limit and req.content_length is not None and req.content_length > limit:
        raise HTTPError(413, f"Content-Length {req.content_length} over {limit}")
