"""The pool as a line (systemd's STATUS=, the log) and as data (`prefork status`),
from the policy's snapshot, the scoreboard and the upgrade in progress."""

import os
import time

from .limits import sample_usage
from .metrics import listen_queues
from .policy import BOOTING, READY
from .scoreboard import BUSY

__all__ = ["status_line", "snapshot"]


def status_line(pool, board, upgrader, keeper=None):
    c = pool.counts()
    served = sum(board[w.slot].requests for w in pool.workers.values())
    line = (f"{c[READY]} workers ready, {c[BOOTING]} booting, generation {pool.generation}, "
            f"{served} requests by live workers")
    if keeper is not None and keeper.idle:
        line += f", {len(keeper.idle)} idle connections held"
    if pool.reloads["ok"] or pool.reloads["failed"]:
        line += (f"; reloads: {pool.reloads['ok']} ok, {pool.reloads['failed']} failed, "
                 f"last {pool.last_reload}")
    if upgrader.successor and not upgrader.handed_over:
        line += f"; upgrading: new master {upgrader.successor.pid} starting"
    return line


def snapshot(pool, board, upgrader, name, started, keeper=None, sockets=()):
    """The master, each worker (its requests, whether it is in one, since when and
    which, its memory and CPU time), the idle connections held (*keeper*), the
    listening *sockets*' queues, totals."""
    me = os.getpid()
    now = time.monotonic()
    data = pool.snapshot(now)
    workers = data.pop("workers")
    usage = sample_usage([me, *(w["pid"] for w in workers)])
    for w in workers:
        slot = board[w["slot"]]
        busy = slot.state == BUSY
        rss, cpu = usage.get(w["pid"], (0, 0.0))
        w.update(requests=slot.requests, busy=busy, rss=rss, cpu=round(cpu, 3),
                 request=slot.note if busy else "",
                 busy_for=round(max(0.0, now - slot.heartbeat), 3) if busy else 0.0)
    succ = upgrader.successor
    queues = [{"listener": where, "waiting": waiting, "limit": limit}
              for where, waiting, limit in listen_queues(sockets)]
    return {
        "master": {"pid": me, "name": name, "rss": usage.get(me, (0, 0))[0],
                   "cpu": round(usage.get(me, (0, 0.0))[1], 3),
                   "uptime": round(time.time() - started, 3)},
        **{k: data[k] for k in ("generation", "target", "max_workers", "reloads", "adaptive",
                                "last_reload", "reloading")},
        "queues": queues,
        "upgrade": {"new_master": succ.pid if succ and not upgrader.handed_over else None,
                    "last": upgrader.last},
        "workers": workers,
        "idle_connections": _idle(keeper),
        "totals": {"workers": len(workers), "requests": sum(w["requests"] for w in workers),
                   "rss": sum(w["rss"] for w in workers) + usage.get(me, (0, 0))[0]}}


def _idle(keeper):
    """The idle keep-alive connections: held now, and what became of those given back."""
    if keeper is None:
        return None
    return {"held": len(keeper.idle), "timeout": keeper.timeout, "limit": keeper.limit,
            **{k.replace(" ", "_"): v for k, v in keeper.counts.items()}}
