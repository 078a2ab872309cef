"""What the policy asks of the master: the actions policy.Pool answers events with.

Plain frozen records, carried out by the master (prefork.master) and compared by
the policy's tests; none of them does anything itself.
"""

import dataclasses

__all__ = ["Spawn", "Retire", "SendSignal", "Log", "Notify", "ReloadDone", "GiveUp",
           "Stopped", "Sample"]


@dataclasses.dataclass(frozen=True)
class Spawn:
    slot: int
    generation: int
    max_requests: int  # 0: no limit


@dataclasses.dataclass(frozen=True)
class Retire:
    pid: int  # finish the current request, then exit


@dataclasses.dataclass(frozen=True)
class SendSignal:
    pid: int
    signum: int


@dataclasses.dataclass(frozen=True)
class Log:
    level: str  # "info", "warning", "error"
    message: str


@dataclasses.dataclass(frozen=True)
class Notify:
    """Tell the service manager where the pool stands: "ready" (READY=1), "reloading"
    (RELOADING=1), "stopping" (STOPPING=1) or "status" (STATUS= alone)."""

    state: str
    note: str = ""       # said before (ready, status) or instead of (reloading,
    #                      stopping) the pool's own status line
    first: bool = False  # the first READY: the start, or an upgrade's takeover, is done


@dataclasses.dataclass(frozen=True)
class ReloadDone:
    generation: int
    ok: bool
    message: str
    cancelled: bool = False  # by a stop: no failure, the pool is going anyway


@dataclasses.dataclass(frozen=True)
class GiveUp:
    message: str
    note: str = ""  # the last failed worker's own one-line account
    import_failed: bool = False  # it could not import the handler (EXIT_IMPORT_FAILED)


@dataclasses.dataclass(frozen=True)
class Drained:
    """accept_grace is over: the graceful stop it delayed begins (Pool.stop)."""


@dataclasses.dataclass(frozen=True)
class Stopped:
    pass


@dataclasses.dataclass(frozen=True)
class Sample:
    """What the pool wants measured now: "rss" (each pid's resident memory, for
    sampled_rss()) or "load" (each pid's busy seconds, for observe_load())."""

    what: str
    pids: tuple
