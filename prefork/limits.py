"""Resource sampling for workers, through psutil.  It reports; the policy decides.
psutil is imported at the first sample, so a pool without max_rss never loads it."""

__all__ = ["sample_rss"]


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
