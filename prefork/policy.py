"""The master's decisions as a pure function of (state, event, now).

Theory of operation.  ``Pool`` holds a table of plain worker records and answers
each event (a fork happened, a worker is ready, a worker exited, a signal asked
for a reload, a stop or a new size, time passed) with a list of actions for the
master to carry out: fork a worker, retire one gracefully, send one a signal,
log a line, report a reload's end, give up on booting.  It never forks, signals,
sleeps or reads a clock: ``now`` is passed in, so every rule is tested in
microseconds with no process at all.

The rules:

* The pool keeps ``target`` workers serving (booting or ready).  Live worker
  processes (retiring and dying ones included) never exceed ``max_workers``.
* A reload builds generation g+1 beside g: a new worker is forked when there is
  room, and each time one becomes ready an old one is retired.  A new worker that
  fails to boot abandons the reload; the old workers that are left keep serving.
* A worker that dies young and unasked backs off the next fork exponentially;
  if no worker has ever become ready and boots keep failing, the pool gives up.
* Deadlines: booting past ``boot_timeout`` and silence past ``timeout`` end in a
  stack dump then SIGKILL; retiring past ``graceful_timeout`` ends in SIGKILL.
"""

import dataclasses
import random
import signal

__all__ = ["Pool", "Spawn", "Retire", "Signal", "Log", "ReloadDone", "GiveUp", "Stopped",
           "describe_exit"]

# Worker states, as the master sees them.  After READY, each names what was last
# asked of the worker: RETIRING (finish and go), DUMPING (stack dump signal sent),
# INTERRUPTED (SIGINT: fast stop), KILLING (SIGKILL sent: only reaping is left).
BOOTING, READY, RETIRING, DUMPING, INTERRUPTED, KILLING = (
    "booting", "ready", "retiring", "dumping", "interrupted", "killing")

BACKOFF_BASE = 0.1      # the first delay after a young death
BACKOFF_CAP = 30.0      # the longest
YOUNG = 1.0             # a worker that dies sooner than this after its fork died young
BREAKER = 3             # boot failures, before any worker was ever ready, that end the start
DUMP_GRACE = 0.5        # time for a worker to write its stack before SIGKILL
FAST_STOP_GRACE = 5.0   # INT/QUIT: how long workers get to die before SIGKILL
EXIT_BOOT_FAILED = 3    # the status a worker exits with when it cannot boot
STACK_SIGNAL = signal.SIGUSR2   # makes a worker write its Python stack (faulthandler)


# -- actions ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Spawn:
    slot: int
    generation: int
    max_requests: int  # 0: no limit


@dataclasses.dataclass(frozen=True)
class Retire:
    pid: int  # finish the current request, then exit


@dataclasses.dataclass(frozen=True)
class Signal:
    pid: int
    signum: int


@dataclasses.dataclass(frozen=True)
class Log:
    level: str  # "info", "warning", "error"
    message: str


@dataclasses.dataclass(frozen=True)
class ReloadDone:
    generation: int
    ok: bool
    message: str


@dataclasses.dataclass(frozen=True)
class GiveUp:
    message: str
    note: str = ""  # the last failed worker's own one-line account


@dataclasses.dataclass(frozen=True)
class Stopped:
    pass


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
    """The worker table and the rules above.  ``cfg`` is a prefork Config."""

    def __init__(self, cfg, rand=None):
        self.cfg = cfg
        self.target = cfg.workers
        self.rand = rand or random.Random()
        self.workers = {}
        self.generation = 1
        self.reload_gen = None
        self.reload_pending = False
        self.stopping = None  # None, or the deadline after which everything is killed
        self.ever_ready = False
        self.boot_failures = 0
        self.crashes = 0
        self.respawn_at = 0.0
        self.last_failure = ""
        self.last_note = ""
        self.reloads = {"ok": 0, "failed": 0}

    # -- events ---------------------------------------------------------------------

    def spawned(self, pid, spawn, now):
        self.workers[pid] = Worker(pid, spawn.slot, spawn.generation, now, BOOTING, now)

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
        how = describe_exit(exitcode)
        if w.fault:
            how = f"{how} ({w.fault})"
        elif note and exitcode != 0:
            how = f"{how}: {note}"
        label = f"worker {pid} (gen {w.generation})"
        if w.wanted_exit and not w.fault:
            return [Log("info", f"{label} {how}")]
        if not w.was_ready:
            self.last_failure = f"{label} failed to boot: {how}"
            self.last_note = note
            return [Log("error", self.last_failure)] + self._crashed(w, now, young=True) + \
                self._boot_failed(w, how)
        if exitcode == 0 and not w.fault:
            self.crashes = 0  # left on its own after max_requests, or its master vanished
            return [Log("info", f"{label} {how}")]
        self.last_failure = f"{label} {how}"
        return [Log("error", self.last_failure)] + self._crashed(w, now,
                                                                  now - w.spawned < YOUNG)

    def reload(self, now):
        if self.stopping is not None:
            return []
        if self.reload_gen is not None:
            self.reload_pending = True
            return [Log("info", "reload requested during a reload: it will follow this one")]
        self.reload_gen = max([self.generation] + [w.generation for w in self.workers.values()]) + 1
        return [Log("info", f"reload: starting generation {self.reload_gen}")]

    def reconfigure(self, cfg, slots):
        """New settings (a reload read them).  The scoreboard was sized at start, so
        max_workers cannot grow past *slots* until a restart."""
        if cfg.max_workers > slots:
            cfg = cfg.replace(max_workers=slots, workers=min(cfg.workers, slots),
                              workers_max=min(cfg.workers_max, slots))
        self.cfg = cfg
        # An adaptive pool keeps the size the load made, within the new range.
        self.target = min(max(self.target, cfg.workers), cfg.workers_max) if cfg.adaptive \
            else cfg.workers

    def scale(self, delta):
        target = min(max(self.target + delta, 1), self.cfg.max_workers)
        if target == self.target:
            return [Log("info", f"workers stay at {target} (limits 1..{self.cfg.max_workers})")]
        self.target = target
        return [Log("info", f"workers: {target}")]

    def stop(self, graceful, now):
        """TERM (graceful): retire every worker, SIGKILL what is left at graceful_timeout.
        INT/QUIT (fast): SIGINT every worker, SIGKILL what is left a few seconds later."""
        acts = []
        if self.reload_gen is not None:
            acts += self._end_reload(False, "the server is stopping")
        deadline = now + (self.cfg.graceful_timeout if graceful else FAST_STOP_GRACE)
        self.stopping = deadline if self.stopping is None else min(self.stopping, deadline)
        for w in self.workers.values():
            if w.state == BOOTING:
                acts += self._kill(w, now)  # nothing in flight to finish
            elif graceful:
                acts += self._retire(w, now)
            elif w.state != KILLING:
                w.state, w.since, w.wanted_exit = INTERRUPTED, now, True
                acts.append(Signal(w.pid, signal.SIGINT))
        return acts

    def over_limit(self, pid, why, now):
        """A sampled limit (memory) was passed: recycle after the current request."""
        w = self.workers.get(pid)
        if w is None or w.state != READY:
            return []
        return [Log("warning", f"worker {pid} {why}: recycling it")] + self._retire(w, now)

    # -- time -----------------------------------------------------------------------

    def tick(self, now, beats):
        """Decide what is due at *now*; *beats* maps pid -> last heartbeat."""
        acts = self._deadlines(now, beats)
        if self.stopping is not None:
            if now >= self.stopping:
                for w in self.workers.values():
                    if w.state != KILLING:
                        acts += self._kill(w, now)
            if not self.workers:
                acts.append(Stopped())
            return acts
        if self.reload_gen is not None:
            acts += self._reload_step(now)
        else:
            acts += self._keep_size(now)
        return acts

    def next_deadline(self, beats):
        """The earliest time at which tick() may have something to do, or None."""
        times = []
        cfg = self.cfg
        for w in self.workers.values():
            if w.state == BOOTING:
                times.append(w.since + cfg.boot_timeout)
            elif w.state == READY and cfg.timeout:
                times.append(beats.get(w.pid, w.since) + cfg.timeout)
            elif w.state == RETIRING and cfg.graceful_timeout:
                times.append(w.since + cfg.graceful_timeout)
            elif w.state == DUMPING:
                times.append(w.since + DUMP_GRACE)
            elif w.state == INTERRUPTED:
                times.append(w.since + FAST_STOP_GRACE)
        if self.stopping is not None:
            times.append(self.stopping)
        elif self.reload_gen is None and self.respawn_at and \
                self._serving_count() < self.target:
            # A back-off still to wait out, whatever happened since (a worker that
            # exited in good order resets the count of crashes, not the wait).  A
            # reload forks without it, so it is named only outside one.
            times.append(self.respawn_at)
        return min(times) if times else None

    # -- reports ----------------------------------------------------------------------

    def counts(self):
        out = dict.fromkeys((BOOTING, READY, RETIRING, DUMPING, INTERRUPTED, KILLING), 0)
        for w in self.workers.values():
            out[w.state] += 1
        return out

    # -- rules ------------------------------------------------------------------------

    def _deadlines(self, now, beats):
        acts = []
        cfg = self.cfg
        for w in list(self.workers.values()):
            if w.state == BOOTING and now - w.since >= cfg.boot_timeout:
                acts.append(Log("error", f"worker {w.pid} not ready after "
                                         f"{cfg.boot_timeout:g}s (boot_timeout): killing it"))
                acts += self._dump_then_kill(w, now, f"not ready within {cfg.boot_timeout:g}s")
            elif w.state == READY and cfg.timeout and \
                    now - beats.get(w.pid, w.since) >= cfg.timeout:
                acts.append(Log("error", f"worker {w.pid} silent for {cfg.timeout:g}s (timeout): "
                                         "writing its stack, then killing it"))
                acts += self._dump_then_kill(w, now, f"silent for {cfg.timeout:g}s")
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
        acts = []
        serving = [w for w in self.workers.values() if w.state in (BOOTING, READY)]
        if len(serving) > self.target:
            # Fewer wanted (TTOU): booting ones go first, then the youngest.
            extra = sorted(serving, key=lambda w: (w.state != BOOTING, -w.spawned))
            for w in extra[:len(serving) - self.target]:
                acts += self._retire(w, now) if w.state == READY else self._kill(w, now)
        elif len(serving) < self.target and now >= self.respawn_at:
            self.respawn_at = 0.0  # the back-off is served: next_deadline stops naming it
            acts += self._spawn(self.target - len(serving), self.generation)
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
            acts += self._retire(w, now) if w.state == READY else self._kill(w, now)
            old.remove(w)
        if len(new_ready) >= self.target and not old:
            return acts + self._end_reload(True, f"generation {gen} serving")
        wanted = self.target - len(new)
        room = self.cfg.max_workers - len(self.workers)
        booting = any(w.state == BOOTING for w in new)
        if wanted > 0 and room <= 0 and not booting and old and not self._leaving():
            # max_workers leaves no room to build beside the old generation, and no
            # new worker is coming up to free some: retire one old worker first and
            # build in its place.
            w = max((w for w in old if w.state == READY), key=lambda w: w.spawned, default=None)
            if w is not None:
                acts += self._retire(w, now)
        acts += self._spawn(wanted, gen)
        return acts

    def _crashed(self, w, now, young):
        if not young:
            self.crashes = 0
            return []
        self.crashes += 1
        delay = min(BACKOFF_BASE * 2 ** (self.crashes - 1), BACKOFF_CAP)
        self.respawn_at = now + delay
        return [Log("warning", f"{self.crashes} young deaths in a row: next fork in "
                               f"{delay:g}s")]

    def _boot_failed(self, w, how):
        if self.reload_gen is not None and w.generation == self.reload_gen:
            return self._end_reload(False, f"a new worker failed to boot: {how}")
        self.boot_failures += 1
        if not self.ever_ready and self.boot_failures >= BREAKER and self.stopping is None:
            return [GiveUp(f"workers cannot boot ({self.boot_failures} tries): "
                           f"{self.last_failure}", self.last_note)]
        return []

    def _end_reload(self, ok, message):
        gen = self.reload_gen
        self.reload_gen = None
        acts = []
        if ok:
            self.generation = gen
            self.reloads["ok"] += 1
        else:
            self.reloads["failed"] += 1
            # Booting workers of the abandoned generation go; ready ones keep serving.
            for w in self.workers.values():
                if w.generation == gen and w.state == BOOTING:
                    acts += self._kill(w, 0.0, wanted=True)
        acts.append(ReloadDone(gen, ok, message))
        if self.reload_pending and self.stopping is None:
            self.reload_pending = False
            acts += self.reload(0.0)
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

    def _retire(self, w, now):
        if w.state != READY:
            return []
        w.state, w.since, w.wanted_exit = RETIRING, now, True
        return [Retire(w.pid)]

    def _dump_then_kill(self, w, now, fault):
        w.state, w.since, w.fault = DUMPING, now, fault
        return [Signal(w.pid, STACK_SIGNAL)]

    def _kill(self, w, now, wanted=True):
        if w.state == KILLING:
            return []
        w.state, w.since = KILLING, now
        w.wanted_exit = w.wanted_exit or wanted
        return [Signal(w.pid, signal.SIGKILL)]

    def _leaving(self):
        return any(w.state in (RETIRING, DUMPING, KILLING) for w in self.workers.values())

    def _serving_count(self):
        return sum(w.state in (BOOTING, READY) for w in self.workers.values())
