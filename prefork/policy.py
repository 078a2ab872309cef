"""The master's decisions as a pure function of (state, event, now).

Theory of operation.  ``Pool`` holds a table of plain worker records and answers
each event (a fork happened or failed, a worker is ready, a worker exited, a
signal asked for a reload, a stop or a new size, a sample of memory or load came
in, time passed) with a list of actions for the master to carry out: fork a
worker, retire one gracefully, send one a signal, log a line, tell the service
manager where the pool stands, report a reload's end, give up on booting.  It
never forks, signals, sleeps, samples or reads a clock: ``now`` is passed in, and
the samples it asks for (samples_due()) are handed back to it, so every rule is
tested in microseconds with no process at all.

The rules:

* The pool keeps ``target`` workers serving (booting or ready).  Live worker
  processes (retiring and dying ones included) never exceed ``max_workers``.
* The first time ``target`` workers are ready, the pool is announced (READY=1).
* A reload builds generation g+1 beside g: a new worker is forked when there is
  room, and each time one becomes ready an old one is retired.  A new worker that
  fails to boot abandons the reload; the old workers that are left keep serving.
  The service manager hears RELOADING at its start and READY at its end.
* A worker that dies young and unasked, or a fork that fails, backs off the next
  fork exponentially; if no worker has ever become ready and boots keep failing,
  the pool gives up.
* A graceful stop with ``accept_grace`` first serves on that long, not ready (so
  load balancers stop sending), then retires the workers; a second stop is at once.
* Deadlines: booting past ``boot_timeout`` and silence past ``timeout`` end in a
  stack dump then SIGKILL; retiring past ``graceful_timeout`` ends in SIGKILL.
* A ready worker whose resident memory passes ``max_rss`` is retired.
* An adaptive pool (``workers`` MIN..MAX) is sized by adaptive.Adapter from the
  workers' busy time, except during a reload or a stop.
"""

import dataclasses
import math
import random
import signal

from .actions import (
    Drained,
    GiveUp,
    Log,
    Notify,
    ReloadDone,
    Retire,
    Sample,
    SendSignal,
    Spawn,
    Stopped,
)
from .adaptive import INTERVAL as LOAD_INTERVAL
from .adaptive import adapter_for
from .errors import ConfigError

__all__ = ["Pool", "Spawn", "Retire", "SendSignal", "Log", "Notify", "ReloadDone", "GiveUp",
           "Drained", "Stopped", "Sample", "describe_exit", "EXIT_REASONS"]

# Worker states, as the master sees them.  After READY, each names what was last
# asked of the worker: RETIRING (finish and go), DUMPING (stack dump signal sent),
# INTERRUPTED (SIGINT: fast stop), KILLING (SIGKILL sent: only reaping is left).
BOOTING, READY, RETIRING, DUMPING, INTERRUPTED, KILLING = (
    "booting", "ready", "retiring", "dumping", "interrupted", "killing")

BACKOFF_BASE = 0.1      # the first delay after a young death
BACKOFF_CAP = 30.0      # the longest
CRASH_MEMORY = 60.0     # a young death this long after the last one is counted afresh
YOUNG = 1.0             # a worker that dies sooner than this after its fork died young
BREAKER = 3             # boot failures, before any worker was ever ready, that end the start
DUMP_GRACE = 0.5        # time for a worker to write its stack before SIGKILL
FAST_STOP_GRACE = 5.0   # INT/QUIT: how long workers get to die before SIGKILL
RSS_INTERVAL = 1.0      # seconds between looks at the workers' memory (with max_rss)
EXIT_BOOT_FAILED = 3    # the status a worker exits with when it cannot boot
EXIT_IMPORT_FAILED = 4  # ... because the handler does not import (bad input, not a fault)
STACK_SIGNAL = signal.SIGUSR2   # makes a worker write its Python stack (faulthandler)
MIB = 1024 * 1024
# Why workers exit, as the metrics count them: asked to by the master (reload, scale,
# stop, max_rss, timeout: silent too long), or on their own (max_requests: a worker
# leaves in good order only then; crash), or before they were ever ready (boot).
EXIT_REASONS = ("max_requests", "max_rss", "timeout", "crash", "reload", "scale", "stop",
                "boot")


@dataclasses.dataclass
class Worker:
    pid: int
    slot: int
    generation: int
    spawned: float
    state: str = BOOTING
    since: float = 0.0  # when the current state began
    was_ready: bool = False
    wanted_exit: bool = False  # the master asked it to go, for no fault of its own
    fault: str = ""  # the master killed it for a fault: why
    reason: str = ""  # why the master asked it to go (one of EXIT_REASONS), first asked
    due: str = ""     # to be recycled (max_requests, max_rss): it serves on until a new
    #                   worker is ready to take its place, then is retired


def describe_exit(exitcode):
    """How a process ended, from os.waitstatus_to_exitcode()'s value."""
    if exitcode >= 0:
        return f"exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"killed by {name}"


class Pool:
    """The worker table and the rules above.  ``cfg`` is a prefork Config.

    Events (each returns the actions it calls for): spawned, spawn_failed, ready,
    exited, reload, reload_refused, reconfigure, scale, scale_to, stop,
    sampled_rss, observe_load, tick.  Questions: samples_due, next_deadline,
    counts, snapshot.
    """

    def __init__(self, cfg, rand=None):
        self.cfg = cfg
        self.target = cfg.workers
        self.rand = rand or random.Random()
        self.workers = {}
        self.generation = 1
        self.reload_gen = None
        self.reload_pending = False
        self.said_reloading = False  # RELOADING=1 sent, the settings not read yet
        self.last_reload = ""  # "ok", or "failed (why)"
        self.stopping = None  # None, or the deadline after which everything is killed
        self.draining = None  # None, or when a graceful stop delayed by accept_grace begins
        self.announced = False
        self.ever_ready = False
        self.boot_failures = 0
        self.last_gen = 1  # the highest generation number given
        self.crashes = 0
        self.last_crash = -math.inf  # when the last young death (or failed fork) was
        self.respawn_at = 0.0
        self.last_failure = ""
        self.last_note = ""
        self.last_import_failed = False
        self.reloads = {"ok": 0, "failed": 0}
        self.exits = dict.fromkeys(EXIT_REASONS, 0)
        self.adapter = None
        self._rss_due = 0.0
        self._load_due = 0.0
        self.adapter = adapter_for(cfg, self.adapter)

    # -- events ---------------------------------------------------------------------

    def spawned(self, pid, spawn, now):
        self.workers[pid] = Worker(pid, spawn.slot, spawn.generation, now, BOOTING, now)

    def spawn_failed(self, spawn, now, why):
        """The master could not fork for *spawn* (its pre_fork hook raised, or fork()
        failed): a young death, with the back-off and the breaker that go with it."""
        return self._failed(f"no worker forked for slot {spawn.slot}: {why}", why) + \
            self._backoff(now) + self._boot_failed(spawn.generation, why, now)

    def ready(self, pid, now):
        w = self.workers.get(pid)
        if w is None or w.state != BOOTING:
            return []
        w.state, w.since, w.was_ready = READY, now, True
        self.ever_ready = True
        return []

    def exited(self, pid, exitcode, note, now):
        """A worker was reaped; *note* is what it left in its slot (its boot error, say)."""
        w = self.workers.pop(pid, None)
        if w is None:
            return [Log("info", f"reaped process {pid}, not a worker: {describe_exit(exitcode)}")]
        self.exits[w.reason or ("boot" if not w.was_ready else
                                "max_requests" if exitcode == 0 else "crash")] += 1
        how = describe_exit(exitcode)
        if w.fault:
            how = f"{how} ({w.fault})"
        elif note and exitcode != 0:
            how = f"{how}: {note}"
        label = f"worker {pid} (gen {w.generation})"
        if w.wanted_exit and not w.fault:
            return [Log("info", f"{label} {how}")]
        if not w.was_ready:
            return self._failed(f"{label} failed to boot: {how}", note,
                                exitcode == EXIT_IMPORT_FAILED) + \
                self._backoff(now) + self._boot_failed(w.generation, how, now)
        if exitcode == 0 and not w.fault:
            self.crashes = 0  # left on its own after max_requests, or its master vanished
            return [Log("info", f"{label} {how}")]
        acts = self._failed(f"{label} {how}", self.last_note, self.last_import_failed)
        if now - w.spawned < YOUNG:
            return acts + self._backoff(now)
        self.crashes = 0
        return acts

    def reload_starting(self):
        """A reload was asked for (SIGHUP): systemd hears RELOADING=1 at once, before
        the settings are read, unless one is under way (this one will follow it) or the
        pool is stopping.  reload() or reload_refused() comes next."""
        if self.ending or self.reload_gen is not None:
            return []
        self.said_reloading = True
        return [Notify("reloading", "reading the settings again")]

    def reload(self, now):
        if self.ending:
            return []
        if self.reload_gen is not None:
            self.reload_pending = True
            return [Log("info", "reload requested during a reload: it will follow this one")]
        # Numbers only grow: an abandoned generation's is never given again.
        self.reload_gen = self.last_gen = max(
            [self.generation, self.last_gen] + [w.generation for w in self.workers.values()]) + 1
        said, self.said_reloading = self.said_reloading, False
        return [Log("info", f"reload: starting generation {self.reload_gen}"),
                Notify("status" if said else "reloading",
                       f"reloading to generation {self.reload_gen}")]

    def reload_refused(self, why):
        """The new settings could not be had (the master logged why): nothing changes.
        A reload already under way goes on, and says READY=1 when it ends."""
        self.said_reloading = False
        return [Notify("status" if self.reload_gen is not None else "ready",
                       f"reload failed: {why}")]

    def reconfigure(self, cfg, slots):
        """New settings (a reload read them).  The scoreboard was sized at start, so
        max_workers cannot grow past *slots* until a restart or an upgrade."""
        acts = []
        if cfg.max_workers > slots:
            acts.append(Log("warning", f"max_workers {cfg.max_workers} is more than the "
                                       f"{slots} slots made at start: {slots} until an "
                                       "upgrade or a restart"))
            cfg = cfg.replace(max_workers=slots, workers=min(cfg.workers, slots),
                              workers_max=min(cfg.workers_max, slots))
        self.cfg = cfg
        # An adaptive pool keeps the size the load made, within the new range.
        self.target = min(max(self.target, cfg.workers), cfg.workers_max) if cfg.adaptive \
            else cfg.workers
        self.adapter = adapter_for(cfg, self.adapter)
        return acts

    def scale(self, delta):
        target = min(max(self.target + delta, 1), self.cfg.max_workers)
        if target == self.target:
            return [Log("info", f"workers stay at {target} (limits 1..{self.cfg.max_workers})")]
        self.target = target
        return [Log("info", f"workers: {target}")]

    def scale_to(self, n):
        """Set the size by hand (the control socket's `scale`); ConfigError for a size
        out of 1..max_workers.  An adaptive pool measures afresh from there."""
        top = self.cfg.max_workers
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
            raise ConfigError(f"workers must be a whole number from 1 to max_workers ({top}), "
                              f"not {n!r}")
        if self.adapter:
            self.adapter.reset()
        return self.scale(n - self.target)

    @property
    def ending(self):
        """A stop has begun: serving on through accept_grace (draining), or stopping."""
        return self.stopping is not None or self.draining is not None

    def stops_after_grace(self):
        """Whether a graceful stop asked now first serves on, not ready (drain()):
        with accept_grace, for the first stop only."""
        return bool(self.cfg.accept_grace) and not self.ending

    def drain(self, now):
        """TERM with accept_grace: the pool serves on (it is not ready any more, so load
        balancers stop sending) until tick() says Drained; then stop().  A second TERM
        meanwhile stops at once."""
        if not self.stops_after_grace():
            return self.stop(True, now)
        self.draining = now + self.cfg.accept_grace
        acts = [Notify("stopping", "stopping"),
                Log("info", f"serving {self.cfg.accept_grace:g}s more (accept_grace), then "
                            "stopping")]
        if self.reload_gen is not None:
            acts += self._end_reload(False, "the server is stopping", now, cancelled=True)
        return acts

    def stop(self, graceful, now):
        """TERM (graceful): retire every worker, SIGKILL what is left at graceful_timeout.
        INT/QUIT (fast): SIGINT every worker, SIGKILL what is left a few seconds later."""
        if not graceful:
            deadline = now + FAST_STOP_GRACE
        elif self.cfg.graceful_timeout:
            deadline = now + self.cfg.graceful_timeout
        else:  # 0: no limit, as for every time: the requests in flight end when they end
            deadline = math.inf
        said = self.ending
        self.draining = None
        self.stopping = deadline if self.stopping is None else min(self.stopping, deadline)
        acts = [] if said else [Notify("stopping", "stopping")]
        if self.reload_gen is not None:
            acts += self._end_reload(False, "the server is stopping", now, cancelled=True)
        for w in self.workers.values():
            if w.state == BOOTING:
                acts += self._kill(w, now, why="stop")  # nothing in flight to finish
            elif graceful:
                acts += self._retire(w, now, "stop")
            elif w.state != KILLING:
                w.state, w.since, w.wanted_exit = INTERRUPTED, now, True
                w.reason = w.reason or "stop"
                acts.append(SendSignal(w.pid, signal.SIGINT))
        return acts

    def over_limit(self, pid, why, now):
        """A sampled limit (memory) was passed: recycle it, once a new worker is ready."""
        if not self._make_due(pid, "max_rss"):
            return []
        return [Log("warning", f"worker {pid} {why}: recycling it")]

    def due(self, pid, why, now):
        """Worker *pid* reached a limit of its own (max_requests): recycle it, once a
        new worker is ready; it serves on meanwhile."""
        self._make_due(pid, why)
        return []

    def _make_due(self, pid, why):
        """Mark a ready worker due for recycling (_keep_size() replaces, then retires
        it); whether it was not already."""
        w = self.workers.get(pid)
        if w is None or w.state != READY or w.due:
            return False
        w.due = why
        return True

    def sampled_rss(self, sizes, now):
        """*sizes* maps pids to resident bytes: retire the ready workers above max_rss."""
        limit, acts = self.cfg.max_rss, []
        for pid, rss in sizes.items():
            if limit and rss > limit:
                why = f"uses {rss // MIB} MiB (max_rss {limit // MIB} MiB)"
                acts += self.over_limit(pid, why, now)
        return acts

    def observe_load(self, busy, now):
        """*busy* maps each ready worker to its busy seconds so far: let the adaptive
        pool grow or shrink, unless a reload or a stop is changing it anyway."""
        if self.adapter is None:
            return []
        if self.reload_gen is not None or self.ending:
            self.adapter.reset()
            return []
        change, why = self.adapter.observe(now, busy, self.target)
        if not change:
            return []
        return [Log("info", f"adaptive pool: {why}")] + self.scale(change)

    # -- time -----------------------------------------------------------------------

    def samples_due(self, now):
        """What to measure now, as [Sample]: memory every RSS_INTERVAL (with max_rss),
        load every adaptive.INTERVAL (an adaptive pool)."""
        ready = tuple(w.pid for w in self.workers.values() if w.state == READY)
        due = []
        if self.cfg.max_rss and now >= self._rss_due:
            self._rss_due = now + RSS_INTERVAL
            due.append(Sample("rss", ready))
        if self.adapter and now >= self._load_due:
            self._load_due = now + LOAD_INTERVAL
            due.append(Sample("load", ready))
        return due

    def tick(self, now, beats):
        """Decide what is due at *now*; *beats* maps pid -> last heartbeat."""
        acts = self._deadlines(now, beats)
        if self.draining is not None and now >= self.draining:
            return acts + [Drained()]  # the master stops the pool now (stop())
        if self.stopping is not None:
            if now >= self.stopping:
                for w in self.workers.values():
                    if w.state != KILLING:
                        acts += self._kill(w, now, why="stop")
            if not self.workers:
                acts.append(Stopped())
            return acts
        if self.reload_gen is not None:
            acts += self._reload_step(now)
        else:
            acts += self._keep_size(now)
        if not self.announced and self.counts()[READY] >= self.target:
            self.announced = True
            acts.append(Notify("ready", first=True))
        return acts

    def next_deadline(self, beats):
        """The earliest time at which tick() or samples_due() may have something to
        do, or None."""
        times = []
        cfg = self.cfg
        for w in self.workers.values():
            if w.state == BOOTING:
                times.append(w.since + cfg.boot_timeout)
            elif w.state in (READY, RETIRING):
                if cfg.timeout:
                    times.append(beats.get(w.pid, w.since) + cfg.timeout)
                if w.state == RETIRING and cfg.graceful_timeout:
                    times.append(w.since + cfg.graceful_timeout)
            elif w.state == DUMPING:
                times.append(w.since + DUMP_GRACE)
            elif w.state == INTERRUPTED:
                times.append(w.since + FAST_STOP_GRACE)
        if self.stopping is not None:
            if self.stopping < math.inf:
                times.append(self.stopping)
        else:
            if self.draining is not None:
                times.append(self.draining)
            if self.reload_gen is None and self.respawn_at and \
                    self._serving_count() < self.target:
                # A back-off still to wait out, whatever happened since (a worker
                # that exited in good order resets the count of crashes, not the
                # wait).  A reload forks without it, so it is named only outside one.
                times.append(self.respawn_at)
            if cfg.max_rss:
                times.append(self._rss_due)
            if self.adapter:
                times.append(self._load_due)
        return min(times) if times else None

    # -- reports ----------------------------------------------------------------------

    def counts(self):
        out = dict.fromkeys((BOOTING, READY, RETIRING, DUMPING, INTERRUPTED, KILLING), 0)
        for w in self.workers.values():
            out[w.state] += 1
        return out

    def snapshot(self, now):
        """The pool as plain data, for status: sizes, reloads, the adaptive range and
        each worker (pid, slot, generation, state, age)."""
        return {
            "generation": self.generation, "target": self.target,
            "max_workers": self.cfg.max_workers, "reloads": dict(self.reloads),
            "last_reload": self.last_reload, "reloading": self.reload_gen,
            "counts": self.counts(),
            "adaptive": {"min": self.adapter.low, "max": self.adapter.high,
                         "load": round(self.adapter.load, 2)} if self.adapter else None,
            "workers": [{"pid": w.pid, "slot": w.slot, "generation": w.generation,
                         "state": w.state, "age": round(now - w.spawned, 3)}
                        for w in sorted(self.workers.values(), key=lambda w: w.slot)]}

    # -- rules ------------------------------------------------------------------------

    def _deadlines(self, now, beats):
        acts = []
        cfg = self.cfg
        for w in list(self.workers.values()):
            if w.state == BOOTING and now - w.since >= cfg.boot_timeout:
                acts.append(Log("error", f"worker {w.pid} not ready after "
                                         f"{cfg.boot_timeout:g}s (boot_timeout): killing it"))
                acts += self._dump_then_kill(w, now, f"not ready within {cfg.boot_timeout:g}s",
                                              "boot")
            elif w.state in (READY, RETIRING) and cfg.timeout and \
                    now - beats.get(w.pid, w.since) >= cfg.timeout:
                # (Retiring, and stuck in its last request: timeout holds as for any.)
                where = " while retiring" if w.state == RETIRING else ""
                acts.append(Log("error", f"worker {w.pid} silent for {cfg.timeout:g}s "
                                         f"(timeout){where}: writing its stack, then killing "
                                         "it"))
                acts += self._dump_then_kill(w, now, f"silent for {cfg.timeout:g}s", "timeout")
            elif w.state == RETIRING and cfg.graceful_timeout and \
                    now - w.since >= cfg.graceful_timeout:
                acts.append(Log("warning", f"worker {w.pid} still busy after "
                                           f"{cfg.graceful_timeout:g}s (graceful_timeout): "
                                           "killing it"))
                acts += self._kill(w, now)
            elif (w.state == DUMPING and now - w.since >= DUMP_GRACE) or \
                    (w.state == INTERRUPTED and now - w.since >= FAST_STOP_GRACE):
                acts += self._kill(w, now)
        return acts

    def _keep_size(self, now):
        """Keep *target* workers.  One due for recycling goes only once a new one is
        ready to take its place, so a new one that cannot boot (the code on disk broken
        since the start, or since a reload abandoned for it) leaves it serving."""
        acts = []
        serving = [w for w in self.workers.values() if w.state in (BOOTING, READY)]
        due = sorted((w for w in serving if w.due), key=lambda w: w.spawned)
        fresh = [w for w in serving if not w.due]
        if len(fresh) > self.target:
            # Fewer wanted (TTOU): booting ones go first, then the youngest.
            extra = sorted(fresh, key=lambda w: (w.state != BOOTING, -w.spawned))
            for w in extra[:len(fresh) - self.target]:
                acts += self._retire(w, now, "scale") if w.state == READY else \
                    self._kill(w, now, why="scale")
        surplus = sum(w.state == READY for w in fresh) + len(due) - self.target
        for w in due[:max(surplus, 0)]:
            acts += self._retire(w, now, w.due)
        due = due[max(surplus, 0):]
        if len(fresh) < self.target and now >= self.respawn_at:
            self.respawn_at = 0.0  # the back-off is served: next_deadline stops naming it
            spawns = self._spawn(self.target - len(fresh), self.generation)
            if not spawns and due and not self._leaving() and \
                    not any(w.state == BOOTING for w in fresh):
                # max_workers leaves no room to build beside it: the old way, retire
                # one first and build in its place (one at a time: none is leaving).
                acts += self._retire(due[0], now, due[0].due)
            acts += spawns
        return acts

    def _reload_step(self, now):
        acts = []
        gen = self.reload_gen
        serving = [w for w in self.workers.values() if w.state in (BOOTING, READY)]
        new = [w for w in serving if w.generation == gen]
        new_ready = [w for w in new if w.state == READY]
        old = [w for w in serving if w.generation != gen]
        # Each new worker that is ready takes the place of an old one.
        surplus = len(new_ready) + len(old) - self.target
        for w in sorted(old, key=lambda w: (w.state != BOOTING, w.spawned))[:max(surplus, 0)]:
            acts += self._retire(w, now, "reload") if w.state == READY else \
                self._kill(w, now, why="reload")
            old.remove(w)
        if len(new_ready) >= self.target and not old:
            return acts + self._end_reload(True, f"generation {gen} serving", now)
        wanted = self.target - len(new)
        room = self.cfg.max_workers - len(self.workers)
        booting = any(w.state == BOOTING for w in new)
        if wanted > 0 and room <= 0 and not booting and old and not self._leaving():
            # max_workers leaves no room to build beside the old generation, and no
            # new worker is coming up to free some: retire one old worker first and
            # build in its place.
            w = max((w for w in old if w.state == READY), key=lambda w: w.spawned, default=None)
            if w is not None:
                acts += self._retire(w, now, "reload")
        acts += self._spawn(wanted, gen)
        return acts

    def _failed(self, text, note, import_failed=False):
        """Remember the last failure (for the breaker's message) and log it."""
        self.last_failure, self.last_note, self.last_import_failed = text, note, import_failed
        return [Log("error", text)]

    def _backoff(self, now):
        """A young death or a failed fork: delay the next fork, doubling each time;
        after CRASH_MEMORY without one, the count starts again."""
        if now - self.last_crash >= CRASH_MEMORY:
            self.crashes = 0  # the pool served in peace since: an old story
        self.last_crash = now
        self.crashes += 1
        delay = min(BACKOFF_BASE * 2 ** (self.crashes - 1), BACKOFF_CAP)
        self.respawn_at = now + delay
        return [Log("warning", f"{self.crashes} young deaths in a row: next fork in "
                               f"{delay:g}s")]

    def _boot_failed(self, generation, how, now):
        if self.reload_gen is not None and generation == self.reload_gen:
            return self._end_reload(False, f"a new worker failed to boot: {how}", now)
        self.boot_failures += 1
        if not self.ever_ready and self.boot_failures >= BREAKER and self.stopping is None:
            return [GiveUp(f"workers cannot boot ({self.boot_failures} tries): "
                           f"{self.last_failure}", self.last_note, self.last_import_failed)]
        return []

    def _end_reload(self, ok, message, now, cancelled=False):
        gen = self.reload_gen
        self.reload_gen = None
        acts = []
        if ok:
            self.generation = gen
            self.reloads["ok"] += 1
            self.last_reload = "ok"
        else:
            if cancelled:
                self.last_reload = f"cancelled ({message})"
            else:
                self.reloads["failed"] += 1
                self.last_reload = f"failed ({message})"
            # Booting workers of the abandoned generation go; ready ones keep serving.
            for w in self.workers.values():
                if w.generation == gen and w.state == BOOTING:
                    acts += self._kill(w, now, wanted=True, why="reload")
        acts.append(ReloadDone(gen, ok, message, cancelled))
        if self.reload_pending and not self.ending:
            self.reload_pending = False
            acts += self.reload(now)  # the one asked for meanwhile: RELOADING again
        elif not self.ending:
            acts.append(Notify("ready"))
        return acts

    def _spawn(self, count, generation):
        used = {w.slot for w in self.workers.values()}
        room = self.cfg.max_workers - len(self.workers)
        free = [i for i in range(self.cfg.max_workers) if i not in used]
        acts = []
        for slot in free[:max(0, min(count, room))]:
            cfg = self.cfg
            limit = cfg.max_requests + self.rand.randint(0, cfg.max_requests_jitter) \
                if cfg.max_requests else 0
            acts.append(Spawn(slot, generation, limit))
        return acts

    def _retire(self, w, now, why):
        if w.state != READY:
            return []
        w.state, w.since, w.wanted_exit = RETIRING, now, True
        w.reason = w.reason or why
        return [Retire(w.pid)]

    def _dump_then_kill(self, w, now, fault, why):
        w.state, w.since, w.fault = DUMPING, now, fault
        w.reason = w.reason or why
        return [SendSignal(w.pid, STACK_SIGNAL)]

    def _kill(self, w, now, wanted=True, why=""):
        if w.state == KILLING:
            return []
        w.state, w.since = KILLING, now
        w.reason = w.reason or why
        w.wanted_exit = w.wanted_exit or wanted
        return [SendSignal(w.pid, signal.SIGKILL)]

    def _leaving(self):
        return any(w.state in (RETIRING, DUMPING, KILLING) for w in self.workers.values())

    def _serving_count(self):
        """Workers serving or about to, not counting those due for recycling."""
        return sum(w.state in (BOOTING, READY) and not w.due for w in self.workers.values())
