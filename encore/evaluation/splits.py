"""Explicit three-part splits for two-stage training.

``base``   — what the candidate generators train on while the ranker learns;
``target`` — the pairs the ranker learns its labels from;
``test``   — the final evaluation; generators are refit on ``train = base + target``
             before they propose candidates for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from encore.arrays import pair_keys, positions_by_key
from encore.config.experiment import ConfigError, PerUserSplit, SplitConfig, TimeSplit

PARTS = ("base", "target", "test")


@dataclass(frozen=True)
class Split:
    """Three disjoint interaction tables with the canonical columns (user, item, weight[, timestamp])."""

    base: pd.DataFrame
    target: pd.DataFrame
    test: pd.DataFrame
    # Cut points of a time split (None for a per-user holdout): dated side data is cut there too.
    target_start: pd.Timestamp | None = None
    test_start: pd.Timestamp | None = None

    @property
    def train(self) -> pd.DataFrame:
        """Everything the generators may see when they are refit for test."""
        return pd.concat([self.base, self.target], ignore_index=True)

    def summary(self) -> dict[str, int]:
        train = self.train
        train_users = np.unique(train["user"].to_numpy())
        train_items = np.unique(train["item"].to_numpy())
        test_users = np.unique(self.test["user"].to_numpy())
        test_items = self.test["item"].to_numpy()
        cold_item_rows = ~np.isin(test_items, train_items)
        return {
            "base_rows": len(self.base),
            "target_rows": len(self.target),
            "test_rows": len(self.test),
            "target_users": int(self.target["user"].nunique()),
            "test_users": len(test_users),
            "test_users_cold": int((~np.isin(test_users, train_users)).sum()),
            "test_users_warm": int(np.isin(test_users, train_users).sum()),
            "test_items": int(np.unique(test_items).size),
            "test_items_cold": int(np.unique(test_items[cold_item_rows]).size),
            "test_rows_cold_item": int(cold_item_rows.sum()),
        }


def split_interactions(interactions: pd.DataFrame, config: SplitConfig, *, seed: int) -> Split:
    """Split canonical interactions by the configured rule."""
    if isinstance(config, PerUserSplit):
        return per_user_split(interactions, config, seed=seed)
    return time_split(interactions, config)


def per_user_split(interactions: pd.DataFrame, config: PerUserSplit, *, seed: int) -> Split:
    """Seeded per-user holdout (see :class:`PerUserSplit`); vectorised, no per-user loop."""
    users = interactions["user"].to_numpy()
    n = len(users)
    rng = np.random.default_rng(seed)
    # Position of every row in a random order within its user.
    position = positions_by_key(users, rng.random(n))
    counts = np.bincount(users)

    per_row_count = counts[users]
    eligible = per_row_count >= config.min_user_items
    n_test = np.maximum(1, np.floor(config.test_fraction * per_row_count + 0.5)).astype(np.int64)
    remaining = per_row_count - n_test
    n_target = np.clip(np.floor(config.target_fraction * remaining + 0.5), 1, remaining - 1).astype(np.int64)

    is_test = eligible & (position < n_test)
    is_target = eligible & ~is_test & (position < n_test + n_target)
    if not is_test.any():
        raise ConfigError(
            f"split.min_user_items: no user has {config.min_user_items} or more items, so the test part is empty"
        )
    return _parts(interactions, is_target, is_test)


def time_split(interactions: pd.DataFrame, config: TimeSplit) -> Split:
    """Global time split at ``target_start`` and ``test_start`` (dates or fractions of the range);
    events from ``test_end`` on are dropped. One fold: expand ``folds`` first (:func:`fold_splits`)."""
    if config.folds > 1:
        raise ValueError("time_split takes one fold: expand split.folds with fold_splits first")
    if "timestamp" not in interactions.columns:
        raise ConfigError("split.kind: 'time' needs timestamps, and this dataset has none; use 'per_user'")
    ts = interactions["timestamp"]
    first, last = ts.min(), ts.max()

    def cut(value: float | datetime) -> pd.Timestamp:
        if isinstance(value, float):
            return first + (last - first) * value
        return _like(pd.Timestamp(value), ts)

    target_start, test_start = cut(config.target_start), cut(config.test_start)
    is_base = (ts < target_start).to_numpy()
    is_test = (ts >= test_start).to_numpy()
    if config.test_end is not None:
        is_test = is_test & (ts < cut(config.test_end)).to_numpy()
    is_target = ~is_base & (ts < test_start).to_numpy()
    windows = (("base", "split.target_start", is_base), ("target", "split.target_start", is_target),
               ("test", "split.test_start", is_test))
    for name, key, mask in windows:
        if not mask.any():
            raise ConfigError(f"{key}: the cut points ({_dates(config)}) leave the {name} window empty "
                              f"(data spans {first} to {last})")
    return _parts(interactions, is_target, is_test, is_base=is_base, target_start=target_start,
                  test_start=test_start)


def fold_splits(config: TimeSplit) -> tuple[TimeSplit, ...]:
    """The one-fold splits of rolling-origin evaluation, oldest first.

    Fold K (the last) is ``config`` itself; fold k < K has every cut point moved back by
    ``(K - k) * fold_days`` and its test window ends where fold k + 1's begins, so the K test
    windows are consecutive and disjoint, each fold trains on everything before its own test
    window, and nothing after that window is seen. The last fold equals the single split of
    the same cut points, so its outputs are shared with a one-fold run.
    """
    if config.folds == 1:
        return (config,)
    assert config.fold_days is not None and isinstance(config.target_start, datetime)
    assert isinstance(config.test_start, datetime)
    step = timedelta(days=config.fold_days)
    folds = []
    for back in range(config.folds - 1, -1, -1):
        test_start = config.test_start - back * step
        folds.append(TimeSplit(target_start=config.target_start - back * step, test_start=test_start,
                               test_end=config.test_end if back == 0 else test_start + step))
    return tuple(folds)


def _dates(config: TimeSplit) -> str:
    end = f", test_end {config.test_end:%Y-%m-%d}" if config.test_end is not None else ""
    if isinstance(config.target_start, float):
        return f"target_start {config.target_start}, test_start {config.test_start}"
    return f"target_start {config.target_start:%Y-%m-%d}, test_start {config.test_start:%Y-%m-%d}{end}"


def _parts(interactions: pd.DataFrame, is_target: np.ndarray, is_test: np.ndarray, *,
           is_base: np.ndarray | None = None, target_start: pd.Timestamp | None = None,
           test_start: pd.Timestamp | None = None) -> Split:
    """The three parts; rows in none of them (a time split's events from ``test_end`` on) are dropped."""
    is_base = ~(is_target | is_test) if is_base is None else is_base
    return Split(
        base=interactions[is_base].reset_index(drop=True),
        target=interactions[is_target].reset_index(drop=True),
        test=interactions[is_test].reset_index(drop=True),
        target_start=target_start,
        test_start=test_start,
    )


def pair_mask(side: pd.DataFrame, pairs: pd.DataFrame, n_items: int) -> np.ndarray:
    """Rows of ``side`` whose (user, item) pair appears in ``pairs``."""
    return np.isin(pair_keys(side["user"].to_numpy(), side["item"].to_numpy(), n_items),
                   pair_keys(pairs["user"].to_numpy(), pairs["item"].to_numpy(), n_items))


def split_pair_side_data(side: pd.DataFrame, split: Split, n_items: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split side data keyed by (user, item) — e.g. users' own tags — with the interactions.

    Returns ``(side_base, side_train)``: rows of test pairs are removed from both (a user's
    tag on a held-out artist would reveal it), rows of ranker-target pairs from base too. On a
    time split, dated side rows (a ``timestamp`` column) are also cut at the stage's cut point:
    train keeps rows before ``test_start``, base rows before ``target_start`` (a training
    pair's tag given in the test window is a look into the future).
    """
    in_test = pair_mask(side, split.test, n_items)
    in_target = pair_mask(side, split.target, n_items)
    drop_train, drop_base = in_test, in_test | in_target
    if "timestamp" in side.columns and split.test_start is not None and split.target_start is not None:
        ts = side["timestamp"]
        drop_train = drop_train | (ts >= _like(split.test_start, ts)).to_numpy()
        drop_base = drop_base | (ts >= _like(split.target_start, ts)).to_numpy()
    side_train = side[~drop_train].reset_index(drop=True)
    side_base = side[~drop_base].reset_index(drop=True)
    return side_base, side_train


def _like(cut: pd.Timestamp, ts: pd.Series) -> pd.Timestamp:
    """``cut`` in the time zone convention of ``ts`` (naive vs aware) so they compare."""
    cut = pd.Timestamp(cut)
    if ts.dt.tz is None and cut.tz is not None:
        return cut.tz_convert(None)
    if ts.dt.tz is not None and cut.tz is None:
        return cut.tz_localize(ts.dt.tz)
    return cut
