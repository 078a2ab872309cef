"""The adaptive pool (``workers = "MIN..MAX"``): how many workers the load needs.

Pure decisions, like policy.py: no clock, no processes.  Every ``INTERVAL`` the
master passes each ready worker's total busy time (from the scoreboard: the
seconds it has spent inside requests, the one in progress included).  The change
over the interval is the load: how many workers were busy on average.

* Grow when the ready workers were busy ``GROW_AT`` of the time or more: all of
  them, in effect, so a new connection waits in the queue.  The first step adds
  one worker; each further interval that is still saturated doubles the step, up
  to ``STEP_CAP`` (as Apache's prefork MPM does with its spawn rate), never past
  MAX.  An interval that is not saturated resets the step to one.
* Shrink when more than ``SPARE`` workers' worth of capacity has sat idle for
  ``shrink_after`` seconds (a setting, 10 by default): one worker is retired, and
  the next only after another such period, never below MIN.  Growing is fast and
  shrinking slow, so a burst finds its workers still there when it comes back.

The master applies a decision through the pool's own scaling, so ``max_workers``
still bounds every instant, and it asks nothing during a reload or a stop.
"""

__all__ = ["Adapter", "adapter_for", "INTERVAL", "GROW_AT", "STEP_CAP", "SPARE"]

INTERVAL = 0.25      # seconds between looks at the load
GROW_AT = 0.9        # the busy fraction of the ready workers that counts as saturated
STEP_CAP = 8         # the most workers added in one interval
SPARE = 2.0          # idle capacity (in workers) kept without shrinking


class Adapter:
    """Turns busy-time samples into "add n" / "retire one" decisions for LOW..HIGH."""

    def __init__(self, low, high, shrink_after=10.0):
        self.low, self.high, self.shrink_after = low, high, shrink_after
        self.step = 1
        self.load = 0.0         # busy workers on average over the last interval
        self._last = None       # (time, {pid: busy seconds}) of the previous sample
        self._idle_since = None

    def observe(self, now, busy, target):
        """*busy* maps each ready worker to its busy seconds so far; *target* is the
        pool's current size.  Return (change in workers, why) with change 0 for none."""
        last, self._last = self._last, (now, dict(busy))
        if last is None or now <= last[0]:
            return 0, ""
        seen = [pid for pid in busy if pid in last[1]]  # workers alive for the whole interval
        if not seen:
            return 0, ""
        span = now - last[0]
        self.load = sum(max(0.0, busy[p] - last[1][p]) for p in seen) / span
        saturated = self.load >= GROW_AT * len(seen)
        if saturated and len(seen) >= target and target < self.high:
            add = min(self.step, self.high - target)
            self.step = min(self.step * 2, STEP_CAP)
            self._idle_since = None
            return add, (f"all {len(seen)} workers busy (load {self.load:.1f}): "
                         f"{add} more, up to {self.high}")
        if not saturated:
            self.step = 1
        idle = len(seen) - self.load
        if idle <= SPARE or target <= self.low:
            self._idle_since = None
            return 0, ""
        if self._idle_since is None:
            self._idle_since = now
            return 0, ""
        if now - self._idle_since < self.shrink_after:
            return 0, ""
        self._idle_since = now  # the next one only after another full period
        return -1, (f"{idle:.1f} workers idle for {self.shrink_after:g}s (load {self.load:.1f}): "
                    f"one fewer, down to {self.low}")

    def reset(self):
        """After a reload or a manual change: measure afresh."""
        self._last = None
        self._idle_since = None
        self.step = 1


def adapter_for(cfg, adapter=None):
    """The Adapter a pool needs under *cfg* (a Config): None for a fixed pool; for an
    adaptive one, *adapter* (the one it had) set to the new range and measuring
    afresh, or a new one."""
    if not cfg.adaptive:
        return None
    if adapter is None:
        return Adapter(cfg.workers, cfg.workers_max, cfg.shrink_after)
    adapter.low, adapter.high, adapter.shrink_after = cfg.workers, cfg.workers_max, \
        cfg.shrink_after
    adapter.reset()
    return adapter
