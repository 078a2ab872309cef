"""What every test must leave as it found it: processes, fds, threads, signal handlers.

The autouse fixture ``no_leaks`` takes stock before each test and checks after it:
a child process (running or a zombie) it started, a file descriptor, a thread, a changed
signal handler or a socket file left in ``sockdir`` fails the test that left it.
Leftover children are killed and reaped so that one failure does not cascade.
"""

import gc
import os
import shutil
import signal
import tempfile
import threading

import psutil
import pytest

# SIGALRM belongs to pytest-timeout, which arms it around each test.
_SIGNALS = [s for s in signal.valid_signals()
            if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGALRM)]


def _open_fds():
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd listdir() itself used, closed by now
    return fds


def _handlers():
    return {s: signal.getsignal(s) for s in _SIGNALS}


def _kill_and_reap(children):
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    for child in children:
        try:
            os.waitpid(child.pid, 0)
        except ChildProcessError:
            pass  # a grandchild: init reaps it


@pytest.fixture(autouse=True)
def no_leaks():
    me = psutil.Process()
    children_before = {c.pid for c in me.children()}
    fds_before = _open_fds()
    threads_before = set(threading.enumerate())
    handlers_before = _handlers()
    yield
    problems = []

    # A thread a test stopped may still be on its way out: give each a bounded join.
    threads = [t for t in threading.enumerate() if t not in threads_before]
    for t in threads:
        t.join(5)
    threads = [t for t in threads if t.is_alive()]
    if threads:
        problems.append(f"threads left running: {threads}")

    # A child the test found running (a container a module fixture booted) is not the
    # test's to end, nor is what runs under it; the fixture that started it checks it.
    children = []
    for child in me.children():
        if child.pid not in children_before:
            children.append(child)
            try:
                children += child.children(recursive=True)
            except psutil.Error:
                pass
    if children:
        problems.append("child processes left: "
                        + ", ".join(f"{c.pid} ({c.status()})" for c in children))
        _kill_and_reap(children)

    gc.collect()  # a socket held only by a reference cycle is garbage, not a leak
    fds = {fd: target for fd, target in _open_fds().items()
           if fd not in fds_before or fds_before[fd] != target}
    if fds:
        problems.append(f"file descriptors left open: {fds}")

    changed = {signal.Signals(s).name for s, h in _handlers().items() if handlers_before[s] != h}
    if changed:
        problems.append(f"signal handlers changed: {sorted(changed)}")

    assert not problems, "; ".join(problems)


@pytest.fixture
def sockdir():
    """A short directory for Unix socket paths (sun_path holds ~107 bytes); must be left empty."""
    path = tempfile.mkdtemp(prefix="pf-", dir="/tmp")
    yield path
    left = os.listdir(path)
    shutil.rmtree(path)
    assert not left, f"files left in the socket directory: {left}"
