"""The master's decisions, with no process at all: events in, actions out."""

import itertools
import random
import signal

import pytest

from prefork import policy, upgrade
from prefork.config import Config
from prefork.errors import ConfigError
from prefork.policy import GiveUp, Log, Notify, Pool, ReloadDone, Retire, SendSignal, Spawn, Stopped


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
        assert sim.tick() == []  # not before the back-off deadline, the first one included
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


def test_young_deaths_long_ago_are_forgotten():
    sim = Sim(workers=1)
    sim.start()
    for _ in range(6):
        (pid,) = sim.serving() or [w.pid for w in sim.pool.workers.values()]
        sim.exit(pid, -signal.SIGSEGV)  # young: just forked
        sim.now = sim.pool.respawn_at
        sim.tick()
        sim.ready_all()
    assert sim.pool.crashes == 6
    sim.now += policy.CRASH_MEMORY  # a minute of peace
    (pid,) = sim.serving()
    sim.pool.workers[pid].spawned = sim.now  # forked just now, and dies young
    acts = sim.exit(pid, -signal.SIGSEGV)
    assert "1 young deaths in a row: next fork in 0.1s" in sim.of(Log, acts)[-1].message


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


def test_graceful_timeout_0_lets_a_graceful_stop_wait_for_the_request_in_flight():
    # 0 disables a limit, as for every time: TERM never turns into SIGKILL.
    sim = Sim(workers=2, graceful_timeout=0)
    a, b = sim.start()
    acts = sim.apply(sim.pool.stop(True, sim.now))
    assert sorted(r.pid for r in sim.of(Retire, acts)) == [a, b]
    assert sim.pool.next_deadline(sim.beats) is None
    sim.exit(a, 0)
    sim.now += 3600
    assert sim.tick() == []
    sim.exit(b, 0)
    assert sim.tick() == [Stopped()]
    # A fast stop after it still kills, a few seconds on.
    sim = Sim(workers=1, graceful_timeout=0)
    (a,) = sim.start()
    sim.apply(sim.pool.stop(True, sim.now))
    sim.apply(sim.pool.stop(False, sim.now))
    sim.now += policy.FAST_STOP_GRACE
    assert SendSignal(a, signal.SIGKILL) in sim.tick()


def test_a_retiring_worker_stuck_in_its_request_is_dumped_and_killed_at_timeout():
    sim = Sim(workers=1, max_workers=2, timeout=5, graceful_timeout=30)
    (a,) = sim.start()
    sim.apply(sim.pool.reload(sim.now))
    sim.tick()
    sim.ready_all()
    assert a in [r.pid for r in sim.of(Retire, sim.tick())]  # retiring, mid-request
    assert sim.pool.next_deadline(sim.beats) == sim.beats[a] + 5
    sim.now = sim.beats[a] + 5
    for pid in sim.beats:
        if pid != a:
            sim.beats[pid] = sim.now  # the new worker beats
    acts = sim.tick()
    assert SendSignal(a, policy.STACK_SIGNAL) in acts
    assert "silent for 5s (timeout) while retiring" in sim.of(Log, acts)[0].message


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
    done = sim.of(ReloadDone, acts)[0]
    assert not done.ok and done.cancelled  # cancelled, not failed: nothing went wrong
    assert sim.pool.reloads == {"ok": 0, "failed": 0}
    assert sim.pool.last_reload == "cancelled (the server is stopping)"
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


def test_over_limit_is_replaced_first_then_retired():
    sim = Sim(workers=2)
    a, b = sim.start()
    acts = sim.apply(sim.pool.over_limit(a, "uses 600 MiB", sim.now))
    assert not sim.of(Retire, acts)
    assert len(sim.of(Spawn, sim.tick())) == 1  # the replacement starts at once
    assert sim.serving() == [a, b]  # and a serves on while it boots
    sim.ready_all()
    assert sim.of(Retire, sim.tick()) == [Retire(a)]
    assert sim.pool.workers[a].reason == "max_rss"


@pytest.mark.parametrize("why", ["max_requests", "max_rss"])
def test_a_worker_due_for_recycling_serves_on_while_no_new_one_can_boot(why):
    # The code on disk broke (a reload was abandoned for it): recycling would shrink the
    # pool to nothing, one worker at a time.
    sim = Sim(workers=2)
    a, b = sim.start()
    sim.now += 60
    for pid in (a, b):
        sim.apply(sim.pool.due(pid, why, sim.now) if why == "max_requests"
                  else sim.pool.over_limit(pid, "uses 600 MiB", sim.now))
    for _ in range(5):
        for spawn in sim.of(Spawn, sim.tick()):
            pid = next(p for p, w in sim.pool.workers.items() if w.slot == spawn.slot
                       and w.state == policy.BOOTING)
            sim.exit(pid, policy.EXIT_IMPORT_FAILED, "cannot import 'shop'")
        sim.now = max(sim.now, sim.pool.respawn_at) + 1
    assert sim.serving() == [a, b] and not sim.of(Retire)
    # The code is fixed: a new worker boots, and each due one goes as one takes its place.
    sim.tick()
    sim.ready_all()
    assert sorted(r.pid for r in sim.of(Retire, sim.tick())) == [a, b]
    assert len(sim.serving()) == 2 and a not in sim.serving()


def test_with_no_room_beside_it_a_due_worker_is_retired_first_one_at_a_time():
    sim = Sim(workers=2, max_workers=2)
    a, b = sim.start()
    sim.apply(sim.pool.due(a, "max_requests", sim.now))
    assert sim.of(Retire, sim.tick()) == [Retire(a)]
    sim.apply(sim.pool.due(b, "max_requests", sim.now))
    for _ in range(3):
        assert not sim.of(Retire, sim.tick())  # a is still leaving: b serves on
    sim.exit(a, 0)
    sim.tick()  # a's replacement
    assert sim.serving() == [b]
    sim.ready_all()
    assert sim.of(Retire, sim.tick()) == [Retire(b)]  # once the new one is ready


def test_a_back_off_wakes_the_master_while_a_due_worker_serves():
    sim = Sim(workers=1)
    (a,) = sim.start()
    sim.now += 60
    sim.apply(sim.pool.due(a, "max_requests", sim.now))
    (spawn,) = sim.of(Spawn, sim.tick())
    young = next(p for p, w in sim.pool.workers.items() if w.slot == spawn.slot and p != a)
    sim.exit(young, -signal.SIGSEGV)
    assert sim.pool.next_deadline(sim.beats) == sim.pool.respawn_at


def test_generation_numbers_are_never_given_twice():
    sim = Sim(workers=1, max_workers=2)
    sim.start()
    sim.apply(sim.pool.reload(sim.now))
    (spawn,) = sim.of(Spawn, sim.tick())
    assert spawn.generation == 2
    new = next(p for p, w in sim.pool.workers.items() if w.generation == 2)
    sim.exit(new, policy.EXIT_IMPORT_FAILED, "cannot import")  # abandoned
    sim.now += 60
    sim.apply(sim.pool.reload(sim.now))
    assert sim.pool.reload_gen == 3


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


# -- what the service manager hears ------------------------------------------------------

def test_the_pool_is_announced_once_when_its_first_generation_is_ready():
    sim = Sim(workers=2)
    sim.tick()
    (pid, _) = sim.pool.workers
    sim.apply(sim.pool.ready(pid, sim.now))
    assert sim.of(Notify, sim.tick()) == []  # one of two is not enough
    sim.ready_all()
    assert sim.of(Notify, sim.tick()) == [Notify("ready", first=True)]
    sim.exit(pid, -signal.SIGKILL)
    sim.tick()
    sim.ready_all()
    assert sim.of(Notify, sim.tick()) == []  # a replacement is no new start


def test_a_reload_says_reloading_then_ready_and_a_queued_one_reloading_again():
    sim = Sim(workers=1, max_workers=2)
    sim.start()
    assert sim.of(Notify, sim.pool.reload(sim.now)) == [
        Notify("reloading", "reloading to generation 2")]
    sim.tick()
    assert sim.pool.reload(sim.now) == [Log("info", "reload requested during a reload: it "
                                                    "will follow this one")]
    sim.ready_all()
    acts = sim.tick()
    assert sim.of(Notify, acts) == [Notify("reloading", "reloading to generation 3")]
    for r in sim.of(Retire, acts):
        sim.exit(r.pid, 0)
    sim.tick()
    sim.ready_all()
    acts = sim.tick()
    assert sim.of(Notify, acts) == [Notify("ready")]
    assert sim.pool.last_reload == "ok" and sim.pool.reloads == {"ok": 2, "failed": 0}


def test_a_failed_reload_ends_in_ready_with_the_reason_and_a_refused_one_too():
    sim = Sim(workers=1, max_workers=2)
    sim.start()
    sim.apply(sim.pool.reload(sim.now))
    sim.tick()
    new = max(sim.pool.workers)
    acts = sim.exit(new, policy.EXIT_BOOT_FAILED, note="SyntaxError: bad")
    assert sim.of(Notify, acts) == [Notify("ready")]
    assert sim.pool.last_reload.startswith("failed (a new worker failed to boot")
    assert sim.pool.reload_refused("key 'wrokers' unknown") == [
        Notify("ready", "reload failed: key 'wrokers' unknown")]


def test_a_stop_says_stopping_and_a_reload_it_ends_says_nothing_more():
    sim = Sim(workers=1, max_workers=2)
    sim.start()
    sim.apply(sim.pool.reload(sim.now))
    sim.tick()
    acts = sim.pool.stop(True, sim.now)
    assert sim.of(Notify, acts) == [Notify("stopping", "stopping")]
    assert not sim.of(ReloadDone, acts)[0].ok


# -- failed forks --------------------------------------------------------------------------

def test_a_failed_fork_backs_off_and_at_start_the_breaker_gives_up():
    sim = Sim(workers=1)
    for tries in range(1, policy.BREAKER + 1):
        (spawn,) = sim.of(Spawn, sim.pool.tick(sim.now, sim.beats))
        acts = sim.pool.spawn_failed(spawn, sim.now, "fork failed: Resource temporarily "
                                                     "unavailable")
        assert sim.pool.crashes == tries
        if tries < policy.BREAKER:
            assert sim.of(GiveUp, acts) == []
            due = sim.pool.next_deadline(sim.beats)  # a retry the master is woken for
            assert due == sim.now + policy.BACKOFF_BASE * 2 ** (tries - 1)
            assert sim.pool.tick(sim.now, sim.beats) == []  # not before
            sim.now = due
    (give_up,) = sim.of(GiveUp, acts)
    assert "workers cannot boot (3 tries): no worker forked for slot 0: fork failed" \
        in give_up.message and not give_up.import_failed


def test_a_failed_fork_after_the_start_backs_off_and_never_gives_up():
    sim = Sim(workers=2)
    a, _ = sim.start()
    sim.now += 60
    sim.exit(a, -signal.SIGKILL)
    for _ in range(5):
        (spawn,) = sim.of(Spawn, sim.pool.tick(sim.now, sim.beats))  # not forked: it failed
        assert sim.of(GiveUp, sim.pool.spawn_failed(spawn, sim.now, "pre_fork hook raised")) == []
        sim.now = sim.pool.next_deadline(sim.beats)
    assert len(sim.of(Spawn, sim.tick())) == 1


def test_a_failed_fork_during_a_reload_abandons_it():
    sim = Sim(workers=1, max_workers=2)
    old = sim.start()
    sim.apply(sim.pool.reload(sim.now))
    (spawn,) = sim.of(Spawn, sim.pool.tick(sim.now, sim.beats))
    acts = sim.pool.spawn_failed(spawn, sim.now, "fork failed: Cannot allocate memory")
    (done,) = sim.of(ReloadDone, acts)
    assert not done.ok and "Cannot allocate memory" in done.message
    assert sim.serving() == old and sim.pool.reload_gen is None


def test_a_worker_that_cannot_import_its_handler_makes_an_import_failure():
    sim = Sim(workers=1)
    for _ in range(policy.BREAKER):
        (spawn,) = sim.of(Spawn, sim.pool.tick(sim.now, sim.beats))
        sim.pool.spawned(next(sim.pids), spawn, sim.now)
        (pid,) = sim.pool.workers
        acts = sim.exit(pid, policy.EXIT_IMPORT_FAILED,
                        note="cannot import handler module 'app': ImportError")
        sim.now = sim.pool.next_deadline(sim.beats) or sim.now
    (give_up,) = sim.of(GiveUp, acts)
    assert give_up.import_failed and give_up.note.startswith("cannot import handler module")


# -- samples ------------------------------------------------------------------------------

def test_memory_is_sampled_every_second_and_a_worker_over_max_rss_is_recycled():
    assert Sim(workers=1).pool.samples_due(1000.0) == []  # no max_rss: never sampled
    sim = Sim(workers=2, max_rss=100 * policy.MIB)
    a, b = sim.start()
    assert sim.pool.samples_due(sim.now) == [policy.Sample("rss", (a, b))]
    assert sim.pool.samples_due(sim.now + 0.5) == []
    assert sim.pool.next_deadline(sim.beats) == sim.now + policy.RSS_INTERVAL
    acts = sim.pool.sampled_rss({a: 150 * policy.MIB, b: 50 * policy.MIB}, sim.now)
    assert "uses 150 MiB (max_rss 100 MiB): recycling it" in sim.of(Log, acts)[0].message
    assert sim.pool.sampled_rss({a: 150 * policy.MIB}, sim.now + 1) == []  # said once
    sim.tick()
    sim.ready_all()
    assert sim.of(Retire, sim.tick()) == [Retire(a)]  # once its replacement is ready


def test_the_pool_sizes_an_adaptive_pool_and_lets_it_be_during_a_reload():
    sim = Sim(workers="1..4", max_workers=8)
    (pid,) = sim.start()
    busy = 0.0
    assert sim.pool.samples_due(sim.now) == [policy.Sample("load", (pid,))]
    sim.pool.observe_load({pid: busy}, sim.now)
    sim.now += 0.25
    busy += 0.25  # busy all the time: saturated
    acts = sim.apply(sim.pool.observe_load({pid: busy}, sim.now))
    assert sim.pool.target == 2 and "adaptive pool: all 1 workers busy" in acts[0].message
    sim.apply(sim.pool.reload(sim.now))
    sim.now += 0.25
    busy += 0.25
    assert sim.pool.observe_load({pid: busy}, sim.now) == []  # not during a reload
    assert sim.pool.target == 2
    assert sim.pool.snapshot(sim.now)["adaptive"] == {"min": 1, "max": 4, "load": 1.0}


def test_scale_to_takes_only_a_size_within_one_and_max_workers():
    sim = Sim(workers=2, max_workers=4)
    sim.start()
    for bad in (0, 5, "3", True, None):
        with pytest.raises(ConfigError, match=r"workers must be a whole number from 1 to "
                                              r"max_workers \(4\), not "):
            sim.pool.scale_to(bad)
    sim.apply(sim.pool.scale_to(4))
    assert sim.pool.target == 4


def test_the_snapshot_is_plain_data():
    sim = Sim(workers=2)
    a, b = sim.start()
    sim.now += 5
    snap = sim.pool.snapshot(sim.now)
    assert snap["workers"] == [
        {"pid": a, "slot": 0, "generation": 1, "state": "ready", "age": 5.0},
        {"pid": b, "slot": 1, "generation": 1, "state": "ready", "age": 5.0}]
    assert (snap["generation"], snap["target"], snap["max_workers"], snap["adaptive"]) == \
        (1, 2, 4, None)


def test_new_settings_above_the_slots_made_at_start_are_capped_and_said_so():
    sim = Sim(workers=2)  # max_workers 4: four slots
    acts = sim.pool.reconfigure(Config(workers=3, max_workers=8), slots=4)
    assert "max_workers 8 is more than the 4 slots made at start" in acts[0].message
    assert sim.pool.cfg.max_workers == 4 and sim.pool.target == 3


# -- the upgrade's rules --------------------------------------------------------------------

def test_when_an_upgrade_is_refused():
    plan = upgrade.Plan(argv=["python3"], cwd="/", listeners=[])
    assert upgrade.refusal(plan, 1234, False, False) == ""
    assert "needs the `prefork serve` command" in upgrade.refusal(None, 1234, False, False)
    assert "as PID 1 of its namespace" in upgrade.refusal(plan, 1, False, False)
    assert upgrade.refusal(plan, 1234, True, False) == "an upgrade is in progress"
    assert upgrade.refusal(plan, 1234, False, True) == "the master is stopping"


def test_the_new_master_is_overdue_once():
    due = upgrade.Deadline(at=100.0, after=60.0)
    assert not due.overdue(99.9)
    assert due.overdue(100.0)
    assert not due.overdue(200.0) and due.at is None  # said once: its exit ends it


def test_reloading_is_said_before_the_settings_are_read_and_once():
    sim = Sim(workers=1, max_workers=2)
    sim.start()
    assert sim.pool.reload_starting() == [Notify("reloading", "reading the settings again")]
    acts = sim.pool.reload(sim.now)  # the settings were good: the generation's number follows
    assert sim.of(Notify, acts) == [Notify("status", "reloading to generation 2")]
    sim.tick()
    # Another SIGHUP meanwhile: nothing said yet; bad settings this time say so, and
    # READY=1 waits for the reload under way.
    assert sim.pool.reload_starting() == []
    assert sim.pool.reload_refused("bad toml") == [Notify("status", "reload failed: bad toml")]
    sim.ready_all()
    assert sim.of(Notify, sim.tick()) == [Notify("ready")]
    # With no reload under way, bad settings end the one just said: READY=1.
    sim.pool.reload_starting()
    assert sim.pool.reload_refused("bad toml") == [Notify("ready", "reload failed: bad toml")]


def test_each_exit_is_counted_once_by_why_the_worker_went():
    sim = Sim(workers=3, max_workers=6, timeout=10)
    a, b, c = sim.start()
    sim.now += 60
    sim.exit(a, 0)  # on its own, in good order: its max_requests
    sim.exit(b, -signal.SIGSEGV)  # on its own, not in good order
    sim.apply(sim.pool.over_limit(c, "uses 600 MiB", sim.now))
    sim.beats[c] = sim.now  # c beats: it serves on while its replacement boots
    sim.tick()
    sim.ready_all()
    assert Retire(c) in sim.tick()  # once a new worker is ready to take its place
    sim.exit(c, 0)
    sim.tick()
    sim.ready_all()
    sim.apply(sim.pool.scale(-1))
    (scaled,) = [a.pid for a in sim.of(Retire, sim.tick())]
    sim.exit(scaled, 0)
    sim.apply(sim.pool.reload(sim.now))
    sim.tick()
    sim.ready_all()
    sim.tick()
    for pid in [a.pid for a in sim.of(Retire) if a.pid != scaled and a.pid != c]:
        sim.exit(pid, 0)
    d, e = sim.serving()
    sim.now += 10
    sim.beats[e] = sim.now  # e beats; d has been silent past timeout
    sim.tick()  # d: its stack, then SIGKILL
    sim.now += policy.DUMP_GRACE
    sim.tick()
    sim.exit(d, -signal.SIGKILL)
    sim.ready_all()
    sim.apply(sim.pool.stop(True, sim.now))
    for pid in list(sim.pool.workers):
        sim.exit(pid, 0)
    assert sim.pool.exits == {"max_requests": 1, "crash": 1, "max_rss": 1, "scale": 1,
                              "reload": 2, "timeout": 1, "stop": 2, "boot": 0}


def test_accept_grace_serves_on_not_ready_then_stops_and_a_second_stop_is_at_once():
    sim = Sim(workers=2, accept_grace=5)
    first = sim.start()
    acts = sim.apply(sim.pool.drain(sim.now))
    assert Notify("stopping", "stopping") in acts and not sim.of(Retire, acts)
    assert sim.pool.next_deadline(sim.beats) == sim.now + 5
    assert sim.apply(sim.pool.reload(sim.now)) == []  # no reload while stopping
    sim.now += 1
    sim.exit(first[0], -signal.SIGSEGV)  # still serving: a crashed worker is replaced
    assert len(sim.of(Spawn, sim.tick())) == 1
    sim.ready_all()
    sim.now += 4
    assert policy.Drained() in sim.tick()
    acts = sim.apply(sim.pool.stop(True, sim.now))
    assert len(sim.of(Retire, acts)) == 2 and not sim.of(Notify, acts)  # said once
    # A second TERM while draining stops at once.
    sim = Sim(workers=1, accept_grace=5)
    sim.start()
    sim.apply(sim.pool.drain(sim.now))
    assert len(sim.of(Retire, sim.apply(sim.pool.drain(sim.now)))) == 1
