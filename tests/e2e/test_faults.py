"""Faults under continuous load through nginx: what a client sees when workers die,
hang or leak, when a reload brings broken code, and under a storm of reloads.

The long runs are shortened for CI; ``SOAK_TESTS=1`` runs them at full length
(docs/reliability.rst gives the figures of both).
"""

import contextlib
import os
import random
import signal
import threading
import time

import pytest

from ..prefork.harness import HERE as PREFORK_TESTS
from ..prefork.harness import Running, Sampler, wait_for, wait_gone
from .helpers import HttpLoad, Nginx, free_port, http_get, needs_nginx, read_rest

pytestmark = needs_nginx

E2E = os.path.dirname(os.path.abspath(__file__))
SOAK = os.environ.get("SOAK_TESTS") == "1"
KILLS = 60 if SOAK else 10
KILL_EVERY = 1.0
HUP_STORM_SECONDS = 30.0 if SOAK else 4.0
HUP_EVERY = 0.2


def report(case, load, **more):
    """One line of figures per case, shown with ``pytest -s`` (docs/reliability.rst)."""
    extra = "".join(f", {k} {v}" for k, v in more.items())
    print(f"\nfigure: {case}: {load.ok} requests answered, {len(load.bad)} failed{extra}")


@contextlib.contextmanager
def behind_nginx(sockdir, tmp_path, args, pythonpath=()):
    """`prefork serve ARGS` on a Unix socket, nginx in front, and a load running through
    it: yields (master, nginx, load); the load is stopped and joined on the way out."""
    os.chmod(sockdir, 0o711)
    sock = os.path.join(sockdir, "shop.sock")
    with Running(sockdir, cli=["--bind", f"unix:{sock}", "--socket-group", "nogroup", *args],
                 pythonpath=[E2E, *pythonpath]) as m:
        nginx = Nginx(str(tmp_path / "nginx"), sock, free_port())
        load = HttpLoad(nginx, max_requests=500_000, max_seconds=120)
        load.start()
        try:
            wait_for(lambda: load.ok > 20, "the first requests through nginx")
            yield m, nginx, load
            wait_for(lambda n=load.ok: load.ok > n + 20, "requests at the end")
        finally:
            load.stop()
            nginx.close()


@pytest.mark.soak
def test_killing_random_workers_fails_at_most_the_requests_in_flight(sockdir, tmp_path):
    os.chmod(sockdir, 0o711)
    sock = os.path.join(sockdir, "shop.sock")
    rng = random.Random(5)
    with Running(sockdir, cli=["--bind", f"unix:{sock}", "--socket-group", "nogroup",
                               "--workers", "4", "examples.hello:Hello"]) as m:
        # A kill every second (SOAK_TESTS=1: 60 kills, else 10), once the pool is
        # whole again and has answered more requests.  (A second apart, no victim
        # dies young, which the master would take for a crash loop and back off.)
        nginx = Nginx(str(tmp_path / "nginx"), sock, free_port())
        load = HttpLoad(nginx, max_requests=1_000_000, max_seconds=KILLS * 2 + 30)
        load.start()
        pace = threading.Event()  # never set: its wait() keeps the schedule
        try:
            for _ in range(KILLS):
                pace.wait(KILL_EVERY)
                wait_for(lambda n=load.ok: load.ok > n + 20, "requests between kills")
                victim = rng.choice(m.worker_pids())
                os.kill(victim, signal.SIGKILL)
                m.wait_workers(lambda w, v=victim: len(w) == 4 and v not in w, "the refill")
            wait_for(lambda n=load.ok: load.ok > n + 20, "requests after the last kill")
        finally:
            load.stop()
            nginx.close()
        # Each killed worker had at most one request in flight (one at a time).
        report("kill -9 a random worker", load, kills=KILLS)
        assert len(load.bad) <= KILLS, load.bad
        assert load.ok > 200
        assert m.log().count("killed by SIGKILL") == KILLS
        assert "next fork in" not in m.log()  # no back-off: every victim had lived a while


def test_after_the_master_is_killed_its_workers_finish_and_a_new_one_binds_at_once(sockdir):

    sock = os.path.join(sockdir, "shop.sock")
    args = ["--bind", f"unix:{sock}", "--workers", "2", "faultapp:Handler"]
    first = Running(sockdir, cli=args, pythonpath=[E2E])
    try:
        workers = first.worker_pids()
        c, head = http_get("/slow", sock)  # a request in flight in one worker
        first.signal(signal.SIGKILL)
        first.wait_exit()
        answer = read_rest(c, head)  # the busy worker finishes its request...
        finished = time.monotonic()
        assert answer.startswith(b"HTTP/1.0 200") and b"/slow from worker" in answer

        wait_gone(workers, "the orphans to leave", timeout=1.0)  # ...and every worker leaves
        assert time.monotonic() - finished < 1.0
        assert os.path.exists(sock)  # left behind by the killed master: stale now
    finally:
        first.close()
    with Running(sockdir, cli=args, pythonpath=[E2E]) as second:  # replaces the stale file
        assert second.worker_pids()
        assert "held by a live server" not in second.log()


def test_a_hung_handler_is_killed_at_timeout_with_its_stack(sockdir, tmp_path):
    with behind_nginx(sockdir, tmp_path, ["--workers", "3", "--timeout", "1",
                                          "faultapp:Handler"]) as (m, nginx, load):
        started = time.monotonic()
        status, _ = nginx.get("/hang")  # nginx tries it on up to 3 workers, each hangs
        assert status == 502 and time.monotonic() - started < 15
        m.wait_workers(lambda w: len(w) == 3, "the pool to refill")
    report("a hung handler", load, hang_status=status)
    assert load.bad == [] and load.ok > 40  # the others kept serving all along
    log = m.log()
    kills = log.count("silent for 1s (timeout): writing its stack, then killing it")
    assert 1 <= kills <= 3
    assert log.count("in hang_here") >= kills  # each one's Python stack, where it hung
    assert log.count("killed by SIGKILL (silent for 1s)") == kills


def test_a_leaking_handler_is_recycled_at_max_rss_without_a_failed_request(sockdir, tmp_path):
    with behind_nginx(sockdir, tmp_path, ["--workers", "2", "--max-rss", "40M",
                                          "faultapp:Handler"]) as (m, nginx, load):
        leaks = []

        def leak():
            end = time.monotonic() + 60
            while m.log().count("recycling it") < 3 and time.monotonic() < end:
                leaks.append(nginx.get("/leak")[0])
        leaker = threading.Thread(target=leak)
        leaker.start()
        leaker.join(90)
        assert m.log().count("recycling it") >= 3
    report("a leaking handler", load, leak_requests=len(leaks),
           recycled=m.log().count("recycling it"))
    assert set(leaks) == {200} and load.bad == []
    assert "(max_rss 40 MiB): recycling it" in m.log()


def test_a_reload_to_a_broken_module_fails_no_request(sockdir, tmp_path):
    app = tmp_path / "shopapp.py"
    app.write_text("from faultapp import Handler\n")
    with behind_nginx(sockdir, tmp_path, ["--workers", "2", "shopapp:Handler"],
                      pythonpath=[str(tmp_path)]) as (m, nginx, load):
        before = set(m.worker_pids())
        app.write_text("from faultapp import Handler\nraise ImportError('a bad deploy')\n")
        m.signal(signal.SIGHUP)
        m.expect("RELOADING=1")
        failed = m.expect("READY=1")
        assert "reloads: 0 ok, 1 failed, last failed (a new worker failed to boot" in failed
        wait_for(lambda n=load.ok: load.ok > n + 50, "requests after the failed reload")
        assert set(m.worker_pids()) == before  # the old generation serves on
        assert nginx.get()[1].split()[-1].decode().isdigit()
    report("a reload to a broken module", load)
    assert load.bad == []
    assert "a bad deploy" in m.log() and "the previous workers keep serving" in m.log()


@pytest.mark.soak
def test_a_storm_of_reloads_fails_no_request(sockdir, tmp_path):
    with behind_nginx(sockdir, tmp_path, ["--workers", "2", "faultapp:Handler"]) \
            as (m, nginx, load):
        start, sent = time.monotonic(), 0
        while time.monotonic() - start < HUP_STORM_SECONDS:
            m.signal(signal.SIGHUP)
            sent += 1
            # The storm's schedule, not a wait for anything: a HUP every HUP_EVERY.
            time.sleep(max(0.0, start + sent * HUP_EVERY - time.monotonic()))
        # Reloads asked during a reload are queued and follow it; wait for the last.
        # (The test reads no notify message meanwhile: the master must not block on a
        # full notify socket, it drops the message.)
        wait_for(lambda: m.log().rfind("reload done") > m.log().rfind("reload: starting"),
                 "the last reload to finish")
    report(f"HUP every {HUP_EVERY}s for {HUP_STORM_SECONDS:g}s", load, hups=sent,
           reloads_done=m.log().count("reload done"))
    assert load.bad == [] and load.ok > 100
    assert sent >= HUP_STORM_SECONDS / HUP_EVERY - 1


def test_a_handler_that_crashes_at_import_in_workers_ends_the_start(sockdir):
    """A fresh start whose workers cannot import: a clean exit with the reason, and
    never more than max_workers + 1 processes (the master and its workers)."""
    with Running(sockdir, cli=["--workers", "3", "--max-workers", "4", "crashapp:Handler"],
                 pythonpath=[PREFORK_TESTS, E2E], ready=False) as m:
        with Sampler(m) as sampler:
            status = m.wait_exit()
        assert status == 2  # the handler cannot be imported: bad input, as in the pre-check
        err = [line for line in m.log().splitlines() if line.startswith("prefork: error:")]
        assert len(err) == 1 and "RuntimeError: this module only breaks in workers" in err[0]
        assert 1 <= sampler.most <= 4
