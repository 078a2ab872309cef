"""A short CPU slice for the master, so that under full load it answers at once.

When every core is busy with workers, a master woken by a signal, a worker's exit
or a connection waits for a core like any other task: on Linux's EEVDF scheduler
(6.6 and later) a task that wakes does not take the core from the one running
until that one's slice (a few ms) is used, and with several tasks ahead of it the
wait adds up (SIGHUP to the start of a reload: 12 ms seen on 2 busy cores).
Since Linux 6.12 a task may ask for a shorter slice (sched_setattr(2),
``sched_runtime`` of a SCHED_OTHER or SCHED_BATCH task; no privilege needed):
one that wakes with a shorter slice than the running task's takes the core at
once.  The master asks for SLICE_NS, a little of the core at a time being all it
needs; a worker puts its own back to the kernel's default as it starts, so that
the workers share the cores as before.

Where this cannot be done (another platform or CPU, a kernel without the call,
an RT policy the operator chose), nothing changes; an older kernel takes the
request and ignores it.
"""

import os
import platform
import struct

__all__ = ["SLICE_NS", "shorten", "restore"]

SLICE_NS = 300_000  # 0.3 ms (the kernel takes 0.1 to 100 ms)
_SETATTR = {"x86_64": 314, "aarch64": 274, "riscv64": 274, "ppc64le": 355,
            "s390x": 345}.get(platform.machine())  # sched_setattr's system call number
_FAIR = (os.SCHED_OTHER, getattr(os, "SCHED_BATCH", os.SCHED_OTHER))


def shorten():
    """Ask for the master's short slice; True if the kernel took the request."""
    return _set_slice(SLICE_NS)


def restore():
    """Back to the kernel's default slice (in a worker, after fork)."""
    return _set_slice(0)


def _set_slice(ns):
    if _SETATTR is None:
        return False
    try:
        import ctypes  # here: a Python built without it still runs, with the default
        policy = os.sched_getscheduler(0)
        if policy not in _FAIR:
            return False  # an RT or idle policy: the operator's choice, left alone
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        # struct sched_attr, its first version (48 bytes): size, policy, flags, nice,
        # priority, runtime, deadline, period.
        attr = ctypes.create_string_buffer(
            struct.pack("=IIQiIQQQ", 48, policy, 0, nice, 0, ns, 0, 0), 48)
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SETATTR, 0, attr, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False
