"""The master's control socket: status, reload, stop and scale for `prefork`.

A Unix stream socket of mode 0600 (only the master's user may talk to it).  A
client sends one JSON line, ``{"cmd": "status"}``, and reads one JSON line back.
The master answers between its other work, with a short time limit per client,
so a stuck client cannot hold it.
"""

import json
import socket
import time

from . import sockets

__all__ = ["ControlSocket", "ask"]

CLIENT_TIMEOUT = 1.0
MAX_REQUEST = 4096


class ControlSocket:
    """The master's end: accepts one request at a time and answers it with *handle*."""

    def __init__(self, path):
        bind = sockets.Bind(f"unix:{path}", socket.AF_UNIX, socket.SOCK_STREAM, path)
        self.listener = sockets.open_listener(bind, backlog=8, socket_mode=0o600)
        self.listener.sock.setblocking(False)
        self.path = path

    def fileno(self):
        return self.listener.sock.fileno()

    def serve_one(self, handle):
        """Answer one waiting client with handle(request dict) -> reply dict."""
        try:
            conn, _ = self.listener.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                    chunk = conn.recv(MAX_REQUEST)
                    if not chunk:
                        break
                    data += chunk
                try:
                    request = json.loads(data)
                    if not isinstance(request, dict):
                        raise ValueError("not an object")
                except ValueError as e:
                    reply = {"ok": False, "error": f"bad request: {e}"}
                else:
                    reply = handle(request)
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass  # the client went away or was too slow; the master goes on

    def close(self):
        sockets.close_listeners([self.listener], final=True)


def ask(path, request, timeout=10.0):
    """The client's end: send *request*, return the reply (a dict)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
