"""The master loop: it forks, signals and reaps the workers, and carries out what
the policy decides.

The loop sleeps in poll() until the next deadline (the policy's, the watchdog's,
an upgrade's), or until something wakes it: a signal (through the SignalInbox
pipe), a worker reporting ready (a byte on its socket pair), a control client,
the new master of an upgrade, or shutdown() from another thread.  Each turn
drains the signals, then calls the server's service_actions(), where exited
workers are reaped with waitpid(-1, WNOHANG), the samples the policy asks for are
taken, and the policy's actions are carried out.  Every decision is the policy's
(policy.Pool); this module reports events to it and executes its answers.
"""

import gc
import logging
import os
import select
import signal
import socket
import threading
import time

from . import keeper as keeper_mod
from . import logs, policy, report, sched
from .control import ControlSocket, answer
from .deployment import Deployment, Ending
from .errors import BootError, PreforkError
from .limits import sample_rss
from .loader import import_shared_stdlib, is_spec
from .observer import Observer
from .scoreboard import Scoreboard
from .signals import SignalInbox
from .systemd import Notifier
from .upgrade import Upgrader
from .worker import WorkerInfo, WorkerPlan, flush_std_streams, run_worker, set_title

__all__ = ["Master", "MASTER_SIGNALS"]

log = logging.getLogger("prefork")

MASTER_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2,
                  signal.SIGCHLD)
LOOP_ERROR_PAUSE = 0.5  # after an unexpected error, so a persistent one cannot spin


class Master:
    """Runs the pool for *server* (a PreforkMixIn server) with settings *cfg*, as
    *deployment* (a Deployment) says.

    For the caller: run() until stopped (returns an Ending), request_stop() from
    any thread, ``stopped`` (an Event).
    For signals and the control socket: reload(), stop(graceful, why), scale_to(n),
    start_upgrade(), snapshot(), status().
    For the server: service_actions(), which the server's own runs every turn.
    """

    def __init__(self, server, cfg, deployment=None):
        self.server = server
        self.cfg = cfg
        self.deployment = deployment or Deployment()
        self.pool = policy.Pool(cfg)
        self.upgrader = Upgrader(self.deployment.upgrade)
        self.channels = {}  # pid -> the master's end of the worker's socket pair
        self.failure = None
        self.done = False
        self.stopped = threading.Event()
        self._next_watchdog = None
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._waker_w.setblocking(False)
        self._stop_requested = False
        self._catch_up = False
        self._due = None  # (the next deadline,) as the last whole turn found it
        self.inbox = self.board = self.notifier = self.control = self.poller = None
        self.keeper = None  # the idle keep-alive connections (keeper.Keeper), stream servers
        self.observer = None  # metrics, health, and the counts that outlive workers
        self.started = time.time()
        # generation -> what its workers serve: each server's RequestHandlerClass and the
        # settings, as they were when its first worker was forked.  A worker replaced
        # in an old generation (after an abandoned reload too) serves what it served.
        self._generations = {}

    # -- the loop -------------------------------------------------------------------

    def run(self):
        """Fork the pool and supervise it until it is stopped; return how it ended
        (an Ending), or raise BootError if it cannot boot."""
        try:
            if threading.current_thread() is threading.main_thread():
                self.inbox = SignalInbox(MASTER_SIGNALS)
            else:
                log.warning("prefork master not in the main thread: signals are not handled")
            import_shared_stdlib(front_end=is_spec(self.server.RequestHandlerClass))
            # What the master holds now is the workers' too: frozen, a worker's garbage
            # collections leave those pages alone, so they stay shared (copy-on-write).
            gc.collect()
            gc.freeze()
            self.board = Scoreboard(self.cfg.max_workers)
            self.notifier = Notifier()
            if self.notifier.watchdog_interval:
                self._next_watchdog = time.monotonic()
            name = f" [{self.cfg.name}]" if self.cfg.name else ""
            set_title(f"prefork: master{name}")
            sched.shorten()  # to answer at once when the workers keep every core busy
            log.info("master %d starting %d workers", os.getpid(), self.pool.target)
            self.poller = select.poll()
            self.poller.register(self._waker_r, select.POLLIN)
            if self.inbox:
                self.poller.register(self.inbox, select.POLLIN)
            if self.deployment.control is not None:
                self.control = ControlSocket(self.deployment.control)
                self.poller.register(self.control, select.POLLIN)
            self.observer = Observer(self, self.deployment.metrics)
            # Idle keep-alive connections, held here when the pool serves a stream socket.
            self.keeper = keeper_mod.for_pool(
                [self.server, *self.deployment.servers], self.cfg, self.poller,
                self.deployment.idle_channel)
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
            raise BootError(self.failure.message, self.failure.note, self.failure.import_failed)
        return Ending.HANDED_OVER if self.upgrader.handed_over else Ending.STOPPED

    def _turn(self):
        keeper = self.keeper
        if self._due is None:  # the last turn was a whole one: the deadlines may have moved
            deadlines = [self.pool.next_deadline(self._beats()), self._next_watchdog,
                         self.upgrader.deadline()]
            self._due = (min((d for d in deadlines if d is not None), default=None),)
        deadline = self._due[0]
        idle = keeper.next_deadline() if keeper else None
        scrape = self.observer.scrape
        scraper = scrape.next_deadline() if scrape else None
        soonest = min((d for d in (deadline, idle, scraper) if d is not None), default=None)
        timeout = None if soonest is None else max(0, soonest - time.monotonic())
        catch_up, self._catch_up = self._catch_up, False
        events = self.poller.poll(0 if catch_up else None if timeout is None
                                  else timeout * 1000 + 1)
        if scraper is not None:
            scrape.expire(time.monotonic())
        if keeper is not None:
            # Idle connections first, and alone when nothing else woke the loop and no
            # deadline is due: under keep-alive load most turns are theirs, and cheap.
            now = time.monotonic()
            events = keeper.serve(events, now)
            if not (events or catch_up or (deadline is not None and now >= deadline)):
                return
        self._due = None
        upgrade_fds = self.upgrader.fds()
        for fd, event in events:
            if self.inbox and fd == self.inbox.fileno():
                for signum in self.inbox.drain():
                    self._on_signal(signum)
            elif fd == self._waker_r.fileno():
                self._drain_waker()
            elif self.control and fd == self.control.fileno():
                self.control.serve_one(lambda request: answer(self, request))
            elif scrape and scrape.owns(fd):
                scrape.handle(fd, event, time.monotonic())
            elif fd in upgrade_fds:
                if fd in self.upgrader.fds():  # not gone while this turn's events ran
                    self._on_successor(fd)
            else:
                self._on_worker_message(fd)
        self.server.service_actions()

    def service_actions(self):
        """Reap exited workers, take the samples the policy asks for, and carry out
        its decisions."""
        self._reap()
        now = time.monotonic()
        for sample in self.pool.samples_due(now):  # before tick(): it forks a growth
            self._apply(self._feed(sample, now))
        self._apply(self.pool.tick(now, self._beats()))
        if self._next_watchdog is not None and now >= self._next_watchdog:
            # Sent from the loop itself: if the loop hangs, systemd stops hearing it.
            self.notifier.send(WATCHDOG=1)
            self._next_watchdog = now + self.notifier.watchdog_interval
        if self.upgrader.overdue(now):
            succ = self.upgrader.successor
            log.error("upgrade: the new master %d is not ready after %gs; stopping it, this "
                      "one keeps serving", succ.pid, self.upgrader.due.after)

    def _feed(self, sample, now):
        """Take *sample* (a policy.Sample) and hand it to the policy."""
        if sample.what == "rss":
            return self.pool.sampled_rss(sample_rss(sample.pids), now)
        workers = self.pool.workers
        busy = {pid: self.board[workers[pid].slot].busy_time(now) for pid in sample.pids
                if pid in workers}
        return self.pool.observe_load(busy, now)

    def status(self):
        """One line on the pool, for logs and systemd's STATUS=."""
        return report.status_line(self.pool, self.board, self.upgrader, self.keeper)

    def metrics(self):
        """The pool's metrics, in Prometheus's text format."""
        return self.observer.metrics()

    def snapshot(self):
        """The pool as data, for `prefork status`."""
        return report.snapshot(self.pool, self.board, self.upgrader, self.cfg.name,
                               self.started, self.keeper, self.listening())

    def listening(self):
        """The sockets the pool serves."""
        return [s.socket for s in (self.server, *self.deployment.servers)]

    def request_stop(self):
        """From any thread: stop gracefully, as SIGTERM would."""
        self._stop_requested = True
        try:
            self._waker_w.send(b"s")
        except OSError:
            pass

    # -- events -----------------------------------------------------------------------

    def _on_signal(self, signum):
        if signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGTERM:
            self.stop(True, "SIGTERM")
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            self.stop(False, signal.Signals(signum).name)
        elif signum == signal.SIGTTIN:
            self._apply(self.pool.scale(+1))
        elif signum == signal.SIGTTOU:
            self._apply(self.pool.scale(-1))
        elif signum == signal.SIGUSR1:
            self._reopen_logs()
        elif signum == signal.SIGUSR2:
            self.start_upgrade()
        # SIGCHLD only wakes the loop: reaping happens in service_actions().

    def reload(self):
        """Read the settings again and start a new generation; return why not, or ""."""
        if self.pool.ending:
            log.warning("reload refused: the master is stopping")
            return "reload refused: the master is stopping"
        self._apply(self.pool.reload_starting())
        try:
            self.server.on_reload()
            reread = self.deployment.reread
            cfg = reread() if reread else self.server.prefork_config()
            self._apply(self.pool.reconfigure(cfg, self.board.size))
            if self.keeper is not None:
                self.keeper.reconfigure(cfg)
        except Exception as e:
            log.error("reload abandoned, workers unchanged: %s", e,
                      exc_info=not isinstance(e, PreforkError))
            self._apply(self.pool.reload_refused(str(e)))
            return f"reload failed: {e}"
        gc.collect()  # before the new generation's forks freeze what is left
        self._apply(self.pool.reload(time.monotonic()))
        return ""

    def scale_to(self, n):
        """Set the pool's size (the control socket's `scale`); ConfigError if *n* is
        out of range, PreforkError when the master is stopping."""
        if self.pool.ending:
            raise PreforkError("scale refused: the master is stopping")
        self._apply(self.pool.scale_to(n))

    def stop(self, graceful, why):
        if graceful and self.pool.stops_after_grace():
            log.info("%s: graceful stop, after accept_grace", why)
            self._apply(self.pool.drain(time.monotonic()))  # serving on, not ready: Drained
            return
        log.info("%s: %s stop", why, "graceful" if graceful else "fast")
        if self.upgrader.stop(graceful):
            log.warning("upgrade: stopping the new master %d too", self.upgrader.successor.pid)
        if self.keeper is not None:
            self.keeper.stop_holding()  # idle: closed now, and each one given back
        self._apply(self.pool.stop(graceful, time.monotonic()))

    def start_upgrade(self):
        """Start a new master image on the same sockets; return why not, or ""."""
        why = self.upgrader.start(time.monotonic(), self.pool.cfg.boot_timeout,
                                  self.pool.ending,  # stopping, or serving out accept_grace
                                  self.keeper.channel.fds() if self.keeper else ())
        if why:
            log.warning("upgrade (SIGUSR2) refused: %s", why)
            return why
        for fd in self.upgrader.fds():
            self.poller.register(fd, select.POLLIN)
        succ = self.upgrader.successor
        log.info("upgrade: started new master %d (%s)", succ.pid,
                 " ".join(self.deployment.upgrade.argv))
        self._apply([policy.Notify("status")])
        return ""

    def _on_successor(self, fd):
        fds = self.upgrader.fds()
        heard = self.upgrader.heard(fd)
        if heard == "closed":
            self._forget(fd)
        elif heard in ("failed", "gone"):
            for known in fds:
                self._forget(known)
        if heard == "ready":
            self._hand_over()
        elif heard == "failed":
            why = self.upgrader.last[len("failed: "):]
            log.error("upgrade abandoned, master %d keeps serving: new master failed: %s",
                      os.getpid(), why)
            self._apply([policy.Notify("status", f"upgrade failed: {why}")])

    def _hand_over(self):
        log.info("upgrade: new master %d serves; retiring the workers of master %d",
                 self.upgrader.successor.pid, os.getpid())
        self.notifier.close()  # systemd listens to the new master now
        self._next_watchdog = None
        if self.control:  # its path names the new master's socket now: stop answering
            self.poller.unregister(self.control)
            self.control = None
        self.observer.handed_over(time.monotonic())
        if self.keeper is not None:
            # The new master shares the channel: it holds the idle connections from now
            # on, these and those the retiring workers give back.
            self.keeper.give_all(self.keeper.channel.workers_end)
        self._apply(self.pool.stop(True, time.monotonic()))

    def _drain_waker(self):
        try:
            while self._waker_r.recv(64):
                pass
        except BlockingIOError:
            pass
        if self._stop_requested:
            self._stop_requested = False
            self.stop(True, "shutdown()")

    def _on_worker_message(self, fd):
        pid = next((p for p, ch in self.channels.items() if ch.fileno() == fd), None)
        if pid is None:  # closed while this turn's events ran (a channel, the control)
            self._forget(fd)
            return
        self._read_channel(pid)

    def _read_channel(self, pid):
        """Act on what worker *pid* wrote on its socket pair: "R" is ready, "D" due for
        recycling."""
        try:
            data = self.channels[pid].recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker closed its end: it is exiting; waitpid will tell
            self._forget(self.channels[pid].fileno())
            return
        if b"R" in data:
            now = time.monotonic()
            w = self.pool.workers.get(pid)
            if w is not None and w.state == policy.BOOTING:
                self.observer.booted(w, now)
            self._apply(self.pool.ready(pid, now))
        if b"D" in data:  # it served max_requests: recycled once a new one is ready
            self._apply(self.pool.due(pid, "max_requests", time.monotonic()))

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
                self.observer.reaped(slot)
                slot.release()
            self._close_channel(pid)
            self._apply(self.pool.exited(pid, os.waitstatus_to_exitcode(status), note, now))

    # -- actions ----------------------------------------------------------------------

    def _apply(self, actions):
        for act in actions:
            if isinstance(act, policy.Spawn):
                self._spawn(act)
            elif isinstance(act, policy.Retire):
                self._send(act.pid, b"Q")
            elif isinstance(act, policy.SendSignal):
                if act.signum == policy.STACK_SIGNAL:
                    self._say_what_it_serves(act.pid)
                _signal(act.pid, act.signum)
            elif isinstance(act, policy.Log):
                getattr(log, act.level)("%s", act.message)
            elif isinstance(act, policy.Notify):
                self._notify(act)
            elif isinstance(act, policy.ReloadDone):
                if act.ok:
                    log.info("reload done: %s", act.message)
                elif act.cancelled:
                    log.info("reload to generation %d cancelled: %s", act.generation,
                             act.message)
                else:
                    log.error("reload of generation %d abandoned, the previous workers keep "
                              "serving: %s", act.generation, act.message)
            elif isinstance(act, policy.GiveUp):
                log.error("%s", act.message)
                self.failure = act
                self.stop(False, "workers cannot boot")
            elif isinstance(act, policy.Drained):
                self.stop(True, "accept_grace over")
            elif isinstance(act, policy.Stopped):
                self.done = True

    def _notify(self, act):
        """Tell the service manager; the first READY of a new master of an upgrade is
        its takeover (MAINPID= with it, then the command's takeover step)."""
        if act.state in ("reloading", "stopping"):
            send = self.notifier.reloading if act.state == "reloading" else \
                (lambda status: self.notifier.send(STOPPING=1, STATUS=status))
            send(act.note)
            return
        status = f"{act.note}; {self.status()}" if act.note else self.status()
        if act.state == "status":
            self.notifier.send(STATUS=status)
        elif not act.first:
            self.notifier.send(READY=1, STATUS=status)
        elif self.deployment.takeover is None:
            log.info("ready: %s", status)
            self.notifier.send(READY=1, STATUS=status)
        else:
            log.info("ready: %s", status)
            # MAINPID: systemd tracks this process from now on (NotifyAccess=all lets it
            # say so); the command renames the control socket and writes the pidfile.
            self.notifier.send(MAINPID=os.getpid(), READY=1, STATUS=status)
            self.deployment.takeover()
            # The upgrade that brought this master in ended well: counted here, since
            # the old master that started it is no longer scraped.
            self.upgrader.results["ok"] += 1
            self.observer.took_over()

    def _say_what_it_serves(self, pid):
        """A worker is about to be dumped and killed: log the request it noted."""
        w = self.pool.workers.get(pid)
        note = self.board[w.slot].note if w is not None else ""
        if note:
            log.error("worker %d was serving: %s", pid, note)

    def _spawn(self, spawn):
        info = WorkerInfo(spawn.slot, spawn.generation)
        try:
            self.server.pre_fork(info)
        except Exception as e:
            log.exception("pre_fork hook failed: worker not started")
            self._apply(self.pool.spawn_failed(spawn, time.monotonic(),
                                               f"pre_fork hook raised {type(e).__name__}: {e}"))
            return
        slot = self.board[spawn.slot]
        slot.claim(spawn.generation, time.monotonic())
        mine, theirs = socket.socketpair()
        cfg = self.pool.cfg
        handlers, settings = self._served_by(spawn.generation)
        name = f" [{cfg.name}]" if cfg.name else ""
        plan = WorkerPlan(
            info=info, slot=slot, control=theirs, max_requests=spawn.max_requests,
            servers=(self.server, *self.deployment.servers), handlers=handlers,
            settings=settings,
            beat_interval=cfg.timeout / 4 if cfg.timeout else 0,
            close_fds=self._master_fds() + [mine.fileno()],
            channel=self.keeper.channel.workers_end if self.keeper else None,
            states=self.board.states(),
            keepalive=cfg.keepalive_timeout > 0,
            master=os.getpid(), orphan_limit=cfg.timeout or cfg.graceful_timeout,
            title=f"prefork: worker {spawn.slot} gen {spawn.generation}{name}")
        # Objects made since the start are frozen too, so a worker's collections leave
        # them shared.  An unreachable cycle frozen here is never collected; the loop
        # makes few, and a reload collects before its generation forks.
        gc.freeze()
        flush_std_streams()
        try:
            pid = os.fork()
        except OSError as e:
            mine.close()
            theirs.close()
            slot.release()
            self._apply(self.pool.spawn_failed(spawn, time.monotonic(),
                                               f"fork failed: {e.strerror}"))
            return
        if pid == 0:
            run_worker(self.server, plan)  # never returns
        theirs.close()
        mine.setblocking(False)
        self.channels[pid] = mine
        self.poller.register(mine, select.POLLIN)
        self.pool.spawned(pid, spawn, time.monotonic())

    def _served_by(self, generation):
        """The handlers and settings of *generation* (those of now, for a new one)."""
        pool = self.pool
        alive = {w.generation for w in pool.workers.values()} | {pool.generation,
                                                                 pool.reload_gen}
        for gone in set(self._generations) - alive:
            del self._generations[gone]
        servers = (self.server, *self.deployment.servers)
        return self._generations.setdefault(
            generation, (tuple(s.RequestHandlerClass for s in servers), pool.cfg))

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
            self._forget(channel.fileno())
            channel.close()

    def _forget(self, fd):
        """Stop polling *fd*, if it is polled still."""
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass

    # -- helpers ------------------------------------------------------------------------

    def _beats(self):
        board = self.board
        return {w.pid: board[w.slot].heartbeat for w in self.pool.workers.values()} if board else {}

    def _master_fds(self):
        """What a worker closes first: every descriptor that is the master's alone."""
        fds = [self._waker_r.fileno(), self._waker_w.fileno(), *self.upgrader.fds()]
        fds += [f.fileno() for f in self.deployment.master_files]
        fds += [ch.fileno() for ch in self.channels.values()]
        if self.inbox:
            fds += [self.inbox.fileno(), self.inbox.write_fileno()]
        if self.notifier and self.notifier.sock:
            fds.append(self.notifier.fileno())
        if self.deployment.control is not None:
            fds.append(self.deployment.control.fileno())
        if self.keeper is not None:
            fds += self.keeper.fds()
        if self.observer is not None:
            fds += self.observer.fds()
        return [fd for fd in fds if fd >= 0]

    def _reopen_logs(self):
        logs.reopen_files()
        for pid in self.channels:
            _signal(pid, signal.SIGUSR1)
        log.info("log files reopened")

    def _cleanup(self):
        # Normally every worker is gone by now; after an unexpected exit, make sure.
        for pid in list(self.pool.workers):
            _signal(pid, signal.SIGKILL)
        for pid in list(self.pool.workers):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for pid in list(self.channels):
            self._close_channel(pid)
        self.upgrader.close(self.pool.cfg.graceful_timeout)  # told to stop in stop(), if any
        if self.inbox:
            self.inbox.restore()
        if self.board:
            self.board.close()
        if self.keeper is not None:
            self.keeper.close()
        if self.observer is not None:
            self.observer.close()
        if self.notifier:
            self.notifier.close()
        self._waker_r.close()
        self._waker_w.close()


def _signal(pid, signum):
    """Send *signum* to worker *pid*; one that is gone already is no error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
