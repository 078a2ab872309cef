"""The WSGI front end as a socketserver request handler: a request read, handed to
the application, answered, logged; then those pipelined after it.

It is a BaseRequestHandler of ``core``: any server of the socketserver API runs
it, the pre-forked ones included, and neither the master nor the worker loop
knows it is HTTP.  What it owes the server: an exception in the application goes
to ``server.handle_error()`` and never ends the worker; on a server that offers
``note_request()`` (a pre-forked one), the request line is noted for the time it
runs, so the master can say what a worker it kills for silence was doing; and on
one that offers ``keep_alive()``, a connection that may persist is kept when the
answer is out, for the next request to be served by a handler made for it (the
server decides where it waits meanwhile), while on any other server each
connection closes after its answer.
"""

import logging
import time
from types import SimpleNamespace

import core

from . import environ as environ_mod
from .accesslog import AccessLog
from .body import NO_BODY, ClientGone, Input
from .environ import build
from .errors import REASONS, HTTPError
from .request import LIMITS, Request, read_request, request_class
from .response import Response, date_line

__all__ = ["WSGIRequestHandler", "handler_for", "SETTINGS"]


# The settings a handler takes (names shared with prefork's Config), and their defaults:
# the request's limits as Request declares them, then the handler's own.
SETTINGS = {**{name: getattr(Request, name) for name in LIMITS},
            "forwarded_allow_ips": "127.0.0.1,::1", "access_log": "",
            "access_log_format": "combined"}


class WSGIRequestHandler(core.BaseRequestHandler):
    """Serves ``application`` (set by handler_for()) over one connection."""

    application = None
    request_class = Request  # with the limits: max_request_line... header_timeout
    trusted = environ_mod.Trusted(SETTINGS["forwarded_allow_ips"])
    access = None           # an AccessLog, or None
    _bases = {}             # id(server) -> its base environ

    def handle(self):
        """Serve the requests on the connection: one, and then those pipelined after it
        (read with it).  Where the server keeps connections (keep_alive()), the handler
        returns once an answer is out and nothing more has been read: the next request
        is served when it comes, by a handler made for it."""
        sock = self.request
        server = self.server
        keep_alive = getattr(server, "keep_alive", None)
        # A pre-forked worker keeps a persistent connection for the master to hold
        # between requests; another server closes it after one answer.
        persistent = keep_alive is not None and keep_alive(sock)
        kept = False
        data = None  # bytes read past the request served: the next one's (pipelined)
        try:
            while True:
                started = time.monotonic()
                try:
                    req = read_request(sock, self.request_class, data)
                except HTTPError as e:
                    self._refuse(e, None, started, e.request.line if e.request else "-",
                                 e.request.method if e.request else "")
                    if e.request is not None:
                        e.request.parser = None
                    return
                except OSError:
                    req = None  # the client went away
                if req is None:
                    if data is None:  # the connection carried no request at all
                        _no_request(server)
                    return
                try:
                    data = self._answer(sock, req, persistent, started)
                finally:
                    # The parser holds the request's methods, and the request the parser:
                    # freed now, not by the cyclic garbage collector some requests later.
                    req.parser = None
                if not data:
                    kept = data is not None  # b"": the answer is out, the server keeps it
                    return
                next_request = getattr(server, "next_request", None)
                if next_request is not None:  # pipelined: read already, so served here
                    next_request(sock)
        finally:
            if persistent and not kept:
                keep_alive(sock, False)  # closed as the request ends

    def _answer(self, sock, req, persistent, started):
        line = req.line
        note = getattr(self.server, "note_request", None)
        if note is not None:
            note(line)  # the worker clears it when the request ends
        response = Response(sock, req.method, req.protocol,
                            persistent and req.persists, req)
        env = body = None
        try:
            env = build(req, self._bases.get(id(self.server)) or self._base(),
                        self.client_address, self.trusted)
            body = env["wsgi.input"] = NO_BODY if req.done and not req.body \
                else Input(req, response)
            result = self.application(env, response.start_response)
            try:
                response.send(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except ClientGone:
            response.keep = False  # nothing more can be told to a client that has left
        except HTTPError as e:  # while the application read the body: too large, too slow
            if not response.sent_head:
                self._refuse(e, env, started, line, req.method)
                return None
            response.keep = False
        except Exception:
            response.keep = False
            self.server.handle_error(sock, self.client_address)
            if not response.sent_head:
                self._refuse(HTTPError(500, "the application raised"), env, started, line,
                             req.method)
                return None
        if (req.chunked or not req.done) and body is not None:
            if req.chunked and not body.used and response.code < 300 \
                    and (req.body_size or not req.done):
                _unread_chunked()
            if not req.done:
                body.drain()
        if self.access is not None:
            self.access.log(env["REMOTE_ADDR"], line, response.code, response.sent_body,
                            time.monotonic() - started, env)
        if response.keep and not response.short and req.done:
            extra = req.extra
            if extra and extra[0] in (13, 10):  # CR, LF: empty lines before the next
                extra = extra.lstrip(b"\r\n")  # request (RFC 9112 2.2), not one begun
            return extra
        return None

    def _base(self):
        base = self._bases.get(id(self.server))
        if base is None:
            base = self._bases[id(self.server)] = environ_mod.base_environ(self.server)
        return base

    def _refuse(self, error, env, started, line, method):
        """Answer *error* (an HTTPError) to the request *line* of *method*; the
        connection closes.  An answer to HEAD has the length and not the body.  Why
        goes to the log at debug level (a client's fault, not the server's)."""
        reason = REASONS[error.status]
        _log.debug("%s %s to %s %r: %s", error.status, reason, _peer(self.client_address),
                   line, error.why)
        body = f"{error.status} {reason}\n".encode()
        head = (f"HTTP/1.1 {error.status} {reason}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n{date_line()}"
                "Connection: close\r\n\r\n").encode()
        sent = 0 if method == "HEAD" else len(body)
        try:
            self.request.sendall(head + body[:sent])
        except OSError:
            pass
        if self.access is not None:
            remote = env["REMOTE_ADDR"] if env else _peer(self.client_address)
            self.access.log(remote, line, error.status, sent,
                            time.monotonic() - started, env)


_warned = []
_log = logging.getLogger("prefork.wsgi")


def _unread_chunked():
    """Said once a process: an application that answered a chunked request with
    success without reading its body most likely never saw it."""
    if not _warned:
        _warned.append(True)
        logging.getLogger("prefork.wsgi").warning(
            "the application answered a request with a chunked body without reading it: "
            "Django, for one, reads a body only by its Content-Length; behind nginx, "
            "which sends one, this does not happen (docs/wsgi.rst)")


def _no_request(server):
    """Tell a server that counts requests (a pre-forked one) that this connection
    carried none: the client closed it, or sent nothing."""
    no_request = getattr(server, "no_request", None)
    if no_request is not None:
        no_request()


def _peer(address):
    """A client's address as the log shows it: the host of (host, port), else "-"."""
    return address[0] if isinstance(address, tuple) and address else "-"


def handler_for(application, settings=None, **more):
    """A request handler class that serves the WSGI *application*, for any server of
    the socketserver API (``PreforkTCPServer(address, handler_for(app))``).

    *settings* is an object with the handler's settings as attributes (a prefork
    Config will do), and *more* sets them by name: max_request_line, max_headers,
    max_header_size, max_body_size, header_timeout, forwarded_allow_ips,
    access_log ("-" or a path) and access_log_format (common, combined, json)."""
    values = {name: getattr(settings, name, default) for name, default in SETTINGS.items()}
    unknown = set(more) - set(SETTINGS)
    if unknown:
        raise TypeError(f"unknown handler settings: {', '.join(sorted(unknown))}")
    values.update(more)
    attrs = {"application": staticmethod(application)}
    attrs["request_class"] = request_class(SimpleNamespace(**values))
    attrs["trusted"] = environ_mod.Trusted(values["forwarded_allow_ips"])
    attrs["access"] = AccessLog(values["access_log"], values["access_log_format"]) \
        if values["access_log"] else None
    attrs["_bases"] = {}
    name = getattr(application, "__name__", type(application).__name__)
    return type(f"WSGIHandler[{name}]", (WSGIRequestHandler,), attrs)
