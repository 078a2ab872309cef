"""The master's control socket: status, reload, stop and scale for `prefork`.

A Unix stream socket of mode 0600 (only the master's user may talk to it).  A
client sends one JSON line, ``{"cmd": "status"}``, and reads one JSON line back.
The master answers between its other work, with a short time limit per client,
so a stuck client cannot hold it.
"""

import json
import os
import socket
import time

from . import limits, scoreboard, sockets

__all__ = ["ControlSocket", "ask", "answer", "snapshot"]

CLIENT_TIMEOUT = 1.0
MAX_REQUEST = 4096


class ControlSocket:
    """The master's end: accepts one request at a time and answers it with *handle*."""

    def __init__(self, path, staged=False):
        """Listen at *path*; *staged* (a new master during an upgrade, while the old one
        still answers at *path*): listen beside it until publish() renames it there."""
        self.path = path
        where = f"{path}.{os.getpid()}" if staged else path
        bind = sockets.Bind(f"unix:{where}", socket.AF_UNIX, socket.SOCK_STREAM, where)
        self.listener = sockets.open_listener(bind, backlog=8, socket_mode=0o600)
        self.listener.sock.setblocking(False)
        self.inode = os.stat(where).st_ino

    def publish(self):
        """Move a staged socket to its path, atomically replacing the old master's."""
        if self.listener.path != self.path:
            os.rename(self.listener.path, self.path)
            self.listener.path = self.path

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
        """Close; unlink the file only while it is still this socket's (after an
        upgrade it is the new master's)."""
        try:
            mine = os.stat(self.listener.path).st_ino == self.inode
        except OSError:
            mine = False
        sockets.close_listeners([self.listener], final=mine)


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


# -- the master's answers ------------------------------------------------------------

COMMANDS = ("status", "reload", "upgrade", "stop", "scale")


def answer(master, request):
    """Answer one request for *master* (a prefork.master.Master)."""
    cmd, now = request.get("cmd"), time.monotonic()
    if cmd == "status":
        return {"ok": True, **snapshot(master)}
    if cmd == "reload":
        error = master.reload(now)
    elif cmd == "upgrade":
        error = master.start_upgrade(now)
    elif cmd == "stop":
        master.stop(not request.get("fast"), now, "control socket")
        error = ""
    elif cmd == "scale":
        error = master.scale_to(request.get("workers"))
        if not error:
            return {"ok": True, "workers": master.pool.target}
    else:
        error = f"unknown command {cmd!r}; try " + ", ".join(COMMANDS)
    return {"ok": False, "error": error} if error else {"ok": True}


def snapshot(master):
    """The pool as data: the master, each worker, totals, the adaptive range and any
    upgrade in progress."""
    now = time.monotonic()
    pool, board = master.pool, master.board
    me = os.getpid()
    rss = limits.sample_rss([me, *pool.workers])
    workers = []
    for w in sorted(pool.workers.values(), key=lambda w: w.slot):
        slot = board[w.slot]
        workers.append({"pid": w.pid, "slot": w.slot, "generation": w.generation,
                        "state": w.state, "requests": slot.requests,
                        "busy": slot.state == scoreboard.BUSY,
                        "rss": rss.get(w.pid, 0), "age": round(now - w.spawned, 3)})
    adapter = master.adapter
    return {
        "master": {"pid": me, "name": master.cfg.name, "rss": rss.get(me, 0),
                   "uptime": round(time.time() - master.started, 3)},
        "generation": pool.generation, "target": pool.target,
        "max_workers": pool.cfg.max_workers, "reloads": dict(pool.reloads),
        "adaptive": {"min": adapter.low, "max": adapter.high, "load": round(adapter.load, 2)}
        if adapter else None,
        "upgrade": {"new_master": master.successor.pid if master.successor else None,
                    "last": master.last_upgrade},
        "workers": workers,
        "totals": {"workers": len(workers), "requests": sum(w["requests"] for w in workers),
                   "rss": sum(w["rss"] for w in workers) + rss.get(me, 0)}}
