"""Release dates through prepare into re-ranking: ages from the catalogue, and the release rule
(``release_horizon_days``) leaving out what a stage's lists could not serve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encore.components import rerank
from encore.components.prepare import prepare
from encore.config.experiment import EncoreConfig, with_settings
from encore.data.parsing import build_dataset
from encore.data.prepared import PreparedData
from encore.evaluation.splits import Split
from encore.ranking.feature_groups import latest_timestamp

START = pd.Timestamp("2020-01-01")


def _part(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    """(user, item, day) listens."""
    return pd.DataFrame({"user": np.array([u for u, _, _ in rows], dtype=np.int32),
                         "item": np.array([i for _, i, _ in rows], dtype=np.int32),
                         "weight": np.ones(len(rows), dtype=np.float32),
                         "timestamp": pd.to_datetime([START + pd.Timedelta(days=d) for _, _, d in rows]
                                                     ).astype("datetime64[ns]")})


@pytest.fixture()
def prepared(tmp_path: Path) -> PreparedData:
    # Items i0..i4: i0 back catalogue (no release date), i1 released day 2 and heard from day 5,
    # i2 released day 18 and first heard in target, i3 released day 42 and heard in test, i4
    # released day 200 and never heard. Base ends on day 10, train (base + target) on day 20.
    base, target, test = _part([(0, 0, 1), (0, 1, 5), (1, 0, 10)]), _part([(1, 2, 20)]), _part([(0, 3, 45)])
    everything = pd.concat([base, target, test], ignore_index=True)
    raw = everything.assign(user="u" + everything["user"].astype(str), item="i" + everything["item"].astype(str))
    release = pd.Series(pd.to_datetime([None, START + pd.Timedelta(days=2), START + pd.Timedelta(days=18),
                                        START + pd.Timedelta(days=42), START + pd.Timedelta(days=200)]),
                        index=[f"i{n}" for n in range(5)])
    dataset = build_dataset("toy", raw, interactions_file="toy.csv", item_catalog=pd.Index(release.index),
                            item_release=release)
    prepare(dataset, Split(base=base, target=target, test=test), tmp_path, data_sha256={})
    return PreparedData(tmp_path)


def test_prepare_keeps_release_dates_and_reads_them_as_seconds(prepared: PreparedData) -> None:
    seconds = prepared.item_release_seconds()
    assert seconds is not None and np.isnan(seconds[0])
    np.testing.assert_allclose((seconds[1:] - START.value / 1e9) / 86_400, [2, 18, 42, 200])
    # A stage's last event, read without building its timestamp matrix, is the ranker's "now".
    for stage in ("base", "train"):
        assert prepared.last_event_seconds(stage) == latest_timestamp(prepared.timestamps(stage))


def test_ages_come_from_the_release_date_where_the_catalogue_has_one(prepared: PreparedData,
                                                                     tiny_config: EncoreConfig) -> None:
    config = with_settings(tiny_config, {"rerank": {"embeddings_from": None}})
    base = rerank.item_side(config, {}, prepared, "base").age_days
    # i0: first listen (day 1, 9 days before day 10); i1: released day 2 (not first heard day 5);
    # i2..i4 not released by day 10: age 0, the freshest.
    np.testing.assert_allclose(base, [9, 8, 0, 0, 0])
    np.testing.assert_allclose(rerank.item_side(config, {}, prepared, "train").age_days, [19, 18, 2, 0, 0])


@pytest.mark.parametrize(("horizon", "base", "train"), [
    (None, [], []),          # no rule: every item may be listed
    (0.0, [2, 3, 4], [3, 4]),  # only what is out when the lists are made
    (30.0, [3, 4], [4]),     # a list served 30 days: i3 (day 42) is in train's window, not base's
])
def test_the_release_rule_leaves_out_what_is_not_out_while_a_list_is_served(
        prepared: PreparedData, tiny_config: EncoreConfig, horizon: float | None, base: list[int],
        train: list[int]) -> None:
    config = with_settings(tiny_config, {"rerank": {"release_horizon_days": horizon}})
    assert rerank.unreleased(config, prepared, "base").tolist() == base
    assert rerank.unreleased(config, prepared, "train").tolist() == train


def test_content_proposes_unheard_items_out_for_less_than_new_days(prepared: PreparedData,
                                                                   tiny_config: EncoreConfig) -> None:
    # Base (day 10): i2, i3, i4 unheard; with new_days 30 and a 30-day horizon i3 (day 42) and i4
    # (day 200) are not out while the list is served. Train (day 20): i3 and i4 unheard, i4 left out.
    config = with_settings(tiny_config, {"rerank": {"release_horizon_days": 30.0, "new_days": 30.0}})
    assert np.flatnonzero(rerank.new_items(config, prepared, "base")).tolist() == [2]
    assert np.flatnonzero(rerank.new_items(config, prepared, "train")).tolist() == [3]
    # An item out for new_days or more and never heard is no new release: i2 (day 18) at new_days 1.
    config = with_settings(config, {"rerank": {"new_days": 1.0}})
    assert np.flatnonzero(rerank.new_items(config, prepared, "base")).tolist() == [2]  # day 10: not out yet
    late = with_settings(config, {"rerank": {"release_horizon_days": None}})
    assert np.flatnonzero(rerank.new_items(late, prepared, "train")).tolist() == [3, 4]
