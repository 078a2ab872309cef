"""A working example: an HTTP "hello" service on core, the drop-in socketserver.

    python examples/hello.py [PORT]      (default 8000, on 127.0.0.1)

then try ``curl http://127.0.0.1:8000/``.  Stop it with Ctrl-C.
"""

import sys
from http.server import BaseHTTPRequestHandler

import core


class Hello(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # head and body go out in two writes

    def do_GET(self):
        body = b"hello from core\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(core.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with Server(("127.0.0.1", port), Hello) as server:
        print(f"serving on http://127.0.0.1:{server.server_address[1]}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
