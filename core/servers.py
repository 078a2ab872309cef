"""The concrete servers: one socket each, handling requests one at a time.

TCPServer owns the socket life cycle (create, bind, listen, accept, close);
UDPServer changes only what datagrams need (no listen, no accept, nothing to close
per request); the Unix classes change only the address family.
"""

import socket

from .base import BaseServer

__all__ = ["TCPServer", "UDPServer"]

_ACCEPT = socket.socket.accept


class TCPServer(BaseServer):
    """A server on one stream socket, by default TCP over IPv4.

    Adds to BaseServer: the ``bind_and_activate`` constructor argument, the
    ``request_queue_size`` used by listen(), and ``fileno()``.
    """

    address_family = socket.AF_INET
    socket_type = socket.SOCK_STREAM
    request_queue_size = 5
    allow_reuse_address = False
    allow_reuse_port = False

    def __init__(self, server_address, RequestHandlerClass, bind_and_activate=True):
        BaseServer.__init__(self, server_address, RequestHandlerClass)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                # A constructor that fails must not leave its socket open.
                self.server_close()
                raise

    def server_bind(self):
        """Apply the reuse options, bind, and record the address actually bound."""
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        # Port 0 becomes the port the kernel chose.
        self.server_address = self.socket.getsockname()

    def server_activate(self):
        """Start listening, with a backlog of ``request_queue_size``."""
        self.socket.listen(self.request_queue_size)

    def server_close(self):
        """Close the listening socket."""
        self.socket.close()

    def fileno(self):
        """The listening socket's file descriptor, for select() and friends."""
        return self.socket.fileno()

    _accepting = (None, ())  # the listening socket, and the family, type, proto it accepts

    def get_request(self):
        """Accept a connection: returns (connection socket, client address).

        What socket.accept() does, less the look-up of the listener's family and
        type as enums on every call (more than the accept system call costs a
        pre-forked worker): they are taken once for each listening socket."""
        listener = self.socket
        if self._accepting[0] is not listener:
            if getattr(type(listener), "accept", None) is not _ACCEPT:
                return listener.accept()  # a socket with an accept of its own (TLS, say)
            self._accepting = (listener, (listener.family, listener.type, listener.proto))
        fd, address = listener._accept()
        conn = socket.socket(*self._accepting[1], fd)
        if listener.gettimeout() and socket.getdefaulttimeout() is None:
            conn.setblocking(True)  # as socket.accept(): where an fd inherits O_NONBLOCK
        return conn, address

    def shutdown_request(self, request):
        """Half-close the connection for writing, so the peer sees EOF, then close it."""
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer may already be gone (ENOTCONN); closing is all that is left
        self.close_request(request)

    def close_request(self, request):
        """Close the connection socket."""
        request.close()


class UDPServer(TCPServer):
    """A server on one datagram socket, by default UDP over IPv4.

    A request is the pair ``(data, server socket)``; there is no connection to
    accept or close.
    """

    allow_reuse_address = False
    allow_reuse_port = False
    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    def get_request(self):
        """Receive one datagram of up to ``max_packet_size`` bytes."""
        data, client_address = self.socket.recvfrom(self.max_packet_size)
        return (data, self.socket), client_address

    def server_activate(self):
        """Datagram sockets do not listen: nothing to do."""

    def shutdown_request(self, request):
        """Nothing to half-close for a datagram."""
        self.close_request(request)

    def close_request(self, request):
        """The request shares the server's socket: nothing to close."""


if hasattr(socket, "AF_UNIX"):
    __all__ += ["UnixStreamServer", "UnixDatagramServer"]

    class UnixStreamServer(TCPServer):
        """TCPServer's behaviour on a Unix-domain stream socket."""

        address_family = socket.AF_UNIX

    class UnixDatagramServer(UDPServer):
        """UDPServer's behaviour on a Unix-domain datagram socket."""

        address_family = socket.AF_UNIX
