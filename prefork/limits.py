"""Resource sampling for workers, through psutil.  It reports; the policy decides.
psutil is imported at the first sample, so a pool without max_rss never loads it."""

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
    """(resident bytes, CPU seconds, user and system) of each live process in *pids*."""
    import psutil

    usage = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                cpu = proc.cpu_times()
                usage[pid] = (proc.memory_info().rss, cpu.user + cpu.system)
        except psutil.Error:
            pass
    return usage
