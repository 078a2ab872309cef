"""The pool as a line (systemd's STATUS=, the log) and as data (`prefork status`),
from the policy's snapshot, the scoreboard and the upgrade in progress."""

import os
import time

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


def snapshot(pool, board, upgrader, name, started, keeper=None):
    """The master, each worker (with its requests, busy flag and memory), the idle
    connections held (*keeper*), totals."""
    from .limits import sample_rss  # psutil: only when somebody asks

    me = os.getpid()
    data = pool.snapshot(time.monotonic())
    workers = data.pop("workers")
    rss = sample_rss([me, *(w["pid"] for w in workers)])
    for w in workers:
        slot = board[w["slot"]]
        w.update(requests=slot.requests, busy=slot.state == BUSY, rss=rss.get(w["pid"], 0))
    succ = upgrader.successor
    return {
        "master": {"pid": me, "name": name, "rss": rss.get(me, 0),
                   "uptime": round(time.time() - started, 3)},
        **{k: data[k] for k in ("generation", "target", "max_workers", "reloads", "adaptive")},
        "upgrade": {"new_master": succ.pid if succ and not upgrader.handed_over else None,
                    "last": upgrader.last},
        "workers": workers,
        "idle_connections": _idle(keeper),
        "totals": {"workers": len(workers), "requests": sum(w["requests"] for w in workers),
                   "rss": sum(w["rss"] for w in workers) + rss.get(me, 0)}}


def _idle(keeper):
    """The idle keep-alive connections: held now, and what became of those given back."""
    if keeper is None:
        return None
    return {"held": len(keeper.idle), "timeout": keeper.timeout, "limit": keeper.limit,
            **{k.replace(" ", "_"): v for k, v in keeper.counts.items()}}
