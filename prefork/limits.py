"""Resource sampling for workers, from /proc.  It reports; the policy decides."""

import os

__all__ = ["sample_rss", "sample_usage"]


def sample_rss(pids):
    """Resident set size in bytes of each live process in *pids*; gone ones are left out."""
    return {pid: rss for pid, (rss, _) in sample_usage(pids).items()}


def sample_usage(pids):
    """(resident bytes, CPU seconds, user and system) of each live process in *pids*,
    read from /proc/PID/stat: one read a process, a fifth of what psutil's objects
    cost, paid by the master every second with max_rss and at every scrape."""
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
