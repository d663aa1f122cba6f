"""Batch sizes from the run's memory budget (``resources.memory_gib``), and peak memory.

One setting sizes every batched loop, so a run fits the box it is given: each loop takes a
fixed share of the budget and divides it by what one row costs it at its peak.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from encore.config.experiment import ResourcesConfig

BATCH_SHARE = 0.125
"""Share of the memory budget one batch may take: the rest holds the stage's matrices, the
models, the training set and the interpreter."""


def rows_per_batch(resources: ResourcesConfig, bytes_per_row: int, *, minimum: int = 1024) -> int:
    """How many rows of ``bytes_per_row`` peak cost one batch may hold."""
    return max(minimum, int(resources.memory_gib * 2**30 * BATCH_SHARE) // bytes_per_row)


# --------------------------------------------------------------------------- peak memory
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_peak_before_resets = 0


def _vm_hwm_bytes() -> int | None:
    """This process's resident high-water mark (``VmHWM``), or None where /proc does not say."""
    try:
        match = re.search(r"VmHWM:\s+(\d+)", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def process_peak_bytes() -> int | None:
    """The process's peak resident memory since it started, resets by :func:`measure_peak` included."""
    current = _vm_hwm_bytes()
    return None if current is None else max(current, _peak_before_resets)


@contextmanager
def measure_peak() -> Iterator[dict[str, int]]:
    """Peak resident memory of the block: ``{"bytes": n}`` once it ends (empty where Linux's
    ``VmHWM`` reset, ``clear_refs`` 5, is unavailable). The process peak stays available
    through :func:`process_peak_bytes`."""
    global _peak_before_resets
    peak: dict[str, int] = {}
    before = _vm_hwm_bytes()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        before = None
    if before is not None:
        _peak_before_resets = max(_peak_before_resets, before)
    try:
        yield peak
    finally:
        after = _vm_hwm_bytes()
        if before is not None and after is not None:
            peak["bytes"] = after
