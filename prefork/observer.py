"""What the master shows of itself: the metrics (for `prefork metrics` and a
scraper), readiness and liveness (for load balancers and Kubernetes), and the
counts that must outlive the workers that made them.  The master calls it at a
worker's ready and reap, and passes it the events of the metrics listener."""

import os

from . import metrics
from .limits import sample_usage
from .policy import READY
from .scrape import Scrape

__all__ = ["Observer"]


class Observer:
    """For *master* (a Master); *sock*: the listening socket of --metrics-bind, or None."""

    def __init__(self, master, sock):
        self.master = master
        self.totals = metrics.Totals()
        self.scrape = Scrape(sock, master.poller, self.answer) if sock is not None else None

    # -- from the master's loop ----------------------------------------------------------

    def booted(self, worker, now):
        """*worker* (the policy's record, still booting) said it is ready."""
        self.totals.booted(now - worker.spawned)

    def reaped(self, slot):
        """A worker's *slot*, before it is released: what it counted stays counted."""
        self.totals.absorb(slot)

    def took_over(self):
        """This master (the new one of an upgrade) serves now: probes may reach it."""
        if self.scrape is not None:
            self.scrape.start()

    def handed_over(self, now):
        """This master's successor serves now: it answers new probes alone (those that
        came before are answered here, the host ready)."""
        if self.scrape is not None:
            self.scrape.stop_listening(now)

    def fds(self):
        s = self.scrape
        return [s.sock.fileno(), *s.clients] if s else []

    def close(self):
        if self.scrape is not None:
            self.scrape.close()

    # -- what is shown -------------------------------------------------------------------

    def metrics(self):
        """The metrics text (Prometheus's format)."""
        m = self.master
        pool = m.pool
        usage = sample_usage([os.getpid(), *pool.workers])
        return metrics.render(
            pool, m.board, self.totals, upgrader=m.upgrader, keeper=m.keeper,
            sockets=m.listening(), usage=usage, master=usage.get(os.getpid()),
            started=m.started)

    def ready(self):
        """Whether a load balancer should send requests here: a worker of the current
        generation is ready, and the pool is not stopping."""
        if self.master.upgrader.handed_over:
            return True  # the host is served, by the new master
        pool = self.master.pool
        return not pool.ending and any(
            w.state == READY and w.generation == pool.generation
            for w in pool.workers.values())

    def answer(self, path):
        """(status, content type, body) for a GET of *path* on the metrics listener."""
        if path == "/metrics":
            return 200, metrics.CONTENT_TYPE, self.metrics().encode()
        if path == "/ready":
            if self.ready():
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", b"not ready\n"
        if path == "/live":  # answered by the loop itself: it turns
            return 200, "text/plain", b"live\n"
        return 404, "text/plain", b"/metrics, /ready or /live\n"
