"""How many threads torch computes with: the cores other processes leave free, unless the user chose.

torch's default is one thread per core. On a machine other jobs are using, its threads spin against theirs and
small models run 20-50x slower (the test suite: 2.5 minutes idle, almost 2 hours beside other jobs). So at
``import priorfit`` torch's thread count is lowered to the cores not already busy, never raised. Busy means
runnable now and over the last minute: the smaller of the 1-minute load average (which still counts a job that
ended seconds ago) and the threads runnable at this instant besides this one (which misses a job that is
between two bursts). ``PRIORFIT_THREADS=N`` sets N instead; ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (or
``PRIORFIT_THREADS=auto-off``) leave torch's own choice alone. ``torch.set_num_threads`` after the import wins.
"""

from __future__ import annotations

import os
import warnings

import torch

__all__ = ["free_cores", "runnable_others", "apply_default_threads"]

OFF = "auto-off"


def runnable_others() -> int | None:
    """Threads runnable on the machine at this instant, this one excluded (Linux's /proc/loadavg); None elsewhere."""
    try:
        with open("/proc/loadavg") as stats:
            return max(0, int(stats.read().split()[3].split("/")[0]) - 1)
    except (OSError, IndexError, ValueError):
        return None


def free_cores() -> int:
    """Cores this process may use (its CPU affinity) minus the busy ones (see the module docstring); at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    now = runnable_others()
    busy = int(load if now is None else min(load, now))
    return max(1, cores - busy)


def apply_default_threads() -> int:
    """Set torch's thread count as the module docstring says; returns the count in use."""
    chosen = os.environ.get("PRIORFIT_THREADS", "").strip()
    if chosen == OFF or (not chosen and ("OMP_NUM_THREADS" in os.environ or "MKL_NUM_THREADS" in os.environ)):
        return torch.get_num_threads()
    if chosen:
        if chosen.isdigit() and int(chosen) >= 1:
            torch.set_num_threads(int(chosen))
            return int(chosen)
        warnings.warn(
            f"PRIORFIT_THREADS={chosen!r} is not a positive integer (or {OFF!r}); choosing from the load instead",
            stacklevel=2,
        )
    threads = min(torch.get_num_threads(), free_cores())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads
