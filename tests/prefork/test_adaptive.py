"""The adaptive pool (workers MIN..MAX): the decisions alone, then a real pool under load."""

import json
import os
import subprocess
import sys
import threading

from prefork.adaptive import GROW_AT, INTERVAL, STEP_CAP, Adapter

from .harness import ROOT, Running, Sampler, wait_for


def busy_for(adapter, pids, fraction, start=0.0, rounds=1, target=None):
    """Feed *rounds* samples where each of *pids* was busy *fraction* of the time."""
    decisions = []
    t = start
    target = target or len(pids)
    totals = dict.fromkeys(pids, 0.0)
    adapter.observe(t, dict(totals), target)
    for _ in range(rounds):
        t += INTERVAL
        for p in pids:
            totals[p] += INTERVAL * fraction
        change = adapter.observe(t, dict(totals), target)[0]
        decisions.append(change)
        target += change  # the pool follows; new workers are not ready (not in pids)
    return decisions


def test_a_saturated_pool_grows_with_a_doubling_step_up_to_the_cap():
    a = Adapter(2, 64)
    pids = list(range(100, 102))
    t, totals, target, steps = 0.0, dict.fromkeys(pids, 0.0), 2, []
    a.observe(t, totals, target)
    for _ in range(7):
        t += INTERVAL
        totals = {p: totals.get(p, 0.0) + INTERVAL for p in pids}  # every one busy
        change, why = a.observe(t, totals, target)
        steps.append(change)
        target += change
        pids = list(range(100, 100 + target))  # the new workers are ready by the next look
        totals = {p: totals.get(p, 0.0) for p in pids}
        a.observe(t, totals, target)
    assert steps == [1, 2, 4, 8, 8, 8, 8] and STEP_CAP == 8
    assert "busy" in why


def test_growth_stops_at_max_and_waits_for_new_workers_to_be_ready():
    a = Adapter(2, 3)
    assert busy_for(a, [1, 2], 1.0, rounds=3) == [1, 0, 0]  # 3 wanted, only 2 ready
    b = Adapter(2, 3)
    assert busy_for(b, [1, 2, 3], 1.0, rounds=2) == [0, 0]  # at max already


def test_a_pool_below_saturation_does_not_grow_and_the_step_resets():
    a = Adapter(2, 16)
    assert busy_for(a, [1, 2, 3, 4], GROW_AT - 0.1, rounds=4) == [0, 0, 0, 0]
    a = Adapter(1, 16)
    assert busy_for(a, [1], 1.0, rounds=1) == [1]
    assert a.step == 2
    busy_for(a, [1, 2], 0.5, start=10.0, rounds=1, target=2)
    assert a.step == 1


def test_idle_surplus_shrinks_one_worker_per_period_never_below_min():
    a = Adapter(2, 16, shrink_after=2.0)
    pids = [1, 2, 3, 4, 5, 6]
    decisions = busy_for(a, pids, 0.0, rounds=int(6 / INTERVAL))
    # The first look starts the clock; then one worker per 2 s of idle surplus.
    assert decisions.count(-1) == 2
    assert decisions.index(-1) == int(2.0 / INTERVAL)
    a = Adapter(4, 16, shrink_after=0.5)
    assert -1 not in busy_for(a, [1, 2, 3, 4], 0.0, rounds=10)  # at MIN already
    a = Adapter(2, 16, shrink_after=0.5)
    assert -1 not in busy_for(a, [1, 2, 3, 4], 0.6, rounds=10)  # idle 1.6 <= SPARE


def test_a_busy_moment_restarts_the_shrink_clock():
    def first_shrink(busy_at):
        """The look (counted in intervals) at which one worker is retired."""
        a = Adapter(2, 16, shrink_after=2 * INTERVAL)
        totals = dict.fromkeys(range(6), 0.0)
        for i in range(10):
            if i == busy_at:
                totals = {p: v + INTERVAL * 0.8 for p, v in totals.items()}  # idle 1.2 < SPARE
            if a.observe(i * INTERVAL, dict(totals), 6)[0] == -1:
                return i
        return None
    assert first_shrink(busy_at=None) == 3  # idle from the look at 1, one fewer 2 later
    assert first_shrink(busy_at=2) == 5  # the clock starts again after the busy interval


def _slow_clients(m, stop, count, seconds="0.05"):
    def client():
        while not stop.is_set():
            try:
                m.request(f"sleep {seconds}".encode(), timeout=10)
            except OSError as e:
                errors.append(repr(e))
    errors = []
    threads = [threading.Thread(target=client) for _ in range(count)]
    for t in threads:
        t.start()
    return threads, errors


def test_a_real_pool_grows_under_load_and_shrinks_when_it_ends(sockdir):
    ctl = os.path.join(sockdir, "ctl.sock")
    with Running(sockdir, cli=["--workers", "2..6", "--max-workers", "6", "--shrink-after",
                               "0.5", "--control", ctl, "apps:Probe"]) as m:
        stop = threading.Event()
        with Sampler(m) as sampler:
            threads, errors = _slow_clients(m, stop, 8)
            try:
                m.wait_workers(lambda w: len(w) == 6, "the pool to grow to its maximum")
                status = subprocess.run(
                    [sys.executable, "-m", "prefork", "status", "--json", "--control", ctl],
                    capture_output=True, text=True, timeout=20, env=dict(os.environ,
                                                                         PYTHONPATH=ROOT))
                data = json.loads(status.stdout)
                assert data["adaptive"]["min"] == 2 and data["adaptive"]["max"] == 6
                assert data["target"] == 6 and data["adaptive"]["load"] > 4
            finally:
                stop.set()
                for t in threads:
                    t.join(20)
            m.wait_workers(lambda w: len(w) == 2, "the pool to shrink back to its minimum")
        assert sampler.most <= 6  # max_workers holds at every instant
        assert errors == []
        log = m.log()
        assert "adaptive pool: all 2 workers busy" in log and "1 more, up to 6" in log
        assert "2 more, up to 6" in log  # the step doubled while the load stayed
        assert log.count("one fewer, down to 2") == 4
        wait_for(lambda: m.request(), "an answer from the smaller pool")
