"""The master loop: the only code that forks, signals and reaps.

The loop sleeps in poll() until the next deadline the policy names, or until
something wakes it: a signal (through the SignalInbox pipe), a worker reporting
ready (a byte on its socket pair), or shutdown() from another thread.  Each turn
drains the signals, then calls the server's service_actions(), where exited
workers are reaped with waitpid(-1, WNOHANG) and the policy's decisions are
carried out.  Decisions live in policy.py; this module only executes them.
"""

import gc
import logging
import os
import select
import signal
import socket
import threading
import time

from . import adaptive, control, limits, loader, logs, policy, upgrade
from .control import ControlSocket
from .errors import BootError, PreforkError
from .scoreboard import Scoreboard
from .signals import SignalInbox
from .systemd import Notifier
from .worker import WorkerInfo, WorkerPlan, run_worker, set_title

__all__ = ["Master", "MASTER_SIGNALS"]

log = logging.getLogger("prefork")

MASTER_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2,
                  signal.SIGCHLD)
RSS_SAMPLE_INTERVAL = 1.0
LOOP_ERROR_PAUSE = 0.5  # after an unexpected error, so a persistent one cannot spin


class Master(upgrade.UpgradeSteps):
    """Runs the pool for *server* (a PreforkMixIn server) with settings *cfg*."""

    def __init__(self, server, cfg):
        self.server = server
        self.cfg = cfg
        self.pool = policy.Pool(cfg)
        self.channels = {}  # pid -> the master's end of the worker's socket pair
        self.failure = None
        self.done = False
        self.stopped = threading.Event()
        self._next_rss = 0.0
        self._next_watchdog = None
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._waker_w.setblocking(False)
        self._stop_requested = False
        self._catch_up = False
        self.inbox = None
        self.board = None
        self.notifier = None
        self.control = None
        self.started = time.time()
        self.announced = False  # READY=1 sent for the first generation
        self.last_reload = ""
        self.successor = None  # the new master of an upgrade in progress: its pid, pipe...
        self.handed_over = False  # to a successor: unlink nothing, tell systemd nothing
        self.last_upgrade = ""  # how the last upgrade this master started ended
        self.adapter = None
        self._next_adapt = None
        self._adapt_to(cfg)

    # -- the loop -------------------------------------------------------------------

    def run(self):
        """Fork the pool and supervise it until it is stopped; raise BootError if it
        cannot boot."""
        try:
            if threading.current_thread() is threading.main_thread():
                self.inbox = SignalInbox(MASTER_SIGNALS)
            else:
                log.warning("prefork master not in the main thread: signals are not handled")
            loader.import_shared_stdlib()
            self.board = Scoreboard(self.cfg.max_workers)
            self.notifier = Notifier()
            if self.notifier.watchdog_interval:
                self._next_watchdog = time.monotonic()
            name = f" [{self.cfg.name}]" if self.cfg.name else ""
            set_title(f"prefork: master{name}")
            log.info("master %d starting %d workers", os.getpid(), self.pool.target)
            self.poller = select.poll()
            self.poller.register(self._waker_r, select.POLLIN)
            if self.inbox:
                self.poller.register(self.inbox, select.POLLIN)
            control_path = getattr(self.server, "prefork_control", "")
            if control_path:
                takeover = getattr(self.server, "prefork_takeover", None)
                self.control = ControlSocket(control_path, staged=takeover is not None)
                self.poller.register(self.control, select.POLLIN)
            self.server.service_actions()
            while not self.done:
                try:
                    self._turn()
                except Exception:
                    log.exception("error in the master loop; carrying on")
                    self.poller.poll(LOOP_ERROR_PAUSE * 1000)
                    self._catch_up = True  # the failed turn may have left work undone
        finally:
            self._cleanup()
            self.stopped.set()
        if self.failure:
            raise BootError(self.failure.message, self.failure.note)

    def _turn(self):
        deadline = self.pool.next_deadline(self._beats())
        for extra in (self._next_rss if self.cfg.max_rss else None, self._next_watchdog,
                      self._next_adapt, self._successor_deadline()):
            if extra is not None:
                deadline = extra if deadline is None else min(deadline, extra)
        timeout = None if deadline is None else max(0, deadline - time.monotonic())
        if self._catch_up:
            self._catch_up, timeout = False, 0
        events = self.poller.poll(None if timeout is None else timeout * 1000 + 1)
        for fd, _ in events:
            if self.inbox and fd == self.inbox.fileno():
                for signum in self.inbox.drain():
                    self._on_signal(signum)
            elif fd == self._waker_r.fileno():
                self._drain_waker()
            elif self.control and fd == self.control.fileno():
                self.control.serve_one(lambda request: control.answer(self, request))
            elif self.successor and fd == self.successor.pipe:
                self._on_successor_message()
            elif self.successor and fd == self.successor.pidfd:
                self._successor_exited()
            else:
                self._on_worker_message(fd)
        self.server.service_actions()

    def service_actions(self):
        """Reap exited workers, enforce limits, and act on the policy's decisions."""
        self._reap()
        now = time.monotonic()
        if self.cfg.max_rss and now >= self._next_rss:
            self._next_rss = now + RSS_SAMPLE_INTERVAL
            ready = [w.pid for w in self.pool.workers.values() if w.state == policy.READY]
            mib = 1024 * 1024
            for pid, rss in limits.sample_rss(ready).items():
                if rss > self.cfg.max_rss:
                    why = f"uses {rss // mib} MiB (max_rss {self.cfg.max_rss // mib} MiB)"
                    self._apply(self.pool.over_limit(pid, why, now))
        if self.adapter and now >= self._next_adapt:  # before tick(): it forks the growth
            self._next_adapt = now + adaptive.INTERVAL
            self._adapt(now)
        self._apply(self.pool.tick(now, self._beats()))
        if self._next_watchdog is not None and now >= self._next_watchdog:
            # Sent from the loop itself: if the loop hangs, systemd stops hearing it.
            self.notifier.send(WATCHDOG=1)
            self._next_watchdog = now + self.notifier.watchdog_interval
        self._check_successor(now)
        if not self.announced and self.pool.counts()[policy.READY] >= self.pool.target:
            self.announced = True
            log.info("ready: %s", self.status())
            self._announce()

    def _adapt_to(self, cfg):
        """An adaptive pool (workers MIN..MAX) gets an Adapter; a fixed one none."""
        if not cfg.adaptive:
            self.adapter = self._next_adapt = None
        elif self.adapter is None:
            self.adapter = adaptive.Adapter(cfg.workers, cfg.workers_max, cfg.shrink_after)
            self._next_adapt = time.monotonic()
        else:
            self.adapter.low, self.adapter.high = cfg.workers, cfg.workers_max
            self.adapter.shrink_after = cfg.shrink_after
            self.adapter.reset()

    def _adapt(self, now):
        pool = self.pool
        if pool.reload_gen is not None or pool.stopping is not None:
            self.adapter.reset()  # the pool is changing for other reasons: look again later
            return
        busy = {w.pid: self.board[w.slot].busy_time(now) for w in pool.workers.values()
                if w.state == policy.READY}
        change, why = self.adapter.observe(now, busy, pool.target)
        if change:
            log.info("adaptive pool: %s", why)
            self._apply(pool.scale(change))

    def status(self):
        """One line on the pool, for logs and systemd's STATUS=."""
        c = self.pool.counts()
        served = sum(self.board[w.slot].requests for w in self.pool.workers.values())
        line = (f"{c[policy.READY]} workers ready, {c[policy.BOOTING]} booting, "
                f"generation {self.pool.generation}, {served} requests by live workers")
        if self.pool.reloads["ok"] or self.pool.reloads["failed"]:
            line += (f"; reloads: {self.pool.reloads['ok']} ok, "
                     f"{self.pool.reloads['failed']} failed, last {self.last_reload}")
        if self.successor and not self.handed_over:
            line += f"; upgrading: new master {self.successor.pid} starting"
        return line

    def request_stop(self):
        """From any thread: stop gracefully, as SIGTERM would."""
        self._stop_requested = True
        try:
            self._waker_w.send(b"s")
        except OSError:
            pass

    # -- events -----------------------------------------------------------------------

    def _on_signal(self, signum):
        now = time.monotonic()
        if signum == signal.SIGHUP:
            self.reload(now)
        elif signum == signal.SIGTERM:
            self.stop(True, now, "SIGTERM")
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            self.stop(False, now, signal.Signals(signum).name)
        elif signum == signal.SIGTTIN:
            self._apply(self.pool.scale(+1))
        elif signum == signal.SIGTTOU:
            self._apply(self.pool.scale(-1))
        elif signum == signal.SIGUSR1:
            self._reopen_logs()
        elif signum == signal.SIGUSR2:
            self.start_upgrade(now)
        # SIGCHLD only wakes the loop: reaping happens in service_actions().

    def reload(self, now):
        try:
            self.server.on_reload()
            self.pool.reconfigure(self.server.prefork_config(), self.board.size)
            self._adapt_to(self.pool.cfg)
        except Exception as e:
            log.error("reload abandoned, workers unchanged: %s", e,
                      exc_info=not isinstance(e, PreforkError))
            self.notifier.send(READY=1, STATUS=f"reload failed: {e}; {self.status()}")
            return f"reload failed: {e}"
        started = self.pool.reload_gen is None
        self._apply(self.pool.reload(now))
        if started and self.pool.reload_gen is not None:
            self.notifier.reloading(f"reloading to generation {self.pool.reload_gen}")
        return ""

    def scale_to(self, n):
        """Set the pool's size (the control socket's `scale`); return why not, or ""."""
        top = self.pool.cfg.max_workers
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
            return f"workers must be a whole number from 1 to max_workers ({top}), not {n!r}"
        self._apply(self.pool.scale(n - self.pool.target))
        if self.adapter:
            self.adapter.reset()
        return ""

    def _drain_waker(self):
        try:
            while self._waker_r.recv(64):
                pass
        except BlockingIOError:
            pass
        if self._stop_requested:
            self._stop_requested = False
            self.stop(True, time.monotonic(), "shutdown()")

    def stop(self, graceful, now, why):
        log.info("%s: %s stop", why, "graceful" if graceful else "fast")
        if self.successor and not self.handed_over:
            log.warning("upgrade: stopping the new master %d too", self.successor.pid)
            self.successor.signal(signal.SIGTERM if graceful else signal.SIGINT)
        self.notifier.send(STOPPING=1, STATUS="stopping")
        self._apply(self.pool.stop(graceful, now))

    def _on_worker_message(self, fd):
        pid = next((p for p, ch in self.channels.items() if ch.fileno() == fd), None)
        if pid is None:
            self.poller.unregister(fd)
            return
        self._read_channel(pid)

    def _read_channel(self, pid):
        """Act on what worker *pid* wrote on its socket pair: "R" is ready."""
        try:
            data = self.channels[pid].recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker closed its end: it is exiting; waitpid will tell
            try:
                self.poller.unregister(self.channels[pid])
            except KeyError:
                pass  # told already
            return
        if b"R" in data:
            self._apply(self.pool.ready(pid, time.monotonic()))

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            now = time.monotonic()
            w = self.pool.workers.get(pid)
            note = ""
            if w is not None:
                # A worker may say ready, serve and exit between two looks at its
                # socket pair: what it said counts before its exit does.
                if pid in self.channels and w.state == policy.BOOTING:
                    self._read_channel(pid)
                slot = self.board[w.slot]
                note = slot.note
                slot.release()
            self._close_channel(pid)
            self._apply(self.pool.exited(pid, os.waitstatus_to_exitcode(status), note, now))

    # -- helpers for the upgrade's steps (upgrade.UpgradeSteps) -------------------------

    def _kill(self, pid, signum):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    # -- actions ----------------------------------------------------------------------

    def _apply(self, actions):
        for act in actions:
            if isinstance(act, policy.Spawn):
                self._spawn(act)
            elif isinstance(act, policy.Retire):
                self._send(act.pid, b"Q")
            elif isinstance(act, policy.Signal):
                self._kill(act.pid, act.signum)
            elif isinstance(act, policy.Log):
                getattr(log, act.level)("%s", act.message)
            elif isinstance(act, policy.ReloadDone):
                self.last_reload = "ok" if act.ok else f"failed ({act.message})"
                if act.ok:
                    log.info("reload done: %s", act.message)
                else:
                    log.error("reload of generation %d abandoned, the previous workers keep "
                              "serving: %s", act.generation, act.message)
                if self.pool.reload_gen is None and self.pool.stopping is None:
                    self.notifier.send(READY=1, STATUS=self.status())
                elif self.pool.reload_gen is not None:  # a queued reload follows at once
                    self.notifier.reloading(f"reloading to generation {self.pool.reload_gen}")
            elif isinstance(act, policy.GiveUp):
                log.error("%s", act.message)
                self.failure = act
                self.stop(False, time.monotonic(), "workers cannot boot")
            elif isinstance(act, policy.Stopped):
                self.done = True

    def _spawn(self, spawn):
        info = WorkerInfo(spawn.slot, spawn.generation)
        try:
            self.server.pre_fork(info)
        except Exception:
            log.exception("pre_fork hook failed: worker not started")
            return
        slot = self.board[spawn.slot]
        slot.claim(spawn.generation, time.monotonic())
        mine, theirs = socket.socketpair()
        name = f" [{self.cfg.name}]" if self.cfg.name else ""
        plan = WorkerPlan(
            info=info, slot=slot, control=theirs, max_requests=spawn.max_requests,
            beat_interval=self.cfg.timeout / 4 if self.cfg.timeout else 0,
            close_fds=self._master_fds() + [mine.fileno()],
            title=f"prefork: worker {spawn.slot} gen {spawn.generation}{name}")
        # Objects the master has now are the workers' too: frozen, a worker's garbage
        # collections leave their pages alone, so they stay shared (copy-on-write).
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            log.exception("fork failed")
            mine.close()
            theirs.close()
            slot.release()
            return
        if pid == 0:
            run_worker(self.server, plan)  # never returns
        theirs.close()
        mine.setblocking(False)
        self.channels[pid] = mine
        self.poller.register(mine, select.POLLIN)
        self.pool.spawned(pid, spawn, time.monotonic())

    def _send(self, pid, message):
        channel = self.channels.get(pid)
        if channel is not None:
            try:
                channel.send(message)
            except OSError:
                pass  # already gone: reaping will tell

    def _close_channel(self, pid):
        channel = self.channels.pop(pid, None)
        if channel is not None:
            try:
                self.poller.unregister(channel)
            except (KeyError, ValueError):
                pass
            channel.close()

    # -- helpers ------------------------------------------------------------------------

    def _beats(self):
        board = self.board
        return {w.pid: board[w.slot].heartbeat for w in self.pool.workers.values()} if board else {}

    def _master_fds(self):
        fds = [self._waker_r.fileno(), self._waker_w.fileno()]
        fds += [f.fileno() for f in getattr(self.server, "prefork_master_files", ())]
        fds += [ch.fileno() for ch in self.channels.values()]
        if self.inbox:
            fds += [self.inbox.fileno(), self.inbox.write_fileno()]
        if self.notifier and self.notifier.sock:
            fds.append(self.notifier.fileno())
        if self.control:
            fds.append(self.control.fileno())
        if self.successor:
            fds += [self.successor.pipe, self.successor.pidfd]
        return [fd for fd in fds if fd >= 0]

    def _reopen_logs(self):
        logs.reopen_files()
        for pid in self.channels:
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
        log.info("log files reopened")

    def _cleanup(self):
        # Normally every worker is gone by now; after an unexpected exit, make sure.
        for pid in list(self.pool.workers):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in list(self.pool.workers):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for pid in list(self.channels):
            self._close_channel(pid)
        if self.successor:
            if not self.handed_over:  # told to stop in stop(); give it its graceful time
                self.successor.wait_or_kill(self.cfg.graceful_timeout)
            self.successor.close()
        if self.inbox:
            self.inbox.restore()
        if self.board:
            self.board.close()
        if self.notifier:
            self.notifier.close()
        if self.control:
            self.control.close()
        self._waker_r.close()
        self._waker_w.close()
