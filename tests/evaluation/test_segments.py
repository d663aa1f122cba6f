"""Evaluation segments (all / warm / cold users, cold-item pairs) on a hand-made split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encore.components.prepare import prepare
from encore.data.parsing import build_dataset
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator
from encore.evaluation.splits import Split


def _frame(rows: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame({"user": np.array([u for u, _ in rows], dtype=np.int32),
                         "item": np.array([i for _, i in rows], dtype=np.int32),
                         "weight": np.ones(len(rows), dtype=np.float32)})


@pytest.fixture()
def prepared(tmp_path: Path) -> PreparedData:
    # Users 0-3 (raw ids "u0".."u3"), items 0-5. Train = base + target holds items 0-3 only,
    # so items 4 and 5 are cold. Users 0 and 1 have history (warm); users 2 and 3 first
    # appear in test (cold).
    base = _frame([(0, 0), (0, 1), (1, 2)])
    target = _frame([(1, 3)])
    test = _frame([(0, 2), (0, 4), (1, 0), (2, 1), (3, 5)])
    everything = pd.concat([base, target, test], ignore_index=True)
    raw = everything.assign(user="u" + everything["user"].astype(str), item="i" + everything["item"].astype(str))
    dataset = build_dataset("toy", raw, interactions_file="toy.csv")
    # build_dataset codes sorted raw ids, so "u0" -> 0 ... "i5" -> 5: the split above holds as is.
    assert list(dataset.user_ids) == ["u0", "u1", "u2", "u3"]
    prepare(dataset, Split(base=base, target=target, test=test), tmp_path, data_sha256={})
    return PreparedData(tmp_path)


def test_segments_hand_computed(prepared: PreparedData) -> None:
    ev = Evaluator(prepared, "train", (2,))
    assert ev.users.tolist() == [0, 1, 2, 3]
    seg = ev.segments
    assert seg["all"].rows.tolist() == [0, 1, 2, 3]
    assert seg["warm"].rows.tolist() == [0, 1]
    assert seg["cold"].rows.tolist() == [2, 3]
    # Cold items 4, 5: user 0's pair (0, 4) and user 3's pair (3, 5).
    assert seg["cold_items"].rows.tolist() == [0, 3]
    assert seg["cold_items"].relevant.toarray().astype(bool).tolist() == [
        [False, False, False, False, True, False], [False, False, False, False, False, True]]
    assert ev.user_segment().tolist() == ["warm", "warm", "cold", "cold"]

    lists = np.array([[2, 3],     # user 0: hit item 2 at rank 1 (relevant {2, 4})
                      [1, 0],     # user 1: hit item 0 at rank 2 (relevant {0})
                      [0, 3],     # user 2: miss (relevant {1})
                      [5, 0]])    # user 3: hit cold item 5 at rank 1 (relevant {5})
    d = 1 / math.log2(3)
    ndcg = {0: 1 / (1 + d), 1: d, 2: 0.0, 3: 1.0}
    assert ev.evaluate(lists, "all")["ndcg@2"] == pytest.approx(np.mean(list(ndcg.values())))
    assert ev.evaluate(lists, "warm")["ndcg@2"] == pytest.approx((ndcg[0] + ndcg[1]) / 2)
    assert ev.evaluate(lists, "cold")["ndcg@2"] == pytest.approx((ndcg[2] + ndcg[3]) / 2)
    # Cold items only: user 0's relevant set is {4} (a miss), user 3's {5} (a hit at 1).
    assert ev.evaluate(lists, "cold_items")["ndcg@2"] == pytest.approx(0.5)
    assert ev.evaluate(lists, "cold")["recall@2"] == pytest.approx(0.5)
    assert ev.per_user(lists, "ndcg@2", "warm") == pytest.approx([ndcg[0], ndcg[1]])
    # Part of the users: each segment is scored on its own.
    assert [ev.scored_as(name) for name in ("all", "warm", "cold", "cold_items")] == [
        "all", "warm", "cold", "cold_items"]


def test_empty_segment_is_reported_not_nan(tmp_path: Path) -> None:
    # Every test user has history: the cold segment is empty and evaluating it says so.
    base, target, test = _frame([(0, 0), (1, 1)]), _frame([(0, 1)]), _frame([(0, 2), (1, 0)])
    everything = pd.concat([base, target, test], ignore_index=True)
    raw = everything.assign(user="u" + everything["user"].astype(str), item="i" + everything["item"].astype(str))
    prepare(build_dataset("toy", raw, interactions_file="toy.csv"), Split(base, target, test), tmp_path,
            data_sha256={})
    ev = Evaluator(PreparedData(tmp_path), "train", (2,))
    assert ev.segments["cold"].n_users == 0
    assert ev.segments["warm"].n_users == 2
    with pytest.raises(ValueError, match="segment 'cold' has no test users"):
        ev.evaluate(np.array([[2, 1], [0, 2]]), "cold")
    # Warm holds every test user with all their items: scored once, as "all".
    lists = np.array([[2, 1], [1, 2]])
    assert ev.scored_as("warm") == "all" and ev.scored_as("cold_items") == "cold_items"
    assert ev.evaluate(lists, "warm") == ev.evaluate(lists, "all")


def test_comparison_block_of_an_empty_segment_says_so() -> None:
    from encore.components.evaluate import _segment_block

    text = _segment_block("cold", 0, None)
    assert text.startswith("### cold: 0 test users")
    assert "No test users in this segment: every test user has history in train" in text
    assert "nan" not in text.lower()


def test_promote_pairs_only_the_configured_segment(tmp_path: Path) -> None:
    from encore.components.promote import per_user_values, segment_metric

    frame = pd.DataFrame({"user_id": ["a", "b", "c"], "segment": ["warm", "cold", "warm"], "value": [0.1, 0.2, 0.3]})
    frame.to_parquet(tmp_path / "per_user_metric.parquet")

    class Client:  # the one MlflowClient call per_user_values makes
        def download_artifacts(self, run_id: str, path: str, dst: str) -> str:
            return str(tmp_path / path)

    assert per_user_values(Client(), "r", "warm").to_dict() == {"a": 0.1, "c": 0.3}
    assert per_user_values(Client(), "r").to_dict() == {"a": 0.1, "b": 0.2, "c": 0.3}
    assert segment_metric("ndcg_at_10", "warm") == "warm.ndcg_at_10"
    assert segment_metric("ndcg_at_10", "all") == "ndcg_at_10"
    frame.drop(columns="segment").to_parquet(tmp_path / "per_user_metric.parquet")
    with pytest.raises(KeyError, match="no 'segment' column"):
        per_user_values(Client(), "r", "cold")
