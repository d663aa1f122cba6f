"""Batch sizes from the run's memory budget (``resources.memory_gib``).

One setting sizes every batched loop, so a run fits the box it is given: each loop takes a
fixed share of the budget and divides it by what one row costs it at its peak.
"""

from __future__ import annotations

from scripts.core.config import ResourcesConfig

BATCH_SHARE = 0.125
"""Share of the memory budget one batch may take: the rest holds the stage's matrices, the
models, the training set and the interpreter."""


def rows_per_batch(resources: ResourcesConfig, bytes_per_row: int, *, minimum: int = 1024) -> int:
    """How many rows of ``bytes_per_row`` peak cost one batch may hold."""
    return max(minimum, int(resources.memory_gib * 2**30 * BATCH_SHARE) // bytes_per_row)
