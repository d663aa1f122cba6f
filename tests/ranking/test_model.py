"""Ranker building blocks: negative sampling, top-k, popularity completion, both losses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from encore.arrays import pair_keys
from encore.config.experiment import RankerConfig
from encore.ranking.features import sorted_pairs_dot, within_user_zscore
from encore.ranking.model import complete_with_popular, select_training_rows, top_k, train_ranker


def test_negative_sampling_keeps_every_positive_and_n_negatives_each() -> None:
    users = np.repeat([0, 1, 2], [10, 10, 10])
    y = np.zeros(30, dtype=np.int8)
    y[[0, 1, 12]] = 1  # user 0: two positives, user 1: one, user 2: none
    keys = pair_keys(users, np.tile(np.arange(10), 3), 10)
    keep = select_training_rows(users, keys, y, RankerConfig(negatives_per_positive=3), seed=0)
    assert keep[y == 1].all()
    assert keep[users == 0].sum() == 2 + 6 and keep[users == 1].sum() == 1 + 3
    assert not keep[users == 2].any()  # a user without positives teaches nothing
    everything = select_training_rows(users, keys, y, RankerConfig(negatives_per_positive=None), seed=0)
    assert everything.sum() == 20


def test_top_k_orders_by_score_within_each_user() -> None:
    recs = top_k(np.array([1, 1, 1, 0, 0]), np.array([10, 11, 12, 20, 21]), np.array([0.1, 0.9, 0.5, 0.2, 0.3]), 2)
    assert recs[["user", "item", "rank"]].values.tolist() == [[0, 21, 1], [0, 20, 2], [1, 11, 1], [1, 12, 2]]


def test_completion_fills_short_lists_with_unseen_popular_items() -> None:
    recs = pd.DataFrame({"user": [0], "item": [5], "score": [1.0], "rank": [1]})
    seen = pair_keys(np.array([0, 1]), np.array([7, 7]), n_items=10)
    filled = complete_with_popular(recs, np.array([0, 1]), np.array([7, 5, 3, 2]), seen, n_items=10, k=3)
    assert filled[filled.user == 0]["item"].tolist() == [5, 3, 2]  # 7 seen, 5 already listed
    assert filled[filled.user == 1]["item"].tolist() == [5, 3, 2]
    assert filled[filled.user == 1]["rank"].tolist() == [1, 2, 3]


def test_zscore_and_sorted_pair_dot() -> None:
    import scipy.sparse as sp

    users = np.array([0, 0, 1, 1, 1])
    z = within_user_zscore(users, np.array([1.0, 3.0, 2.0, 2.0, 2.0]))
    assert z[:2] == pytest.approx([-1, 1], abs=1e-5) and z[2:] == pytest.approx([0, 0, 0])
    left = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 1, 1]]))
    right = sp.csr_matrix(np.array([[1.0, 1, 0], [0, 0, 3], [2, 0, 0]]))
    items = np.array([0, 1, 0, 1, 2])
    expected = [left[u].toarray() @ right[i].toarray().ravel() for u, i in zip(users, items, strict=True)]
    assert sorted_pairs_dot(users, items, left, right, batch=1) == pytest.approx(np.ravel(expected))


@pytest.mark.parametrize("loss", ["Logloss", "YetiRank"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_both_losses_learn_a_planted_signal(loss: str, early_stopping: bool) -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 20)
    signal = rng.normal(size=len(users))
    y = (signal + 0.5 * rng.normal(size=len(users)) > 1.2).astype(np.int8)
    features = pd.DataFrame({"signal": signal, "noise": rng.normal(size=len(users))})
    config = RankerConfig(loss=loss, iterations=60, early_stopping=early_stopping, early_stopping_rounds=10,
                          thread_count=1)
    trained = train_ranker(features, y, users, config, seed=1)
    scores = trained.score(features)
    assert np.corrcoef(scores, signal)[0, 1] > 0.7
    assert trained.importance()["feature"].iloc[0] == "signal"
    assert trained.iterations <= 60
