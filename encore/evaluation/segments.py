"""The names of the evaluation segments: declared once, read by the config, the evaluator, the
fold pooling, the ranker's segment policy and the benchmarks.

A test user is *warm* with history in the stage's training data and *cold* without; ``all``
is every test user; ``cold_items`` is the test pairs on items absent from training (per pair,
so it has no per-user row and is never pooled or given its own policy). Each name is written
once: the wider types are built from the narrower ones (a ``Literal`` of ``Literal``\\ s is
flattened), and the tuples are read off the types.
"""

from __future__ import annotations

from typing import Literal, get_args

UserSegment = Literal["warm", "cold"]
"""The two kinds of test user, by whether they have training history."""
PooledSegment = Literal["all", UserSegment]
"""The segments of the per-user tables: what is pooled over folds and tuned on."""
SegmentName = Literal[PooledSegment, "cold_items"]
"""Every evaluation segment."""

USER_SEGMENTS: tuple[UserSegment, ...] = get_args(UserSegment)
POOLED_SEGMENTS: tuple[PooledSegment, ...] = get_args(PooledSegment)
SEGMENTS: tuple[SegmentName, ...] = get_args(SegmentName)
ALL, WARM, COLD, COLD_ITEMS = SEGMENTS
