"""Synthetic data: seeded, sized, music-like, fast."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from encore.data import load_dataset
from encore.data.dataset_config import SyntheticConfig
from encore.data.synthetic import generate_synthetic, item_structure

SMALL = SyntheticConfig(n_users=500, n_items=2000, n_interactions=20_000, n_tags=60)


@pytest.fixture(scope="module")
def small():
    return generate_synthetic(SMALL)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return item_structure(SMALL)


def test_deterministic_under_seed(small) -> None:
    cfg = SMALL
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


def _top_scene_share(inter: pd.DataFrame, truth: pd.DataFrame, top: int = 3) -> float:
    """Mean share of a user's items inside the ``top`` scenes they listen to most."""
    per_scene = pd.crosstab(inter.user, truth.scene.to_numpy()[inter.item]).to_numpy()
    top_counts = -np.sort(-per_scene, axis=1)[:, :top].sum(axis=1)
    return float((top_counts / per_scene.sum(axis=1)).mean())


def _same_scene_lift(inter: pd.DataFrame, truth: pd.DataFrame, n_users: int) -> float:
    """Mean co-listening count of same-scene item pairs over that of cross-scene pairs."""
    x = np.zeros((n_users, len(truth)), dtype=np.float32)
    x[inter.user, inter.item] = 1.0
    co = x.T @ x
    scene = truth.scene.to_numpy()
    same = scene[:, None] == scene[None, :]
    off_diagonal = ~np.eye(len(truth), dtype=bool)
    return float(co[same & off_diagonal].mean() / co[~same].mean())


def test_listening_concentrates_in_scenes(small, truth) -> None:
    inter = small.interactions
    # Baseline: the same items and user activity with the users shuffled (popularity kept).
    shuffled = inter.assign(user=np.random.default_rng(0).permutation(inter.user.to_numpy()))
    share = _top_scene_share(inter, truth)
    assert share > _top_scene_share(shuffled, truth) + 0.25  # measured 0.84 vs 0.44
    disloyal = SMALL.model_copy(update={"loyalty": 0.05})
    assert _top_scene_share(generate_synthetic(disloyal).interactions, item_structure(disloyal)) < share - 0.15

    # Item-item co-listening is far denser inside a scene than across scenes, beyond what
    # popularity alone gives (measured 8.7 vs 1.7).
    lift = _same_scene_lift(inter, truth, small.n_users)
    assert lift > 3 * _same_scene_lift(shuffled, truth, small.n_users)


def test_tags_identify_scenes(small, truth) -> None:
    tags = small.item_tags
    x = np.zeros((small.n_items, small.n_tags))
    x[tags.item, tags.tag] = 1.0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -1.0)
    scene = truth.scene.to_numpy()
    # Ties broken at random: the share of items whose tag-nearest artist shares their scene.
    noise = np.random.default_rng(0).random(sim.shape) * 1e-6
    nearest = np.argmax(sim + noise, axis=1)
    same_scene = (scene[nearest] == scene).mean()
    assert same_scene > 0.6, same_scene  # 33 scenes: by chance ~0.03 (measured 0.96)
    # Genre tags: the first n_clusters tags, mostly on items of their genre (noise aside).
    genre_rows = tags.loc[tags.tag < SMALL.n_clusters]
    assert (genre_rows.tag.to_numpy() == truth.genre.to_numpy()[genre_rows.item]).mean() > 0.75


def test_listens_follow_release_and_trend(small, truth) -> None:
    inter = small.interactions
    release = truth.release.to_numpy()[inter.item]
    new = ~np.isnat(release)
    assert 0.1 < new.mean() < 0.9
    age = (inter.timestamp.to_numpy()[new] - release[new]) / np.timedelta64(1, "D")
    assert (age >= 0).all()  # nobody listens to an artist before its release
    # Listens crowd the months after release: compare with listens spread uniformly over
    # the time left after release (what a flat trend would give).
    left = (np.datetime64("2021-01-01") - release[new]) / np.timedelta64(1, "D")
    early = age < 120.0
    assert early.mean() > 1.3 * np.minimum(120.0 / left, 1.0).mean()


def test_friends_share_taste(small) -> None:
    inter = small.interactions
    x = np.zeros((small.n_users, small.n_items), dtype=np.float32)
    x[inter.user, inter.item] = 1.0
    links = small.social.to_numpy()
    common_friends = (x[links[:, 0]] * x[links[:, 1]]).sum(axis=1).mean()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, small.n_users, (2, len(links)))
    common_random = (x[a] * x[b]).sum(axis=1).mean()
    assert common_friends > 2 * common_random


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


def test_one_million_interactions_exactly(tmp_path) -> None:
    # Its speed is measured in the README (Synthetic data), not asserted here.
    cfg = SyntheticConfig(n_users=20_000, n_items=50_000, n_interactions=1_000_000)
    ds = load_dataset(cfg, data_dir=tmp_path)
    assert len(ds.interactions) == 1_000_000
    assert not ds.interactions.duplicated(["user", "item"]).any()


def test_item_structure_matches_dataset(small, truth) -> None:
    n_scenes = round(SMALL.n_items / SMALL.scene_size)
    assert len(truth) == small.n_items and truth.scene.nunique() == n_scenes and truth.genre.nunique() == 20
    assert np.isclose(truth.popularity.sum(), 1.0)
    # Items of popular scenes are listened to more (the structure is the data's, not another draw's).
    listens = np.bincount(small.interactions.item, minlength=small.n_items)
    assert np.corrcoef(np.log(truth.popularity), np.log1p(listens))[0, 1] > 0.5


def test_release_dates_are_exported_as_catalogue_metadata(small, truth) -> None:
    """The hidden release of every artist is the dataset's ``item_release`` (NaT: back catalogue),
    and nobody listens to an artist before its release."""
    ids = small.item_ids.astype(np.int64)
    np.testing.assert_array_equal(small.item_release, truth["release"].to_numpy("datetime64[ns]")[ids])
    released = ~np.isnat(small.item_release)
    assert 0 < released.mean() < 1
    heard = small.interactions
    release = small.item_release[heard["item"].to_numpy()]
    assert ((heard["timestamp"].to_numpy() >= release) | np.isnat(release)).all()
