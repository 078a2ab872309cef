"""The master's decisions, with no process at all: events in, actions out."""

import itertools
import random
import signal

import pytest

from prefork import policy
from prefork.config import Config
from prefork.policy import GiveUp, Log, Pool, ReloadDone, Retire, SendSignal, Spawn, Stopped


class Sim:
    """Drives a Pool the way the master does, with fake pids and a hand-moved clock."""

    def __init__(self, **settings):
        settings.setdefault("timeout", 0)  # tests that move the clock far set their own
        self.pool = Pool(Config(**settings), rand=random.Random(7))
        self.now = 1000.0
        self.pids = itertools.count(100)
        self.beats = {}
        self.log = []

    def apply(self, acts):
        out = []
        for act in acts:
            self.log.append(act)
            if isinstance(act, Spawn):
                pid = next(self.pids)
                self.pool.spawned(pid, act, self.now)
                self.beats[pid] = self.now
            assert len(self.pool.workers) <= self.pool.cfg.max_workers, "max_workers broken"
            out.append(act)
        return out

    def tick(self):
        return self.apply(self.pool.tick(self.now, self.beats))

    def ready_all(self):
        for w in list(self.pool.workers.values()):
            if w.state == policy.BOOTING:
                self.apply(self.pool.ready(w.pid, self.now))

    def exit(self, pid, code=0, note=""):
        return self.apply(self.pool.exited(pid, code, note, self.now))

    def of(self, kind, acts=None):
        return [a for a in (self.log if acts is None else acts) if isinstance(a, kind)]

    def serving(self, state=policy.READY):
        return sorted(w.pid for w in self.pool.workers.values() if w.state == state)

    def start(self):
        self.tick()
        self.ready_all()
        self.tick()
        return self.serving()


def test_start_spawns_the_pool_in_distinct_slots():
    sim = Sim(workers=3)
    spawns = sim.tick()
    assert [type(a) for a in spawns] == [Spawn] * 3
    assert sorted(a.slot for a in spawns) == [0, 1, 2]
    assert {a.generation for a in spawns} == {1}
    assert sim.tick() == []  # booting workers count: nothing more to fork


def test_a_dead_worker_is_replaced():
    sim = Sim(workers=2)
    first = sim.start()
    sim.now += 60
    acts = sim.exit(first[0], -signal.SIGKILL)
    assert "killed by SIGKILL" in sim.of(Log, acts)[0].message
    spawns = sim.tick()
    assert len(spawns) == 1 and isinstance(spawns[0], Spawn)


def test_young_deaths_back_off_exponentially_and_cap():
    sim = Sim(workers=1)
    sim.start()
    delays = []
    for _ in range(12):
        (pid,) = sim.pool.workers
        sim.now += 0.01  # died young
        sim.exit(pid, 1)
        assert sim.tick() == [] or delays == []  # not before the back-off deadline
        due = sim.pool.next_deadline(sim.beats)
        delays.append(round(due - sim.now, 3))
        sim.now = due
        assert [type(a) for a in sim.tick()] == [Spawn]
        sim.ready_all()
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == policy.BACKOFF_CAP
    # A worker that lives past YOUNG resets the back-off.
    (pid,) = sim.pool.workers
    sim.now += 60
    sim.exit(pid, 1)
    assert [type(a) for a in sim.tick()] == [Spawn]


def test_a_back_off_is_waited_out_even_when_a_later_exit_resets_the_crash_count():
    # A worker dies young (the back-off starts), then the other leaves in good order
    # (max_requests: the crash count resets): the pool is empty, and the master must
    # still be told when to fork again, or it sleeps with no worker at all.
    sim = Sim(workers=2)
    first, second = sim.start()
    sim.now += 0.5
    sim.exit(first, 1)  # young: the back-off starts
    assert sim.pool.crashes == 1
    sim.exit(second, 0)  # in good order
    assert sim.pool.crashes == 0 and sim.pool.workers == {}
    assert sim.tick() == []  # not before the back-off deadline
    due = sim.pool.next_deadline(sim.beats)
    assert due == sim.now + policy.BACKOFF_BASE
    sim.now = due
    assert [type(a) for a in sim.tick()] == [Spawn, Spawn]
    sim.ready_all()
    assert sim.pool.next_deadline(sim.beats) is None  # nothing owed once served


def test_boot_failures_before_any_ready_worker_give_up():
    sim = Sim(workers=2)
    sim.tick()
    for _ in range(policy.BREAKER):
        pid = min(sim.pool.workers)
        acts = sim.exit(pid, policy.EXIT_BOOT_FAILED, note="ImportError: No module named 'x'")
        sim.now = sim.pool.next_deadline(sim.beats) or sim.now
        sim.tick()
    (give_up,) = sim.of(GiveUp)
    assert "cannot boot" in give_up.message and "No module named 'x'" in give_up.message
    assert acts[-1] == give_up


def test_boot_failures_after_a_good_start_back_off_but_never_give_up():
    sim = Sim(workers=1)
    sim.start()
    for _ in range(10):
        (pid,) = sim.pool.workers
        sim.now += 120
        sim.exit(pid, 1)  # a crash at run time
        sim.now = sim.pool.next_deadline(sim.beats) or sim.now
        sim.tick()
        (pid,) = sim.pool.workers
        sim.exit(pid, policy.EXIT_BOOT_FAILED, note="SyntaxError")
        sim.now = sim.pool.next_deadline(sim.beats)
        sim.tick()
    assert sim.of(GiveUp) == []


def test_reload_builds_beside_the_old_generation_and_retires_as_new_ones_are_ready():
    sim = Sim(workers=2, max_workers=4)
    old = sim.start()
    sim.apply(sim.pool.reload(sim.now))
    spawns = sim.tick()
    assert [(a.generation) for a in spawns] == [2, 2]
    assert sim.of(Retire, sim.tick()) == []  # nothing retired while the new ones boot
    new = [p for p in sim.pool.workers if p not in old]
    sim.apply(sim.pool.ready(new[0], sim.now))
    retired = sim.of(Retire, sim.tick())
    assert len(retired) == 1 and retired[0].pid in old
    sim.apply(sim.pool.ready(new[1], sim.now))
    acts = sim.tick()
    assert len(sim.of(Retire, acts)) == 1
    (done,) = sim.of(ReloadDone, acts)
    assert done.ok and done.generation == 2 and sim.pool.generation == 2
    for pid in old:
        sim.exit(pid, 0)
    assert sim.tick() == []


def test_reload_with_no_spare_room_replaces_one_worker_at_a_time():
    sim = Sim(workers=2, max_workers=2)
    old = sim.start()
    sim.apply(sim.pool.reload(sim.now))
    acts = sim.tick()
    assert [type(a) for a in acts] == [Retire]  # make room first
    sim.exit(acts[0].pid, 0)
    spawns = sim.tick()
    assert [a.generation for a in spawns] == [2]
    sim.ready_all()
    acts = sim.tick()
    (retire,) = sim.of(Retire, acts)
    assert retire.pid in old
    sim.exit(retire.pid, 0)
    sim.tick()
    sim.ready_all()
    assert sim.of(ReloadDone, sim.tick())[0].ok


def test_a_failed_reload_keeps_the_old_generation():
    sim = Sim(workers=2, max_workers=4)
    old = sim.start()
    sim.apply(sim.pool.reload(sim.now))
    sim.tick()
    new = [p for p in sim.pool.workers if p not in old]
    acts = sim.exit(new[0], policy.EXIT_BOOT_FAILED, note="SyntaxError: bad")
    (done,) = sim.of(ReloadDone, acts)
    assert not done.ok and "SyntaxError: bad" in done.message
    assert sim.of(SendSignal, acts) == [SendSignal(new[1], signal.SIGKILL)]
    sim.exit(new[1], -signal.SIGKILL)
    assert sim.tick() == []
    assert sim.serving() == old and sim.pool.generation == 1
    assert sim.of(GiveUp) == []


def test_a_reload_asked_for_during_a_reload_follows_it():
    sim = Sim(workers=1, max_workers=2)
    sim.start()
    sim.apply(sim.pool.reload(sim.now))
    sim.tick()
    sim.apply(sim.pool.reload(sim.now))  # coalesced
    sim.ready_all()
    acts = sim.tick()
    assert sim.of(ReloadDone, acts)[0].generation == 2
    assert sim.pool.reload_gen == 3
    for r in sim.of(Retire, acts):
        sim.exit(r.pid, 0)
    assert [a.generation for a in sim.tick()] == [3]


def test_a_silent_worker_has_its_stack_dumped_then_is_killed():
    sim = Sim(workers=1, timeout=10)
    (pid,) = sim.start()
    sim.now += 9
    assert sim.tick() == []
    assert sim.pool.next_deadline(sim.beats) == pytest.approx(sim.beats[pid] + 10)
    sim.now += 1
    acts = sim.tick()
    assert SendSignal(pid, policy.STACK_SIGNAL) in acts
    assert len(sim.of(Spawn, acts)) == 1  # its replacement starts at once
    sim.now += policy.DUMP_GRACE
    assert SendSignal(pid, signal.SIGKILL) in sim.tick()
    acts = sim.exit(pid, -signal.SIGKILL)
    assert "silent for 10s" in sim.of(Log, acts)[0].message
    assert sim.tick() == []


def test_a_beating_worker_is_not_killed():
    sim = Sim(workers=1, timeout=10)
    (pid,) = sim.start()
    for _ in range(5):
        sim.now += 6
        sim.beats[pid] = sim.now
        assert sim.tick() == []


def test_boot_timeout_counts_as_a_failed_boot():
    sim = Sim(workers=1, boot_timeout=5)
    sim.tick()
    (pid,) = sim.pool.workers
    sim.now += 5
    assert SendSignal(pid, policy.STACK_SIGNAL) in sim.tick()
    sim.now += policy.DUMP_GRACE
    sim.tick()
    sim.exit(pid, -signal.SIGKILL)
    assert sim.pool.boot_failures == 1
    assert "not ready within 5s" in sim.pool.last_failure


def test_graceful_stop_retires_then_kills_at_graceful_timeout():
    sim = Sim(workers=2, graceful_timeout=3)
    a, b = sim.start()
    acts = sim.apply(sim.pool.stop(True, sim.now))
    assert sorted(r.pid for r in sim.of(Retire, acts)) == [a, b]
    sim.exit(a, 0)
    assert sim.tick() == []
    sim.now += 3
    assert SendSignal(b, signal.SIGKILL) in sim.tick()
    sim.exit(b, -signal.SIGKILL)
    assert sim.tick() == [Stopped()]


def test_fast_stop_interrupts_then_kills():
    sim = Sim(workers=2)
    a, b = sim.start()
    acts = sim.apply(sim.pool.stop(False, sim.now))
    assert sorted(sim.of(SendSignal, acts), key=lambda s: s.pid) == \
        [SendSignal(a, signal.SIGINT), SendSignal(b, signal.SIGINT)]
    sim.exit(a, -signal.SIGINT)
    sim.now += policy.FAST_STOP_GRACE
    assert SendSignal(b, signal.SIGKILL) in sim.tick()
    sim.exit(b, -signal.SIGKILL)
    assert sim.tick() == [Stopped()]


def test_stop_abandons_a_reload_and_no_reload_starts_while_stopping():
    sim = Sim(workers=1, max_workers=2)
    sim.start()
    sim.apply(sim.pool.reload(sim.now))
    sim.tick()
    acts = sim.apply(sim.pool.stop(True, sim.now))
    assert not sim.of(ReloadDone, acts)[0].ok
    assert sim.pool.reload(sim.now) == []


def test_scale_stays_within_one_and_max_workers():
    sim = Sim(workers=2, max_workers=3)
    sim.start()
    sim.apply(sim.pool.scale(+1))
    assert len(sim.of(Spawn, sim.tick())) == 1
    sim.apply(sim.pool.scale(+1))
    assert sim.pool.target == 3
    sim.ready_all()
    for _ in range(5):
        sim.apply(sim.pool.scale(-1))
    assert sim.pool.target == 1
    retired = sim.of(Retire, sim.tick())
    assert len(retired) == 2


def test_max_requests_jitter_spreads_limits():
    sim = Sim(workers=8, max_workers=8, max_requests=100, max_requests_jitter=50)
    limits = [a.max_requests for a in sim.tick()]
    assert all(100 <= n <= 150 for n in limits) and len(set(limits)) > 1
    assert all(a.max_requests == 0 for a in Sim(workers=2).tick())


def test_over_limit_recycles_and_replaces():
    sim = Sim(workers=2)
    a, b = sim.start()
    acts = sim.apply(sim.pool.over_limit(a, "uses 600 MiB", sim.now))
    assert Retire(a) in acts
    assert len(sim.of(Spawn, sim.tick())) == 1  # the replacement starts at once


def test_max_workers_holds_under_random_events():
    rng = random.Random(1)
    for _ in range(30):
        sim = Sim(workers=rng.randint(1, 4), max_workers=rng.randint(4, 6))
        sim.start()
        for _ in range(200):
            choice = rng.random()
            pids = list(sim.pool.workers)
            if choice < 0.2:
                sim.apply(sim.pool.reload(sim.now))
            elif choice < 0.4 and pids:
                sim.exit(rng.choice(pids), rng.choice([0, 1, -9, policy.EXIT_BOOT_FAILED]))
            elif choice < 0.6:
                sim.ready_all()
            elif choice < 0.7:
                sim.apply(sim.pool.scale(rng.choice([-1, 1])))
            else:
                sim.now += rng.random()
            sim.tick()  # Sim.apply asserts the cap after every action
        assert not sim.of(GiveUp)
