"""Handlers and servers the prefork tests run in real workers.

Each handler reads one line and acts on it, so a test can make a worker answer,
crash, hang or leak on demand.
"""

import http.server
import os
import signal
import socket
import socketserver
import sys
import time

from prefork import PreforkMixIn, PreforkTCPServer

LEAK = []


def spin_forever():
    while True:  # a hung handler: the master's timeout must find it here
        pass


class Probe(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().strip()
        if line == b"exit":
            os._exit(7)
        if line == b"segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if line == b"interrupt":
            raise KeyboardInterrupt  # not an Exception: it ends the worker
        if line == b"raise":
            raise RuntimeError("handler raised on purpose")
        if line == b"hang":
            self.wfile.write(b"hanging\n")  # the client's sign that the worker is in it
            self.wfile.flush()
            spin_forever()
        if line.startswith(b"sleep "):
            time.sleep(float(line.split()[1]))  # a slow request: the worker stays busy
        if line == b"leak":
            LEAK.append(bytearray(64 * 1024 * 1024))
        self.wfile.write(f"{os.getpid()}\n".encode())


class DatagramProbe(socketserver.DatagramRequestHandler):
    def handle(self):
        self.wfile.write(f"{os.getpid()} {self.rfile.read().decode()}".encode())


class Guarded(PreforkTCPServer):
    """Overrides that must apply inside workers."""

    def verify_request(self, request, client_address):
        return request.recv(4, socket.MSG_PEEK) != b"deny"

    def handle_error(self, request, client_address):
        request.sendall(b"handle_error ran in the worker\n")


class FlakyMaster(PreforkTCPServer):
    """service_actions() fails once in the master; the loop must carry on."""

    calls = 0

    def service_actions(self):
        type(self).calls += 1
        if type(self).calls == 3:
            raise RuntimeError("service_actions failed on purpose")
        super().service_actions()


class Hooked(PreforkTCPServer):
    """Hooks write a line each to standard error."""

    def pre_fork(self, worker):
        print(f"hook pre_fork slot={worker.slot} gen={worker.generation}", file=sys.stderr,
              flush=True)

    def post_fork(self, worker):
        print(f"hook post_fork pid={os.getpid()}", file=sys.stderr, flush=True)

    def worker_exit(self, worker):
        print(f"hook worker_exit pid={os.getpid()}", file=sys.stderr, flush=True)

    def on_reload(self):
        print("hook on_reload", file=sys.stderr, flush=True)


class PreforkHTTPServer(PreforkMixIn, http.server.HTTPServer):
    """The stdlib's HTTPServer, pre-forked."""


class QuietHTTP(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class PreForkFailsTwice(PreforkTCPServer):
    """pre_fork raises for the first two forks, then lets them be."""

    failures = 0

    def pre_fork(self, worker):
        if type(self).failures < 2:
            type(self).failures += 1
            raise RuntimeError("pre_fork failed on purpose")


class PreForkAlwaysFails(PreforkTCPServer):
    def pre_fork(self, worker):
        raise RuntimeError("no fork today")


class KeptLines(socketserver.BaseRequestHandler):
    """A line protocol on persistent connections: each line is answered with the
    worker's pid, and the connection is kept (keep_alive()) for the next one.  It
    reads up to the newline a byte at a time, so nothing is left unread."""

    def handle(self):
        line = b""
        while not line.endswith(b"\n"):
            byte = self.request.recv(1)
            if not byte:
                return
            line += byte
        self.request.sendall(b"%s from %d\n" % (line.strip(), os.getpid()))
        if line.strip() != b"bye":
            self.server.keep_alive(self.request)
