"""Request handlers: one instance per request, driven through setup, handle, finish.

StreamRequestHandler and DatagramRequestHandler give a handler the same two file
objects, ``rfile`` to read the request and ``wfile`` to write the answer, so one
``handle()`` can serve a stream or a datagram server.
"""

import io
import socket

__all__ = ["BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"]


class BaseRequestHandler:
    """Handle one request: the constructor runs setup(), handle(), finish().

    Sets ``request``, ``client_address`` and ``server`` before setup() runs.
    finish() runs even when handle() raises, but not when setup() does.
    """

    def __init__(self, request, client_address, server):
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self):
        """Prepare for handle(); does nothing here."""

    def handle(self):
        """Serve the request; does nothing here: subclasses define it."""

    def finish(self):
        """Clean up after handle(); does nothing here."""


class _SocketWriter(io.BufferedIOBase):
    """A write-only file on a socket that sends each write in full at once.

    Nothing is held back, so there is nothing to flush and no data can be left
    in a buffer when the connection closes.
    """

    def __init__(self, sock):
        self._sock = sock

    def writable(self):
        return True

    def write(self, b):
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes

    def fileno(self):
        return self._sock.fileno()


class StreamRequestHandler(BaseRequestHandler):
    """A handler for stream sockets with ``rfile`` and ``wfile`` over the connection.

    ``rbufsize`` and ``wbufsize`` are the buffer sizes of the two files
    (-1: the default buffer; 0: unbuffered).  Reading is buffered and writing is
    not, by default, so every write reaches the peer without a flush.
    ``timeout``, when not None, is set on the connection; ``disable_nagle_algorithm``
    sets TCP_NODELAY.
    """

    rbufsize = -1
    wbufsize = 0
    timeout = None
    disable_nagle_algorithm = False

    def setup(self):
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        if self.wbufsize == 0:
            self.wfile = _SocketWriter(self.connection)
        else:
            self.wfile = self.connection.makefile("wb", self.wbufsize)

    def finish(self):
        if not self.wfile.closed:
            try:
                self.wfile.flush()
            except OSError:
                pass  # the peer went away; the data has nowhere left to go
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    """A handler for datagram sockets: ``rfile`` reads the packet, ``wfile`` collects the reply.

    finish() sends what was written to ``wfile`` back to the client in one datagram.
    """

    def setup(self):
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self):
        self.socket.sendto(self.wfile.getvalue(), self.client_address)
