"""The WSGI front end: serve a WSGI application (PEP 3333) over HTTP/1.1.

It is a socketserver request handler on ``core`` (handler.py), so any server of
that API serves an application with it, the pre-forked ones included::

    from prefork import PreforkTCPServer
    from prefork.wsgi import handler_for
    from myproject.wsgi import application

    with PreforkTCPServer(("127.0.0.1", 8000), handler_for(application)) as server:
        server.serve_forever()

and ``prefork serve myproject.wsgi:application`` does the same from the command
line.  It reads requests with httptools (request.py), makes the environ
(environ.py), gives the body as wsgi.input (body.py), sends the response
(response.py, filewrapper.py) and writes the access log (accesslog.py).  It
imports nothing of the master or the worker loop, which know nothing of HTTP.
"""

from .errors import HTTPError
from .filewrapper import FileWrapper
from .handler import SETTINGS, WSGIRequestHandler, handler_for

__all__ = ["handler_for", "WSGIRequestHandler", "FileWrapper", "HTTPError", "SETTINGS"]
