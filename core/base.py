"""The request loop every server shares: BaseServer.

BaseServer knows nothing about sockets beyond ``fileno()`` and ``self.socket``'s
timeout; the concrete servers in servers.py supply binding, accepting and closing.
One request travels through the hooks in a fixed order:

    get_request -> verify_request -> process_request -> finish_request
                                                     -> shutdown_request -> close_request

and an exception raised while processing goes to ``handle_error``.  Subclasses and
mix-ins change behaviour by overriding a hook, never by re-implementing the loop.

``shutdown()`` wakes the loop through a socket pair watched beside the server's
socket, so it returns as soon as the current request is done rather than after up
to ``poll_interval`` seconds.
"""

import select
import socket
import sys
import threading
import time

__all__ = ["BaseServer"]


class _Poller:
    """Wait until one of a few descriptors is readable, reusing one poll object."""

    def __init__(self, *fileobjs):
        if hasattr(select, "poll"):
            self._poll = select.poll()
            for f in fileobjs:
                self._poll.register(f, select.POLLIN)
        else:  # pragma: no cover - platforms without poll()
            self._poll = None
        self._fileobjs = fileobjs

    def wait(self, timeout):
        """Return the list of ready descriptors (empty on timeout); timeout in seconds or None."""
        if self._poll is not None:
            ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
            return [fd for fd, _ in self._poll.poll(ms)]
        ready, _, _ = select.select(self._fileobjs, [], [], timeout)  # pragma: no cover
        return ready  # pragma: no cover


class BaseServer:
    """The loop and hooks shared by every server.

    For the caller:
        __init__(server_address, RequestHandlerClass)
        serve_forever(poll_interval=0.5), shutdown(), handle_request(),
        server_close(), fileno(), use as a context manager
    Hooks a subclass may override:
        server_bind(), server_activate(), get_request(), verify_request(),
        process_request(), shutdown_request(), close_request(), handle_error(),
        handle_timeout(), service_actions(), server_close()
    For derived classes to call:
        finish_request(request, client_address)
    Class attributes a subclass or an instance may set:
        timeout, address_family, socket_type, allow_reuse_address,
        allow_reuse_port, request_queue_size
    """

    timeout = None

    def __init__(self, server_address, RequestHandlerClass):
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        # Set while no serve_forever() runs; shutdown() waits on it.  The two names
        # are the ones code written for socketserver reaches for (a handler that stops
        # its own server sets _BaseServer__shutdown_request), so they work here too.
        self.__is_shut_down = threading.Event()
        self.__shutdown_request = False
        self._waker = None  # the write end of the running loop's socket pair

    # -- methods for the caller ---------------------------------------------------

    def serve_forever(self, poll_interval=0.5):
        """Serve requests one by one until shutdown() is called.

        Calls service_actions() after every request and at least every
        *poll_interval* seconds while idle.  ``self.timeout`` plays no part here.
        """
        self.__is_shut_down.clear()
        try:
            wake_r, wake_w = socket.socketpair()
        except OSError:  # no descriptors to spare: shutdown() is seen within poll_interval
            wake_r = wake_w = None
        try:
            if wake_r is not None:
                wake_r.setblocking(False)
                wake_w.setblocking(False)
                self._waker = wake_w
                poller = _Poller(self, wake_r)
                wake_fd = wake_r.fileno()
            else:
                poller = _Poller(self)
                wake_fd = None
            while not self.__shutdown_request:
                ready = poller.wait(poll_interval)
                if self.__shutdown_request:
                    break
                if ready and (len(ready) > 1 or ready[0] != wake_fd):
                    self._handle_request_noblock()
                self.service_actions()
        finally:
            self._waker = None
            if wake_r is not None:
                wake_r.close()
                wake_w.close()
            self.__shutdown_request = False
            self.__is_shut_down.set()

    def shutdown(self):
        """Ask serve_forever() to stop and wait until it has.

        Must be called from a thread other than the one running serve_forever(),
        which would otherwise wait on itself.  A call made just before the loop
        starts is honoured: that loop returns at once.
        """
        self.__shutdown_request = True
        waker = self._waker
        if waker is not None:
            try:
                waker.send(b"\0")
            except OSError:
                pass  # the loop closed it in the meantime, or the pair is full: both mean awake
        self.__is_shut_down.wait()

    def handle_request(self):
        """Wait for one request and handle it.

        Waits at most ``self.timeout`` seconds (or the socket's own timeout, if
        shorter) and calls handle_timeout() if nothing arrived by then.
        """
        timeout = self.socket.gettimeout()
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = _Poller(self)
        while True:
            if poller.wait(timeout):
                return self._handle_request_noblock()
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout < 0:
                    return self.handle_timeout()

    def service_actions(self):
        """Called by serve_forever() on every turn of its loop; does nothing here."""

    def server_close(self):
        """Release the server's resources; does nothing here."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.server_close()

    # -- hooks --------------------------------------------------------------------

    def server_activate(self):
        """Called by the constructor after binding; does nothing here."""

    def _handle_request_noblock(self):
        # The descriptor polled readable, so get_request() should not block; if it
        # fails anyway (another process took the connection, the peer reset it),
        # there is simply no request this time.
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        if not self.verify_request(request, client_address):
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)
        except BaseException:
            self.shutdown_request(request)
            raise

    def handle_timeout(self):
        """Called by handle_request() when ``timeout`` passes with no request."""

    def verify_request(self, request, client_address):
        """Return True to process the request, False to refuse it; True here."""
        return True

    def process_request(self, request, client_address):
        """Handle the request in this thread, then shut it down."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def finish_request(self, request, client_address):
        """Handle the request by instantiating RequestHandlerClass."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request):
        """End an individual request; here, just close_request()."""
        self.close_request(request)

    def close_request(self, request):
        """Release an individual request; does nothing here."""

    def handle_error(self, request, client_address):
        """Report an exception raised while processing a request, then carry on.

        Writes the traceback to standard error between two rules.
        """
        import traceback  # here, not at the top: a forking server's children stay smaller

        rule = "-" * 40
        print(rule, file=sys.stderr)
        print(f"Error while handling a request from {client_address!r}:", file=sys.stderr)
        traceback.print_exc()
        print(rule, file=sys.stderr)
