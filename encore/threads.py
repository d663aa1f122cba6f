"""Threads over independent pieces of work: how many cores, and an ordered map that bounds
what is in memory.

Numpy's and scipy's array passes (sorts, gathers, ufuncs, sparse products) release the GIL,
so batches of that work on threads use the other cores without copying the inputs into
processes. Every caller's pieces are independent, so results never depend on the thread count.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_in_order(fn: Callable[[T], R], items: Iterable[T], threads: int = 0) -> Iterator[R]:
    """``fn(item)`` for each item, in the items' order, computed on ``threads`` threads
    (``0`` = every core of this process; ``1`` = in the caller's thread).

    At most ``threads`` items are computed ahead of the result the caller holds, so memory
    holds about ``threads + 1`` results at once, however many items there are (an executor's
    ``map`` would submit every item at once and keep every result the caller has not reached).
    A worker's exception is raised here, at its item.
    """
    threads = threads or available_cores()
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > threads:  # `threads` keep running while the caller takes one
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
