"""The ranking stage and evaluate on Spark (``components.ranker.engine: spark``,
``evaluation.engine: spark``) against the session's two-worker standalone cluster.

The session fixture ``spark_runs`` (tests/conftest.py, shared with the ``als_spark`` tests) runs
``prepare + popular + als_spark + ranker + evaluate`` on the cluster with the pandas ranking stage
and evaluation, then the same pipeline with both engines on Spark (the runner reuses prepare and
the generators: same candidates, same trained model), then the whole Spark pipeline again from
scratch on ``local[2]``. Tiny synthetic data (300 users, 600 items)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encore.config.experiment import EncoreConfig
from encore.outputs import EvaluateOutput, RankerOutput
from encore.pipeline.runner import output_dir
from tests.conftest import SparkRuns


def recommendations(config: EncoreConfig) -> pd.DataFrame:
    return RankerOutput(output_dir(config, "ranker")).recommendations()


def assert_same_lists(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Identical rows (user, item, rank, names) and dtypes; scores within float32 tolerance."""
    assert list(a.columns) == list(b.columns)
    assert dict(a.dtypes) == dict(b.dtypes)
    exact = [c for c in a.columns if c != "score"]
    pd.testing.assert_frame_equal(a[exact].reset_index(drop=True), b[exact].reset_index(drop=True))
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-6, atol=1e-7, equal_nan=True)


def test_spark_ranking_stage_gives_the_pandas_lists(spark_runs: SparkRuns) -> None:
    """Same candidates, same model: identical top-k (with the fallback and the popular completion)."""
    pandas_recs, spark_recs = recommendations(spark_runs.pandas), recommendations(spark_runs.cluster)
    # the same candidates
    assert output_dir(spark_runs.pandas, "als_spark") == output_dir(spark_runs.cluster, "als_spark")
    assert output_dir(spark_runs.pandas, "ranker") != output_dir(spark_runs.cluster, "ranker")  # really scored twice
    assert len(pandas_recs) == 300 * 50  # every user, top_k each
    assert_same_lists(pandas_recs, spark_recs)
    pandas_metrics = RankerOutput(output_dir(spark_runs.pandas, "ranker")).metrics()
    spark_metrics = RankerOutput(output_dir(spark_runs.cluster, "ranker")).metrics()
    for key in ("candidate_recall", "fallback_users", "ndcg@10", "recall@20"):
        assert spark_metrics[key] == pytest.approx(pandas_metrics[key], abs=1e-12), key
    assert spark_metrics["spark_broadcast_bytes"] > 0


def comparison(config: EncoreConfig) -> pd.DataFrame:
    return EvaluateOutput(output_dir(config, "evaluate")).comparison()


def test_spark_evaluation_gives_the_pandas_figures(spark_runs: SparkRuns) -> None:
    """Every metric of every model and segment, the per-user table and the paired tests agree."""
    pandas_eval = EvaluateOutput(output_dir(spark_runs.pandas, "evaluate"))
    spark_eval = EvaluateOutput(output_dir(spark_runs.cluster, "evaluate"))
    a, b = pandas_eval.comparison(), spark_eval.comparison()
    assert list(a.columns) == list(b.columns) and list(a.index) == list(b.index)
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-9, atol=1e-12)
    a_seg = pd.read_csv(pandas_eval.path / pandas_eval.SEGMENTS_CSV)
    b_seg = pd.read_csv(spark_eval.path / spark_eval.SEGMENTS_CSV)
    pd.testing.assert_frame_equal(a_seg, b_seg, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(pandas_eval.per_user(), spark_eval.per_user(), rtol=1e-9, atol=1e-12)
    vs_best = (pandas_eval.significance()["vs_best_generator"], spark_eval.significance()["vs_best_generator"])
    assert vs_best[1]["mean_b"] == pytest.approx(vs_best[0]["mean_b"], abs=1e-12)
    assert vs_best[1]["p_value"] == pytest.approx(vs_best[0]["p_value"], rel=1e-6)
    assert a.loc["ranker", "ndcg@10"] > a.loc["popular", "ndcg@10"]  # a real ranker, not an empty table


def test_local_and_cluster_give_the_same_outputs(spark_runs: SparkRuns) -> None:
    """The whole Spark pipeline (prepare, als_spark, ranker and evaluate on Spark) run from scratch
    on local[2] gives the cluster's lists and figures: the seed and the blocks fix MLlib's factors,
    the buckets fix nothing the lists depend on."""
    assert Path(output_dir(spark_runs.local, "ranker")).parent != Path(output_dir(spark_runs.cluster, "ranker")).parent
    assert_same_lists(recommendations(spark_runs.cluster), recommendations(spark_runs.local))
    np.testing.assert_allclose(comparison(spark_runs.local).to_numpy(), comparison(spark_runs.cluster).to_numpy(),
                               rtol=1e-9, atol=1e-12)
