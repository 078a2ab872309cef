"""core: the socketserver framework, written from its documentation.

A program written for the standard library's ``socketserver`` runs unchanged on
``core``: the same classes, hooks, attributes and behaviour.  ``__all__`` names
exactly what the platform supports: the forking classes only where ``os.fork``
exists, the Unix-socket classes only where ``socket.AF_UNIX`` does.
"""

import os
import socket

from .base import BaseServer
from .handlers import BaseRequestHandler, DatagramRequestHandler, StreamRequestHandler
from .mixins import ThreadingMixIn
from .servers import TCPServer, UDPServer

__all__ = [
    "BaseServer", "TCPServer", "UDPServer",
    "ThreadingMixIn", "ThreadingTCPServer", "ThreadingUDPServer",
    "BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler",
]


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    """TCPServer with a thread per connection."""


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    """UDPServer with a thread per datagram."""


_HAS_FORK = hasattr(os, "fork")
_HAS_UNIX = hasattr(socket, "AF_UNIX")

if _HAS_FORK:
    from .mixins import ForkingMixIn

    __all__ += ["ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer"]

    class ForkingTCPServer(ForkingMixIn, TCPServer):
        """TCPServer with a child process per connection."""

    class ForkingUDPServer(ForkingMixIn, UDPServer):
        """UDPServer with a child process per datagram."""


if _HAS_UNIX:
    from .servers import UnixDatagramServer, UnixStreamServer

    __all__ += ["UnixStreamServer", "UnixDatagramServer",
                "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer"]

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
        """UnixStreamServer with a thread per connection."""

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
        """UnixDatagramServer with a thread per datagram."""


if _HAS_FORK and _HAS_UNIX:
    __all__ += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]

    class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
        """UnixStreamServer with a child process per connection."""

    class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
        """UnixDatagramServer with a child process per datagram."""
