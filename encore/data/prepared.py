"""Read access to the ``prepare`` component's output folder.

Layout (all Parquet unless said otherwise)::

    users.parquet        user (int32), raw_id (str)
    items.parquet        item (int32), raw_id (str), name (str)[, release (datetime64, NaT unknown)]
    tags.parquet         tag (int32), name (str)                     [if the data has tags]
    base/target/test.parquet   user, item, weight[, timestamp]      the three split parts
    base.npz, train.npz  CSR (n_users, n_items) play weights of base and base+target
    item_tags.parquet    item, tag, weight    item-level features    [optional]
    user_item_tags_base.parquet / user_item_tags_train.parquet
                         user, item, tag      users' own tags, leak-free for each stage
    social.parquet       user, friend                                [optional]
    summary.json         counts, cold users/items, files and their SHA-256

A *stage* names what a model may see: ``"base"`` (fit for ranker training, labels from
target) or ``"train"`` (base + target, refit for test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from encore.io import read_json
from encore.recommenders.generator_config import StageView

Stage = Literal["base", "train"]
STAGES: tuple[Stage, ...] = ("base", "train")
EVAL_PART: dict[Stage, str] = {"base": "target", "train": "test"}
"""Which part a model fit on each stage is scored against."""
STAGE_PARTS: dict[Stage, tuple[str, ...]] = {"base": ("base",), "train": ("base", "target")}
"""The Parquet parts whose rows a model fit on each stage sees (``train`` = base + target)."""


def to_csr(frame: pd.DataFrame, shape: tuple[int, int], value: str | None = "weight",
           row: str = "user", col: str = "item") -> sp.csr_matrix:
    """(row, col, value) table -> CSR of ``shape`` (float32; duplicates summed)."""
    data = np.ones(len(frame), np.float32) if value is None else frame[value].to_numpy(np.float32)
    matrix = sp.csr_matrix(
        (data, (frame[row].to_numpy(np.int64), frame[col].to_numpy(np.int64))), shape=shape, dtype=np.float32
    )
    matrix.sum_duplicates()
    return matrix


@dataclass
class PreparedData:
    """Lazy view of one prepared folder. Matrices are (n_users, n_items), rows = users."""

    path: Path
    summary: dict[str, Any] = field(init=False)
    _cache: dict[str, Any] = field(init=False, default_factory=dict, repr=False)
    """Parts and matrices read once per instance; callers must not modify them in place."""

    def __post_init__(self) -> None:
        self.summary = read_json(self.path / "summary.json")

    def _cached(self, key: str, load: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def n_users(self) -> int:
        return int(self.summary["n_users"])

    @property
    def n_items(self) -> int:
        return int(self.summary["n_items"])

    @property
    def n_tags(self) -> int:
        return int(self.summary.get("n_tags", 0))

    @property
    def has_timestamps(self) -> bool:
        return bool(self.summary.get("has_timestamps", False))

    def table(self, name: str) -> pd.DataFrame | None:
        """A Parquet table of the folder, or None when the dataset has no such data."""
        file = self.path / f"{name}.parquet"
        return pd.read_parquet(file) if file.exists() else None

    @cached_property
    def users(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "users.parquet")

    @cached_property
    def items(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "items.parquet")

    def item_release_seconds(self) -> np.ndarray | None:
        """Every item's release time in unix seconds, shape (n_items,), NaN where unknown; None
        when the dataset has no release dates (catalogue metadata, not listening data)."""
        if "release" not in self.items.columns:
            return None
        release = self.items["release"].to_numpy("datetime64[ns]")
        return np.where(np.isnat(release), np.nan, release.view(np.int64) / 1e9)

    def part(self, name: str) -> pd.DataFrame:
        """``base``, ``target``, ``test`` or ``train`` (= base + target) interactions."""
        if name == "train":
            return self._cached(name, lambda: pd.concat([self.part("base"), self.part("target")], ignore_index=True))
        return self._cached(name, lambda: pd.read_parquet(self.path / f"{name}.parquet"))

    def user_items(self, stage: Stage) -> sp.csr_matrix:
        """Play weights a model fit on ``stage`` may see, shape (n_users, n_items)."""
        return self._cached(f"{stage}.npz", lambda: sp.load_npz(self.path / f"{stage}.npz").tocsr())

    def item_listeners(self, stage: Stage) -> np.ndarray:
        """Listeners of every item in what ``stage`` may see, shape (n_items,): the popularity
        behind the fallback lists, the served popular table and the popularity metrics."""
        return self._cached(f"{stage}.listeners",
                            lambda: np.bincount(self.user_items(stage).indices, minlength=self.n_items))

    def relevant(self, stage: Stage) -> sp.csr_matrix:
        """Binary matrix of the part a ``stage`` fit is scored against (target or test)."""
        return to_csr(self.part(EVAL_PART[stage]), (self.n_users, self.n_items), value=None)

    def eval_users(self, stage: Stage) -> np.ndarray:
        """Users with at least one item in the part a ``stage`` fit is scored against."""
        return np.unique(self.part(EVAL_PART[stage])["user"].to_numpy()).astype(np.int64)

    def timestamps(self, stage: Stage) -> sp.csr_matrix | None:
        """Last-play unix seconds per (user, item) seen by ``stage``, or None."""
        if not self.has_timestamps:
            return None
        frame = self.part("base" if stage == "base" else "train")
        seconds = frame["timestamp"].astype("int64").to_numpy() // 10**9
        return to_csr(frame.assign(seconds=seconds.astype(np.float64)), (self.n_users, self.n_items), "seconds")

    def last_event_seconds(self, stage: Stage) -> float | None:
        """Unix seconds of the last event ``stage`` sees (the values of :meth:`timestamps`, without
        building the matrix), or None without timestamps."""
        if not self.has_timestamps:
            return None
        frame = self.part("base" if stage == "base" else "train")
        return float(frame["timestamp"].astype("int64").max() // 10**9)

    def item_features(self, stage: Stage) -> sp.csr_matrix:
        """Item x tag counts a ``stage`` fit may use, shape (n_items, n_tags).

        Item-level tags plus users' own tag assignments with the held-out pairs removed.
        """
        shape = (self.n_items, max(self.n_tags, 1))
        features = sp.csr_matrix(shape, dtype=np.float32)
        item_tags = self.table("item_tags")
        if item_tags is not None:
            features = features + to_csr(item_tags, shape, "weight", row="item", col="tag")
        user_tags = self.table(f"user_item_tags_{stage}")
        if user_tags is not None:
            features = features + to_csr(user_tags, shape, None, row="item", col="tag")
        return features.tocsr()

    def user_item_tags(self, stage: Stage) -> pd.DataFrame | None:
        return self.table(f"user_item_tags_{stage}")

    def social(self) -> sp.csr_matrix | None:
        """Directed user -> friend adjacency, shape (n_users, n_users), or None."""
        links = self.table("social")
        if links is None:
            return None
        return to_csr(links, (self.n_users, self.n_users), None, row="user", col="friend")

    def stage_view(self, stage: Stage) -> StageView:
        """Everything a model fit on ``stage`` may see: the one input of ``Recommender.fit_stage``."""
        return StageView(user_items=self.user_items(stage), item_features=self.item_features(stage),
                         social=self.social(), timestamps=self.timestamps(stage),
                         parts=tuple(self.path / f"{part}.parquet" for part in STAGE_PARTS[stage]))
