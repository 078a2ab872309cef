"""The master with real forks, signals and sockets: the pool, signals, and death."""

import os
import re
import signal
import subprocess
import sys

import psutil
import pytest

from prefork import sched

from .harness import Load, Running, wait_for, wait_gone


def test_pool_size_titles_and_serving(sockdir):
    with Running(sockdir, settings=["workers=3", "name=probe"]) as m:
        workers = m.workers()
        assert len(workers) == 3
        assert all(re.fullmatch(r"prefork: worker \d gen 1 \[probe\]", t) for t in workers.values())
        assert psutil.Process(m.pid).cmdline()[0] == "prefork: master [probe]"
        answers = {int(m.request()) for _ in range(20)}
        assert answers <= set(workers)
        assert m.pid not in answers


def test_a_killed_worker_is_reaped_and_replaced(sockdir):
    with Running(sockdir, settings=["workers=2"]) as m:
        before = m.worker_pids()
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        after = m.wait_workers(lambda w: len(w) == 2 and victim not in w, "a replacement")
        # Reaped (not a zombie: the pid is gone) and logged before the replacement.
        assert not psutil.pid_exists(victim)
        assert f"worker {victim} (gen 1) killed by SIGKILL" in m.log()
        assert set(after) - set(before)
        assert int(m.request()) in after


@pytest.mark.parametrize("line,how", [(b"exit", "exited with status 7"),
                                      (b"segv", "killed by SIGSEGV"),
                                      (b"interrupt", "exited with status 1")])
def test_how_a_worker_died_is_logged_and_the_master_carries_on(sockdir, line, how):
    with Running(sockdir, settings=["workers=1"]) as m:
        (pid,) = m.worker_pids()
        assert m.request(line) == b""
        m.wait_workers(lambda w: len(w) == 1 and pid not in w, "a replacement")
        assert f"worker {pid} (gen 1) {how}" in m.log()  # logged before the replacement
        assert m.request() != b""


def test_an_exception_in_a_handler_goes_to_the_servers_handle_error_in_the_worker(sockdir):
    with Running(sockdir, server="apps:Guarded", settings=["workers=1"]) as m:
        (pid,) = m.worker_pids()
        assert m.request(b"raise") == b"handle_error ran in the worker\n"
        assert m.request(b"deny") == b""  # verify_request refused it
        assert int(m.request()) == pid  # same worker: an exception is no crash


def test_an_exception_in_a_handler_is_logged_with_its_request_and_the_worker_goes_on(
        sockdir):
    from ..wsgi.helpers import Client
    with Running(sockdir, cli=["--workers", "1", "wsgiapps:application"],
                 pythonpath=[os.path.join(os.path.dirname(__file__), "..", "wsgi")]) as m:
        (pid,) = m.worker_pids()
        for path, status in (("/fail", 500), ("/", 200)):  # and the worker goes on
            c = Client(m.address)
            try:
                assert c.get(path)[0] == status
            finally:
                c.close()
        log = m.log()
        assert f"ERROR [{pid}] error handling request 'GET /fail HTTP/1.1' from 127.0.0.1" \
            in log, log
        assert "Traceback" in log and "RuntimeError: failing on purpose" in log
        assert m.worker_pids() == [pid]


def test_ttin_and_ttou_change_the_pool_within_bounds(sockdir):
    with Running(sockdir, settings=["workers=2", "max_workers=3"]) as m:
        m.signal(signal.SIGTTIN)
        m.wait_workers(lambda w: len(w) == 3, "a third worker")
        m.signal(signal.SIGTTIN)  # at max_workers: stays at 3
        wait_for(lambda: "workers stay at 3" in m.log(), "the refusal in the log")
        # Signals of one kind sent back to back may merge into one (Unix does not
        # queue them), so each waits for the effect of the one before.
        for left in (2, 1):
            m.signal(signal.SIGTTOU)
            m.wait_workers(lambda w, n=left: len(w) == n, f"{left} workers left")
        m.signal(signal.SIGTTOU)
        wait_for(lambda: "workers stay at 1" in m.log(), "the floor in the log")


def test_hup_starts_a_new_generation(sockdir):
    with Running(sockdir, server="apps:Hooked", settings=["workers=2"]) as m:
        old = m.worker_pids()
        m.signal(signal.SIGHUP)
        m.expect("RELOADING=1")
        m.expect("READY=1")
        new = m.wait_workers(lambda w: len(w) == 2 and not set(w) & set(old), "old gone")
        assert all(" gen 2" in t for t in new.values())
        log = m.log()
        assert "hook on_reload" in log and "reload done: generation 2 serving" in log
        assert log.count("hook pre_fork") == 4 and log.count("hook post_fork") == 4
        wait_for(lambda: m.log().count("hook worker_exit") == 2, "old workers' exit hooks")


def test_term_is_a_graceful_stop(sockdir):
    m = Running(sockdir, settings=["workers=2"])
    try:
        workers = m.worker_pids()
        m.signal(signal.SIGTERM)
        m.expect("STOPPING=1")
        assert m.wait_exit() == 0
        assert not any(psutil.pid_exists(p) for p in workers)
        assert m.log().count("exited with status 0") == 2
    finally:
        m.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT])
def test_int_and_quit_are_a_fast_stop(sockdir, signum):
    m = Running(sockdir, settings=["workers=2"])
    try:
        with m.hang():
            m.signal(signum)
            assert m.wait_exit() == 0  # not held up by the hung request
        assert "fast stop" in m.log()
    finally:
        m.close()


def test_shutdown_from_another_thread_stops_the_master(sockdir):
    m = Running(sockdir, settings=["workers=1"])
    try:
        m.proc.stdin.close()  # serve.py calls server.shutdown() from a thread
        assert m.wait_exit() == 0
        assert "STOPPING=1" in m.expect("STOPPING=1")
    finally:
        m.close()


def test_usr1_reopens_logs_in_master_and_workers(sockdir):
    with Running(sockdir, settings=["workers=2"]) as m:
        workers = m.worker_pids()
        m.signal(signal.SIGUSR1)
        wait_for(lambda: "log files reopened" in m.log(), "the reopen")
        assert m.worker_pids() == workers  # USR1 does not kill workers
        assert m.request() != b""


def test_killing_the_master_leaves_no_worker_behind(sockdir):
    m = Running(sockdir, settings=["workers=3"])
    try:
        workers = m.worker_pids()
        # Requests in flight as the master dies; one may be left waiting in the
        # backlog when the last worker goes, hence the short client timeout.
        with Load(m, max_requests=1000, timeout=1.0) as load:
            wait_for(lambda: load.ok >= 10, "some requests served")
            m.signal(signal.SIGKILL)
            m.wait_exit()
        # Each worker sees its control socket close and exits after its request.
        wait_gone(workers, "orphaned workers to exit", timeout=5)
    finally:
        m.close()


def test_a_worker_stuck_in_a_request_outlives_a_killed_master_by_timeout_at_most(sockdir):
    # It never comes back to see its socket pair closed; the kernel tells it instead.
    m = Running(sockdir, settings=["workers=2", "timeout=2"])
    stuck = None
    try:
        stuck = m.hang()
        workers = m.worker_pids()
        m.signal(signal.SIGKILL)
        m.wait_exit()
        wait_gone(workers, "the stuck worker to end, timeout after the master", timeout=15)
    finally:
        if stuck is not None:
            stuck.close()
        m.close()


def test_an_error_in_the_master_loop_is_logged_and_the_loop_goes_on(sockdir):
    with Running(sockdir, server="apps:FlakyMaster", settings=["workers=1", "max_workers=4"]) as m:
        for size in (2, 3):  # a few turns of the loop, one of which fails
            m.signal(signal.SIGTTIN)
            m.wait_workers(lambda w, n=size: len(w) == n, f"{size} workers")
        wait_for(lambda: "error in the master loop" in m.log(), "the logged error")
        assert "service_actions failed on purpose" in m.log()
        assert m.request() != b""


@pytest.mark.parametrize("kind", ["udp", "unix", "unixgram"])
def test_other_socket_types(sockdir, kind):
    handler = "apps:DatagramProbe" if kind in ("udp", "unixgram") else "apps:Probe"
    with Running(sockdir, server=kind, handler=handler, settings=["workers=2"]) as m:
        pids = set(m.worker_pids())
        for _ in range(5):
            answer = m.request(b"hi")
            assert int(answer.split()[0]) in pids


def test_a_class_handler_is_used_as_given(sockdir):
    with Running(sockdir, handler="class:apps:Probe", settings=["workers=1", "preload=true"]) as m:
        assert int(m.request()) in m.worker_pids()


def test_what_a_preloaded_application_printed_is_written_once_not_by_every_worker(sockdir):
    # stdout a file, unbuffered mode off: the import's line waits in the master's buffer
    # as it forks; each worker writes its own buffer as it exits.
    with Running(sockdir, cli=["--workers", "3", "--preload", "loud:Handler"],
                 env={"PYTHONUNBUFFERED": ""}) as m:
        assert m.request() == b"loud\n"
        m.signal(signal.SIGTERM)
        assert m.wait_exit() == 0
        assert m.log().count("loud: imported") == 1


def test_a_failed_pre_fork_is_retried_after_a_back_off_and_the_pool_gets_ready(sockdir):
    # The policy hears of the failure (a young death): the fork is retried when the
    # back-off is over, though nothing else wakes the master, and READY=1 follows.
    with Running(sockdir, server="apps:PreForkFailsTwice", settings=["workers=1"]) as m:
        assert int(m.request()) in m.workers()
        log = m.log()
        assert log.count("pre_fork hook failed: worker not started") == 2
        assert "2 young deaths in a row: next fork in 0.2s" in log


def test_a_pre_fork_that_always_fails_ends_the_start_with_a_reason(sockdir):
    with Running(sockdir, server="apps:PreForkAlwaysFails", settings=["workers=1"],
                 ready=False) as m:
        assert m.wait_exit() == 1
        assert "serve: error: workers cannot boot (3 tries): no worker forked for slot 0: " \
            "pre_fork hook raised RuntimeError: no fork today" in m.log()
        assert m.workers() == {}


def _slice(pid):
    """A process's CPU time slice in ns, as /proc/PID/sched shows it (None if not)."""
    try:
        with open(f"/proc/{pid}/sched") as f:
            for line in f:
                if line.startswith("se.slice"):
                    return int(line.partition(":")[2])
    except OSError:
        pass
    return None


def test_the_master_runs_with_a_short_cpu_slice_and_its_workers_with_the_default(sockdir):
    # So that under full load it answers a signal at once (prefork/sched.py); the
    # workers share the cores as any task does.
    probe = subprocess.run(
        [sys.executable, "-c", "from prefork import sched; sched.shorten(); "
         "print(open('/proc/self/sched').read())"], capture_output=True, text=True)
    if f"{sched.SLICE_NS}\n" not in probe.stdout.replace(" ", ""):
        pytest.skip("this kernel keeps no slice a task asks for (Linux 6.12 and later do)")
    default = _slice(os.getpid())
    with Running(sockdir, settings=["workers=2"]) as m:
        assert _slice(m.pid) == sched.SLICE_NS
        first = m.worker_pids()
        assert [_slice(pid) for pid in first] == [default, default]
        m.signal(signal.SIGHUP)  # a new generation's workers too
        new = m.wait_workers(lambda w: len(w) == 2 and not set(w) & set(first),
                             "a new generation")
        assert [_slice(pid) for pid in new] == [default, default]


def test_while_a_stop_serves_out_accept_grace_no_upgrade_reload_or_scale_begins(sockdir):
    ctl = os.path.join(sockdir, "ctl")
    with Running(sockdir, cli=["--control", ctl, "--accept-grace", "30", "--workers", "1",
                               "apps:Probe"]) as m:
        m.signal(signal.SIGTERM)
        m.expect("STOPPING=1")
        m.signal(signal.SIGUSR2)
        wait_for(lambda: "upgrade (SIGUSR2) refused: the master is stopping" in m.log()
                 or None, "the upgrade refused")
        for args, said in ((["reload"], "reload refused: the master is stopping"),
                           (["scale", "3"], "scale refused: the master is stopping")):
            out = subprocess.run([sys.executable, "-m", "prefork", *args, "--control", ctl],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode != 0 and out.stderr.strip() == f"prefork: error: {said}"
        assert len(m.worker_pids()) == 1
        m.signal(signal.SIGTERM)  # a second TERM: at once
        assert m.wait_exit() == 0


def test_the_control_socket_answers_many_clients_at_once_and_refuses_deep_nesting(sockdir):
    import json
    import socket
    import threading

    from prefork.command.client import ask

    ctl = os.path.join(sockdir, "ctl")
    with Running(sockdir, cli=["--control", ctl, "--workers", "1", "apps:Probe"]) as m:
        replies, start = [], threading.Barrier(40)

        def client():
            start.wait()
            replies.append(ask(ctl, {"cmd": "status"})["master"]["pid"])
        threads = [threading.Thread(target=client) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert replies == [m.pid] * 40
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(ctl)
            s.sendall(b"[" * 3000 + b"\n")
            reply = json.loads(s.makefile().readline())
        assert reply == {"ok": False, "error": "bad request: nested too deep"}
        assert "Traceback" not in m.log()
