"""Run one of the stdlib's servers with ``socketserver`` replaced by ``core``.

usage: stdlib_on_core.py http|xmlrpc|wsgi
Prints the bound port on the first line, then serves until standard input closes.
The replacement happens before http.server & co. are imported, so their server
classes are built on core's: the drop-in test a user would run.
"""

import sys
import threading

import core

sys.modules["socketserver"] = core

import http.server  # noqa: E402
import wsgiref.simple_server  # noqa: E402
import xmlrpc.server  # noqa: E402


def hello_app(environ, start_response):
    body = f"wsgi {environ['REQUEST_METHOD']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


class QuietWSGIHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def make(which):
    if which == "http":
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    if which == "xmlrpc":
        server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
        server.register_function(pow)
        server.register_function(lambda: 1 / 0, "divide_by_zero")
        server.register_introspection_functions()
        return server
    if which == "wsgi":
        return wsgiref.simple_server.make_server("127.0.0.1", 0, hello_app,
                                                 handler_class=QuietWSGIHandler)
    raise SystemExit(f"unknown server {which!r}")


def main():
    server = make(sys.argv[1])
    assert isinstance(server, core.TCPServer), type(server).__mro__
    print(server.server_address[1], flush=True)

    def stop_on_eof():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_on_eof, daemon=True).start()
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()
