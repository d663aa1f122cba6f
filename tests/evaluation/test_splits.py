"""Splits: disjointness, determinism, stated fractions, leak-free side data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from encore.config.experiment import ConfigError, PerUserSplit, TimeSplit
from encore.evaluation.splits import per_user_split, split_pair_side_data, time_split


def interactions(n_users: int = 300, seed: int = 0, with_time: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 60, size=n_users)
    users = np.repeat(np.arange(n_users), counts)
    items = np.concatenate([rng.choice(500, size=c, replace=False) for c in counts])
    frame = pd.DataFrame({"user": users.astype(np.int32), "item": items.astype(np.int32),
                          "weight": rng.integers(1, 100, len(users)).astype(np.float32)})
    if with_time:
        frame["timestamp"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, len(users)), unit="D")
    return frame


def keys(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"], frame["item"], strict=True))


def test_per_user_split_is_disjoint_and_complete() -> None:
    data = interactions()
    split = per_user_split(data, PerUserSplit(), seed=1)
    parts = [keys(split.base), keys(split.target), keys(split.test)]
    assert sum(map(len, parts)) == len(data)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_per_user_split_is_deterministic_under_a_seed() -> None:
    data = interactions()
    a, b = per_user_split(data, PerUserSplit(), seed=5), per_user_split(data, PerUserSplit(), seed=5)
    c = per_user_split(data, PerUserSplit(), seed=6)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert keys(a.test) != keys(c.test)


def test_per_user_split_fractions() -> None:
    data = interactions()
    config = PerUserSplit(test_fraction=0.2, target_fraction=0.25, min_user_items=5)
    split = per_user_split(data, config, seed=3)
    n = data.groupby("user").size()
    test = split.test.groupby("user").size().reindex(n.index, fill_value=0)
    target = split.target.groupby("user").size().reindex(n.index, fill_value=0)
    eligible = n >= 5
    expected_test = np.maximum(1, np.floor(0.2 * n + 0.5))
    assert (test[eligible] == expected_test[eligible]).all()
    rest = n - expected_test
    expected_target = np.clip(np.floor(0.25 * rest + 0.5), 1, rest - 1)
    assert (target[eligible] == expected_target[eligible]).all()
    # Users below min_user_items stay whole in base; every eligible user keeps base items.
    assert (test[~eligible] == 0).all() and (target[~eligible] == 0).all()
    base = split.base.groupby("user").size().reindex(n.index, fill_value=0)
    assert (base[eligible] >= 1).all()
    assert abs(len(split.test) / data[data.groupby("user")["user"].transform("size") >= 5].shape[0] - 0.2) < 0.02


def test_time_split_respects_cut_points_and_counts_cold_users() -> None:
    data = interactions()
    split = time_split(data, TimeSplit(target_start=0.6, test_start=0.8))
    t0, t1 = data["timestamp"].min(), data["timestamp"].max()
    cut1, cut2 = t0 + (t1 - t0) * 0.6, t0 + (t1 - t0) * 0.8
    assert (split.base["timestamp"] < cut1).all()
    assert ((split.target["timestamp"] >= cut1) & (split.target["timestamp"] < cut2)).all()
    assert (split.test["timestamp"] >= cut2).all()
    summary = split.summary()
    assert summary["test_users"] == summary["test_users_cold"] + summary["test_users_warm"]


def test_time_split_rejects_an_empty_window() -> None:
    data = interactions()
    with pytest.raises(ConfigError, match=r"split\.test_start"):
        time_split(data, TimeSplit(target_start=pd.Timestamp("2020-06-01").to_pydatetime(),
                                   test_start=pd.Timestamp("2030-01-01").to_pydatetime()))


def test_time_split_needs_timestamps() -> None:
    with pytest.raises(ConfigError, match="per_user"):
        time_split(interactions(with_time=False), TimeSplit(target_start=0.5, test_start=0.7))


def test_pair_side_data_never_reveals_held_out_pairs() -> None:
    data = interactions()
    split = per_user_split(data, PerUserSplit(), seed=2)
    # Every interaction carries a tag, plus tags on pairs never listened to.
    side = pd.concat([data[["user", "item"]].assign(tag=1),
                      pd.DataFrame({"user": [0, 1], "item": [499, 498], "tag": [2, 2]})], ignore_index=True)
    side_base, side_train = split_pair_side_data(side, split, n_items=500)
    assert not keys(side_train) & keys(split.test)
    assert not keys(side_base) & (keys(split.test) | keys(split.target))
    assert keys(side_base) >= keys(split.base)
    assert len(side_train) == len(side) - len(split.test)
