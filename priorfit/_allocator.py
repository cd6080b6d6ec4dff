"""Keep freed memory in the process while training, instead of handing it back to the OS at every step.

A PFN training step allocates the same large tensors every time (a 64 × 45 × 1,000-bucket logit block is 11 MB).
glibc serves allocations that large with a fresh ``mmap`` and returns them with ``munmap`` when freed, so the next
step faults every page in again and the kernel zeroes it. Raising glibc's mmap and trim thresholds keeps those
blocks in the heap for reuse, as the jemalloc / tcmalloc that PyTorch's CPU tuning guide recommends do. The gain
on the benchmark model is small: ``benchmarks/train_race.py --allocator-variant`` races priorfit with and without
it against pfns (``benchmarks/results/train_race.json``).

The setting is process-wide and stays after training (glibc has no way back to its adaptive default), so it is
applied when a priorfit task starts fitting, not at import. ``PRIORFIT_ALLOCATOR=default`` leaves glibc alone, as
do glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` when set. Other C
libraries and operating systems are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory"]

OFF = "default"
GLIBC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
# mallopt's parameter numbers (glibc's malloc.h) and the values set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc keep blocks under 1 GiB in the heap and hold up to 1 GiB of freed memory (see the module
    docstring). True when the setting is (or already was) in force; False where it does not apply or is opted out."""
    global _applied
    if _applied:
        return True
    if os.environ.get("PRIORFIT_ALLOCATOR") == OFF or any(name in os.environ for name in GLIBC_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _applied = all(libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
    return _applied
