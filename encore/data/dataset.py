"""The canonical, typed form every loader produces.

Ids are contiguous integers: users ``0 .. n_users-1`` and items ``0 .. n_items-1``;
``user_ids[u]`` / ``item_ids[i]`` map them back to the source's raw ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ("user", "item", "weight")
"""Required columns of ``MusicDataset.interactions``; ``timestamp`` is optional."""


class DataError(ValueError):
    """Bad input data. The message names the file, the column and the row or key."""

    def __init__(self, file: str | Path, message: str, *, column: str | None = None, row: int | None = None):
        where = str(file)
        if column is not None:
            where += f", column '{column}'"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {message}")
        self.file = str(file)
        self.column = column
        self.row = row


@dataclass(frozen=True)
class MusicDataset:
    """One music dataset in canonical form.

    Attributes
    ----------
    interactions:
        One row per (user, item) pair, no duplicates. Columns ``user`` (int32),
        ``item`` (int32), ``weight`` (float32, > 0, e.g. play count) and optionally
        ``timestamp`` (datetime64[ns], the last listening time of the pair).
    user_ids, item_ids:
        Raw ids by contiguous index, shapes ``(n_users,)`` and ``(n_items,)``.
    item_names:
        Display names by item index, or None.
    item_release:
        Release times by item index (datetime64[ns], NaT where unknown, e.g. the back
        catalogue), or None: catalogue metadata, known ahead for every item the catalogue
        lists, upcoming releases included (a label's release schedule).
    item_tags:
        Item-level features that belong to the item alone (genres, albums, artists
        of a track): columns ``item`` (int32), ``tag`` (int32), ``weight`` (float32).
    user_item_tags:
        Side data keyed by (user, item), e.g. Last.fm users' own tag assignments:
        columns ``user``, ``item``, ``tag`` (int32). It is split with the
        interactions so that a held-out pair's tags never reach training features.
    tag_names:
        Tag names by tag index, shape ``(n_tags,)``.
    social:
        Directed user-user links: columns ``user``, ``friend`` (int32).
    files:
        Source files read, by role (used to record their SHA-256 in every run).
    stats:
        Loader counts worth logging (duplicates aggregated, rows dropped ...).
    """

    name: str
    interactions: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_names: np.ndarray | None = None
    item_release: np.ndarray | None = None
    item_tags: pd.DataFrame | None = None
    user_item_tags: pd.DataFrame | None = None
    tag_names: np.ndarray | None = None
    social: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_tags(self) -> int:
        return 0 if self.tag_names is None else len(self.tag_names)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns
