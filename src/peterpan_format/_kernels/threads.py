"""Independent pieces of a kernel's work on every CPU the process may use: the kernels
release the GIL (``nogil=True``), so plain Python threads run them in parallel. Numba's
own setting caps the count (``NUMBA_NUM_THREADS``; ``ppan encode --workers N`` gives each
worker its share)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba

#: the fewest output pixels worth a thread of their own
MIN_PIXELS = 1 << 18


def cpus() -> int:
    """The CPUs this process may run on, at most ``NUMBA_NUM_THREADS``."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(usable, numba.config.NUMBA_NUM_THREADS))


def run(fn, items) -> list:
    """``[fn(item) for item in items]``, on up to ``cpus()`` threads."""
    items = list(items)
    threads = min(cpus(), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def bands(rows: int, pixels: int) -> list[tuple[int, int]]:
    """``rows`` rows (``pixels`` in all) as (start, stop) bands, one per CPU, one band for
    an image too small to share."""
    n = max(1, min(cpus(), pixels // MIN_PIXELS, rows))
    edges = [rows * i // n for i in range(n + 1)]
    return list(zip(edges, edges[1:]))
