"""PreforkMixIn: the bridge from the socketserver API to a supervised worker pool.

Mix it in first, as ForkingMixIn is::

    class Server(PreforkMixIn, core.TCPServer): ...
    class Server(PreforkMixIn, http.server.HTTPServer): ...   # the stdlib's, too

The server binds in the constructor as usual.  ``serve_forever()`` then runs the
master: it forks ``workers`` processes that serve the listening socket through
the server's own hooks, and supervises them until ``shutdown()`` or a stop
signal.  Settings are class attributes, as ``max_children`` is for ForkingMixIn.
"""

import logging
import socket

import core

from .config import SETTINGS, Config
from .deployment import Ending
from .errors import ConfigError
from .loader import is_spec, load_handler
from .master import Master

__all__ = ["PreforkMixIn", "PreforkTCPServer", "PreforkUDPServer",
           "PreforkUnixStreamServer", "PreforkUnixDatagramServer"]


class PreforkMixIn:
    """Serve requests in a supervised pool of pre-forked worker processes.

    Settings: a class attribute for each pool setting of Config (POOL_SETTINGS:
        workers, max_requests, timeout, ...), with Config's default; a subclass
        or an instance sets its own.  ``workers`` may be "MIN..MAX" or (MIN, MAX).
    Hooks a subclass may override:
        pre_fork(worker)     in the master, before a worker is forked
        post_fork(worker)    in the worker, after the handler is imported; an
                             exception here counts as a failed boot
        worker_exit(worker)  in the worker, as it leaves on its own or when told
        on_reload()          in the master, when a reload starts; an exception
                             abandons the reload
    ``RequestHandlerClass`` may be a class, or a ``"module:Name"`` string that each
    worker imports after its fork, so a reload serves the code then on disk.
    """

    _master = None
    _stop_before_start = False
    _slot = None  # in a worker: its scoreboard slot (note_request(), no_request(),
    #               and the request noted, for handle_error())
    _keeps = False  # in a worker of a pool with keep-alive on a stream socket: True
    _kept = None  # the connection keep_alive() was asked to keep, until the worker has it

    @classmethod
    def over_socket(cls, sock, RequestHandlerClass):
        """A server of this class over *sock*, a socket already bound (and listening,
        for a stream): the class's own server_bind() runs over it but binds nothing
        (http.server's sets server_name), and server_activate() is not called."""
        server = cls(sock.getsockname(), RequestHandlerClass, bind_and_activate=False)
        server.socket.close()
        server.socket = _BoundSocket(fileno=sock.detach())
        server.server_bind()
        return server

    def prefork_config(self):
        """The settings, read from this server's attributes and validated."""
        return Config.from_object(self)

    def serve_forever(self, poll_interval=0.5):
        """Run the master until shutdown() or a stop signal.

        *poll_interval* is accepted for compatibility and not needed: the master
        sleeps until its next deadline and signals wake it.
        """
        self.serve_pool()

    def serve_pool(self, deployment=None, cfg=None):
        """Run the master as *deployment* (a Deployment: further sockets, a control
        socket, upgrades...) says, with settings *cfg* (else this server's
        attributes), until it stops; return how it ended (an Ending)."""
        cfg = cfg or self.prefork_config()
        if cfg.preload and is_spec(self.RequestHandlerClass):
            self.RequestHandlerClass = load_handler(self.RequestHandlerClass, cfg)
        self._check_composition()
        if self._stop_before_start:  # shutdown() came first: nothing to run
            self._stop_before_start = False
            return Ending.STOPPED
        master = Master(self, cfg, deployment)
        self._master = master
        try:
            return master.run()
        finally:
            self._master = None

    def shutdown(self):
        """Stop the master gracefully (as SIGTERM) and wait until it has stopped."""
        master = self._master
        if master is None:
            # Called before serve_forever() got going: it returns as soon as it starts.
            self._stop_before_start = True
            return
        master.request_stop()
        master.stopped.wait()

    def service_actions(self):
        """In the master: reap exited workers, enforce limits, keep the pool."""
        super().service_actions()
        if self._master is not None:
            self._master.service_actions()

    def note_request(self, text):
        """Say what the request being served is, in a worker: if the master kills the
        worker for silence (``timeout``), it logs this line, and handle_error() names
        it.  The worker clears it when the request ends.  A handler may call it; the
        WSGI front end does, with the request line."""
        if self._slot is not None:
            self._slot.set_note(text)

    def handle_error(self, request, client_address):
        """An exception in a handler, in a worker: logged with its traceback, the
        request it was serving and the client (to the error log, with the time and
        the worker's pid, as every line of the pool's log); the worker goes on."""
        if self._slot is None:  # not in a worker: as any socketserver server does
            super().handle_error(request, client_address)
            return
        noted = self._slot.note
        what = f" {noted!r}" if noted else ""
        peer = client_address[0] if isinstance(client_address, tuple) and client_address \
            else "a Unix-socket peer"
        logging.getLogger("prefork").exception("error handling request%s from %s", what,
                                               peer)

    def no_request(self):
        """Say, from a handler, that the connection it was given carried no request
        (the client closed it, or sent nothing before leaving): in a worker, it is not
        counted as one (requests served, the duration histogram, max_requests).  The
        WSGI front end says so; anywhere else it does nothing."""
        if self._slot is not None:
            self._slot.no_request()

    def keep_alive(self, request, keep=True):
        """Ask, from a handler, that the connection *request* be kept open once the
        request ends, for the client's next request: True when it will be.

        In a worker of a pool with ``keepalive_timeout`` above 0, serving a stream
        socket, it will: when the handler returns, shutdown_request() leaves the
        connection open and the worker hands it to the master, which holds it while
        it is idle and passes it to whichever worker is free once the next request
        arrives, where a new handler serves it.  Call it only when nothing the client
        sent is left unread in the handler's own buffers (a StreamRequestHandler's
        rfile reads ahead), and frame the answer so the client can tell where it
        ends.  Anywhere else it returns False, and the connection closes as usual.
        ``keep_alive(request, False)`` takes the request back."""
        if keep and self._keeps:
            self._kept = request
            return True
        if self._kept is request:
            self._kept = None
        return False

    def next_request(self, request):
        """Ask, from a handler that would serve another request on the connection
        *request* in the same handle() call (its bytes have come already), whether it
        may: True counts it as a request of this worker.  False when the worker should
        move on (its max_requests reached, told to stop, or many served in a row):
        the handler returns instead, and a connection it kept goes to the master,
        which passes it to a free worker at once."""
        return True

    def shutdown_request(self, request):
        """Close the connection, unless keep_alive() kept it: then it stays open for
        the worker to hand to the master."""
        if request is self._kept:
            return
        super().shutdown_request(request)

    # -- hooks ------------------------------------------------------------------------

    def pre_fork(self, worker):
        """Called in the master before forking *worker* (a WorkerInfo)."""

    def post_fork(self, worker):
        """Called in a new worker once its handler is imported."""

    def worker_exit(self, worker):
        """Called in a worker as it leaves in good order."""

    def on_reload(self):
        """Called in the master when a reload (SIGHUP) starts."""

    def _check_composition(self):
        for mixin in ("ForkingMixIn", "ThreadingMixIn"):
            if any(c.__name__ == mixin for c in type(self).__mro__):
                raise ConfigError(f"{type(self).__name__} mixes PreforkMixIn with {mixin}: "
                                  "a worker serves one request at a time; drop the other mix-in")


# The settings' class attributes: names and defaults from their one declaration.
for _setting in SETTINGS:
    if _setting.pool:
        setattr(PreforkMixIn, _setting.name, _setting.default)
del _setting


class _BoundSocket(socket.socket):
    """An already-bound socket whose bind() does nothing (see over_socket())."""

    def bind(self, address):
        pass


class PreforkTCPServer(PreforkMixIn, core.TCPServer):
    """TCPServer served by a pre-forked pool."""

    allow_reuse_address = True  # a restarted master binds at once despite TIME_WAIT
    request_queue_size = 2048  # the kernel holds connections while workers change


class PreforkUDPServer(PreforkMixIn, core.UDPServer):
    """UDPServer served by a pre-forked pool."""


class PreforkUnixStreamServer(PreforkMixIn, core.UnixStreamServer):
    """UnixStreamServer served by a pre-forked pool."""

    request_queue_size = 2048


class PreforkUnixDatagramServer(PreforkMixIn, core.UnixDatagramServer):
    """UnixDatagramServer served by a pre-forked pool."""
