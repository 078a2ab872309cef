"""Small parts on their own: settings, the handler loader, the scoreboard, the signal inbox."""

import os
import signal
import time

import pytest

import prefork
from prefork.config import POOL_SETTINGS, Config
from prefork.errors import ConfigError, HandlerImportError
from prefork.loader import import_object
from prefork.scoreboard import BOOTING, BUSY, IDLE, Scoreboard
from prefork.signals import SignalInbox


def test_public_face():
    assert set(prefork.__all__) == {
        "PreforkMixIn", "PreforkTCPServer", "PreforkUDPServer", "PreforkUnixStreamServer",
        "PreforkUnixDatagramServer", "Config", "WorkerInfo", "Deployment", "Ending",
        "PreforkError", "ConfigError", "HandlerImportError", "BootError"}
    for name in prefork.__all__:
        assert hasattr(prefork, name)


def test_every_pool_setting_has_a_class_default_on_the_mixin():
    for name in POOL_SETTINGS:
        assert name in vars(prefork.PreforkMixIn), name
    assert Config.from_object(prefork.PreforkMixIn) == Config()


@pytest.mark.parametrize("settings,message", [
    ({"workers": 0}, "workers: expected a whole number from 1 to 4096 or a range MIN..MAX, "
                     "got 0"),
    ({"workers": "lots"}, "workers: expected a whole number or a range such as 2..16, "
                          "got 'lots'"),
    ({"workers": True}, "workers: expected a whole number from 1 to 4096 or a range "
                        "MIN..MAX, got True"),
    ({"workers": 99_999_999_999}, "workers: expected a whole number from 1 to 4096"),
    ({"workers": "2..9999"}, "1 <= MIN <= MAX <= 4096, got 2..9999"),
    ({"workers": "4..2"}, "workers: expected a range MIN..MAX of whole numbers with "
                          "1 <= MIN <= MAX <= 4096, got 4..2"),
    ({"workers": (0, 3)}, "with 1 <= MIN <= MAX <= 4096, got 0..3"),
    ({"workers": "2..16", "max_workers": 8}, "workers 2..16 must not exceed max_workers (8)"),
    ({"workers": 4, "workers_max": 2}, "workers_max: expected 0 (a fixed pool) or a whole "
                                       "number >= workers (4), got 2"),
    ({"timeout": -1}, "timeout: expected a number of seconds from 0 to 31536000 (a year), "
                      "got -1"),
    ({"timeout": float("nan")}, "timeout: expected a number of seconds from 0 to"),
    ({"boot_timeout": 1e300}, "boot_timeout: expected a number of seconds from 0 to 31536000"),
    ({"backlog": 2 ** 64}, "backlog: expected a whole number from 1 to 2147483647"),
    ({"max_rss": 512}, "max_rss: expected 0 or at least 8M (a size without a unit is in "
                       "bytes), got 512"),
    ({"boot_timeout": 0}, "boot_timeout must be more than 0"),
    ({"workers": 5, "max_workers": 4}, "workers (5) must not exceed max_workers (4)"),
    ({"preload": "yes"}, "preload: expected true or false, got 'yes'"),
    ({"max_rss": -5}, "max_rss: expected a whole number >= 0, got -5"),
    ({"socket_mode": 0o1777}, "socket_mode: expected an octal mode from 000 to 777"),
    ({"log_level": "loud"}, "log_level: expected one of debug, info, warning, error"),
])
def test_bad_settings_name_the_fault(settings, message):
    with pytest.raises(ConfigError) as info:
        Config(**settings)
    assert message in str(info.value)


def test_a_workers_range_makes_an_adaptive_pool():
    cfg = Config(workers="2..16")
    assert (cfg.workers, cfg.workers_max, cfg.max_workers, cfg.adaptive) == (2, 16, 32, True)
    assert Config(workers=(3, 3)).adaptive is False  # a range of one size is fixed
    assert Config(workers=4).workers_max == 0 and not Config(workers=4).adaptive


def test_max_workers_defaults_to_twice_workers():
    assert Config(workers=3).max_workers == 6
    assert Config(workers=3, max_workers=3).max_workers == 3


def test_a_mixed_in_forking_server_is_refused(sockdir):
    import core

    class Confused(prefork.PreforkMixIn, core.ForkingTCPServer):
        pass

    with Confused(("127.0.0.1", 0), core.BaseRequestHandler) as server:
        with pytest.raises(ConfigError, match="drop the other mix-in"):
            server.serve_forever()


@pytest.mark.parametrize("spec,message", [
    ("nocolon", "not of the form MODULE:NAME"),
    ("no_such_module_xyz:Handler", "cannot import handler module 'no_such_module_xyz'"),
    ("socketserver:NoSuchHandler", "has no attribute 'NoSuchHandler'"),
])
def test_loader_errors(spec, message):
    with pytest.raises(HandlerImportError, match=message):
        import_object(spec)


def test_loader_finds_dotted_attributes():
    assert import_object("http.server:SimpleHTTPRequestHandler.do_HEAD") is not None
    import socketserver
    assert import_object("socketserver:StreamRequestHandler") is socketserver.StreamRequestHandler


def test_scoreboard_slots_are_shared_with_a_child():
    board = Scoreboard(4)
    try:
        slot = board[2]
        slot.claim(generation=5, now=100.0)
        pid = os.fork()
        if pid == 0:  # the child writes; the parent must see it
            try:
                child = board[2]
                child.set_pid(os.getpid())
                child.begin_request(1.0)  # two requests served, as a worker serves them
                child.end_request(2.0)
                child.begin_request(3.0)
                child.end_request(4.0)
                child.begin_request(123.5)
                child.set_note("ImportError: é")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (slot.pid, slot.generation, slot.state, slot.requests, slot.heartbeat) == \
            (pid, 5, BUSY, 2, 123.5)
        assert slot.note == "ImportError: é" and slot.started == 100.0
        slot.release()
        assert (slot.pid, slot.state, slot.note) == (0, 0, "")
        assert board[1].state == 0  # the other slots are untouched
        with pytest.raises(IndexError):
            board[4]
    finally:
        board.close()


def test_a_reader_never_sees_a_field_half_written():
    # The master reads a worker's slot while the worker writes it: a heartbeat must
    # never read as 0 (a worker silent since boot, killed for it), nor a state as 0.
    board = Scoreboard(1)
    try:
        board[0].claim(generation=1, now=time.monotonic())
        pid = os.fork()
        if pid == 0:
            try:
                slot = board[0]
                for _ in range(100_000):
                    slot.begin_request(time.monotonic())
                    slot.end_request(time.monotonic())
            finally:
                os._exit(0)
        reader, torn, reads = board[0], 0, 0
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            for _ in range(1000):
                torn += reader.heartbeat == 0.0 or reader.state not in (BOOTING, IDLE, BUSY)
            reads += 1000
        assert reads > 0 and torn == 0, f"{torn} torn reads in {reads}"
        assert reader.requests == 100_000
    finally:
        board.close()


def test_signal_inbox_records_wakes_and_restores():
    import select
    before = signal.getsignal(signal.SIGUSR1)
    inbox = SignalInbox([signal.SIGUSR1, signal.SIGUSR2])
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert select.select([inbox], [], [], 5)[0] == [inbox]
        assert inbox.pending()
        assert sorted(inbox.drain()) == [signal.SIGUSR1, signal.SIGUSR2]
        assert inbox.drain() == [] and not inbox.pending()
    finally:
        inbox.restore()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_shutdown_before_serve_forever_makes_it_return_without_forking():
    with prefork.PreforkTCPServer(("127.0.0.1", 0), "apps:Probe") as server:
        server.shutdown()
        server.serve_forever()  # returns at once: no master, no worker
    assert server._master is None


def test_prefork_reload_waits_for_its_own_generation():
    from prefork.command.client import reload_outcome

    def status(generation, reloading, last=""):
        return {"generation": generation, "reloading": reloading, "last_reload": last}
    # Its generation is built, then serves.
    assert reload_outcome(2, False, status(1, 2)) == (2, False, None)
    assert reload_outcome(2, False, status(2, None, "ok"))[2] == \
        "reloaded: generation 2 serving"
    # Another reload began after it: it ended all the same.
    assert reload_outcome(2, False, status(2, 3, "ok"))[2] == "reloaded: generation 2 serving"
    # Abandoned, and cancelled by a stop.
    assert reload_outcome(2, False, status(1, None, "failed (a new worker failed to boot: "
                                                     "x)"))[2] == \
        "reload failed (a new worker failed to boot: x); generation 1 keeps serving"
    assert reload_outcome(2, False, status(1, None, "cancelled (the server is stopping)"))[2] \
        == "the reload was cancelled: the master is stopping"
    # Queued behind generation 2: it waits for 2 to end and its own to begin, and is not
    # told 2's outcome as its own.
    assert reload_outcome(2, True, status(1, 2)) == (2, True, None)
    assert reload_outcome(2, True, status(2, 3, "ok")) == (3, False, None)
    assert reload_outcome(3, False, status(2, None, "failed (x)"))[2] == \
        "reload failed (x); generation 2 keeps serving"
    assert reload_outcome(2, True, status(3, None, "ok"))[2] == "reloaded: generation 3 serving"


def test_top_shows_the_busy_workers_first_when_the_screen_is_short():
    from prefork.command.top import screen
    workers = [{"slot": i, "pid": 1000 + i, "generation": 1, "state": "ready",
                "busy": i == 29, "requests": 5, "rss": 20 << 20, "cpu": 1.0,
                "busy_for": 2.5 if i == 29 else 0.0,
                "request": "GET /slow HTTP/1.1" if i == 29 else ""} for i in range(30)]
    reply = {"master": {"pid": 999, "name": "", "uptime": 60.0}, "workers": workers,
             "generation": 1, "target": 30, "max_workers": 60, "adaptive": None,
             "queues": [], "idle_connections": None, "reloads": {"ok": 0, "failed": 0},
             "last_reload": "", "upgrade": {"new_master": None}}
    lines = screen(reply, None, 0.0, 80, 23)
    assert len(lines) == 23 and all(len(line) <= 80 for line in lines)
    assert "GET /slow HTTP/1.1" in lines[6]  # the busy one, first of the workers
    assert lines[-1] == "... 14 more workers, none busy (prefork status lists all)"
    assert len(screen(reply, None, 0.0, 80)) == 6 + 30  # no height: every worker
