"""Worker limits with real workers: requests, silence, memory, boot, crash loops."""

import os
import re
import signal
import time

from prefork import policy

from .harness import Load, Running, Sampler, wait_for

BOOT_FAILED = re.compile(r"worker (\d+) \(gen \d+\) failed to boot")  # the master's line


def test_max_requests_recycles_workers_with_no_failed_request(sockdir):
    with Running(sockdir, settings=["workers=2", "max_requests=5", "max_requests_jitter=3"]) as m:
        with Load(m, max_requests=60) as load:
            wait_for(lambda: load.ok + len(load.errors) >= 60, "60 requests")
        assert load.errors == []
        served = {int(a) for a in load.answers}
        # 60 requests, 2 workers: one at least served past 5 + 3 and is due; it serves on
        # while its replacement boots, then goes.
        wait_for(lambda: served - set(m.workers()) or None, "a worker that served recycled")
        wait_for(lambda: "exited with status 0" in m.log() or None, "the exit in good order")
        assert m.request()


def test_one_request_at_a_time_through_constant_recycling(sockdir):
    # Workers that live for 1 or 2 requests: each exit, each fork and each "ready" race
    # the next request.  A wake-up or a fork owed to the client must never be lost:
    # every request is answered, none slowly, and no worker that served is taken for
    # one that failed to boot.
    with Running(sockdir, settings=["workers=2", "max_requests=1", "max_requests_jitter=1"]) as m:
        with Load(m, max_requests=1500, timeout=5) as load:
            wait_for(lambda: load.ok + len(load.errors) >= 1500, "1500 requests", timeout=60)
        assert load.errors == []
        assert max(load.latencies) < 1.0, sorted(load.latencies)[-5:]
        assert "failed to boot" not in m.log() and "young deaths" not in m.log()


def test_a_silent_worker_has_its_stack_logged_and_is_replaced(sockdir):
    with Running(sockdir, settings=["workers=2", "timeout=1"]) as m:
        with Load(m, line=b"hang", max_requests=1, timeout=30) as hung:
            wait_for(lambda: "silent for 1s" in m.log(), "the timeout to fire")
            # Meanwhile the other worker serves.
            assert m.request() != b""
            wait_for(lambda: hung.errors or hung.ok, "the hung request to end")
        log = m.log()
        assert "spin_forever" in log and "apps.py" in log  # the Python stack of the hang
        hung_pid = int(re.search(r"worker (\d+) silent for 1s", log)[1])
        m.wait_workers(lambda w: len(w) == 2 and hung_pid not in w, "the pool refilled")
        assert f"worker {hung_pid} (gen 1) killed by SIGKILL (silent for 1s)" in m.log()


def test_max_rss_recycles_after_the_request_with_no_failed_request(sockdir):
    with Running(sockdir, settings=["workers=1", f"max_rss={48 * 1024 * 1024}"]) as m:
        (pid,) = m.worker_pids()
        with Load(m) as load:
            assert int(m.request(b"leak")) == pid  # the request that passes the limit completes
            m.wait_workers(lambda w: len(w) == 1 and pid not in w, "a fresh worker")
            wait_for(lambda: load.ok > 10, "requests after the recycle")
        assert load.errors == []
        assert f"worker {pid} uses" in m.log()


def write_module(directory, name, body):
    with open(os.path.join(directory, f"{name}.py"), "w") as f:
        f.write(body)


def test_a_handler_that_cannot_import_ends_the_start_with_a_clear_error(sockdir, tmp_path):
    write_module(tmp_path, "broken", "raise RuntimeError('no database configured')\n")
    m = Running(sockdir, handler="broken:Handler", pythonpath=[str(tmp_path)],
                settings=["workers=2", "max_workers=3"], ready=False)
    try:
        most = 0
        while m.proc.poll() is None:  # sampled until the master gives up
            most = max(most, 1 + len(m.workers()))
            if time.monotonic() - m.started > 20:
                raise AssertionError("the master did not give up")
        assert m.proc.returncode == 1
        assert most <= 3 + 1, "more than max_workers + 1 processes"
        log = m.log()
        assert "serve: error: workers cannot boot" in log
        assert "RuntimeError: no database configured" in log
        assert len(set(BOOT_FAILED.findall(log))) == policy.BREAKER  # workers that tried
    finally:
        m.close()


def test_a_handler_path_that_does_not_exist(sockdir):
    m = Running(sockdir, handler="no_such_module:Handler", settings=["workers=1"], ready=False)
    try:
        assert m.wait_exit() == 1
        assert "No module named 'no_such_module'" in m.log()
    finally:
        m.close()


def test_boot_timeout_bounds_a_hanging_import(sockdir, tmp_path):
    gate = os.path.join(sockdir, "never")
    os.mkfifo(gate)
    try:
        # Opening a FIFO for reading blocks until a writer comes: none ever does.
        write_module(tmp_path, "stuck", f"open({gate!r}).read()\n")
        m = Running(sockdir, handler="stuck:Handler", pythonpath=[str(tmp_path)],
                    settings=["workers=1", "boot_timeout=0.3"], ready=False)
        try:
            assert m.wait_exit() == 1
            log = m.log()
            assert "not ready after 0.3s (boot_timeout)" in log
            assert "stuck.py" in log  # the stack shows where the import hung
        finally:
            m.close()
    finally:
        os.unlink(gate)


def test_a_crash_loop_at_run_time_backs_off_instead_of_forking_in_a_loop(sockdir, tmp_path):
    write_module(tmp_path, "flaky", "from apps import Probe as Handler\n")
    with Running(sockdir, handler="flaky:Handler", pythonpath=[str(tmp_path)],
                 settings=["workers=1"]) as m:
        write_module(tmp_path, "flaky", "raise ImportError('broken after deploy')\n")
        with Sampler(m) as sampler:
            started = time.monotonic()
            os.kill(m.worker_pids()[0], signal.SIGKILL)
            wait_for(lambda: len(set(BOOT_FAILED.findall(m.log()))) >= 4, "four failed boots")
            elapsed = time.monotonic() - started
        # The delays before the 2nd, 3rd and 4th tries alone add up to 0.1+0.2+0.4 s.
        assert elapsed >= 0.7
        assert sampler.most <= 1
        assert m.proc.poll() is None  # it served before: it keeps trying, never gives up
        write_module(tmp_path, "flaky", "from apps import Probe as Handler\n")
        m.wait_workers(lambda w: len(w) == 1 and "gen" in next(iter(w.values())), "recovery")
        wait_for(lambda: m.request(timeout=60) != b"", "the fixed code to serve")
