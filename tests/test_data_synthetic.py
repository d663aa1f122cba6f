"""Synthetic data: seeded, sized, music-like, fast."""

from __future__ import annotations

import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from scripts.core.data import load_dataset
from scripts.core.data.config import SyntheticConfig
from scripts.core.data.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def small():
    return generate_synthetic(SyntheticConfig(n_users=500, n_items=2000, n_interactions=20_000, n_tags=60))


def test_deterministic_under_seed(small) -> None:
    cfg = SyntheticConfig(n_users=500, n_items=2000, n_interactions=20_000, n_tags=60)
    again = generate_synthetic(cfg)
    pd.testing.assert_frame_equal(small.interactions, again.interactions)
    pd.testing.assert_frame_equal(small.item_tags, again.item_tags)
    pd.testing.assert_frame_equal(small.user_item_tags, again.user_item_tags)
    pd.testing.assert_frame_equal(small.social, again.social)
    other = generate_synthetic(cfg.model_copy(update={"random_state": 7}))
    assert not small.interactions.equals(other.interactions)


def test_sizes_and_dtypes(small) -> None:
    assert small.n_users == 500 and small.n_items == 2000 and small.n_tags == 60
    inter = small.interactions
    assert len(inter) == 20_000 == small.stats["n_interactions"]
    assert not inter.duplicated(["user", "item"]).any()
    assert inter.dtypes.to_dict() == {
        "user": np.int32, "item": np.int32, "weight": np.float32, "timestamp": np.dtype("datetime64[ns]")
    }
    assert inter.user.nunique() == 500  # every user listens to something
    assert (inter.weight >= 1).all() and inter.weight.max() > 20 * inter.weight.median()  # heavy tail
    assert inter.timestamp.min() >= pd.Timestamp("2019-01-01") and inter.timestamp.max() < pd.Timestamp("2021-01-01")
    assert small.item_names[3] == "artist_0003" and small.tag_names[0] == "rock"


def test_music_like_structure(small) -> None:
    counts = np.sort(np.bincount(small.interactions.item, minlength=small.n_items))[::-1]
    top_share = counts[: small.n_items // 100].sum() / counts.sum()
    assert top_share > 0.10  # uniform popularity would give ~0.01
    flat = generate_synthetic(
        SyntheticConfig(n_users=500, n_items=2000, n_interactions=20_000, popularity_exponent=0.0)
    )
    flat_counts = np.sort(np.bincount(flat.interactions.item, minlength=2000))[::-1]
    assert flat_counts[:20].sum() / flat_counts.sum() < top_share / 2

    tags_per_item = small.item_tags.groupby("item").size()
    assert len(tags_per_item) == small.n_items and tags_per_item.between(1, 5).all()
    pairs = small.interactions.set_index(["user", "item"]).index
    assert small.user_item_tags.set_index(["user", "item"]).index.isin(pairs).all()
    social = small.social
    assert (social.user != social.friend).all()
    both = social.merge(social, left_on=["user", "friend"], right_on=["friend", "user"])
    assert len(both) == len(social)  # listed in both directions
    assert 1 < len(social) / small.n_users < 20  # sparse


def test_dense_request_reports_actual_count() -> None:
    ds = generate_synthetic(SyntheticConfig(n_users=10, n_items=12, n_interactions=120, n_tags=5, n_clusters=3))
    assert ds.stats["n_interactions_requested"] == 120
    assert ds.stats["n_interactions"] == len(ds.interactions) <= 120
    assert len(ds.interactions) > 60


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="exceeds the 10 x 10 = 100 possible"):
        SyntheticConfig(n_users=10, n_items=10, n_interactions=101)
    with pytest.raises(ValueError, match="greater than 0"):
        SyntheticConfig(n_users=0)
    with pytest.raises(ValueError, match="must be before end"):
        SyntheticConfig(start=date(2020, 1, 1), end=date(2019, 1, 1))
    with pytest.raises(ValueError, match="below n_users"):
        SyntheticConfig(n_users=100, n_interactions=50)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        SyntheticConfig(n_user=5)


def test_one_million_interactions_timing(tmp_path) -> None:
    cfg = SyntheticConfig(n_users=20_000, n_items=50_000, n_interactions=1_000_000)
    start = time.perf_counter()
    ds = load_dataset(cfg, data_dir=tmp_path)
    elapsed = time.perf_counter() - start
    print(f"\nsynthetic: {len(ds.interactions):,} interactions in {elapsed:.2f} s")
    assert len(ds.interactions) == 1_000_000
