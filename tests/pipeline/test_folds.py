"""Rolling-origin evaluation: fold cut points, the per-fold pipeline, pooling and its tracking."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from encore.config.experiment import ConfigError, TimeSplit
from encore.evaluation import fold_pooling as pooling
from encore.evaluation import metrics
from encore.evaluation.splits import fold_splits, time_split
from encore.outputs import EvaluateOutput, FoldsOutput
from encore.pipeline.folds import fold_configs, folds_dir
from encore.pipeline.runner import output_dir, run_pipeline
from tests.conftest import TINY_SYNTHETIC, make_config, ran_pipeline

OFF = {"enabled": False}
FOLDED = TINY_SYNTHETIC | {
    "experiment": {"name": "folded", "seed": 3},
    "split": {"kind": "time", "target_start": "2020-03-01", "test_start": "2020-07-01", "folds": 3,
              "fold_days": 60},
    # Three generators keep three folds quick; the ranker and the policy run as usual.
    "components": TINY_SYNTHETIC["components"] | {
        "ranker": {"iterations": 30, "early_stopping_rounds": 10},
        **{name: OFF for name in ("bpr", "item2item", "itemknn", "friends", "userknn", "als128", "als32",
                                  "bpr128", "ease500", "knncos")}},
}


def test_fold_splits_are_consecutive_windows_ending_with_the_configured_split() -> None:
    config = TimeSplit(target_start=datetime(2020, 3, 1), test_start=datetime(2020, 7, 1), folds=3, fold_days=60)
    folds = fold_splits(config)
    assert [f.test_start for f in folds] == [datetime(2020, 3, 3), datetime(2020, 5, 2), datetime(2020, 7, 1)]
    assert [f.target_start for f in folds] == [datetime(2019, 11, 2), datetime(2020, 1, 1), datetime(2020, 3, 1)]
    assert [f.test_end for f in folds] == [datetime(2020, 5, 2), datetime(2020, 7, 1), None]
    # The last fold is the one-fold split of the same cut points (its outputs are shared).
    assert folds[-1] == TimeSplit(target_start=datetime(2020, 3, 1), test_start=datetime(2020, 7, 1))
    assert all(f.folds == 1 for f in folds)


def test_a_fold_sees_nothing_after_its_test_window() -> None:
    times = pd.date_range("2020-01-01", periods=100, freq="D")
    data = pd.DataFrame({"user": np.arange(100) % 7, "item": np.arange(100), "weight": 1.0, "timestamp": times})
    first = fold_splits(TimeSplit(target_start=datetime(2020, 2, 1), test_start=datetime(2020, 3, 1), folds=2,
                                  fold_days=20))[0]
    split = time_split(data, first)
    assert split.test["timestamp"].min() == pd.Timestamp("2020-02-10")
    assert split.test["timestamp"].max() == pd.Timestamp("2020-02-29")  # test_end 2020-03-01 excluded
    assert split.train["timestamp"].max() < pd.Timestamp("2020-02-10")
    assert len(split.base) + len(split.target) + len(split.test) == 60  # March onwards is not seen at all


@pytest.mark.parametrize(("split", "message"), [
    ({"folds": 3}, "fold_days"),
    ({"target_start": 0.6, "test_start": 0.8, "folds": 2, "fold_days": 30}, "must be dates"),
    ({"test_end": "2020-06-01"}, "test_end must be a date after test_start"),
])
def test_bad_fold_settings_name_the_key(tmp_path: Path, split: dict, message: str) -> None:
    experiment = FOLDED | {"split": FOLDED["split"] | {"folds": 1, "fold_days": None} | split}
    with pytest.raises(ConfigError, match=message) as info:
        make_config(tmp_path, experiment)
    assert "split" in str(info.value)


def test_an_empty_fold_window_names_the_fold(tmp_path: Path) -> None:
    experiment = FOLDED | {"split": FOLDED["split"] | {"folds": 40}}  # 40 x 60 days back: before the data
    config = make_config(tmp_path, experiment)
    expected = r"split.folds, fold 1 of 40: component 'prepare' failed: split.target_start: .*base window empty"
    with pytest.raises(Exception, match=expected):
        run_pipeline(config, ["prepare"])


def test_grouped_bootstrap_counts_a_user_once() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(200), rng.random(200) + 0.05
    once = metrics.paired_comparison(a, b, n_resamples=500, random_state=4)
    # Every user twice (two folds with the same values): grouped by user, the same evidence.
    twice = metrics.paired_comparison(np.r_[a, a], np.r_[b, b], n_resamples=500, random_state=4,
                                      groups=np.r_[np.arange(200), np.arange(200)])
    assert (twice.ci_low, twice.ci_high, twice.n_groups) == pytest.approx((once.ci_low, once.ci_high, 200))
    assert twice.mean_b == pytest.approx(once.mean_b) and twice.n_users == 400
    naive = metrics.paired_comparison(np.r_[a, a], np.r_[b, b], n_resamples=500, random_state=4)
    assert naive.ci_high - naive.ci_low < 0.8 * (once.ci_high - once.ci_low)  # rows as users: too sure


def test_pooled_means_by_hand() -> None:
    fold1 = pd.DataFrame({"user_id": [1, 2], "segment": ["warm", "cold"], "pop": [0.0, 0.5], "ranker": [1.0, 0.5]})
    fold2 = pd.DataFrame({"user_id": [1, 3, 4], "segment": ["warm", "warm", "cold"], "pop": [0.2, 0.4, 0.0],
                          "ranker": [0.4, 0.4, 0.3]})
    pool = pooling.pool_per_user({1: fold1, 2: fold2})
    table = pooling.fold_means(pool).set_index(["segment", "model", "fold"])["value"]
    assert table[("all", "ranker", "pooled")] == pytest.approx((1.0 + 0.5 + 0.4 + 0.4 + 0.3) / 5)
    assert table[("warm", "pop", "pooled")] == pytest.approx((0.0 + 0.2 + 0.4) / 3)
    assert table[("cold", "ranker", "1")] == pytest.approx(0.5)
    summary = pooling.pooled_summary(pool, "ndcg@10", n_resamples=200, confidence=0.9, seed=0)
    warm = summary.segments["warm"]
    assert warm["n_users"] == 3 and warm["n_distinct_users"] == 2 and warm["vs_best_generator"]["n_groups"] == 2
    parent = summary.parent_metrics()
    assert parent["ndcg@10"] == parent["pooled.ranker.ndcg@10"] == pytest.approx(0.52)
    assert parent["pooled.best_generator.cold.ndcg@10"] == pytest.approx(0.25)  # pop, the only generator
    assert summary.parent_tags()["encore.best_generator.cold"] == "pop"
    with pytest.raises(ValueError, match="same models in every fold"):
        pooling.pool_per_user({1: fold1, 2: fold2.drop(columns="pop")})


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory):
    return ran_pipeline(tmp_path_factory, "folds", FOLDED)


def test_every_fold_runs_the_pipeline_and_the_pool_holds_them_all(folded) -> None:
    configs = fold_configs(folded)
    evaluated = [output_dir(c, "evaluate") for c in configs]
    assert len(set(evaluated)) == 3 and all(p.is_dir() for p in evaluated)
    out = FoldsOutput(folds_dir(folded)[1])
    pool = out.per_user()
    assert sorted(pool["fold"].unique()) == [1, 2, 3]
    for fold, path in enumerate(evaluated, start=1):
        own = EvaluateOutput(path).per_user()
        mine = pool[pool["fold"] == fold].drop(columns="fold").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, own[mine.columns])
    table = out.table().set_index(["segment", "model", "fold"])["value"]
    assert table[("all", "ranker", "pooled")] == pytest.approx(pool["ranker"].mean())
    assert set(out.summary()["segments"]) <= {"all", "warm", "cold"}
    # The last fold's outputs are those of the one-fold config with the same cut points.
    single = folded.model_copy(update={"split": TimeSplit(target_start=datetime(2020, 3, 1),
                                                          test_start=datetime(2020, 7, 1))})
    assert output_dir(single, "evaluate") == evaluated[-1]


def test_folds_are_nested_runs_and_the_parent_has_pooled_metrics(folded) -> None:
    mlflow.set_tracking_uri(folded.tracking.tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(folded.experiment.name)
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    fold_runs = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                       key=lambda r: r.info.run_name)
    assert [r.info.run_name for r in fold_runs] == ["fold1", "fold2", "fold3"]
    assert fold_runs[2].data.tags["encore.fold.test_start"] == "2020-07-01"
    for run in fold_runs:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        assert {r.info.run_name for r in children} >= {"prepare", "popular", "als", "ease", "ranker", "evaluate"}
        assert "ranker.ndcg_at_10" in run.data.metrics  # evaluate's headline goes to its fold run
    pooled = FoldsOutput(folds_dir(folded)[1]).summary()["segments"]["all"]
    assert parent.data.metrics["pooled.ranker.ndcg_at_10"] == pytest.approx(pooled["ndcg@10"]["ranker"])
    assert parent.data.metrics["ndcg_at_10"] == pytest.approx(pooled["ndcg@10"]["ranker"])
    assert parent.data.metrics["n_folds"] == 3
    assert "pooled.uplift_vs_best_generator_ci_low" in parent.data.metrics
    assert len(parent.data.metrics) <= 50  # the pooled headline; every fold's full table is an artifact
    assert parent.data.tags["encore.best_generator"] == pooled["best_generator"]
