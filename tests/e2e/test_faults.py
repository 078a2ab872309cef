"""Faults under continuous load through nginx: what a client sees when workers die."""

import os
import random
import signal

from ..prefork.harness import Running, wait_for
from .test_nginx import HttpLoad, Nginx, free_port, pytestmark  # noqa: F401 - skip without nginx

KILLS = 10


def test_killing_random_workers_fails_at_most_the_requests_in_flight(sockdir, tmp_path):
    os.chmod(sockdir, 0o711)
    sock = os.path.join(sockdir, "shop.sock")
    rng = random.Random(5)
    with Running(sockdir, cli=["--bind", f"unix:{sock}", "--socket-group", "nogroup",
                               "--workers", "4", "examples.hello:Hello"]) as m:
        nginx = Nginx(str(tmp_path / "nginx"), sock, free_port())
        load = HttpLoad(nginx)
        load.start()
        try:
            for _ in range(KILLS):
                wait_for(lambda n=load.ok: load.ok > n + 20, "requests between kills")
                victim = rng.choice(m.worker_pids())
                os.kill(victim, signal.SIGKILL)
                m.wait_workers(lambda w, v=victim: len(w) == 4 and v not in w, "the refill")
            wait_for(lambda n=load.ok: load.ok > n + 20, "requests after the last kill")
        finally:
            load.stop_event.set()
            load.join(30)
            nginx.close()
        # Each killed worker had at most one request in flight (one at a time).
        assert len(load.bad) <= KILLS, load.bad
        assert load.ok > 200
        assert m.log().count("killed by SIGKILL") == KILLS


def test_after_the_master_is_killed_a_new_one_binds_the_same_socket(sockdir, tmp_path):
    import psutil
    sock = os.path.join(sockdir, "shop.sock")
    args = ["--bind", f"unix:{sock}", "--workers", "2", "examples.hello:Hello"]
    first = Running(sockdir, cli=args)
    try:
        workers = first.worker_pids()
        first.signal(signal.SIGKILL)
        first.wait_exit()
        # Idle workers see their master's end of the socket pair close, and leave.
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() !=
                                 psutil.STATUS_ZOMBIE for p in workers), "the orphans to leave",
                 timeout=5)
        assert os.path.exists(sock)  # left behind by the killed master: stale now
    finally:
        first.close()
    with Running(sockdir, cli=args) as second:  # replaces the stale file at once
        assert second.worker_pids()
        assert "held by a live server" not in second.log()
