"""The master's control socket: status, metrics, reload, upgrade, stop and scale, answered
for `prefork` and its client commands.

A client sends one JSON line, ``{"cmd": "status"}``, and reads one JSON line back.
The master answers between its other work, and gives a client at most CLIENT_TIME
to send its request and at most as long to take the answer, so a stuck client
holds its loop no longer than that.  The socket itself (a Unix socket of mode
0600, its path, its takeover in an upgrade) is made by the command; this module
only answers on it.
"""

import json
import logging

from .errors import ConfigError, PreforkError

log = logging.getLogger("prefork")

__all__ = ["ControlSocket", "answer", "COMMANDS"]

MAX_REQUEST = 4096
CLIENT_TIME = 0.2  # seconds a client has to send its request, and to take the answer
COMMANDS = ("status", "metrics", "reload", "upgrade", "stop", "scale")


class ControlSocket:
    """Answers clients of the listening Unix socket *sock* with handle(request)."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    def serve_one(self, handle):
        """Answer one waiting client with handle(request dict) -> reply dict."""
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return  # none waiting after all, or it left
        with conn:
            conn.settimeout(CLIENT_TIME)
            try:
                try:
                    request = _read_request(conn)
                except ValueError as e:
                    reply = {"ok": False, "error": f"bad request: {e}"}
                else:
                    try:
                        reply = handle(request)
                    except Exception as e:  # the master's fault: said, logged, survived
                        log.exception("control socket: %s failed", request.get("cmd"))
                        reply = {"ok": False, "error": f"the master failed to answer: {e!r}"}
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass  # the client went away or was too slow; the master goes on


MAX_NESTING = 64  # brackets in a request: its own are a handful


def _read_request(conn):
    """One JSON object on one line."""
    data = b""
    while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
    if data.count(b"[") + data.count(b"{") > MAX_NESTING:  # a request is flat: [[[[...
        raise ValueError("nested too deep")
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("not an object")
    return request


def answer(master, request):
    """Answer one request for *master* (a prefork.master.Master)."""
    cmd = request.get("cmd")
    if cmd == "status":
        return {"ok": True, **master.snapshot()}
    if cmd == "metrics":
        return {"ok": True, "text": master.metrics()}
    if cmd == "reload":
        error = master.reload()
        if not error:  # the generation it builds, or the one under way that it follows
            pool = master.pool
            return {"ok": True, "generation": pool.reload_gen, "queued": pool.reload_pending}
    elif cmd == "upgrade":
        error = master.start_upgrade()
    elif cmd == "stop":
        master.stop(not request.get("fast"), "control socket")
        error = ""
    elif cmd == "scale":
        try:
            master.scale_to(request.get("workers"))
        except ConfigError as e:  # bad input: the client exits 2, as for a bad option
            return {"ok": False, "error": str(e), "usage": True}
        except PreforkError as e:
            error = str(e)
        else:
            return {"ok": True, "workers": master.pool.target}
    else:
        error = f"unknown command {cmd!r}; try " + ", ".join(COMMANDS)
    return {"ok": False, "error": error} if error else {"ok": True}
