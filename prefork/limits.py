"""Resource sampling for workers.  It reports; the policy decides.  psutil is
imported at the first memory sample, so a pool without max_rss never loads it."""

import os

__all__ = ["sample_rss", "sample_usage"]


def sample_rss(pids):
    """Resident set size in bytes of each live process in *pids*; gone ones are left out."""
    import psutil

    sizes = {}
    for pid in pids:
        try:
            sizes[pid] = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass  # exited between the list and the look: reaping will tell
    return sizes


def sample_usage(pids):
    """(resident bytes, CPU seconds, user and system) of each live process in *pids*,
    read from /proc/PID/stat: one read a process, a fifth of what psutil's objects
    cost, which the master pays at every scrape of its metrics."""
    usage = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # after the command's name
        except OSError:
            continue  # exited between the list and the look: reaping will tell
        # Fields 14, 15 and 24 of proc(5): utime and stime in clock ticks, rss in pages.
        usage[pid] = (int(fields[21]) * _PAGE, (int(fields[11]) + int(fields[12])) / _TICKS)
    return usage


_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")
