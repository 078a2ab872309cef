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

import re
import select
import socket
import time

import httptools

from .errors import HTTPError

__all__ = ["Request", "request_class", "read_request", "LIMITS"]

RECV = 65536
MSG_DONTWAIT = socket.MSG_DONTWAIT
LIMITS = ("max_request_line", "max_headers", "max_header_size", "max_body_size",
          "header_timeout")  # Request's settings, the class attributes below


class Request:
    """One request as it is being read: the parser's protocol object, then the record.
    The limits are class attributes: request_class() makes a class for a handler's."""

    max_request_line = 8190
    max_headers = 100
    max_header_size = 8190
    max_body_size = 0
    header_timeout = 10.0
    max_head = None  # set below, from the limits

    # What a request starts as (class defaults: nothing to set for each one).
    line = "-"                   # the request line, as the access log shows it
    target = ""                  # the request target, as sent
    method = protocol = ""       # "GET", "HTTP/1.1"
    headers_done = False
    done = False                 # the whole message (body included) is read
    body_size = 0
    chunked = False
    content_length = None
    expect_continue = False
    persists = False             # the client lets the connection persist after it
    fields = None                # the header fields as environ has them: HTTP_HOST...
    extra = b""                  # bytes read past this request: the next one's (pipelined)
    _body_fed = 0                # bytes of a Content-Length body given to the parser
    # Callbacks not used, said so: the parser then does not look them up in vain.  The
    # head is read by take_head() once llhttp has checked it, not field by field.
    on_message_begin = on_url = on_header = on_status = None
    on_chunk_header = on_chunk_complete = None

    def __init__(self, sock):
        self.sock = sock
        self.body = []               # body bytes read and not yet taken by wsgi.input
        self.parser = httptools.HttpRequestParser(self)

    # -- the parser's callbacks ---------------------------------------------------------

    def on_headers_complete(self):
        self.headers_done = True

    def on_body(self, data):
        self.body_size += len(data)
        limit = self.max_body_size
        if limit and self.body_size > limit:
            raise HTTPError(413, f"a body of more than {limit} bytes")
        self.body.append(data)

    def on_message_complete(self):
        self.done = True

    # -- the head, once llhttp has found it well-formed ------------------------------------

    def take_head(self, data):
        """Read the head *data* (llhttp has checked its syntax; the empty lines a client
        may send before it are gone): the request line, the fields as environ keys,
        whether the connection may persist, and what this server refuses on top of
        llhttp."""
        # Split no further than the limit on fields allows: the empty line that ends
        # the head is within it, or there are too many fields.
        lines = data.decode("latin-1").split("\r\n", self.max_headers + 2)
        first = self.line = lines[0]
        try:
            self.method, target, protocol = first.split(" ")  # llhttp checked the form
        except ValueError:
            if first.count(" ") == 1:  # HTTP/0.9's "GET /"
                raise HTTPError(505, "a request line without HTTP/1.x") from None
            raise HTTPError(400, "a request line not of three parts") from None
        self.target = target
        self.protocol = protocol
        if protocol != "HTTP/1.1" and protocol != "HTTP/1.0":
            raise HTTPError(505, protocol)
        size = len(data)
        if size > self.max_request_line and len(target) > self.max_request_line:
            raise HTTPError(414, f"request target longer than {self.max_request_line}")
        try:
            end = lines.index("", 1)
        except ValueError:
            raise HTTPError(431, f"more than {self.max_headers} header fields") from None
        if size > self.max_header_size:  # only then can one field be too long
            self._check_sizes(lines[1:end])
        fields = self.fields = {}
        for line in lines[1:end]:
            name, _, value = line.partition(":")
            fields[_KEYS.get(name) or _key(name)] = value.strip(" \t")
        if len(fields) != end - 1 or not _SPECIAL.isdisjoint(fields):
            self._take_fields(lines[1:end])  # again, one by one: a field sent twice, or acted on
            fields = self.fields
        if protocol == "HTTP/1.1":
            try:
                host = fields["HTTP_HOST"]
            except KeyError:
                raise HTTPError(400, "no Host header field") from None
            self.persists = True  # HTTP/1.1's default
        else:
            host = fields.get("HTTP_HOST")
        if host not in _HOSTS and host is not None:
            _check_host(host)
        if "HTTP_CONNECTION" in fields:
            self.persists = _persists(protocol, fields["HTTP_CONNECTION"])

    def _check_sizes(self, lines):
        for line in lines:
            if len(line) > self.max_header_size:
                raise HTTPError(431, f"a header field of {len(line)} bytes")

    def _take_fields(self, lines):
        fields = self.fields = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = _KEYS.get(name) or _key(name)
            value = value.strip(" \t")
            if key == _DROPPED:  # a name with "_"
                continue
            if key in fields:  # sent twice: one value, as RFC 9110 5.3 joins them
                if key == "HTTP_HOST":
                    raise HTTPError(400, "2 Host header fields")
                value = fields[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
            fields[key] = value
        if "CONTENT_LENGTH" in fields:
            self.content_length = int(fields["CONTENT_LENGTH"])  # llhttp: digits, once
            limit = self.max_body_size
            if limit and self.content_length > limit:
                raise HTTPError(413, f"Content-Length {self.content_length} over {limit}")
        if "HTTP_TRANSFER_ENCODING" in fields:
            self._transfer_coding(fields["HTTP_TRANSFER_ENCODING"])
        if "HTTP_EXPECT" in fields:
            if fields["HTTP_EXPECT"].lower() != "100-continue":
                raise HTTPError(417, f"Expect {fields['HTTP_EXPECT']!r}")
            self.expect_continue = self.protocol == "HTTP/1.1"  # a 1.0 client does not wait

    def _transfer_coding(self, value):
        """Chunked alone is decoded: chunked last and once, or 400 (RFC 9112 6.3);
        another coding before it, 501."""
        if self.protocol == "HTTP/1.0":  # a 1.0 peer may not know it: no framing to trust
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)")
        codings = [c.strip().lower() for c in value.split(",")]
        if codings[-1] != "chunked" or codings.count("chunked") > 1:
            raise HTTPError(400, f"Transfer-Encoding {value!r}: chunked is not last, once")
        if len(codings) > 1:
            raise HTTPError(501, f"Transfer-Encoding {value!r}")
        self.chunked = True

    # -- reading ------------------------------------------------------------------------

    def feed_body(self, data):
        """Hand *data*, read after the head, to the parser: this request's body, up to
        its end; what follows (a pipelined request) is kept in ``extra``."""
        if self.chunked:
            self._feed_chunked(data)
            return
        left = (self.content_length or 0) - self._body_fed
        if len(data) > left:
            self.extra += data[left:]
            data = data[:left]
        if data:
            self._body_fed += len(data)
            self.feed(data)

    def _feed_chunked(self, data):
        """Where a chunked body ends, only the parser knows; but it ends just past a
        CRLF CRLF (after the last chunk's line, or after its trailer fields).  So *data*
        is fed up to each CRLF CRLF in turn (and up to the end of one the last read
        began), and what follows the body's end, a pipelined request, is kept in
        ``extra`` without the parser seeing it."""
        start = 0
        if data[:1] in (b"\n", b"\r"):
            for begun in (b"\n", b"\r\n", b"\n\r\n"):
                if data.startswith(begun) and not self.done:
                    self.feed(data[start:len(begun)])
                    start = len(begun)
        size = len(data)
        while start < size and not self.done:
            end = data.find(b"\r\n\r\n", start) + 4
            if end < 4:  # none: the rest is the body's
                end = size
            self.feed(data[start:end] if start or end < size else data)
            start = end
        if start < size:
            self.extra += data[start:]

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

    def recv(self, timeout, deadline=None, waited=False):
        """More bytes from the client, within *timeout* seconds (or by the monotonic
        *deadline*); b"" if it left.  *waited*: a read just found nothing yet.

        The socket stays blocking (for sending); a read that would wait is a poll()
        for the bytes, then the read: no system call to change the socket's mode."""
        sock = self.sock
        if not waited:
            try:  # most often the bytes are there already: one system call
                return sock.recv(RECV, MSG_DONTWAIT)
            except BlockingIOError:
                pass
        waiter = select.poll()
        waiter.register(sock, select.POLLIN)
        if deadline is None:
            deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not waiter.poll(left * 1000):
                raise HTTPError(408, f"nothing from the client in {timeout:.3g}s")
            try:
                return sock.recv(RECV, MSG_DONTWAIT)
            except BlockingIOError:
                continue  # woken for nothing after all


def request_class(limits):
    """A Request class with *limits*'s max_request_line, max_headers,
    max_header_size, max_body_size and header_timeout."""
    values = {name: getattr(limits, name) for name in LIMITS}
    values["max_head"] = _max_head(values["max_request_line"], values["max_headers"],
                                   values["max_header_size"])
    return type("Request", (Request,), values)


def _max_head(line, count, size):
    """The most bytes a head within the limits may take, with room for its syntax; a
    read past it is refused (so a flood of small fields is bounded too)."""
    return line + 32 + count * (size + 4) + RECV


def read_request(sock, cls=Request, data=None):
    """The next request's head from *sock*, parsed and checked (a *cls*), or None
    when the client closed the connection (or stayed silent) before sending one.
    *data*: bytes already read from the connection (what followed the last request)."""
    req = cls(sock)
    try:
        if data is None:
            try:  # most often the whole head is there already: one read, one feed
                data = sock.recv(RECV, MSG_DONTWAIT)
            except BlockingIOError:
                data = b""
            else:
                if not data:
                    req.parser = None  # (a cycle: see the handler)
                    return None  # the client left before sending anything
        if data and data[0] < 65:  # CR or LF (a method starts with a letter): empty lines
            data = data.lstrip(b"\r\n")
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if data:
                req.feed(data)
            got = _read_slowly(req, bytearray(data))
            if got is None:
                req.parser = None  # (a cycle: see the handler)
            return got
        return _begin(req, data, end + 4)
    except HTTPError as e:
        e.request = req
        raise


def _begin(req, data, end, fed=0):
    """The head is data[:end] (the parser has its first *fed* bytes): parse it, then
    keep what follows for the body or the next request."""
    head = data[:end] if end < len(data) else data
    req.feed(head[fed:] if fed else head)
    if not req.headers_done:
        raise HTTPError(400, "a head the parser does not see end")
    req.take_head(head)
    if end < len(data):
        req.feed_body(data[end:])
    return req


def _read_slowly(req, seen):
    """The rest of a head that did not come in one read (*seen*: what came, fed to
    the parser), within the head's deadline and size."""
    cls = type(req)
    deadline = time.monotonic() + cls.header_timeout
    line_limit = cls.max_request_line + 64  # with room for the method and version
    line_seen = b"\n" in seen
    while True:
        if not line_seen and len(seen) > line_limit:
            raise HTTPError(414, f"request target longer than {cls.max_request_line}")
        try:
            # A read just found all there was: wait for more before reading again.
            data = req.recv(cls.header_timeout, deadline, waited=True)
        except HTTPError:
            if not seen:
                return None  # an idle connection: nothing to answer
            raise
        if not data:
            return None  # the client left (before or in the middle of its head)
        if not seen and data[0] < 65:
            data = data.lstrip(b"\r\n")
            if not data:
                continue
        start = max(0, len(seen) - 3)
        seen += data
        if len(seen) > cls.max_head:  # limits each field, and the whole head
            raise HTTPError(431, f"a head of more than {cls.max_head} bytes")
        line_seen = line_seen or b"\n" in data
        end = seen.find(b"\r\n\r\n", start)
        if end >= 0:
            return _begin(req, bytes(seen), end + 4, fed=len(seen) - len(data))
        req.feed(data)


Request.max_head = _max_head(Request.max_request_line, Request.max_headers,
                             Request.max_header_size)
_KEYS = {}      # header name, as sent -> its environ key (the names sent are few)
_DROPPED = ""   # the key of a name with "_": X_Forwarded_For would pass for X-Forwarded-For
_SPECIAL = frozenset(("CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTP_EXPECT",  # acted on
                      _DROPPED))


def _persists(protocol, connection):
    """Whether a client that sent the Connection field *connection* lets the connection
    persist: in HTTP/1.1 unless it says close, in HTTP/1.0 only if it says keep-alive."""
    tokens = _TOKENS.get(connection)
    if tokens is None:
        tokens = frozenset(t.strip().lower() for t in connection.split(","))
        if len(_TOKENS) < 64:
            _TOKENS[connection] = tokens
    if "close" in tokens:
        return False
    return protocol == "HTTP/1.1" or "keep-alive" in tokens


_TOKENS = {}  # a Connection field's value -> its tokens, lowercased (few values are sent)
_HOSTS = set()  # Host field values found valid (the names a server answers to are few)
# uri-host [":" port] (RFC 9112 3.2, RFC 3986 3.2.2): an IP literal in brackets, or a
# reg-name (IPv4 addresses are reg-names too); empty is allowed.
_HOST = re.compile(r"(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]*)"
                   r"(?::[0-9]*)?")


def valid_host(host):
    """Whether *host* is uri-host [":" port], as a Host field or a target's authority."""
    return _HOST.fullmatch(host) is not None


def _check_host(host):
    """A Host value that is no host (a space, a slash, an @...) is 400 (RFC 9112 3.2)."""
    if not valid_host(host):
        raise HTTPError(400, f"Host {host[:100]!r} is not a host")
    if len(_HOSTS) < 64:
        _HOSTS.add(host)


def _key(name):
    key = name.upper()
    if "_" in key:
        key = _DROPPED
    else:
        key = key.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
    if len(_KEYS) < 1024:  # a flood of odd names is not remembered
        _KEYS[name] = key
    return key
