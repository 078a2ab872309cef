"""Sending a WSGI application's response (PEP 3333), framed as HTTP/1.1 says.

* The status and headers are kept until the first byte of body (or the end), and
  go out with it in one send.  ``start_response`` may be called again with
  ``exc_info`` until then; after, it re-raises the exception.
* An application's Content-Length is honoured: bytes past it are dropped, and a
  body that falls short is marked, so the connection is closed rather than left
  to run into another response.  Without it, a body given all at once (a list or
  tuple) gets its Content-Length; any other is sent chunked to an HTTP/1.1 client
  and delimited by the connection's end to an HTTP/1.0 one.
* HEAD, 1xx, 204 and 304 answers carry no body.
* Hop-by-hop headers from the application (Connection, Transfer-Encoding,
  Keep-Alive...) are dropped, with a warning once: framing them is the server's
  work; ``Connection: close`` closes the connection after the answer.
* A ``wsgi.file_wrapper`` over a real file is sent with sendfile(2).
* The connection persists when the handler allows it (``keep``) and the answer's
  end can be told without closing it: ``Connection: close`` otherwise, and
  ``Connection: keep-alive`` to an HTTP/1.0 client whose connection persists.
"""

import logging
import os
import time

from .body import ClientGone
from .filewrapper import FileWrapper

__all__ = ["Response", "date_line"]

HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "trailers",
                        "transfer-encoding", "upgrade"))
_date = [0.0, ""]  # the next second, and the Date line until then


def date_line():
    """The Date header's line, made at most once a second."""
    if time.time() >= _date[0]:
        now = time.time()
        _date[:] = [float(int(now) + 1), time.strftime(
            "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", time.gmtime(now))]
    return _date[1]


class Response:
    """One response on *sock*, to a request of *method* over *protocol* ("HTTP/1.1")."""

    # What a response starts as (class defaults: nothing to set for each one).
    status = None            # "200 OK", once start_response was called
    code = 0
    head = ""                # the status line and the application's header lines,
                             # checked, with a Date line unless the application gave one
    length = None            # the application's Content-Length, if it gave one
    sent_head = False
    sent_body = 0
    chunked = False
    bodyless = False
    short = False            # fewer body bytes than Content-Length said
    whole = False            # started, and the answer carries a body (not HEAD, 204...)

    def __init__(self, sock, method, protocol, keep=False, request=None):
        self.sock = sock
        self.method = method
        self.protocol = protocol
        self.keep = keep         # the connection may persist; False once the head says close
        self.request = request   # its body must be read by the head, or the connection closes

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent_head:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the traceback
        elif self.status is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        self.code, self.head, self.length, close = _check(status, headers)
        if close:  # the application's "Connection: close"
            self.keep = False
        self.status = status
        self.whole = self.method != "HEAD" and self.code not in _BODYLESS
        return self.write

    def write(self, data):
        """The write() callable of PEP 3333, and the path of every body chunk."""
        if self.status is None:
            raise RuntimeError("write() before start_response()")
        if not self.sent_head:
            self._send_head(data, final=False)
            return
        self._send_body(data)

    def send(self, result):
        """Send the iterable *result* the application returned, then end the body."""
        if type(result) is list and len(result) == 1 and self.whole and not self.sent_head:
            data = result[0]  # the most common answer: a body in one piece, sent with its head
            if type(data) is bytes and (self.length is None or self.length == len(data)):
                framing = "" if self.length is not None else f"Content-Length: {len(data)}\r\n"
                head = f"{self.head}{framing}{self._connection(False)}\r\n".encode("latin-1")
                self.sent_head = True  # (after the encoding: a value not latin-1 is a 500)
                self.sent_body = len(data)
                try:
                    self.sock.sendall(head + data)
                except OSError as e:
                    raise ClientGone(f"sending the response: {e}") from None
                return
        if type(result) is list and len(result) <= 1 and self.status and not self.sent_head:
            self._send_head(result[0] if result else b"", final=True)  # one send, a length
            if self.length is not None and self.sent_body < self.length and not self.bodyless:
                self.short = True
            return
        if isinstance(result, FileWrapper) and result.fileno() is not None:
            self._require_started()
            self._sendfile(result)
        elif isinstance(result, tuple) and len(result) <= 1 and not self.sent_head:
            self._require_started()
            self._send_head(result[0] if result else b"", final=True)
        else:
            for data in result:  # once: an iterable may not be iterable twice
                if data:
                    self.write(data)
        self.finish()

    def finish(self):
        """End the body: the head if still unsent, the last chunk, the count."""
        self._require_started()
        if not self.sent_head:
            self._send_head(b"", final=True)
        elif self.chunked:
            self._out(b"0\r\n\r\n")
        if self.length is not None and self.sent_body < self.length and not self.bodyless:
            self.short = True

    # -- the wire -------------------------------------------------------------------

    def _out(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:  # reset, closed, or too slow to take it (a send timeout)
            raise ClientGone(f"sending the response: {e}") from None

    def _connection(self, delimited):
        """The head's Connection line: the connection persists when the handler allows
        it, the body's end is not the connection's (*delimited*), and the request's
        body has been read."""
        if self.keep:
            if not delimited and (self.request is None or self.request.done):
                return "" if self.protocol == "HTTP/1.1" else "Connection: keep-alive\r\n"
            self.keep = False
        return "Connection: close\r\n"

    def _require_started(self):
        if self.status is None:
            raise RuntimeError("the application returned without calling start_response()")

    def _send_head(self, data, final):
        if data:
            data = self._clip(data)  # a str is refused while a 500 can still be sent
        code = self.code
        self.bodyless = self.method == "HEAD" or code in _BODYLESS
        framing = ""
        if self.length is None:
            if not self.bodyless:
                if final:
                    framing = f"Content-Length: {len(data)}\r\n"
                    self.length = len(data)
                elif self.protocol == "HTTP/1.1":
                    framing = "Transfer-Encoding: chunked\r\n"
                    self.chunked = True
            elif final and data and self.method == "HEAD":
                # The length a GET would have had (an app that makes the body for HEAD
                # too); an empty one says nothing, since many leave it out for HEAD.
                framing = f"Content-Length: {len(data)}\r\n"
        delimited = not (self.bodyless or self.chunked or framing or self.length is not None)
        head = f"{self.head}{framing}{self._connection(delimited)}\r\n".encode("latin-1")
        self.sent_head = True
        if self.bodyless or not data:
            self._out(head)
            return
        self.sent_body += len(data)
        if self.chunked:
            self._out(b"%b%x\r\n%b\r\n" % (head, len(data), data))
        else:
            self._out(head + data)

    def _send_body(self, data):
        if self.bodyless or not data:
            return
        data = self._clip(data)
        if not data:
            return
        self.sent_body += len(data)
        if self.chunked:
            self._out(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._out(data)

    def _clip(self, data):
        if not isinstance(data, bytes):
            raise TypeError(f"the application gave {type(data).__name__}, not bytes")
        if self.length is not None and self.sent_body + len(data) > self.length:
            return data[:max(0, self.length - self.sent_body)]  # never past Content-Length
        return data

    def _sendfile(self, wrapper):
        """A file, from its current position, by sendfile(2)."""
        fd = wrapper.fileno()
        start = wrapper.position()
        size = os.fstat(fd).st_size - start
        if self.length is not None:
            size = min(size, self.length)
        if not self.sent_head:
            if self.length is None and self.code >= 200 and self.code not in (204, 304):
                self.length = size  # a file's size is known: no chunking (HEAD says it too)
                self.head += f"Content-Length: {size}\r\n"
            self._send_head(b"", final=False)
        if self.bodyless:
            return
        if not size:
            return  # (chunked: an empty chunk would be the last one, and finish() sends it)
        if self.chunked:  # write() came first without a length: the file as one chunk
            self._out(b"%x\r\n" % size)
        try:
            sent = self.sock.sendfile(wrapper.filelike, start, size)
        except OSError as e:
            raise ClientGone(f"sending the file: {e}") from None
        self.sent_body += sent
        if self.chunked:
            self._out(b"\r\n")


_BODYLESS = frozenset([*range(100, 200), 204, 304])  # statuses never with a body
_STATUSES = {}  # a status that passed the checks -> its code, its status line
_NAMES = {}  # header name -> what it frames ("content-length", "date"), else "", once checked
_VALUES = set()  # header values found clean (the same few, nearly always), framing's aside
_FRAMING = frozenset(("content-length", "date"))
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _check(status, headers):
    """The status and headers as PEP 3333 wants them: (the code, the head's lines with
    a Date line unless the application gave its own, Content-Length).  A name or
    value that could end a header early (a CR or LF) or forge one is refused.

    The names, statuses and values seen before are known good, a value not seen
    before is checked for control characters, Content-Length for digits; anything
    unusual takes the careful path, which also says what is wrong."""
    known = _STATUSES.get(status) if type(status) is str else None
    if known is None:
        return _check_carefully(status, headers)
    code, head = known
    length = None
    date = True
    try:
        for name, value in headers:
            framing = _NAMES[name]
            if framing:
                if framing == "content-length" and length is None and value.isdigit() \
                        and value.isascii():
                    length = int(value)
                elif framing == "date" and value.isprintable():
                    date = False
                else:
                    raise ValueError  # not digits, sent twice, or a control character
            elif value not in _VALUES:  # (a TypeError if it cannot be a str)
                if not value.isprintable():  # a control character (CR, LF, NUL...) or tab
                    raise ValueError
                if len(_VALUES) < 256:
                    _VALUES.add(value)
            head += name + ": " + value + "\r\n"
    except (KeyError, TypeError, ValueError, AttributeError):
        return _check_carefully(status, headers)
    if date:
        head += date_line()
    return code, head, length, False


def _check_carefully(status, headers):
    """_check(), one field at a time, saying what is wrong."""
    if type(status) is not str or len(status) < 4 or not status[:3].isdigit() \
            or not status[:3].isascii() or status[3] != " " or not _is_value(status[4:]):
        raise ValueError(f"bad status {status!r}: a str such as '200 OK'")
    if not 200 <= int(status[:3]) <= 599:  # 1xx are not final; the rest are not statuses
        raise ValueError(f"bad status {status!r}: a final one, 200 to 599")
    length = None
    date = True
    close = False
    lines = [f"HTTP/1.1 {status}\r\n"]
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ValueError(f"bad header {item!r}: a (name, value) tuple of str") from None
        framing = _NAMES.get(name) if type(name) is str else None
        if framing is None:
            framing = _check_name(name)
        if type(value) is not str or not _is_value(value):
            raise ValueError(f"bad header value {value!r} for {name}")
        if framing == "content-length":
            if length is not None:
                raise ValueError("Content-Length sent twice")
            if not (value.isdigit() and value.isascii()):
                raise ValueError(f"bad Content-Length {value!r}: digits")
            length = int(value)
        elif framing == "date":
            date = False
        elif framing == "hop":  # the server's to send: dropped, as werkzeug and gunicorn do
            _dropped(name)
            if name.lower() == "connection" and "close" in value.lower():
                close = True
            continue
        lines.append(f"{name}: {value}\r\n")
    if len(_STATUSES) < 256:  # the same few statuses, nearly always
        _STATUSES[status] = (int(status[:3]), lines[0])
    head = "".join(lines)
    return int(status[:3]), head + date_line() if date else head, length, close


def _dropped(name):
    """Said once a process for each hop-by-hop header name an application sends."""
    if name not in _SAID:
        _SAID.add(name)
        logging.getLogger("prefork.wsgi").warning(
            "the application sent the hop-by-hop header %r: dropped (PEP 3333 leaves "
            "them to the server; 'Connection: close' closes the connection)", name)


_SAID = set()


def _is_value(value):
    """A field value (or reason phrase) as RFC 9110 5.5 allows: visible characters,
    spaces and tabs, obs-text (latin-1's upper half); no CR, LF, NUL or other control."""
    return value.isprintable() or all(
        c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff" for c in value)


def _check_name(name):
    if type(name) is not str or not name or not _TOKEN.issuperset(name):
        raise ValueError(f"bad header name {name!r}")
    lowered = name.lower()
    framing = "hop" if lowered in HOP_BY_HOP else lowered if lowered in _FRAMING else ""
    if len(_NAMES) < 1024:
        _NAMES[name] = framing
    return framing
