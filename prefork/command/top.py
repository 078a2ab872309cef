"""`prefork top`: a running master's pool, live in the terminal, refreshed every
second from its control socket: above, the pool's totals, load, listen queues and
last reload; below, one line per worker with the request it is serving and for
how long.  Plain text that fits 80 columns and works over ssh; q or Ctrl-C quits."""

import os
import select
import shutil
import sys
import termios
import time
import tty

from .client import age_text, mib_text

__all__ = ["run_top", "screen"]

INTERVAL = 1.0
CLEAR = "\x1b[H\x1b[2J"


def run_top(ask, iterations=0):
    """Show the pool until q, Ctrl-C, or *iterations* screens (0: no end).  *ask()*
    returns the master's status reply."""
    keys = sys.stdin if sys.stdin.isatty() else None
    saved = termios.tcgetattr(keys) if keys else None
    if keys:
        tty.setcbreak(keys)  # one key at a time, not echoed
    last = None
    shown = 0
    try:
        while True:
            reply = ask()
            now = time.monotonic()
            width, height = shutil.get_terminal_size((80, 24))
            lines = screen(reply, last, now, width, height - 1)
            sys.stdout.write((CLEAR if keys else "") + "\n".join(lines) + "\n")
            sys.stdout.flush()
            last = (now, reply)
            shown += 1
            if iterations and shown >= iterations:
                return 0
            if _quit_within(keys, INTERVAL):
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if keys:
            termios.tcsetattr(keys, termios.TCSADRAIN, saved)


def _quit_within(keys, seconds):
    """Wait *seconds* for the q key (always *seconds* without a terminal)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if keys is None:
            time.sleep(left)
            return False
        ready, _, _ = select.select([keys], [], [], left)
        if ready and os.read(keys.fileno(), 64).lower().startswith(b"q"):
            return True


def screen(reply, last, now, width=80, height=None):
    """The lines of one screen from a status *reply*; *last*: (when, reply) of the one
    before, for rates.  At most *height* lines: with more workers than rows, the busy
    ones come first, and the last line says how many are not shown."""
    m = reply["master"]
    name = f" [{m['name']}]" if m["name"] else ""
    workers = reply["workers"]
    busy = sum(w["busy"] for w in workers)
    total = sum(w["requests"] for w in workers)
    rate = ""
    before = {}
    if last is not None:
        then, old = last
        before = {w["pid"]: w for w in old["workers"]}
        done = sum(w["requests"] - before[w["pid"]]["requests"] for w in workers
                   if w["pid"] in before and w["requests"] >= before[w["pid"]]["requests"])
        rate = f" (+{done / max(now - then, 1e-6):.0f}/s)"
    lines = [
        f"master {m['pid']}{name}  up {age_text(m['uptime'])}  generation {reply['generation']}"
        f"  workers {len(workers)} of {reply['target']} (max {reply['max_workers']})",
        f"requests {total}{rate} by live workers; busy {busy}/{len(workers)}"
        + (f"; load {reply['adaptive']['load']:.1f}" if reply["adaptive"] else ""),
        "queue " + (", ".join(f"{q['waiting']}/{q['limit']} {q['listener']}"
                              for q in reply["queues"]) or "-")
        + _idle(reply.get("idle_connections")),
        f"reloads {reply['reloads']['ok']} ok, {reply['reloads']['failed']} failed"
        + (f", last {reply['last_reload']}" if reply["last_reload"] else "")
        + (f"; upgrading: new master {reply['upgrade']['new_master']}"
           if reply["upgrade"]["new_master"] else ""),
        "",
        f"{'SLOT':>4} {'PID':>7} {'GEN':>3} {'STATE':<8} {'REQS':>8} {'RSS':>7} {'CPU%':>5} "
        f"{'FOR':>6}  REQUEST",
    ]
    room = None if height is None else max(1, height - len(lines))
    hidden = []
    if room is not None and len(workers) > room:
        ordered = sorted(workers, key=lambda w: not w["busy"])  # busy first, then by slot
        workers, hidden = ordered[:room - 1], ordered[room - 1:]
    for w in workers:
        state = "busy" if w["busy"] else "idle" if w["state"] == "ready" else w["state"]
        cpu = ""
        old = before.get(w["pid"])
        if old is not None and last is not None:
            cpu = f"{100 * (w['cpu'] - old['cpu']) / max(now - last[0], 1e-6):.0f}"
        took = _took(w["busy_for"]) if w["busy"] else ""
        lines.append(f"{w['slot']:>4} {w['pid']:>7} {w['generation']:>3} {state:<8} "
                     f"{w['requests']:>8} {mib_text(w['rss']):>7} {cpu:>5} {took:>6}  "
                     f"{w['request']}")
    if hidden:
        busy_hidden = sum(w["busy"] for w in hidden)
        lines.append(f"... {len(hidden)} more workers, {busy_hidden or 'none'} busy "
                     "(prefork status lists all)")
    return [line[:width] for line in (lines if height is None else lines[:max(1, height)])]


def _idle(idle):
    return f"; idle connections {idle['held']}" if idle else ""


def _took(seconds):
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"
